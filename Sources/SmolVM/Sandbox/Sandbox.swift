import Foundation
import SmolVMProtocol
import SmolVMSystem

/// A disposable Linux computer: a microVM with the SmolVM agent as its init.
///
/// ```swift
/// let result = try await Sandbox.withSandbox(SandboxConfiguration(image: "minimal")) { sandbox in
///     try await sandbox.run(.shell("echo hello"))
/// }
/// ```
///
/// The sandbox's state is an enum behind this actor; operations that need a
/// running machine throw `invalidState` otherwise.
public actor Sandbox {
    public nonisolated let id: String
    public nonisolated let configuration: SandboxConfiguration
    public nonisolated let resolution: BackendResolution
    public nonisolated let accelerator: AcceleratorChoice
    /// The runtime directory: sockets, overlay, console log.
    public nonisolated let runtimeDirectory: URL
    /// Set for named sandboxes, which outlive this process.
    public nonisolated let name: String?
    /// How this handle's machine came to run.
    public enum StartKind: String, Sendable {
        /// The kernel booted.
        case coldBoot
        /// Restored from the boot snapshot of its configuration.
        case bootSnapshot
        /// Restored from a user's snapshot.
        case snapshot
        /// Started by another process; this handle attached to it.
        case attached
    }

    public nonisolated let startKind: StartKind
    /// The read-only base image under the sandbox's writable layer.
    nonisolated let baseImage: String
    /// Agent channels: how many host processes can use a sandbox at once. A
    /// sandbox owned by one process needs one; a named sandbox serves any
    /// process. Idle channels are not free under emulation (about 15 MiB of
    /// VMM memory and slower round trips for three), so owned sandboxes do not
    /// carry them; the two kinds have boot snapshots of their own.
    static let ownedAgentChannels = 1
    static let namedAgentChannels = 4
    /// The channel count of this sandbox's machine.
    nonisolated var agentChannels: Int { name == nil ? Self.ownedAgentChannels : Self.namedAgentChannels }
    let logger: Logger
    var state: State
    private let lock: FileLock?

    enum State {
        case running(any VirtualMachine)
        case stopped
        /// A named sandbox this handle let go of; the VM may still run.
        case detached
        case deleted
    }

    public enum Status: String, Sendable {
        case running, stopped, detached, deleted
    }

    public var status: Status {
        switch state {
        case .running: .running
        case .stopped: .stopped
        case .detached: .detached
        case .deleted: .deleted
        }
    }

    /// The VMM's process id while running.
    public var vmmProcessID: Int32? {
        if case .running(let machine) = state { return machine.pid }
        return nil
    }

    init(
        id: String, name: String? = nil, configuration: SandboxConfiguration, resolution: BackendResolution,
        accelerator: AcceleratorChoice, runtimeDirectory: URL, baseImage: String, lock: FileLock?,
        machine: any VirtualMachine, startKind: StartKind, logger: Logger
    ) {
        self.id = id
        self.startKind = startKind
        self.baseImage = baseImage
        self.name = name
        self.configuration = configuration
        self.resolution = resolution
        self.accelerator = accelerator
        self.runtimeDirectory = runtimeDirectory
        self.lock = lock
        self.state = .running(machine)
        self.logger = logger
    }

    /// Boots a new sandbox and returns once its agent answered.
    ///
    /// Validation, backend resolution and image checks happen before anything
    /// starts; a failure at any later step removes what was created.
    public static func create(
        _ configuration: SandboxConfiguration = SandboxConfiguration(), logger: Logger = .disabled
    )
        async throws -> Sandbox
    {
        let prepared = try await prepare(configuration)
        try configuration.checkPublishedPorts()
        if let note = prepared.resolution.featureOverride { logger.warning(note) }
        let paths = configuration.paths
        RuntimeJanitor(paths: paths, logger: logger).sweep()
        let id = Self.makeID()
        let directory = paths.runtime(id)
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        guard let lock = try FileLock.tryAcquire(directory.appendingPathComponent("lock").path) else {
            throw SmolVMError(.busy, "the runtime directory \(directory.path) is in use")
        }
        var spec = MachineSpec(
            id: id, runtimeDirectory: directory, kernel: prepared.kernel.url, rootImage: prepared.image.url,
            memoryMiB: configuration.memoryMiB, cpus: configuration.cpus, hostname: "smolvm-\(id.prefix(8))",
            network: false, accelerator: prepared.accelerator, bootTimeout: configuration.bootTimeout,
            agentChannels: ownedAgentChannels)
        spec.connect(configuration.internet, publish: configuration.publish, mounts: prepared.mounts)
        do {
            try await attachNetwork(&spec, internet: configuration.internet)
            let (machine, startKind) = try await startMachine(
                spec, prepared: prepared, configuration: configuration, logger: logger)
            logger.debug("sandbox \(id) ready (pid \(machine.pid), \(prepared.accelerator.accelerator))")
            return Sandbox(
                id: id, configuration: configuration, resolution: prepared.resolution,
                accelerator: prepared.accelerator, runtimeDirectory: directory, baseImage: prepared.image.url.path,
                lock: lock, machine: machine, startKind: startKind, logger: logger)
        } catch {
            releaseNetwork(id: id, internet: configuration.internet)
            try? FileManager.default.removeItem(at: directory)
            lock.release()
            throw error
        }
    }

    /// What `prepare` checked and found.
    struct Prepared {
        var resolution: BackendResolution
        var backend: any Backend
        var accelerator: AcceleratorChoice
        var kernel: VerifiedArtifact
        var image: VerifiedArtifact
        /// The configuration's host folders, resolved and checked.
        var mounts: [HostMount]
    }

    /// Everything checked before any process starts: the configuration, the
    /// backend, and the kernel and image with their checksums.
    static func prepare(_ configuration: SandboxConfiguration) async throws -> Prepared {
        try configuration.validate()
        let mounts = try configuration.validateNetworkAndMounts()
        let qemuOnly: String?
        if !mounts.isEmpty {
            qemuOnly = "host folders (--mount): Firecracker has no shared-folder device"
        } else if !configuration.publish.isEmpty {
            qemuOnly = "published ports (--publish): SmolVM forwards them through QEMU's user network"
        } else if case .restricted = configuration.internet {
            qemuOnly = "restricted internet (--internet restricted): SmolVM filters it for QEMU's TAP card only"
        } else {
            qemuOnly = nil
        }
        let resolution = try BackendResolution.resolve(
            explicit: configuration.backend, host: configuration.host, qemuOnly: qemuOnly)
        try configuration.paths.prepareHome()
        let backend = try Backends.make(resolution.backend, host: configuration.host)
        let accelerator: AcceleratorChoice
        if resolution.backend == .qemu {
            let qemu = QEMUAvailability.check(configuration.host)
            guard let choice = qemu.accelerator else {
                throw SmolVMError(
                    .hostUnsupported, "QEMU cannot run on this host: \(qemu.problem ?? "unknown problem")")
            }
            accelerator = choice
        } else {
            accelerator = AcceleratorChoice(accelerator: .kvm, reason: "Firecracker always uses KVM", overridden: false)
        }
        let store = ImageStore(paths: configuration.paths)
        let kernel = try await store.kernel()
        let image = try await store.image(configuration.image)
        // An image built by another smolvm may carry an agent that speaks another protocol.
        let imageProtocol = image.manifest.inputs[RootfsBuilder.protocolInput]
        guard imageProtocol == "\(SmolVMProtocol.protocolVersion)" else {
            throw SmolVMError(
                .corrupted,
                "the image '\(configuration.image)' carries an agent for protocol \(imageProtocol ?? "1"), but this smolvm speaks protocol \(SmolVMProtocol.protocolVersion). Fix: run `smolvm setup` to rebuild it with this smolvm's agent"
            )
        }
        return Prepared(
            resolution: resolution, backend: backend, accelerator: accelerator, kernel: kernel, image: image,
            mounts: mounts)
    }

    /// Creates a sandbox, runs `body`, and deletes the sandbox afterwards,
    /// whether `body` returned or threw.
    public static func withSandbox<T: Sendable>(
        _ configuration: SandboxConfiguration = SandboxConfiguration(), logger: Logger = .disabled,
        _ body: (Sandbox) async throws -> T
    ) async throws -> T {
        let sandbox = try await create(configuration, logger: logger)
        do {
            let result = try await body(sandbox)
            await sandbox.delete()
            return result
        } catch {
            await sandbox.delete()
            throw error
        }
    }

    func runningMachine() throws -> any VirtualMachine {
        switch state {
        case .running(let machine): return machine
        case .stopped: throw SmolVMError(.invalidState, "sandbox \(name ?? id) is stopped")
        case .detached: throw SmolVMError(.invalidState, "this handle was detached from sandbox \(name ?? id)")
        case .deleted: throw SmolVMError(.invalidState, "sandbox \(name ?? id) was deleted")
        }
    }

    private func agent() throws -> AgentClient {
        let machine = try runningMachine()
        if paused {
            throw SmolVMError(.invalidState, "sandbox \(name ?? id) is paused; resume it first")
        }
        if machine.agent.isClosed {
            throw SmolVMError(
                .agentUnreachable, "the connection to sandbox \(id)'s agent is closed; the VM may have died")
        }
        return machine.agent
    }

    // MARK: Commands

    /// Runs a command to completion. A non-zero exit is a result, not an error;
    /// a timeout throws `.timeout`.
    public func run(_ command: Command) async throws -> ExecResult {
        try await exec(command).result()
    }

    /// Runs `arguments` (an argv, no shell).
    public func run(_ arguments: [String]) async throws -> ExecResult {
        try await run(Command(arguments))
    }

    /// Starts a command and returns its streaming handle.
    public func exec(_ command: Command) async throws -> SandboxProcess {
        var command = command
        command.environment = configuration.environment.merging(command.environment) { $1 }
        return try await agent().exec(command)
    }

    /// Round trip to the agent.
    public func ping() async throws -> Duration {
        let start = ContinuousClock.now
        _ = try await agent().roundTrip(.ping)
        return ContinuousClock.now - start
    }

    // MARK: Files

    /// Copies a host file into the sandbox, streaming it.
    public func upload(from localPath: String, to remotePath: String) async throws {
        try await agent().upload(from: localPath, to: remotePath)
    }

    public func upload(_ bytes: [UInt8], to remotePath: String, mode: UInt32 = 0o644) async throws {
        try await agent().upload(bytes, to: remotePath, mode: mode)
    }

    /// Copies a sandbox file to the host, streaming it.
    public func download(from remotePath: String, to localPath: String) async throws {
        try await agent().download(from: remotePath, to: localPath)
    }

    public func download(from remotePath: String) async throws -> [UInt8] {
        try await agent().download(from: remotePath)
    }

    // MARK: Lifecycle

    /// Shuts the guest down cleanly (sync, power off), then stops the VMM.
    /// A named sandbox keeps its disk and can be started again.
    public func stop() async {
        guard case .running(let machine) = state else { return }
        // A frozen guest cannot shut itself down.
        if paused { try? await resume() }
        await machine.stop(deadline: .seconds(10))
        state = .stopped
        if let name { try? Sandbox.markStopped(name, paths: configuration.paths) }
    }

    /// Stops the VMM at once and removes every file; a named sandbox's record
    /// goes too. Idempotent.
    public func delete() async {
        if case .running(let machine) = state {
            // The disk is about to be discarded: no need to wait for a clean shutdown.
            await machine.kill()
        }
        if case .deleted = state { return }
        state = .deleted
        Sandbox.releaseNetwork(id: id, internet: configuration.internet)
        try? FileManager.default.removeItem(at: runtimeDirectory)
        lock?.release()
        if let name { try? StateStore(paths: configuration.paths).remove(name) }
    }

    /// Freezes the guest's vCPUs (QMP `stop`). Commands wait, memory and
    /// processes are kept; `resume()` thaws it.
    public func pause() async throws {
        let machine = try runningMachine()
        try await machine.pause()
        paused = true
        if let name { try? await Sandbox.markPaused(name, true, paths: configuration.paths) }
    }

    /// Thaws a paused sandbox (QMP `cont`).
    public func resume() async throws {
        let machine = try runningMachine()
        try await machine.resume()
        paused = false
        if let name { try? await Sandbox.markPaused(name, false, paths: configuration.paths) }
    }

    /// Whether the guest is frozen by `pause()`.
    public private(set) var paused = false

    /// Lets go of a named sandbox without stopping it, so other processes can use it.
    public func detach() {
        guard case .running(let machine) = state else { return }
        machine.detach()
        state = .detached
    }

    static func makeID() -> String {
        (0..<6).map { _ in String(format: "%02x", UInt8.random(in: 0...255)) }.joined()
    }
}
