import Foundation
import SmolVMProtocol

/// Snapshots of a running sandbox, and new sandboxes restored from them.
extension Sandbox {
    /// Saves this sandbox's memory, devices and disk layer as they are at one
    /// instant, under `name` (generated when nil). The guest's file systems are
    /// synced first; a running sandbox is paused for the save and resumed after,
    /// a paused one stays paused.
    @discardableResult
    public func snapshot(named requestedName: String? = nil) async throws -> SnapshotManifest {
        let name = requestedName ?? SnapshotStore.generateName(source: self.name ?? "sandbox-\(id.prefix(8))")
        try SandboxName.validate(name, what: "snapshot")
        let store = SnapshotStore(paths: configuration.paths)
        if FileManager.default.fileExists(atPath: store.directory(name).path) {
            throw SmolVMError(
                .invalidArgument, "a snapshot named '\(name)' already exists; pick another name or delete it first")
        }
        let machine = try runningMachine()
        guard configuration.mounts.isEmpty else {
            throw SmolVMError(
                .unsupported,
                "sandbox \(displayName) has host folders mounted, and a 9p mount cannot be saved in a snapshot. Fix: snapshot a sandbox created without --mount"
            )
        }
        if case .restricted = configuration.internet {
            throw SmolVMError(
                .unsupported,
                "sandbox \(displayName) has restricted internet, whose guest addresses belong to this sandbox's TAP device, so it cannot be snapshotted. Fix: snapshot a sandbox with --internet on or off"
            )
        }
        let prepared = try await Sandbox.prepare(configuration)
        guard prepared.image.url.path == baseImage else {
            throw SmolVMError(
                .invalidState,
                "the image '\(configuration.image)' was rebuilt after sandbox \(displayName) was created; a snapshot would not match its disk. Create a new sandbox to snapshot"
            )
        }
        try FileManager.default.createDirectory(at: store.root, withIntermediateDirectories: true)
        store.sweepStaging()
        let interrupted = InterruptedSave(runtimeDirectory: runtimeDirectory)
        guard let saving = try interrupted.begin() else {
            throw SmolVMError(
                .busy, "another smolvm is saving a snapshot of sandbox \(displayName); try again when it finishes")
        }
        defer { interrupted.end(saving) }
        let staging = try store.makeStaging(in: store.root)
        do {
            let manifest = try await Sandbox.capture(
                machine, wasPaused: paused, into: staging, name: name, kind: .user, source: displayName,
                agentChannels: agentChannels, prepared: prepared, configuration: configuration, logger: logger)
            try store.publish(staging, as: store.directory(name))
            return manifest
        } catch {
            try? FileManager.default.removeItem(at: staging)
            throw error
        }
    }

    var displayName: String { name ?? id }

    /// Syncs, pauses, saves and resumes `machine`, then describes the files.
    /// The machine is running again (unless it was paused) whether or not the save worked.
    static func capture(
        _ machine: any VirtualMachine, wasPaused: Bool, into directory: URL, name: String, kind: SnapshotManifest.Kind,
        source: String, agentChannels: Int, prepared: Prepared, configuration: SandboxConfiguration, logger: Logger
    ) async throws -> SnapshotManifest {
        if !wasPaused {
            // Whatever the guest wrote sits in its page cache, which the memory image
            // keeps; syncing makes the disk layer stand on its own too.
            _ = try await machine.agent.roundTrip(.sync)
            try await machine.pause()
        }
        let saved: Result<Void, any Error>
        do {
            try await machine.saveState(to: directory)
            saved = .success(())
        } catch {
            saved = .failure(error)
        }
        if !wasPaused {
            try await machine.resume()
        }
        try saved.get()
        guard let vmmStamp = FileStamp.read(prepared.backend.binary) else {
            throw SmolVMError(.notFound, "the \(prepared.backend.kind) binary \(prepared.backend.binary) disappeared")
        }
        let manifest = SnapshotManifest(
            format: SnapshotManifest.currentFormat, name: name, kind: kind, created: Date(), source: source,
            backend: prepared.backend.kind,
            vmm: .init(path: prepared.backend.binary, stamp: vmmStamp),
            accelerator: prepared.accelerator.accelerator, protocolVersion: SmolVMProtocol.protocolVersion,
            kernel: .init(prepared.kernel), image: .init(prepared.image), memoryMiB: configuration.memoryMiB,
            cpus: configuration.cpus, agentChannels: agentChannels,
            network: configuration.internet != .off || !configuration.publish.isEmpty, internet: configuration.internet,
            environment: configuration.environment,
            files: try await SnapshotManifest.describeFiles(in: directory))
        try manifest.save(in: directory)
        logger.debug("saved snapshot \(name) (\(manifest.size) bytes)")
        return manifest
    }

