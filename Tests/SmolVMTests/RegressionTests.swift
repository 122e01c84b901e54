import Foundation
import SmolVMProtocol
import SmolVMSystem
import Testing

@testable import SmolVM

/// Inputs that once broke SmolVM, kept as tests.
@Suite("Regressions", .serialized)
struct RegressionTests {
    @Test("rebuilding an image never rewrites the base a stopped named sandbox boots from")
    func rebuildKeepsNamedSandboxBase() async throws {
        let home = try await IsolatedHome.make()
        defer { home.remove() }
        var configuration = VMTest.configuration()
        configuration.paths = home.paths
        let sandbox = try await Sandbox.create(named: "keep", configuration)
        try await sandbox.upload(Array("kept\n".utf8), to: "/root/f")
        await sandbox.detach()
        try await Sandbox.stop(named: "keep", paths: home.paths)
        let record = try Sandbox.info(named: "keep", paths: home.paths)
        let before = try VMTest.sha256(record.rootImage)

        // What `smolvm setup --force` does: install a different build under the same key and name.
        let store = ImageStore(paths: home.paths)
        let manifestURL = store.imageManifestURL("minimal")
        let manifest = try #require(try ArtifactManifest.load(manifestURL))
        let rebuilt = home.paths.build.appendingPathComponent("rebuilt.ext4")
        try FileManager.default.createDirectory(at: home.paths.build, withIntermediateDirectories: true)
        try await Subprocess.check(["cp", "--sparse=always", record.rootImage, rebuilt.path])
        try await Subprocess.check([
            "sh", "-c", "printf 'x' | dd of='\(rebuilt.path)' bs=1 seek=70000000 conv=notrunc 2>/dev/null",
        ])
        try await store.install(
            built: rebuilt, name: "minimal", key: manifest.key, fileName: manifest.file, inputs: manifest.inputs,
            manifestURL: manifestURL)

        #expect(FileManager.default.fileExists(atPath: record.rootImage))
        #expect(try VMTest.sha256(record.rootImage) == before)
        try await Sandbox.start(named: "keep", paths: home.paths)
        let attached = try await Sandbox.attach(named: "keep", paths: home.paths)
        #expect(try await attached.run(["cat", "/root/f"]).stdoutText == "kept\n")
        await attached.detach()
        try await Sandbox.delete(named: "keep", force: true, paths: home.paths)
    }

    @Test("an image whose agent speaks another protocol is refused before boot")
    func protocolMismatch() async throws {
        let home = try await IsolatedHome.make()
        defer { home.remove() }
        let manifestURL = ImageStore(paths: home.paths).imageManifestURL("minimal")
        var manifest = try #require(try ArtifactManifest.load(manifestURL))
        manifest.inputs[RootfsBuilder.protocolInput] = "1"
        try manifest.save(manifestURL)
        var configuration = VMTest.configuration()
        configuration.paths = home.paths
        do {
            _ = try await Sandbox.create(configuration)
            Issue.record("expected a protocol mismatch")
        } catch let error as SmolVMError {
            #expect(error.message.contains("protocol 1"))
            #expect(error.message.contains("smolvm setup"))
        }
        #expect(try home.runtimeEntries().isEmpty)
    }

    /// Runs the CLI with raw byte arguments (Foundation's Process only takes Strings).
    func rawCLI(_ arguments: [[UInt8]]) async throws -> (Int32, [UInt8]) {
        let cli = VMTest.cliPath
        return try await Task.detached {
            let out = try FileDescriptor.pipe()
            let null = try FileDescriptor.open("/dev/null", .readWrite)
            let environment = ProcessInfo.processInfo.environment.map { Array("\($0.key)=\($0.value)".utf8) }
            let pid = try Spawn.start(
                path: Array(cli.utf8), arguments: [Array(cli.utf8)] + arguments, environment: environment,
                fileDescriptors: [null, out.write, null])
            out.write.close()
            null.close()
            let output = try out.read.readAll()
            out.read.close()
            let status = try Spawn.wait(pid)
            guard case .exited(let code) = status else { return (-1, output) }
            return (code, output)
        }.value
    }

    @Test("arguments and environment values that are not UTF-8 reach the guest byte for byte")
    func rawBytes() async throws {
        let (status, output) = try await rawCLI([
            Array("run".utf8), Array("--image".utf8), Array("minimal".utf8), Array("--env".utf8),
            Array("X=".utf8) + [0xff, 0xfe], Array("--".utf8), Array("sh".utf8), Array("-c".utf8),
            Array("printf '%s|%s' \"$1\" \"$X\"".utf8), Array("sh".utf8), [0xc3, 0x28, 0x80],
        ])
        #expect(status == 0)
        #expect(output == [0xc3, 0x28, 0x80, UInt8(ascii: "|"), 0xff, 0xfe])
    }

    @Test("programs that cannot run exit 126, missing ones 127, as shells do")
    func notExecutable() async throws {
        for (program, expected) in [
            ("/nonexistent", Int32(127)), ("/etc", 126), ("/etc/passwd", 126), ("nosuchprog", 127),
        ] {
            let result = try await VMTest.cli(["run", "--image", "minimal", "--", program])
            #expect(result.status == expected, "\(program)")
            #expect(String(decoding: result.stderr, as: UTF8.self).contains(program), "\(program)")
        }
    }

    @Test("INT, TERM and HUP during a run exit 128+N and leave no VMM")
    func signalsDuringRun() async throws {
        for signal in [SIGINT, SIGTERM, SIGHUP] {
            let process = Process()
            process.executableURL = URL(fileURLWithPath: VMTest.cliPath)
            process.arguments = ["run", "--image", "minimal", "--", "sh", "-c", "echo started; sleep 600"]
            let out = Pipe()
            let err = Pipe()
            process.standardOutput = out
            process.standardError = err
            process.standardInput = FileHandle.nullDevice
            try process.run()
            let started = out.fileHandleForReading.availableData
            #expect(String(decoding: started, as: UTF8.self).contains("started"))
            let qemu = VMTest.children(of: process.processIdentifier)
            kill(process.processIdentifier, signal)
            process.waitUntilExit()
            #expect(process.terminationReason == .exit)
            #expect(process.terminationStatus == 128 + signal, "signal \(signal)")
            let stderr = String(decoding: err.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
            #expect(!stderr.contains("error"), "signal \(signal): \(stderr)")
            for pid in qemu { #expect(await VMTest.eventually { !VMTest.isRunningProcess(pid) }) }
        }
    }

    @Test("an unusable SMOLVM_HOME or SMOLVM_ACCEL is named in the error")
    func unusableSettings() async throws {
        let file = FileManager.default.temporaryDirectory.appendingPathComponent(
            "smolvm-home-file-\(UUID().uuidString)")
        try Data().write(to: file)
        defer { try? FileManager.default.removeItem(at: file) }
        for command in [["run", "--", "true"], ["sandbox", "list"]] {
            let result = try await VMTest.cli(command, environment: ["SMOLVM_HOME": file.path])
            #expect(result.status != 0)
            #expect(String(decoding: result.stderr, as: UTF8.self).contains("is a file, not a directory"), "\(command)")
        }
        let accel = try await VMTest.cli(["run", "--", "true"], environment: ["SMOLVM_ACCEL": "nonsense"])
        #expect(accel.status == 125)
        #expect(String(decoding: accel.stderr, as: UTF8.self).contains("Unsupported accelerator 'nonsense'"))
    }
}
