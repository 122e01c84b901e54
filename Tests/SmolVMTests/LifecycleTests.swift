import Foundation
import SmolVMProtocol
import SmolVMSystem
import Testing

@testable import SmolVM

@Suite("Sandbox lifecycle and cleanup", .serialized)
struct LifecycleTests {
    @Test("three sandboxes at once are independent, and delete leaves nothing")
    func threeAtOnce() async throws {
        let configuration = VMTest.configuration()
        let sandboxes = try await withThrowingTaskGroup(of: Sandbox.self) { group in
            for _ in 0..<3 { group.addTask { try await Sandbox.create(configuration) } }
            var all: [Sandbox] = []
            for try await sandbox in group { all.append(sandbox) }
            return all
        }
        #expect(Set(sandboxes.map(\.id)).count == 3)
        for (index, sandbox) in sandboxes.enumerated() {
            try await sandbox.upload(Array("\(index)".utf8), to: "/root/marker")
        }
        var pids: [Int32] = []
        for (index, sandbox) in sandboxes.enumerated() {
            let marker = try await sandbox.run(["cat", "/root/marker"])
            #expect(marker.stdoutText == "\(index)")
            pids.append(try #require(await sandbox.vmmProcessID))
        }
        for sandbox in sandboxes { await sandbox.delete() }
        for (sandbox, pid) in zip(sandboxes, pids) {
            #expect(!VMTest.isRunningProcess(pid))
            #expect(!FileManager.default.fileExists(atPath: sandbox.runtimeDirectory.path))
            #expect(await sandbox.status == .deleted)
            await #expect(throws: SmolVMError.self) { _ = try await sandbox.run(["true"]) }
        }
    }

    @Test("withSandbox cleans up when its body throws")
    func scopedCleanupOnThrow() async throws {
        struct Expected: Error {}
        let box = Box()
        await #expect(throws: Expected.self) {
            try await Sandbox.withSandbox(VMTest.configuration()) { sandbox in
                box.directory = sandbox.runtimeDirectory
                box.pid = await sandbox.vmmProcessID
                throw Expected()
            }
        }
        let directory = try #require(box.directory)
        #expect(!FileManager.default.fileExists(atPath: directory.path))
        #expect(!VMTest.isRunningProcess(try #require(box.pid)))
    }

    @Test("stop shuts the guest down cleanly")
    func cleanStop() async throws {
        let sandbox = try await Sandbox.create(VMTest.configuration())
        let pid = try #require(await sandbox.vmmProcessID)
        await sandbox.stop()
        #expect(await sandbox.status == .stopped)
        #expect(!VMTest.isRunningProcess(pid))
        let console = try String(
            contentsOf: sandbox.runtimeDirectory.appendingPathComponent("console.log"), encoding: .utf8)
        #expect(console.contains("shutting down"))
        await sandbox.delete()
        #expect(!FileManager.default.fileExists(atPath: sandbox.runtimeDirectory.path))
    }

    @Test("a guest that never answers fails the boot with a clear error and leaves nothing")
    func guestNeverAnswers() async throws {
        // An image whose init is not the agent: it boots but never speaks.
        let home = try await IsolatedHome.make()
        defer { home.remove() }
        try await home.installImage(named: "silent", initScript: "#!/bin/sh\nwhile true; do sleep 1; done\n")
        var configuration = VMTest.configuration(image: "silent")
        configuration.paths = home.paths
        configuration.bootTimeout = .seconds(8)
        do {
            _ = try await Sandbox.create(configuration)
            Issue.record("expected the boot to fail")
        } catch let error as SmolVMError {
            #expect(error.code == .agentUnreachable)
            #expect(error.message.contains("did not answer"))
        }
        #expect(try home.runtimeEntries().isEmpty)
        #expect(home.qemuProcesses().isEmpty)
    }

    @Test("a VMM that dies during boot is reported with its log and leaves nothing")
    func failedBoot() async throws {
        let home = try await IsolatedHome.make()
        defer { home.remove() }
        // Not a kernel: QEMU refuses it and exits at once.
        let bogus = home.paths.kernels.appendingPathComponent("vmlinux-bogus")
        try FileManager.default.createDirectory(at: home.paths.kernels, withIntermediateDirectories: true)
        try Data("not a kernel".utf8).write(to: bogus)
        try await ImageStore(paths: home.paths).install(
            built: bogus, name: "kernel", key: "bogus", fileName: "vmlinux-bogus2", inputs: [:],
            manifestURL: ImageStore(paths: home.paths).kernelManifestURL)
        var configuration = VMTest.configuration()
        configuration.paths = home.paths
        do {
            _ = try await Sandbox.create(configuration)
            Issue.record("expected the boot to fail")
        } catch let error as SmolVMError {
            #expect(error.code == .bootFailed)
            #expect(error.message.contains("QEMU exited"))
        }
        #expect(try home.runtimeEntries().isEmpty)
        #expect(home.qemuProcesses().isEmpty)
    }