    /// Gives a restored guest an identity of its own: the hostname, a MAC
    /// address, fresh randomness and the host's clock.
    static func refreshIdentity(of machine: any VirtualMachine, spec: MachineSpec) async throws {
        var time = timespec()
        clock_gettime(CLOCK_REALTIME, &time)
        var seed = [UInt8](repeating: 0, count: 64)
        for index in seed.indices { seed[index] = UInt8.random(in: 0...255) }
        let update = IdentityUpdate(
            hostname: spec.hostname,
            realtimeNanoseconds: UInt64(time.tv_sec) * 1_000_000_000 + UInt64(time.tv_nsec), seed: seed,
            macAddress: spec.network ? spec.macAddress : [])
        let agent = machine.agent
        let payload = update.encoded()
        // A restored guest that does not answer (a damaged state) must not hang its caller.
        let done = await withTimeout(.seconds(30)) { _ = try await agent.roundTrip(.identity, payload: payload) }
        guard done else {
            throw SmolVMError(
                .corrupted,
                "the restored guest did not take its new identity within 30 s; the saved state may be damaged")
        }
    }

    /// The configuration a snapshot was taken with.
    static func configuration(for manifest: SnapshotManifest, paths: SmolVMPaths) -> SandboxConfiguration {
        var configuration = SandboxConfiguration(
            image: manifest.image.name, memoryMiB: manifest.memoryMiB, cpus: manifest.cpus,
            backend: BackendPreference(rawValue: manifest.backend.rawValue), environment: manifest.environment)
        configuration.internet = manifest.internet ?? (manifest.network ? .on : .off)
        configuration.paths = paths
        return configuration
    }

    /// Checks a snapshot against this host before anything starts.
    static func prepareRestore(_ snapshot: String, paths: SmolVMPaths) async throws -> (
        SnapshotManifest, SandboxConfiguration, Prepared
    ) {
        let store = SnapshotStore(paths: paths)
        let manifest = try store.manifest(named: snapshot)
        let configuration = configuration(for: manifest, paths: paths)
        let prepared = try await prepare(configuration)
        try manifest.checkCompatible(
            backend: prepared.backend.kind, vmmPath: prepared.backend.binary,
            accelerator: prepared.accelerator.accelerator, kernel: prepared.kernel, image: prepared.image)
        guard prepared.backend.supportsSnapshots else {
            throw SmolVMError.unsupported("snapshot restore", backend: prepared.backend.kind.rawValue)
        }
        try await manifest.verifyFiles(in: store.directory(snapshot))
        return (manifest, configuration, prepared)
    }

