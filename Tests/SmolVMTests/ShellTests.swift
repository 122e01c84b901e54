import CSmolVMShims
import Foundation
import SmolVMSystem
import Testing

@testable import SmolVM

@Suite("Interactive shell and completion", .serialized)
struct ShellTests {
    @Test("sandbox shell runs a login shell on a guest terminal with our window size; Ctrl-D ends it")
    func interactiveShell() async throws {
        let name = NamedSandboxTests.uniqueName("sh")
        #expect(
            try await VMTest.cli(["sandbox", "create", "--name", name, "--image", "minimal", "--memory", "256"]).status
                == 0)
        var master: Int32 = -1
        var slave: Int32 = -1
        #expect(smolvm_openpty(&master, &slave, 33, 101) == 0)
        let process = Process()
        process.executableURL = URL(fileURLWithPath: VMTest.cliPath)
        process.arguments = ["sandbox", "shell", name]
        let terminal = FileHandle(fileDescriptor: slave, closeOnDealloc: false)
        process.standardInput = terminal
        process.standardOutput = terminal
        process.standardError = terminal
        try process.run()
        close(slave)
        let masterFD = FileDescriptor(rawValue: master)
        defer { masterFD.close() }
        try masterFD.setNonBlocking()

        var collected: [UInt8] = []
        func readUntil(_ needle: String, limit: Duration = .seconds(60)) async -> String {
            await readUntil(limit: limit) { $0.contains(needle) }
        }
        func readUntil(limit: Duration = .seconds(60), _ done: (String) -> Bool) async -> String {
            let deadline = ContinuousClock.now + limit
            while ContinuousClock.now < deadline {
                // What an earlier call already read may be enough.
                if done(String(decoding: collected, as: UTF8.self)) { break }
                if let chunk = try? masterFD.read(upTo: 4096), !chunk.isEmpty {
                    collected += chunk
                    if done(String(decoding: collected, as: UTF8.self)) { break }
                } else {
                    try? await Task.sleep(for: .milliseconds(20))
                }
            }
            return String(decoding: collected, as: UTF8.self)
        }

        try masterFD.writeAll("echo result=$((6*7)); tty; stty size\r")
        let output = await readUntil("33 101")
        #expect(output.contains("result=42"))
        #expect(output.contains("/dev/pts/"))
        #expect(output.contains("33 101"))
        // Ctrl-D at the next prompt, as a person would type it. busybox's line
        // editor first asks the terminal where the cursor is (ESC [6n) and reads
        // the answer; a real terminal replies, so this one does too.
        let prompt = await readUntil { text in
            // Bytes, not Characters: "\r\n" is one Character and would hide the match.
            let bytes = Array(text.utf8)
            guard let size = firstIndex(of: Array("33 101".utf8), in: bytes) else { return false }
            return firstIndex(of: Array("# ".utf8), in: Array(bytes[size...])) != nil
        }
        #expect(prompt.contains("# "))
        if prompt.hasSuffix("\u{1B}[6n") {
            try masterFD.writeAll("\u{1B}[5;5R")
        }
        try masterFD.writeAll([4])
        let exited = await VMTest.eventually { !process.isRunning }
        #expect(exited, "the shell did not end after Ctrl-D: \(String(decoding: collected.suffix(300), as: UTF8.self))")
        if exited { #expect(process.terminationStatus == 0) } else { process.terminate() }
        #expect(try await VMTest.cli(["sandbox", "delete", "--force", name]).status == 0)
    }

    @Test("bash completion offers commands and sandbox names")
    func bashCompletion() async throws {
        let name = NamedSandboxTests.uniqueName("cmp")
        #expect(
            try await VMTest.cli(["sandbox", "create", "--name", name, "--image", "minimal", "--memory", "256"]).status
                == 0)
        let script = try await VMTest.cli(["completion", "bash"])
        #expect(script.status == 0)
        let file = FileManager.default.temporaryDirectory.appendingPathComponent(
            "smolvm-completion-\(UUID().uuidString).bash")
        try Data(script.stdout).write(to: file)
        defer { try? FileManager.default.removeItem(at: file) }
        let directory = URL(fileURLWithPath: VMTest.cliPath).deletingLastPathComponent().path
        let probe = """
            source '\(file.path)'
            COMP_WORDS=(smolvm sa); COMP_CWORD=1; _smolvm; echo "top: ${COMPREPLY[*]}"
            COMP_WORDS=(smolvm sandbox exec ""); COMP_CWORD=3; _smolvm; echo "names: ${COMPREPLY[*]}"
            """
        let result = try await Subprocess.run(
            ["bash", "-c", probe],
            environment: ProcessInfo.processInfo.environment.merging(["PATH": "\(directory):/usr/bin:/bin"]) { $1 })
        let text = result.outputText
        #expect(text.contains("top: sandbox"))
        #expect(text.contains(name))
        for shell in ["zsh", "fish"] {
            let other = try await VMTest.cli(["completion", shell])
            #expect(other.status == 0)
            #expect(String(decoding: other.stdout, as: UTF8.self).contains("sandbox list --all --quiet"))
        }
        #expect(try await VMTest.cli(["completion", "tcsh"]).status == 2)
        #expect(try await VMTest.cli(["sandbox", "delete", "--force", name]).status == 0)
    }
}

func firstIndex(of needle: [UInt8], in haystack: [UInt8]) -> Int? {
    guard !needle.isEmpty, haystack.count >= needle.count else { return nil }
    for start in 0...(haystack.count - needle.count) where haystack[start..<start + needle.count].elementsEqual(needle)
    {
        return start
    }
    return nil
}
