import Foundation
import SmolVMProtocol
import SmolVMSystem

/// Boots sandboxes with Firecracker, configured through its REST API.
///
/// The shared base image is attached read-only as `/dev/vda` and a
/// per-sandbox sparse ext4 scratch disk as `/dev/vdb`; the agent builds an
/// overlayfs from the two (`smolvm.overlay=/dev/vdb`), so creating a sandbox
/// copies nothing large. The agent is reached over hybrid vsock.
struct FirecrackerBackend: Backend {
    let binary: String
    /// The jailer, when `SMOLVM_JAILER` names one.
    var jailer: String?
    var kind: BackendKind { .firecracker }

    /// The scratch disk's apparent size; sparse, so it costs only what the guest writes.
    static let scratchSize: UInt64 = 4 << 30
    /// The guest's vsock context id: each Firecracker process has its own device, so any id ≥ 3 will do.
    static let guestCID = 3

    func boot(_ spec: MachineSpec, logger: Logger) async throws -> any VirtualMachine {
        try await checkVersion()
        let paths = FirecrackerRuntimePaths(directory: spec.runtimeDirectory)
        try prepareRootfsLink(paths, base: spec.rootImage)
        if !spec.reuseOverlay || !FileManager.default.fileExists(atPath: paths.scratch.path) {
            try await Self.createScratchDisk(paths.scratch)
        }
        var tap: TapDevice?
        if spec.network {
            tap = try await TapDevice.create(for: spec.id)
        }
        let machine = try await launch(spec, paths: paths, logger: logger, tap: tap)
        do {
            try await configure(machine, spec: spec, paths: paths, tap: tap)
            try await machine.api.call("PUT", "/actions", InstanceActionInfo(actionType: .instanceStart))
            try await machine.connect(timeout: spec.bootTimeout, channels: spec.agentChannels)
        } catch {
            await machine.kill()
            throw machine.explain(error)
        }
        return machine
    }

    /// Every pre-boot call, in the order Firecracker's getting-started guide uses.
    private func configure(
        _ machine: FirecrackerMachine, spec: MachineSpec, paths: FirecrackerRuntimePaths, tap: TapDevice?
    ) async throws {
        let api = machine.api
        try await api.call(
            "PUT", "/machine-config", MachineConfiguration(vcpuCount: spec.cpus, memSizeMib: spec.memoryMiB, smt: false)
        )
        try await api.call(
            "PUT", "/boot-source",
            BootSource(kernelImagePath: spec.kernel.path, bootArgs: Self.kernelArguments(spec, tap: tap)))
        try await api.call(
            "PUT", "/drives/rootfs",
            Drive(
                driveID: "rootfs", isRootDevice: true, isReadOnly: true, pathOnHost: FirecrackerRuntimePaths.rootfsName)
        )
        try await api.call(
            "PUT", "/drives/scratch",
            Drive(
                driveID: "scratch", isRootDevice: false, isReadOnly: false,
                pathOnHost: FirecrackerRuntimePaths.scratchName))
        try await api.call(
            "PUT", "/vsock", Vsock(guestCID: Self.guestCID, udsPath: FirecrackerRuntimePaths.vsockName))
        if let tap {
            try await api.call(
                "PUT", "/network-interfaces/eth0",
                NetworkInterface(ifaceID: "eth0", hostDevName: tap.name, guestMAC: tap.guestMAC))
        }
    }

    /// The guest kernel command line. Firecracker itself adds `root=/dev/vda ro`
    /// for the read-only root drive and the `virtio_mmio.device=` parameters.
    static func kernelArguments(_ spec: MachineSpec, tap: TapDevice?) -> String {
        var arguments = [
            "console=ttyS0", "reboot=k", "panic=1", "pci=off", "quiet", "rootfstype=ext4",
            "init=/sbin/smolvm-agent",
            // The static Swift runtime looks for itself through /proc, which is not mounted yet.
            "SWIFT_ROOT=/",
            "smolvm.hostname=\(spec.hostname)",
            "smolvm.vsock=\(HybridVsock.agentPort)",
            "smolvm.overlay=/dev/vdb",
        ]
        if let tap {
            arguments += ["smolvm.ip=\(tap.guestAddress)/30", "smolvm.gw=\(tap.hostAddress)", "smolvm.dns=1.1.1.1"]
        }
        arguments += spec.extraKernelArguments
        return arguments.joined(separator: " ")
    }