    @Test("a damaged image is refused before boot")
    func damagedImage() async throws {
        let home = try await IsolatedHome.make()
        defer { home.remove() }
        let manifestURL = ImageStore(paths: home.paths).imageManifestURL("minimal")
        var manifest = try #require(try ArtifactManifest.load(manifestURL))
        let file = manifestURL.deletingLastPathComponent().appendingPathComponent(manifest.file)
        // Flip one byte of the private copy.
        chmod(file.path, 0o644)
        let handle = try FileHandle(forUpdating: file)
        try handle.seek(toOffset: 4096)
        let original = try #require(try handle.read(upToCount: 1))
        try handle.seek(toOffset: 4096)
        try handle.write(contentsOf: Data([original[0] ^ 0xff]))
        try handle.close()
        manifest.verified = nil
        try manifest.save(manifestURL)
        do {
            _ = try await Sandbox.create(
                {
                    var c = VMTest.configuration()
                    c.paths = home.paths
                    return c
                }())
            Issue.record("expected a checksum error")
        } catch let error as SmolVMError {
            #expect(error.code == .corrupted)
            #expect(error.message.contains("smolvm setup"))
        }
        #expect(try home.runtimeEntries().isEmpty)
    }

    @Test("unknown images and bad resources are refused before anything starts")
    func badConfiguration() async throws {
        var configuration = VMTest.configuration(image: "no-such-image")
        await #expect(throws: SmolVMError.self) { _ = try await Sandbox.create(configuration) }
        configuration = VMTest.configuration(image: "../etc")
        await #expect(throws: SmolVMError.self) { _ = try await Sandbox.create(configuration) }
        configuration = VMTest.configuration()
        configuration.memoryMiB = 1
        await #expect(throws: SmolVMError.self) { _ = try await Sandbox.create(configuration) }
        configuration = VMTest.configuration()
        configuration.cpus = 0
        await #expect(throws: SmolVMError.self) { _ = try await Sandbox.create(configuration) }
    }
}

final class Box: @unchecked Sendable {
    var directory: URL?
    var pid: Int32?
}

/// A private SMOLVM_HOME holding copies of the real kernel and minimal image
/// (sparse, so cheap), so a test can damage or replace them without touching
/// the shared store.
struct IsolatedHome {
    let paths: SmolVMPaths

    static func make() async throws -> IsolatedHome {
        let root = URL(fileURLWithPath: "/tmp/smolvm-t-\(UUID().uuidString.prefix(8))")
        let home = IsolatedHome(paths: SmolVMPaths(home: root))
        let real = VMTest.paths
        for (source, destination) in [
            (real.kernels, home.paths.kernels), (real.image("minimal"), home.paths.image("minimal")),
        ] {
            try FileManager.default.createDirectory(at: destination, withIntermediateDirectories: true)
            for entry in try FileManager.default.contentsOfDirectory(atPath: source.path) where !entry.hasPrefix(".") {
                try await Subprocess.check([
                    "cp", "--sparse=always", source.appendingPathComponent(entry).path,
                    destination.appendingPathComponent(entry).path,
                ])
            }
        }
        return home
    }

    func remove() { try? FileManager.default.removeItem(at: paths.home) }

    func runtimeEntries() throws -> [String] {
        (try? FileManager.default.contentsOfDirectory(atPath: paths.run.path)) ?? []
    }

    /// QEMU processes whose command line mentions this home.
    func qemuProcesses() -> [Int32] {
        let entries = (try? FileManager.default.contentsOfDirectory(atPath: "/proc")) ?? []
        return entries.compactMap(Int32.init).filter { pid in
            guard let data = FileManager.default.contents(atPath: "/proc/\(pid)/cmdline") else { return false }
            let text = String(decoding: data, as: UTF8.self)
            return text.contains("qemu-system") && text.contains(paths.home.path) && VMTest.isRunningProcess(pid)
        }
    }

    /// Builds an image from the minimal one's busybox with a different init.
    func installImage(named name: String, initScript: String) async throws {
        let tree = paths.build.appendingPathComponent("tree-\(name)")
        try FileManager.default.createDirectory(
            at: tree.appendingPathComponent("bin"), withIntermediateDirectories: true)
        try FileManager.default.createDirectory(
            at: tree.appendingPathComponent("sbin"), withIntermediateDirectories: true)
        try FileManager.default.copyItem(
            atPath: "/bin/busybox", toPath: tree.appendingPathComponent("bin/busybox").path)
        for applet in ["sh", "sleep"] {
            try FileManager.default.createSymbolicLink(
                atPath: tree.appendingPathComponent("bin/\(applet)").path, withDestinationPath: "busybox")
        }
        let agent = tree.appendingPathComponent("sbin/smolvm-agent")
        try Data(initScript.utf8).write(to: agent)
        chmod(agent.path, 0o755)
        let image = paths.build.appendingPathComponent("\(name).ext4")
        try await Subprocess.check(["truncate", "-s", "32M", image.path])
        try await Subprocess.check(["mkfs.ext4", "-q", "-F", "-d", tree.path, image.path])
        let store = ImageStore(paths: paths)
        try await store.install(
            built: image, name: name, key: "test", fileName: "rootfs-test.ext4",
            inputs: [RootfsBuilder.protocolInput: "\(SmolVMProtocol.protocolVersion)"],
            manifestURL: store.imageManifestURL(name))
    }
}