    /// Starts a new named sandbox from a snapshot: the snapshot's memory,
    /// processes and disk, with its own writable layer and a fresh identity.
    /// One snapshot can start any number of sandboxes.
    public static func restore(
        snapshot: String, named requestedName: String? = nil, paths: SmolVMPaths = .fromEnvironment(),
        logger: Logger = .disabled
    ) async throws -> Sandbox {
        let (manifest, configuration, prepared) = try await prepareRestore(snapshot, paths: paths)
        let directory = SnapshotStore(paths: paths).directory(snapshot)
        return try await createNamed(requestedName, configuration, prepared: prepared, logger: logger) { spec in
            var spec = spec
            spec.agentChannels = manifest.agentChannels
            // Published ports stay with the source sandbox, but its card is in the
            // saved device state: keep one, reaching nothing, when the internet is off.
            if manifest.network && !spec.network {
                spec.network = true
                spec.networkRestricted = true
            }
            let machine: any VirtualMachine
            do {
                machine = try await prepared.backend.restore(spec, from: directory, logger: logger)
            } catch let error as SmolVMError where error.code == .corrupted {
                throw SmolVMError(
                    .corrupted,
                    "\(error.message)\nFix: delete the snapshot with `smolvm snapshot delete \(snapshot)` and take a new one",
                    underlying: error.underlying)
            }
            do {
                try await refreshIdentity(of: machine, spec: spec)
            } catch {
                await machine.kill()
                throw error
            }
            return (machine, .snapshot)
        }
    }
}

extension SnapshotManifest.Artifact {
    init(_ artifact: VerifiedArtifact) {
        self.init(
            name: artifact.manifest.name, key: artifact.manifest.key, sha256: artifact.manifest.sha256,
            path: artifact.url.path)
    }
}

extension Sandbox {
    /// Snapshots a named sandbox, possibly created by another process. A
    /// paused sandbox is thawed for the file-system sync and paused again.
    @discardableResult
    public static func snapshot(
        sandbox sandboxName: String, as snapshotName: String? = nil, paths: SmolVMPaths = .fromEnvironment(),
        logger: Logger = .disabled
    ) async throws -> SnapshotManifest {
        if let snapshotName { try SandboxName.validate(snapshotName, what: "snapshot") }
        let wasPaused = try info(named: sandboxName, paths: paths).status == .paused
        if wasPaused { try await resume(named: sandboxName, paths: paths) }
        let sandbox: Sandbox
        do {
            sandbox = try await attach(named: sandboxName, paths: paths, logger: logger)
        } catch {
            if wasPaused { try? await pause(named: sandboxName, paths: paths) }
            throw error
        }
        let result: Result<SnapshotManifest, any Error>
        do {
            result = .success(
                try await sandbox.snapshot(named: snapshotName ?? SnapshotStore.generateName(source: sandboxName)))
        } catch {
            result = .failure(error)
        }
        await sandbox.detach()
        if wasPaused { try await pause(named: sandboxName, paths: paths) }
        return try result.get()
    }
}

/// A save leaves QEMU's VM stopped (`postmigrate`) until the saver resumes it;
/// a saver killed in between would leave a sandbox recorded running that
/// never answers. The saver marks the save and holds a lock while it runs;
/// whoever attaches next and finds the mark without its lock resumes the VM.
struct InterruptedSave {
    let marker: URL
    let lockPath: String

    init(runtimeDirectory: URL) {
        marker = runtimeDirectory.appendingPathComponent("saving")
        lockPath = runtimeDirectory.appendingPathComponent("save.lock").path
    }

    /// Takes the save lock and leaves the mark; nil when another save runs.
    func begin() throws -> FileLock? {
        guard let lock = try FileLock.tryAcquire(lockPath) else { return nil }
        FileManager.default.createFile(atPath: marker.path, contents: Data())
        return lock
    }

    func end(_ lock: FileLock) {
        try? FileManager.default.removeItem(at: marker)
        lock.release()
    }

    /// Resumes `machine` when a save of it was cut off. Bounded: a VMM that
    /// does not answer is left to the agent connection's own timeout.
    func recover(_ machine: any VirtualMachine, logger: Logger) async {
        guard FileManager.default.fileExists(atPath: marker.path),
            let lock = try? FileLock.tryAcquire(lockPath)
        else { return }
        defer { lock.release() }
        // The save may have finished between the check and the lock.
        guard FileManager.default.fileExists(atPath: marker.path) else { return }
        logger.warning("a snapshot of this sandbox was interrupted while its VM was stopped; resuming the VM")
        if await withTimeout(.seconds(5), { try await machine.resume() }) {
            try? FileManager.default.removeItem(at: marker)
        }
    }
}
