import Foundation
import SmolVMSystem

/// Named sandboxes: they outlive the process that created them, are recorded
/// in the state store, and any process can attach to them by name.
extension Sandbox {
    /// Boots a named sandbox that keeps running after this process exits.
    /// With no name, one is generated. Names are unique; a taken name fails
    /// before anything starts.
    public static func create(
        named requestedName: String?, _ configuration: SandboxConfiguration, logger: Logger = .disabled
    )
        async throws -> Sandbox
    {
        if let requestedName { try SandboxName.validate(requestedName) }
        let prepared = try await prepare(configuration)
        try configuration.checkPublishedPorts()
        if let note = prepared.resolution.featureOverride { logger.warning(note) }
        return try await createNamed(requestedName, configuration, prepared: prepared, logger: logger) { spec in
            try await startMachine(spec, prepared: prepared, configuration: configuration, logger: logger)
        }
    }

    /// Records a new named sandbox and starts its machine with `start`; on any
    /// failure the record and every file are removed again.
    static func createNamed(
        _ requestedName: String?, _ configuration: SandboxConfiguration, prepared: Prepared, logger: Logger,
        start: (MachineSpec) async throws -> (any VirtualMachine, StartKind)
    ) async throws -> Sandbox {
        if let requestedName { try SandboxName.validate(requestedName) }
        let store = try StateStore(paths: configuration.paths)
        let id = makeID()
        let directory = configuration.paths.sandboxes.appendingPathComponent(id)
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        // Held while the sandbox is starting: if this process dies, readers see the lock free.
        guard let lifecycle = try FileLock.tryAcquire(directory.appendingPathComponent("lifecycle.lock").path) else {
            throw SmolVMError(.busy, "\(directory.path) is in use")
        }
        defer { lifecycle.release() }
        var record = SandboxRecord(
            name: requestedName ?? "", id: id, backend: prepared.resolution.backend.rawValue,
            image: configuration.image,
            memoryMiB: configuration.memoryMiB, cpus: configuration.cpus, environment: configuration.environment,
            internet: configuration.internet, publish: configuration.publish, mounts: prepared.mounts,
            status: .starting, vmmPID: nil, vmmStartTime: nil, created: Date(),
            runtimeDirectory: directory.path, kernel: prepared.kernel.url.path, rootImage: prepared.image.url.path,
            lastError: nil)
        do {
            if requestedName != nil {
                try store.insert(record)
            } else {
                record.name = try insertWithGeneratedName(record, into: store)
            }
        } catch {
            try? FileManager.default.removeItem(at: directory)
            throw error
        }
        do {
            var machineSpec = spec(
                for: record, accelerator: prepared.accelerator, timeout: configuration.bootTimeout, reuseOverlay: false)
            try await attachNetwork(&machineSpec, internet: configuration.internet)
            let (machine, startKind) = try await start(machineSpec)
            record.status = .running
            record.vmmPID = machine.pid
            record.vmmStartTime = Spawn.startTime(machine.pid)
            try store.update(record)
            return Sandbox(
                id: id, name: record.name, configuration: configuration, resolution: prepared.resolution,
                accelerator: prepared.accelerator, runtimeDirectory: directory, baseImage: record.rootImage, lock: nil,
                machine: machine, startKind: startKind, logger: logger)
        } catch {
            releaseNetwork(id: id, internet: configuration.internet)
            try? FileManager.default.removeItem(at: directory)
            try? store.remove(record.name)
            throw error
        }
    }

    private static func insertWithGeneratedName(_ record: SandboxRecord, into store: StateStore) throws -> String {
        var record = record
        for _ in 0..<20 {
            record.name = SandboxName.generate()
            do {
                try store.insert(record)
                return record.name
            } catch let error as SmolVMError where error.code == .invalidArgument {
                continue
            }
        }
        throw SmolVMError(.busy, "could not find a free sandbox name; pass one with --name")
    }