    func attach(pid: pid_t, startTime: UInt64, runtimeDirectory: URL, logger: Logger) -> any VirtualMachine {
        FirecrackerMachine(
            pid: pid, paths: FirecrackerRuntimePaths(directory: runtimeDirectory), logger: logger,
            watcher: ProcessWatcher(foreign: pid, startTime: startTime), tap: nil)
    }

    func hasWritableLayer(in runtimeDirectory: URL) -> Bool {
        FileManager.default.fileExists(atPath: FirecrackerRuntimePaths(directory: runtimeDirectory).scratch.path)
    }

    /// A fresh Firecracker process loads the snapshot (`PUT /snapshot/load`),
    /// after only the logger and metrics, as the spec requires; the drives it
    /// reopens are the relative paths recorded at save time, here resolved in
    /// the new sandbox's directory (see `FirecrackerRuntimePaths`).
    func restore(_ spec: MachineSpec, from snapshot: URL, logger: Logger) async throws -> any VirtualMachine {
        try await checkVersion()
        let files = FirecrackerSnapshotFiles(directory: snapshot)
        for file in [files.memory, files.vmstate, files.scratch]
        where !FileManager.default.fileExists(atPath: file.path) {
            throw SmolVMError(
                .notFound, "the snapshot in \(snapshot.path) has no \(file.lastPathComponent); take it again")
        }
        let paths = FirecrackerRuntimePaths(directory: spec.runtimeDirectory)
        try prepareRootfsLink(paths, base: spec.rootImage)
        try await Self.copySparse(files.scratch, to: paths.scratch)
        let machine = try await launch(spec, paths: paths, logger: logger, tap: nil)
        do {
            try await machine.api.call(
                "PUT", "/snapshot/load",
                SnapshotLoadParams(
                    snapshotPath: files.vmstate.path,
                    memBackend: MemoryBackend(backendType: .file, backendPath: files.memory.path), resumeVM: true))
            // The vsock device was reset by the load: the agent is reached anew.
            try await machine.connect(timeout: spec.bootTimeout, channels: spec.agentChannels)
        } catch {
            await machine.kill()
            throw machine.explain(error)
        }
        return machine
    }

    /// Fails, before anything starts, on a Firecracker older than SmolVM supports,
    /// or when a jailer is configured: `JailerCommandLine` builds its arguments,
    /// but booting inside its chroot (hard-linking the kernel, the base image and
    /// the scratch disk into it) is not implemented, and running unjailed when
    /// the user asked for the jailer would be worse than refusing.
    func checkVersion() async throws {
        if let jailer {
            throw SmolVMError(
                .unsupported,
                "SMOLVM_JAILER is set (\(jailer)), but this build of SmolVM cannot boot Firecracker through the jailer yet. Fix: unset SMOLVM_JAILER to run Firecracker directly"
            )
        }
        let result: Subprocess.Result
        do {
            result = try await Subprocess.run([binary, "--version"], timeout: .seconds(5))
        } catch {
            throw SmolVMError(.hostUnsupported, "cannot run \(binary) --version", underlying: error)
        }
        guard let version = Version.first(in: result.outputText + result.errorText) else {
            throw SmolVMError(
                .hostUnsupported,
                "\(binary) --version printed no version (\(result.outputText.prefix(100))); is it Firecracker? Fix: install an official release from github.com/firecracker-microvm/firecracker/releases"
            )
        }
        if version < Doctor.minimumFirecracker {
            throw SmolVMError(
                .hostUnsupported,
                "Firecracker \(version) at \(binary) is older than \(Doctor.minimumFirecracker), the oldest SmolVM supports. Fix: install a newer release from github.com/firecracker-microvm/firecracker/releases"
            )
        }
    }

