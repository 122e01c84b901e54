import Foundation
import Testing

@testable import SmolVM

/// The `smolvm` executable, end to end, with real VMs.
@Suite("smolvm CLI", .serialized)
struct CLITests {
    @Test("run streams stdout and stderr separately and exits with the command's status")
    func runExitStatus() async throws {
        let result = try await VMTest.cli([
            "run", "--image", "minimal", "--", "sh", "-c", "echo out; echo err >&2; exit 7",
        ])
        #expect(result.status == 7)
        #expect(result.stdout == Array("out\n".utf8))
        #expect(result.stderr == Array("err\n".utf8))
    }

    @Test("the default debian image has the tools an agent expects")
    func debianImage() async throws {
        let result = try await VMTest.cli([
            "run", "--", "sh", "-c",
            "python3 -c 'import ssl, subprocess, socket, json; print(6 * 7)' && git --version && curl --version && bash -c 'echo $BASH_VERSION'",
        ])
        #expect(result.status == 0, "\(String(decoding: result.stderr, as: UTF8.self))")
        let text = String(decoding: result.stdout, as: UTF8.self)
        #expect(text.hasPrefix("42\n"))
        #expect(text.contains("git version"))
        #expect(text.contains("curl "))
        #expect(text.contains("5."))
    }

    @Test("run --json carries the exact bytes in base64, and the output printed before a timeout")
    func runJSON() async throws {
        let result = try await VMTest.cli([
            "run", "--image", "minimal", "--json", "--", "sh", "-c", "printf '\\377\\000ab'; exit 3",
        ])
        #expect(result.status == 3)
        let object = try #require(try JSONSerialization.jsonObject(with: Data(result.stdout)) as? [String: Any])
        let data = try #require(object["data"] as? [String: Any])
        #expect(data["exitCode"] as? Int == 3)
        #expect(Data(base64Encoded: data["stdoutBase64"] as? String ?? "") == Data([0xff, 0x00, 0x61, 0x62]))
        let timeout = try await VMTest.cli([
            "run", "--image", "minimal", "--json", "--timeout", "1", "--", "sh", "-c", "echo before; sleep 30",
        ])
        #expect(timeout.status == 124)
        let timeoutObject = try #require(try JSONSerialization.jsonObject(with: Data(timeout.stdout)) as? [String: Any])
        #expect(timeoutObject["ok"] as? Bool == false)
        #expect((timeoutObject["data"] as? [String: Any])?["stdout"] as? String == "before\n")
    }

    @Test("run maps signals to 128+N, timeouts to 124 and a missing program to 127")
    func runStatusMapping() async throws {
        let killed = try await VMTest.cli(["run", "--image", "minimal", "--", "sh", "-c", "kill -9 $$"])
        #expect(killed.status == 137)
        let timedOut = try await VMTest.cli(["run", "--image", "minimal", "--timeout", "1", "--", "sleep", "60"])
        #expect(timedOut.status == 124)
        #expect(String(decoding: timedOut.stderr, as: UTF8.self).contains("did not finish"))
        let missing = try await VMTest.cli(["run", "--image", "minimal", "--", "no-such-program"])
        #expect(missing.status == 127)
        #expect(String(decoding: missing.stderr, as: UTF8.self).contains("no-such-program"))
    }

    @Test("run passes stdin through when it is not a terminal")
    func runStandardInput() async throws {
        let input = Array("line one\nline two\n".utf8) + [0x00, 0xff, 0x80]
        let result = try await VMTest.cli(["run", "--image", "minimal", "--", "cat"], stdin: input)
        #expect(result.status == 0)
        #expect(result.stdout == input)
    }

    @Test("bad input fails at once with exit 125 and a message that names the fix")
    func runBadInput() async throws {
        let bogus = try await VMTest.cli(["run", "--backend", "bogus", "--", "true"])
        #expect(bogus.status == 125)
        #expect(
            String(decoding: bogus.stderr, as: UTF8.self).contains(
                "Unsupported backend 'bogus'. Supported values: auto, firecracker, qemu"))

        let envBogus = try await VMTest.cli(["run", "--", "true"], environment: ["SMOLVM_BACKEND": "bogus"])
        #expect(envBogus.status == 125)