    private static func spec(
        for record: SandboxRecord, accelerator: AcceleratorChoice, timeout: Duration, reuseOverlay: Bool
    ) -> MachineSpec {
        var spec = MachineSpec(
            id: record.id, runtimeDirectory: URL(fileURLWithPath: record.runtimeDirectory),
            kernel: URL(fileURLWithPath: record.kernel), rootImage: URL(fileURLWithPath: record.rootImage),
            memoryMiB: record.memoryMiB, cpus: record.cpus, hostname: record.name, network: false,
            accelerator: accelerator, bootTimeout: timeout)
        spec.connect(record.internet, publish: record.publish, mounts: record.mounts)
        spec.agentChannels = namedAgentChannels
        spec.detached = true
        spec.reuseOverlay = reuseOverlay
        return spec
    }

    static func configuration(for record: SandboxRecord, paths: SmolVMPaths) -> SandboxConfiguration {
        var configuration = SandboxConfiguration(
            image: record.image, memoryMiB: record.memoryMiB, cpus: record.cpus,
            backend: BackendPreference(rawValue: record.backend), environment: record.environment)
        configuration.internet = record.internet
        configuration.publish = record.publish
        configuration.mounts = record.mounts
        configuration.paths = paths
        return configuration
    }

    /// Attaches to a running named sandbox, possibly created by another process.
    public static func attach(named name: String, paths: SmolVMPaths = .fromEnvironment(), logger: Logger = .disabled)
        async throws -> Sandbox
    {
        let store = try StateStore(paths: paths)
        let record = try store.record(named: name)
        if record.status == .paused {
            throw SmolVMError(
                .invalidState,
                "sandbox '\(name)' is paused; resume it with `smolvm sandbox resume \(name)` (or pass --resume to exec)"
            )
        }
        guard record.status == .running, let pid = record.vmmPID, let startTime = record.vmmStartTime else {
            let hint =
                record.status == .starting
                ? "it is still starting; try again in a moment" : "start it with `smolvm sandbox start \(name)`"
            throw SmolVMError(
                .invalidState,
                "sandbox '\(name)' is \(record.status == .error ? "in an error state" : record.status.rawValue)\(record.lastError.map { " (\($0))" } ?? ""); \(hint)"
            )
        }
        let configuration = configuration(for: record, paths: paths)
        let host = configuration.host
        let kind = try recordedBackend(record)
        let accelerator =
            kind == .firecracker
            ? AcceleratorChoice(accelerator: .kvm, reason: "Firecracker always uses KVM", overridden: false)
            : (try? AcceleratorChoice.resolve(host))
                ?? AcceleratorChoice(accelerator: .tcg, reason: "", overridden: false)
        let directory = URL(fileURLWithPath: record.runtimeDirectory)
        let machine = try Backends.make(kind, host: host).attach(
            pid: pid, startTime: startTime, runtimeDirectory: directory, logger: logger)
        await InterruptedSave(runtimeDirectory: directory).recover(machine, logger: logger)
        try await machine.connect(timeout: .seconds(30), channels: namedAgentChannels)
        let resolution = BackendResolution(
            requested: BackendPreference(rawValue: kind.rawValue) ?? .auto, source: .argument, backend: kind,
            reason: "recorded when the sandbox was created")
        return Sandbox(
            id: record.id, name: name, configuration: configuration, resolution: resolution, accelerator: accelerator,
            runtimeDirectory: directory, baseImage: record.rootImage, lock: nil, machine: machine, startKind: .attached,
            logger: logger)
    }

    /// The backend a sandbox was created with; it never changes afterwards.
    static func recordedBackend(_ record: SandboxRecord) throws -> BackendKind {
        guard let kind = BackendKind(rawValue: record.backend) else {
            throw SmolVMError(
                .corrupted,
                "sandbox '\(record.name)' was created with backend '\(record.backend)', which this smolvm does not know"
            )
        }
        return kind
    }

    /// Every named sandbox, with its status reconciled against the live processes.
    public static func list(paths: SmolVMPaths = .fromEnvironment()) throws -> [SandboxRecord] {
        try StateStore(paths: paths).records()
    }

    /// One named sandbox's record, reconciled.
    public static func info(named name: String, paths: SmolVMPaths = .fromEnvironment()) throws -> SandboxRecord {
        try StateStore(paths: paths).record(named: name)
    }