    private func prepareRootfsLink(_ paths: FirecrackerRuntimePaths, base: URL) throws {
        try FileManager.default.createDirectory(at: paths.directory, withIntermediateDirectories: true)
        unlink(paths.rootfs.path)
        guard symlink(base.path, paths.rootfs.path) == 0 else {
            throw SmolVMError(.system, "cannot link \(paths.rootfs.path) to the base image", underlying: Errno.current)
        }
    }

    /// A sparse file with an empty ext4 file system: the overlay's upper layer.
    static func createScratchDisk(_ url: URL) async throws {
        unlink(url.path)
        let fd = try FileDescriptor.open(url.path, [.writeOnly, .create, .exclusive], mode: 0o600)
        let sized = ftruncate(fd.rawValue, off_t(scratchSize)) == 0
        fd.close()
        guard sized else {
            throw SmolVMError(.system, "cannot size the scratch disk \(url.path)", underlying: Errno.current)
        }
        guard
            let mkfs = Subprocess.which("mkfs.ext4")
        else {
            throw SmolVMError(.notFound, "mkfs.ext4 was not found. Fix: sudo apt-get install -y e2fsprogs")
        }
        try await Subprocess.check([
            mkfs, "-q", "-F", "-m", "0", "-E", "lazy_itable_init=1,lazy_journal_init=1", url.path,
        ])
    }

    /// Copies a disk image keeping its holes (a 4 GiB scratch disk holds a few MiB).
    static func copySparse(_ source: URL, to destination: URL) async throws {
        unlink(destination.path)
        try await Subprocess.check(["cp", "--sparse=always", source.path, destination.path])
    }

    /// Starts Firecracker (or the jailer) without configuring anything yet.
    private func launch(
        _ spec: MachineSpec, paths: FirecrackerRuntimePaths, logger: Logger, tap: TapDevice?
    ) async throws -> FirecrackerMachine {
        for socket in [paths.apiSocket, paths.vsock] where socket.path.utf8.count > UnixSocket.maxPathLength {
            throw SmolVMError(
                .invalidArgument,
                "the socket path \(socket.path) is longer than the \(UnixSocket.maxPathLength) bytes Unix sockets allow; set SMOLVM_HOME to a shorter directory"
            )
        }
        // Sockets left by a crashed run would make Firecracker fail to bind.
        for stale in [paths.apiSocket, paths.vsock] { unlink(stale.path) }
        // Firecracker opens its log and metrics files without creating them.
        for file in [paths.vmmLog, paths.metrics] where !FileManager.default.fileExists(atPath: file.path) {
            _ = FileManager.default.createFile(atPath: file.path, contents: nil)
        }
        let arguments = [binary, "--api-sock", paths.apiSocket.path]
        logger.debug("starting \(arguments.joined(separator: " ")) in \(paths.directory.path)")
        let console = try FileDescriptor.open(paths.console.path, [.writeOnly, .create, .append], mode: 0o644)
        defer { console.close() }
        let null = try FileDescriptor.open("/dev/null", .readOnly)
        defer { null.close() }
        let environment = ProcessInfo.processInfo.environment.map { "\($0.key)=\($0.value)" }
        let options: Spawn.Options = spec.detached ? [.newSession] : [.newSession, .dieWithParent]
        let directory = paths.directory.path
        let pid = try await SpawnThread.shared.run {
            try Spawn.start(
                path: arguments[0], arguments: arguments, environment: environment,
                fileDescriptors: [null, console, console], workingDirectory: directory, options: options)
        }
        let machine = FirecrackerMachine(
            pid: pid, paths: paths, logger: logger, watcher: ProcessWatcher(child: pid), tap: tap)
        do {
            try await machine.api.call(
                "PUT", "/logger", FirecrackerLogger(logPath: paths.vmmLog.path, level: .info, showLevel: true))
            try await machine.api.call("PUT", "/metrics", FirecrackerMetrics(metricsPath: paths.metrics.path))
        } catch {
            await machine.kill()
            throw machine.explain(error)
        }
        return machine
    }
}