        let noCommand = try await VMTest.cli(["run"])
        #expect(noCommand.status == 125)
        #expect(String(decoding: noCommand.stderr, as: UTF8.self).contains("missing the command"))

        let badImage = try await VMTest.cli(["run", "--image", "nope", "--", "true"])
        #expect(badImage.status == 125)
        #expect(String(decoding: badImage.stderr, as: UTF8.self).contains("Available images"))

        let badMemory = try await VMTest.cli(["run", "--memory", "lots", "--", "true"])
        #expect(badMemory.status == 125)
        #expect(String(decoding: badMemory.stderr, as: UTF8.self).contains("--memory"))

        let unknownOption = try await VMTest.cli(["run", "--imagee", "minimal", "--", "true"])
        #expect(unknownOption.status == 125)
        #expect(String(decoding: unknownOption.stderr, as: UTF8.self).contains("did you mean --image"))
    }

    @Test("an explicitly requested backend that cannot run fails before any boot")
    func firecrackerUnavailable() async throws {
        let kvm = KVMState.detect(.current)
        let result = try await VMTest.cli(["run", "--backend", "firecracker", "--", "true"])
        if !kvm.isUsable || Subprocess.which("firecracker") == nil {
            #expect(result.status == 125)
            let message = String(decoding: result.stderr, as: UTF8.self)
            #expect(message.contains("Firecracker cannot run on this host"))
            #expect(message.contains("Fix:") || message.contains("use --backend qemu"))
        }
        // The argument beats the environment.
        let argumentWins = try await VMTest.cli(
            ["run", "--backend", "qemu", "--image", "minimal", "--", "true"],
            environment: ["SMOLVM_BACKEND": "firecracker"])
        #expect(argumentWins.status == 0)
    }

    @Test("50 MB of output streams through without host memory growing with it")
    func largeOutputBoundedMemory() async throws {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: VMTest.cliPath)
        process.arguments = ["run", "--image", "minimal", "--", "sh", "-c", "head -c 52428800 /dev/zero"]
        let out = Pipe()
        process.standardOutput = out
        process.standardError = FileHandle.nullDevice
        process.standardInput = FileHandle.nullDevice
        try process.run()
        let pid = process.processIdentifier
        let peak = PeakRSS()
        let sampler = Task.detached {
            while !Task.isCancelled {
                peak.sample(pid)
                try? await Task.sleep(for: .milliseconds(20))
            }
        }
        var total = 0
        var nonZero = false
        // Read slowly at first so the guest gets ahead of us and backpressure is exercised.
        try await Task.sleep(for: .seconds(1))
        while true {
            let chunk = out.fileHandleForReading.availableData
            if chunk.isEmpty { break }
            total += chunk.count
            if chunk.contains(where: { $0 != 0 }) { nonZero = true }
        }
        process.waitUntilExit()
        sampler.cancel()
        #expect(process.terminationStatus == 0)
        #expect(total == 52_428_800)
        #expect(!nonZero)
        // The tool's own footprint is tens of MiB; 50 MB buffered would show.
        #expect(peak.maxKiB > 0)
        #expect(peak.maxKiB < 45 * 1024, "peak RSS \(peak.maxKiB) KiB")
    }

    @Test("a killed smolvm leaves no QEMU, and its leftovers are swept by the next run")
    func killedCLILeavesNothing() async throws {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: VMTest.cliPath)
        process.arguments = ["run", "--image", "minimal", "--", "sh", "-c", "echo started; sleep 600"]
        let out = Pipe()
        process.standardOutput = out
        process.standardError = FileHandle.nullDevice
        process.standardInput = FileHandle.nullDevice
        try process.run()
        // Wait until the command runs inside the guest.
        let line = out.fileHandleForReading.availableData
        #expect(String(decoding: line, as: UTF8.self).contains("started"))
        let qemu = VMTest.children(of: process.processIdentifier)
        #expect(qemu.count == 1)
        let runtimeBefore = Set((try? FileManager.default.contentsOfDirectory(atPath: VMTest.paths.run.path)) ?? [])
        kill(process.processIdentifier, SIGKILL)
        process.waitUntilExit()
        for pid in qemu {
            #expect(await VMTest.eventually { !VMTest.isRunningProcess(pid) }, "QEMU \(pid) outlived its smolvm")
        }
        // The next sandbox sweeps the dead run's directory.
        let next = try await VMTest.cli(["run", "--image", "minimal", "--", "true"])
        #expect(next.status == 0)
        let runtimeAfter = Set((try? FileManager.default.contentsOfDirectory(atPath: VMTest.paths.run.path)) ?? [])
        #expect(
            runtimeAfter.intersection(runtimeBefore).allSatisfy { entry in
                FileLock.isHeld(VMTest.paths.runtime(entry).appendingPathComponent("lock").path)
            })
    }

    @Test("help is available on every command, with examples")
    func help() async throws {
        for command in [
            ["--help"], ["run", "--help"], ["setup", "--help"], ["image", "list", "--help"], ["bench", "--help"],
            ["doctor", "--help"],
        ] {
            let result = try await VMTest.cli(command)
            #expect(result.status == 0, "\(command)")
            let text = String(decoding: result.stdout, as: UTF8.self)
            #expect(text.contains("USAGE:"), "\(command)")
            #expect(text.contains("EXAMPLES:"), "\(command)")
        }
        let unknown = try await VMTest.cli(["rnu"])
        #expect(unknown.status == 2)
        #expect(String(decoding: unknown.stderr, as: UTF8.self).contains("did you mean 'run'"))
    }

    @Test("image list shows the kernel and images with sizes, as a table and as JSON")
    func imageList() async throws {
        let table = try await VMTest.cli(["image", "list"])
        #expect(table.status == 0)
        let text = String(decoding: table.stdout, as: UTF8.self)
        #expect(text.contains("kernel"))
        #expect(text.contains("minimal"))
        let json = try await VMTest.cli(["image", "list", "--json"])
        let object = try #require(try JSONSerialization.jsonObject(with: Data(json.stdout)) as? [String: Any])
        #expect(object["ok"] as? Bool == true)
        let data = try #require(object["data"] as? [[String: Any]])
        #expect(data.contains { $0["name"] as? String == "minimal" && ($0["size"] as? Int ?? 0) > 0 })
    }

    @Test("limits the guest cannot honour and bad environment values are refused up front, naming the fix")
    func limitsAndEnvironment() async throws {
        let cpus = try await VMTest.cli(["run", "--image", "minimal", "--cpus", "17", "--", "true"])
        #expect(cpus.status == 125)
        #expect(String(decoding: cpus.stderr, as: UTF8.self).contains("from 1 to 16"))
        let memory = try await VMTest.cli(["run", "--image", "minimal", "--memory", "1048576", "--", "true"])
        #expect(memory.status == 125)
        #expect(String(decoding: memory.stderr, as: UTF8.self).contains("more than this host has"))
        let backend = try await VMTest.cli(["run", "--", "true"], environment: ["SMOLVM_BACKEND": "bogus"])
        #expect(backend.status == 125)
        #expect(String(decoding: backend.stderr, as: UTF8.self).contains("SMOLVM_BACKEND"))
        let timeout = try await VMTest.cli(["run", "--", "true"], environment: ["SMOLVM_BOOT_TIMEOUT": "abc"])
        #expect(timeout.status == 125)
        #expect(String(decoding: timeout.stderr, as: UTF8.self).contains("SMOLVM_BOOT_TIMEOUT"))
        let log = try await VMTest.cli(["image", "list"], environment: ["SMOLVM_LOG": "loud"])
        #expect(log.status == 0)
        #expect(String(decoding: log.stderr, as: UTF8.self).contains("SMOLVM_LOG='loud' is not a level"))
    }
}

final class PeakRSS: @unchecked Sendable {
    private let lock = NSLock()
    private(set) var maxKiB = 0

    func sample(_ pid: Int32) {
        guard let status = try? String(contentsOfFile: "/proc/\(pid)/status", encoding: .utf8) else { return }
        for line in status.split(separator: "\n") where line.hasPrefix("VmRSS:") {
            let value = Int(line.split(separator: " ").dropFirst().first ?? "") ?? 0
            lock.lock()
            maxKiB = max(maxKiB, value)
            lock.unlock()
        }
    }
}
