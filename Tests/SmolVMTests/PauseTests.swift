import Foundation
import Testing

@testable import SmolVM

@Suite("Pause and resume", .serialized)
struct PauseTests {
    static func count(_ name: String) async throws -> Int {
        let result = try await VMTest.cli(["sandbox", "exec", name, "--", "cat", "/tmp/n"])
        #expect(result.status == 0)
        return Int(String(decoding: result.stdout, as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines)) ?? -1
    }

    @Test("a background process keeps counting across pause and resume; a paused sandbox refuses exec clearly")
    func namedPauseResume() async throws {
        let name = NamedSandboxTests.uniqueName("p")
        #expect(
            try await VMTest.cli(["sandbox", "create", "--name", name, "--image", "minimal", "--memory", "256"]).status
                == 0)
        // setsid: the counter outlives the exec that started it.
        let start = try await VMTest.cli([
            "sandbox", "exec", name, "--", "sh", "-c",
            "setsid sh -c 'i=0; while :; do i=$((i+1)); echo $i > /tmp/n; sleep 0.2; done' </dev/null >/dev/null 2>&1 &",
        ])
        #expect(start.status == 0)
        var first = -1
        for _ in 0..<50 where first < 1 {
            first = try await Self.count(name)
            try await Task.sleep(for: .milliseconds(200))
        }
        #expect(first >= 1)

        #expect(try await VMTest.cli(["sandbox", "pause", name]).status == 0)
        let list = try await VMTest.cli(["sandbox", "list", "--json"])
        let entries = try #require(try NamedSandboxTests.jsonData(list.stdout) as? [[String: Any]])
        #expect(entries.first { $0["name"] as? String == name }?["status"] as? String == "paused")
        let refused = try await VMTest.cli(["sandbox", "exec", name, "--", "true"])
        #expect(refused.status == 125)
        #expect(String(decoding: refused.stderr, as: UTF8.self).contains("sandbox resume \(name)"))

        // --resume thaws it first; the counter carries on from where it was.
        let resumed = try await VMTest.cli(["sandbox", "exec", name, "--resume", "--", "cat", "/tmp/n"])
        #expect(resumed.status == 0)
        let afterResume =
            Int(String(decoding: resumed.stdout, as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines)) ?? -1
        #expect(afterResume >= first)
        var later = afterResume
        for _ in 0..<50 where later <= afterResume {
            try await Task.sleep(for: .milliseconds(200))
            later = try await Self.count(name)
        }
        #expect(later > afterResume, "the counter stopped after resume")
        #expect(try Sandbox.info(named: name).status == .running)

        // Stopping a paused sandbox works too (it is thawed to shut down cleanly).
        #expect(try await VMTest.cli(["sandbox", "pause", name]).status == 0)
        #expect(try await VMTest.cli(["sandbox", "stop", name]).status == 0)
        #expect(try Sandbox.info(named: name).status == .stopped)
        let pauseStopped = try await VMTest.cli(["sandbox", "pause", name])
        #expect(pauseStopped.status == 1)
        #expect(String(decoding: pauseStopped.stderr, as: UTF8.self).contains("only a running sandbox can be paused"))
        #expect(try await VMTest.cli(["sandbox", "delete", name]).status == 0)
    }

    @Test("the library pauses and resumes a sandbox it owns")
    func libraryPauseResume() async throws {
        try await Sandbox.withSandbox(VMTest.configuration()) { sandbox in
            try await sandbox.pause()
            #expect(await sandbox.paused)
            await #expect(throws: SmolVMError.self) { _ = try await sandbox.run(["true"]) }
            try await sandbox.resume()
            #expect(try await sandbox.run(["echo", "back"]).stdoutText == "back\n")
        }
    }
}