    /// Boots a stopped named sandbox again, with its disk as it was.
    @discardableResult
    public static func start(named name: String, paths: SmolVMPaths = .fromEnvironment(), logger: Logger = .disabled)
        async throws -> SandboxRecord
    {
        let store = try StateStore(paths: paths)
        var record = try store.record(named: name)
        switch record.status {
        // Already running is what the caller wants: like `docker start`, not an error.
        case .running: return record
        case .paused:
            throw SmolVMError(
                .invalidState, "sandbox '\(name)' is paused; resume it with `smolvm sandbox resume \(name)`")
        case .starting: throw SmolVMError(.invalidState, "sandbox '\(name)' is already starting")
        case .stopped, .error: break
        }
        let configuration = configuration(for: record, paths: paths)
        let prepared = try await prepare(configuration)
        try configuration.checkPublishedPorts()
        let directory = URL(fileURLWithPath: record.runtimeDirectory)
        guard prepared.backend.hasWritableLayer(in: directory) else {
            throw SmolVMError(
                .corrupted,
                "sandbox '\(name)' lost its disk (\(directory.path)); delete it with `smolvm sandbox delete \(name)`")
        }
        guard let lifecycle = try FileLock.tryAcquire(directory.appendingPathComponent("lifecycle.lock").path) else {
            throw SmolVMError(.busy, "another smolvm is starting or stopping sandbox '\(name)'")
        }
        defer { lifecycle.release() }
        record.status = .starting
        record.lastError = nil
        try store.update(record)
        do {
            var machineSpec = spec(
                for: record, accelerator: prepared.accelerator, timeout: configuration.bootTimeout, reuseOverlay: true)
            try await attachNetwork(&machineSpec, internet: configuration.internet)
            let machine = try await bootVerified(machineSpec, backend: prepared.backend, logger: logger)
            machine.detach()
            record.status = .running
            record.vmmPID = machine.pid
            record.vmmStartTime = Spawn.startTime(machine.pid)
            try store.update(record)
            return record
        } catch {
            releaseNetwork(id: record.id, internet: record.internet)
            record.status = .error
            record.lastError = "start failed: \(error)"
            try? store.update(record)
            throw error
        }
    }

    /// Shuts a named sandbox down cleanly and keeps its disk.
    @discardableResult
    public static func stop(named name: String, paths: SmolVMPaths = .fromEnvironment(), logger: Logger = .disabled)
        async throws -> SandboxRecord
    {
        let store = try StateStore(paths: paths)
        var record = try store.record(named: name)
        guard record.status == .running || record.status == .paused else {
            if record.status == .starting { throw SmolVMError(.invalidState, "sandbox '\(name)' is starting") }
            return record
        }
        await stopVMM(record, graceful: true, paths: paths, logger: logger)
        record = try store.record(named: name)
        record.status = .stopped
        record.vmmPID = nil
        record.vmmStartTime = nil
        record.lastError = nil
        try store.update(record)
        return record
    }

    /// Deletes a named sandbox: stops its VMM (cleanly, or at once with
    /// `force`), waits for it to exit, then removes its files and record.
    public static func delete(
        named name: String, force: Bool = false, paths: SmolVMPaths = .fromEnvironment(), logger: Logger = .disabled
    )
        async throws
    {
        let store = try StateStore(paths: paths)
        let record = try store.record(named: name)
        if record.status == .starting, !force {
            throw SmolVMError(.invalidState, "sandbox '\(name)' is starting; wait, or use --force")
        }
        if StateStore.isVMMAlive(record) {
            await stopVMM(record, graceful: !force, paths: paths, logger: logger)
        }
        if StateStore.isVMMAlive(record) {
            throw SmolVMError(
                .busy, "the VMM of sandbox '\(name)' (pid \(record.vmmPID ?? 0)) did not exit; nothing was deleted")
        }
        let directory = URL(fileURLWithPath: record.runtimeDirectory)
        if FileManager.default.fileExists(atPath: directory.path) {
            try FileManager.default.removeItem(at: directory)
        }
        try store.remove(name)
    }

    /// Agent shutdown, then the VMM's own quit, then SIGKILL, each with a
    /// deadline; returns once the VMM is gone.
    /// Stops the VMM and, once it is gone, removes the host side of its network.
    static func stopVMM(_ record: SandboxRecord, graceful: Bool, paths: SmolVMPaths, logger: Logger) async {
        await stopVMMProcess(record, graceful: graceful, paths: paths, logger: logger)
        releaseNetwork(id: record.id, internet: record.internet)
    }

