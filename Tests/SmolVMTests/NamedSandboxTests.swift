import Foundation
import SmolVMSystem
import Testing

@testable import SmolVM

/// Named sandboxes across processes, with real VMs and the real CLI.
@Suite("Named sandboxes", .serialized)
struct NamedSandboxTests {
    static func uniqueName(_ prefix: String) -> String { "\(prefix)-\(UInt32.random(in: 0...UInt32.max))" }

    static func jsonData(_ output: [UInt8]) throws -> Any? {
        let object = try JSONSerialization.jsonObject(with: Data(output)) as? [String: Any]
        return object?["data"]
    }

    @Test("create, exec from another process, stop, start keeps files, delete leaves nothing")
    func lifecycle() async throws {
        let name = Self.uniqueName("t")
        let created = try await VMTest.cli([
            "sandbox", "create", "--name", name, "--image", "minimal", "--memory", "256",
        ])
        #expect(created.status == 0, "\(String(decoding: created.stderr, as: UTF8.self))")
        #expect(String(decoding: created.stdout, as: UTF8.self) == "\(name)\n")

        let write = try await VMTest.cli([
            "sandbox", "exec", name, "--", "sh", "-c", "echo hi > /root/f; echo err >&2; exit 3",
        ])
        #expect(write.status == 3)
        #expect(write.stderr == Array("err\n".utf8))

        // The library attaches from this process to the sandbox the CLI created.
        let sandbox = try await Sandbox.attach(named: name)
        #expect(try await sandbox.run(["cat", "/root/f"]).stdoutText == "hi\n")
        await sandbox.detach()

        let record = try Sandbox.info(named: name)
        let directory = record.runtimeDirectory
        let pid = try #require(record.vmmPID)

        #expect(try await VMTest.cli(["sandbox", "stop", name]).status == 0)
        #expect(!VMTest.isRunningProcess(pid))
        #expect(try Sandbox.info(named: name).status == .stopped)
        let stoppedExec = try await VMTest.cli(["sandbox", "exec", name, "--", "true"])
        #expect(stoppedExec.status == 125)
        #expect(String(decoding: stoppedExec.stderr, as: UTF8.self).contains("smolvm sandbox start \(name)"))

        #expect(try await VMTest.cli(["sandbox", "start", name]).status == 0)
        let read = try await VMTest.cli(["sandbox", "exec", name, "--", "cat", "/root/f"])
        #expect(read.status == 0)
        #expect(read.stdout == Array("hi\n".utf8))
        let newPID = try #require(try Sandbox.info(named: name).vmmPID)

        let deleted = try await VMTest.cli(["sandbox", "delete", name])
        #expect(deleted.status == 0)
        #expect(!VMTest.isRunningProcess(newPID))
        #expect(!FileManager.default.fileExists(atPath: directory))
        #expect(throws: SmolVMError.self) { try Sandbox.info(named: name) }
        let list = try await VMTest.cli(["sandbox", "list", "--all", "--json"])
        let entries = try #require(try Self.jsonData(list.stdout) as? [[String: Any]])
        #expect(!entries.contains { $0["name"] as? String == name })
    }

    @Test("five sandboxes created from two processes at once are distinct and all work")
    func concurrentCreates() async throws {
        let prefix = Self.uniqueName("c")
        async let first = VMTest.cli([
            "sandbox", "create", "--image", "minimal", "--memory", "256", "--name", "\(prefix)-1",
        ])
        async let second = VMTest.cli([
            "sandbox", "create", "--image", "minimal", "--memory", "256", "--name", "\(prefix)-2",
        ])
        let results = try await [first, second]
        async let third = VMTest.cli(["sandbox", "create", "--image", "minimal", "--memory", "256"])
        async let fourth = VMTest.cli(["sandbox", "create", "--image", "minimal", "--memory", "256"])
        async let fifth = VMTest.cli([
            "sandbox", "create", "--image", "minimal", "--memory", "256", "--name", "\(prefix)-5",
        ])
        let more = try await [third, fourth, fifth]
        var names: [String] = []
        for result in results + more {
            #expect(result.status == 0, "\(String(decoding: result.stderr, as: UTF8.self))")
            names.append(String(decoding: result.stdout, as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines))
        }
        #expect(Set(names).count == 5)
        for name in names {
            let hostname = try await VMTest.cli(["sandbox", "exec", name, "--", "hostname"])
            #expect(hostname.status == 0)
            #expect(String(decoding: hostname.stdout, as: UTF8.self) == "\(name)\n")
        }
        // A second create with a taken name fails clearly and harms nothing.
        let duplicate = try await VMTest.cli(["sandbox", "create", "--image", "minimal", "--name", names[0]])
        #expect(duplicate.status == 1)
        #expect(String(decoding: duplicate.stderr, as: UTF8.self).contains("already exists"))
        #expect(try Sandbox.info(named: names[0]).status == .running)
        for name in names {
            #expect(try await VMTest.cli(["sandbox", "delete", "--force", name]).status == 0)
        }
    }