    private static func stopVMMProcess(_ record: SandboxRecord, graceful: Bool, paths: SmolVMPaths, logger: Logger)
        async
    {
        guard let pid = record.vmmPID, let startTime = record.vmmStartTime else { return }
        let kind = (try? recordedBackend(record)) ?? .qemu
        guard let backend = try? Backends.make(kind, host: .current) else {
            // Without the backend's binary there is no clean way to stop it.
            Spawn.signal(pid, SIGKILL)
            _ = await ProcessWatcher(foreign: pid, startTime: startTime).wait(timeout: .seconds(10))
            return
        }
        let machine = backend.attach(
            pid: pid, startTime: startTime, runtimeDirectory: URL(fileURLWithPath: record.runtimeDirectory),
            logger: logger)
        // A frozen guest cannot shut itself down.
        if record.status == .paused { _ = await withTimeout(.seconds(3)) { try await machine.resume() } }
        if graceful {
            let connected = await withTimeout(.seconds(10)) {
                try await machine.connect(timeout: .seconds(8), channels: namedAgentChannels)
            }
            if !connected { machine.detach() }
            // Without an agent, stop goes straight to the VMM's own quit, then SIGKILL.
            await machine.stop(deadline: .seconds(15))
            return
        }
        await machine.kill()
    }

    static func markStopped(_ name: String, paths: SmolVMPaths) throws {
        let store = try StateStore(paths: paths)
        var record = try store.record(named: name)
        record.status = .stopped
        record.vmmPID = nil
        record.vmmStartTime = nil
        try store.update(record)
    }

    /// Freezes a running named sandbox's vCPUs (QMP `stop`); memory, processes
    /// and disk stay as they are until `resume(named:)`.
    @discardableResult
    public static func pause(named name: String, paths: SmolVMPaths = .fromEnvironment()) async throws -> SandboxRecord
    {
        try await setPaused(true, name: name, paths: paths)
    }

    /// Thaws a paused named sandbox (QMP `cont`).
    @discardableResult
    public static func resume(named name: String, paths: SmolVMPaths = .fromEnvironment()) async throws -> SandboxRecord
    {
        try await setPaused(false, name: name, paths: paths)
    }

    private static func setPaused(_ pause: Bool, name: String, paths: SmolVMPaths) async throws -> SandboxRecord {
        let store = try StateStore(paths: paths)
        var record = try store.record(named: name)
        let from: SandboxRecord.Status = pause ? .running : .paused
        let to: SandboxRecord.Status = pause ? .paused : .running
        if record.status == to {
            // "Running" may be a VM a killed snapshot save left stopped: resume means resume.
            if !pause, let machine = try recordedMachine(record) {
                await InterruptedSave(runtimeDirectory: URL(fileURLWithPath: record.runtimeDirectory)).recover(
                    machine, logger: .disabled)
            }
            return record
        }
        guard record.status == from else {
            throw SmolVMError(
                .invalidState,
                "sandbox '\(name)' is \(record.status.rawValue); only a \(from.rawValue) sandbox can be \(pause ? "paused" : "resumed")"
            )
        }
        guard let machine = try recordedMachine(record) else {
            throw SmolVMError(.invalidState, "sandbox '\(name)' has no running VMM")
        }
        if pause { try await machine.pause() } else { try await machine.resume() }
        record.status = to
        try store.update(record)
        return record
    }

    /// The VMM a record names, without connecting to its agent; nil when none is recorded.
    private static func recordedMachine(_ record: SandboxRecord) throws -> (any VirtualMachine)? {
        guard let pid = record.vmmPID, let startTime = record.vmmStartTime else { return nil }
        return try Backends.make(try recordedBackend(record), host: .current).attach(
            pid: pid, startTime: startTime, runtimeDirectory: URL(fileURLWithPath: record.runtimeDirectory),
            logger: .disabled)
    }

    static func markPaused(_ name: String, _ paused: Bool, paths: SmolVMPaths) async throws {
        let store = try StateStore(paths: paths)
        var record = try store.record(named: name)
        guard record.status == .running || record.status == .paused else { return }
        record.status = paused ? .paused : .running
        try store.update(record)
    }
}