    @Test("a VMM killed with SIGKILL is reported as not running, and the sandbox is deletable")
    func killedVMM() async throws {
        let name = Self.uniqueName("k")
        #expect(
            try await VMTest.cli(["sandbox", "create", "--name", name, "--image", "minimal", "--memory", "256"]).status
                == 0)
        let record = try Sandbox.info(named: name)
        let pid = try #require(record.vmmPID)
        kill(pid, SIGKILL)
        #expect(await VMTest.eventually { !VMTest.isRunningProcess(pid) })

        let list = try await VMTest.cli(["sandbox", "list", "--all", "--json"])
        let entries = try #require(try Self.jsonData(list.stdout) as? [[String: Any]])
        let entry = try #require(entries.first { $0["name"] as? String == name })
        #expect(entry["status"] as? String == "error")
        #expect((entry["lastError"] as? String ?? "").contains("exited"))

        let running = try await VMTest.cli(["sandbox", "list", "--json"])
        let runningEntries = try #require(try Self.jsonData(running.stdout) as? [[String: Any]])
        #expect(!runningEntries.contains { $0["name"] as? String == name })

        #expect(try await VMTest.cli(["sandbox", "delete", name]).status == 0)
        #expect(!FileManager.default.fileExists(atPath: record.runtimeDirectory))
    }

    @Test("a pid reused by another process is not mistaken for the VMM")
    func reusedPID() throws {
        let home = SmolVMPaths(home: URL(fileURLWithPath: "/tmp/smolvm-state-\(UUID().uuidString.prefix(8))"))
        defer { try? FileManager.default.removeItem(at: home.home) }
        let store = try StateStore(paths: home)
        let name = "reused"
        // This test process is alive, but its start time is not the recorded one.
        try store.insert(
            SandboxRecord(
                name: name, id: "0123456789ab", backend: "qemu", image: "minimal", memoryMiB: 256, cpus: 1,
                environment: [:],
                internet: .off, publish: [], mounts: [], status: .running, vmmPID: getpid(),
                vmmStartTime: Spawn.startTime(getpid()) + 12345,
                created: Date(), runtimeDirectory: home.home.path + "/x", kernel: "/k", rootImage: "/r", lastError: nil)
        )
        let record = try store.record(named: name)
        #expect(record.status == .error)
        #expect(record.vmmPID == nil)
    }

    @Test("a VMM whose creator died before recording its pid is found through its pidfile and stopped")
    func unrecordedVMM() async throws {
        let home = SmolVMPaths(home: URL(fileURLWithPath: "/tmp/smolvm-state-\(UUID().uuidString.prefix(8))"))
        defer { try? FileManager.default.removeItem(at: home.home) }
        let directory = home.sandboxes.appendingPathComponent("0123456789ab")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        // Stands in for a QEMU whose command line names the runtime directory.
        let pid = try Spawn.start(
            path: "/bin/sh", arguments: ["sh", "-c", "sleep 600", directory.path], environment: [],
            fileDescriptors: [nil, nil, nil])
        defer {
            Spawn.signal(pid, SIGKILL)
            _ = try? Spawn.wait(pid)
        }
        try Data("\(pid)\n".utf8).write(to: directory.appendingPathComponent("qemu.pid"))
        let store = try StateStore(paths: home)
        try store.insert(
            SandboxRecord(
                name: "orphan", id: "0123456789ab", backend: "qemu", image: "minimal", memoryMiB: 256, cpus: 1,
                environment: [:], internet: .off, publish: [], mounts: [], status: .starting, vmmPID: nil,
                vmmStartTime: nil, created: Date(),
                runtimeDirectory: directory.path, kernel: "/k", rootImage: "/r", lastError: nil))
        let record = try store.record(named: "orphan")
        #expect(record.status == .error)
        let reaped = await VMTest.eventually { (try? Spawn.poll(pid)) != nil }
        #expect(reaped, "the unrecorded VMM was not stopped")
    }

    @Test("the schema is versioned and a newer database is refused clearly")
    func schemaVersion() throws {
        let home = SmolVMPaths(home: URL(fileURLWithPath: "/tmp/smolvm-state-\(UUID().uuidString.prefix(8))"))
        defer { try? FileManager.default.removeItem(at: home.home) }
        _ = try StateStore(paths: home)
        let database = try Database(path: home.home.appendingPathComponent("state.db").path)
        #expect(
            try database.execute("PRAGMA user_version").first?["user_version"]?.integer
                == Int64(StateStore.migrations.count))
        try database.execute("PRAGMA user_version = 99")
        do {
            _ = try StateStore(paths: home)
            Issue.record("expected a newer schema to be refused")
        } catch let error as SmolVMError {
            #expect(error.message.contains("newer SmolVM"))
        }
    }

    @Test("invalid and unknown names give clear errors")
    func badNames() async throws {
        for bad in ["UPPER", "-leading", "has space", "a/b", String(repeating: "x", count: 64), ""] {
            let result = try await VMTest.cli(["sandbox", "create", "--name", bad])
            #expect(result.status == 1 || result.status == 2, "\(bad)")
            #expect(String(decoding: result.stderr, as: UTF8.self).contains("invalid sandbox name"), "\(bad)")
        }
        let unknown = "no-such-sandbox-\(UInt32.random(in: 0...UInt32.max))"
        for command in [
            ["info", unknown], ["stop", unknown], ["start", unknown], ["delete", unknown], ["logs", unknown],
        ] {
            let result = try await VMTest.cli(["sandbox"] + command)
            #expect(result.status == 1, "\(command)")
            #expect(
                String(decoding: result.stderr, as: UTF8.self).contains("no sandbox named '\(unknown)'"), "\(command)")
        }
        let exec = try await VMTest.cli(["sandbox", "exec", unknown, "--", "true"])
        #expect(exec.status == 125)
        let json = try await VMTest.cli(["sandbox", "info", unknown, "--json"])
        let object = try #require(try JSONSerialization.jsonObject(with: Data(json.stdout)) as? [String: Any])
        #expect(object["ok"] as? Bool == false)
        #expect((object["error"] as? [String: Any])?["code"] as? String == "notFound")
    }

    @Test("files move in and out by name, into existing directories, with odd names")
    func files() async throws {
        let name = Self.uniqueName("f")
        #expect(
            try await VMTest.cli(["sandbox", "create", "--name", name, "--image", "minimal", "--memory", "256"]).status
                == 0)
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent(
            "smolvm-named-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: directory) }
        let local = directory.appendingPathComponent("résumé final.txt")
        try Data("contents ✓\n".utf8).write(to: local)

        let upload = try await VMTest.cli(["sandbox", "file", "upload", name, local.path, "/root"])
        #expect(upload.status == 0)
        #expect(String(decoding: upload.stdout, as: UTF8.self) == "/root/résumé final.txt\n")
        let cat = try await VMTest.cli(["sandbox", "exec", name, "--", "cat", "/root/résumé final.txt"])
        #expect(cat.stdout == Array("contents ✓\n".utf8))

        let back = directory.appendingPathComponent("back")
        try FileManager.default.createDirectory(at: back, withIntermediateDirectories: true)
        let download = try await VMTest.cli(["sandbox", "file", "download", name, "/root/résumé final.txt", back.path])
        #expect(download.status == 0)
        #expect(try Data(contentsOf: back.appendingPathComponent("résumé final.txt")) == Data("contents ✓\n".utf8))

        let missing = try await VMTest.cli(["sandbox", "file", "download", name, "/no/file", back.path])
        #expect(missing.status == 1)
        #expect(String(decoding: missing.stderr, as: UTF8.self).contains("/no/file"))

        let logs = try await VMTest.cli(["sandbox", "logs", name])
        #expect(logs.status == 0)
        #expect(String(decoding: logs.stdout, as: UTF8.self).contains("smolvm-agent"))
        #expect(try await VMTest.cli(["sandbox", "delete", "--force", name]).status == 0)
    }
}
