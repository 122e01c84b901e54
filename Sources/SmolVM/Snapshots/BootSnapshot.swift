import Foundation
import SmolVMProtocol

/// Snapshot-fast starts: the state of a freshly booted guest, saved once per
/// configuration and restored instead of booting again.
///
/// The key hashes everything the saved state depends on (kernel, image, VMM
/// binary, accelerator, machine shape, protocol); when any of it changes the
/// key changes, so a stale snapshot is never used, only replaced.
struct BootSnapshot {
    /// Bump when the machine a backend builds changes in a way the inputs below do not show.
    static let revision = 1

    let key: String
    let directory: URL
    let store: SnapshotStore

    init(spec: MachineSpec, prepared: Sandbox.Prepared, paths: SmolVMPaths) {
        let vmmStamp = FileStamp.read(prepared.backend.binary)
        let inputs = [
            "revision=\(Self.revision)", "backend=\(prepared.backend.kind)", "vmm=\(prepared.backend.binary)",
            "vmm-stamp=\(vmmStamp.map { "\($0.size)-\($0.modified)-\($0.inode)" } ?? "none")",
            "accelerator=\(prepared.accelerator.accelerator)", "kernel=\(prepared.kernel.manifest.sha256)",
            "image=\(prepared.image.manifest.sha256)", "memory=\(spec.memoryMiB)", "cpus=\(spec.cpus)",
            "channels=\(spec.agentChannels)", "network=\(spec.network)", "restricted=\(spec.networkRestricted)",
            "kernel-arguments=\(spec.extraKernelArguments.joined(separator: " "))",
            "protocol=\(SmolVMProtocol.protocolVersion)",
        ]
        key = String(SHA256.hex(inputs.joined(separator: "\n")).prefix(16))
        store = SnapshotStore(paths: paths)
        directory = store.bootDirectory(key)
    }

    var exists: Bool {
        FileManager.default.fileExists(atPath: directory.appendingPathComponent(SnapshotManifest.fileName).path)
    }

    /// Restores the boot snapshot into `spec`'s runtime directory. Nil when
    /// there is none or it failed; a snapshot that failed is removed, so the
    /// next start makes a new one instead of failing again.
    func restore(_ spec: MachineSpec, backend: any Backend, logger: Logger) async -> (any VirtualMachine)? {
        guard exists else { return nil }
        do {
            let manifest = try SnapshotManifest.load(from: directory)
            // The stamps are cheap; a full checksum would cost more than the boot it saves.
            for (name, file) in manifest.files
            where FileStamp.read(directory.appendingPathComponent(name).path) != file.stamp {
                throw SmolVMError(.corrupted, "boot snapshot file \(name) changed since it was written")
            }
            let machine = try await backend.restore(spec, from: directory, logger: logger)
            do {
                try await Sandbox.refreshIdentity(of: machine, spec: spec)
            } catch {
                await machine.kill()
                throw error
            }
            return machine
        } catch {
            logger.info("boot snapshot \(key) could not be used (\(error)); booting cold and making a new one")
            discard()
            return nil
        }
    }

    /// Saves a freshly booted machine as the boot snapshot for its
    /// configuration. Best effort: a failure costs only the speed-up; the
    /// machine is running again either way, or this throws.
    func capture(
        _ machine: any VirtualMachine, agentChannels: Int, prepared: Sandbox.Prepared,
        configuration: SandboxConfiguration, logger: Logger
    ) async throws {
        guard !exists else { return }
        let staging: URL
        do {
            try FileManager.default.createDirectory(at: store.bootRoot, withIntermediateDirectories: true)
            store.sweepStaging()
            staging = try store.makeStaging(in: store.bootRoot)
        } catch {
            logger.info("cannot make a boot snapshot: \(error)")
            return
        }
        do {
            _ = try await Sandbox.capture(
                machine, wasPaused: false, into: staging, name: "boot-\(key)", kind: .boot, source: "boot",
                agentChannels: agentChannels, prepared: prepared, configuration: configuration, logger: logger)
            // Another process may have made the same one meanwhile; either is as good.
            try? store.publish(staging, as: directory)
        } catch {
            try? FileManager.default.removeItem(at: staging)
            logger.info("cannot make a boot snapshot: \(error)")
            // The machine must be running for the caller; if it is not, that is a real failure.
            _ = try await machine.agent.roundTrip(.ping)
        }
    }

    func discard() {
        let doomed = store.bootRoot.appendingPathComponent(".deleting-\(key)-\(Sandbox.makeID())")
        if (try? FileManager.default.moveItem(at: directory, to: doomed)) != nil {
            try? FileManager.default.removeItem(at: doomed)
        }
    }
}

extension Sandbox {
    /// Boots `spec`, or, when allowed and possible, restores the boot snapshot
    /// for its configuration (making one after a cold boot when there is none).
    static func startMachine(
        _ spec: MachineSpec, prepared: Prepared, configuration: SandboxConfiguration, logger: Logger
    ) async throws -> (any VirtualMachine, StartKind) {
        // A 9p export cannot be migrated, and the device set differs from every boot snapshot's.
        // Restricted sandboxes carry their own addresses in the guest; a snapshot's would be wrong.
        guard configuration.startFromSnapshot, spec.mounts.isEmpty, spec.restrictedNetwork == nil,
            prepared.backend.supportsSnapshots
        else {
            return (try await bootVerified(spec, backend: prepared.backend, logger: logger), .coldBoot)
        }
        let boot = BootSnapshot(spec: spec, prepared: prepared, paths: configuration.paths)
        if let machine = await boot.restore(spec, backend: prepared.backend, logger: logger) {
            logger.debug("sandbox \(spec.id) restored from boot snapshot \(boot.key)")
            return (machine, .bootSnapshot)
        }
        // A failed restore may have left its disk copy behind: start from a clean layer.
        var cold = spec
        cold.reuseOverlay = false
        for name in (try? FileManager.default.contentsOfDirectory(atPath: spec.runtimeDirectory.path)) ?? []
        where name.hasSuffix(".qcow2") || name.hasSuffix(".ext4") {
            try? FileManager.default.removeItem(at: spec.runtimeDirectory.appendingPathComponent(name))
        }
        let machine = try await prepared.backend.boot(cold, logger: logger)
        do {
            try await boot.capture(
                machine, agentChannels: spec.agentChannels, prepared: prepared, configuration: configuration,
                logger: logger)
        } catch {
            await machine.kill()
            throw error
        }
        return (machine, .coldBoot)
    }

    /// Boots cold and checks that the host folders were mounted; a machine
    /// whose folders are missing is killed, not handed out.
    static func bootVerified(_ spec: MachineSpec, backend: any Backend, logger: Logger) async throws
        -> any VirtualMachine
    {
        let machine = try await backend.boot(spec, logger: logger)
        do {
            try await verifyMounts(spec.mounts, agent: machine.agent)
        } catch {
            await machine.kill()
            throw error
        }
        return machine
    }

    /// Makes sure the boot snapshot for `configuration` exists (`smolvm image warm`).
    /// Returns false when it already existed.
    @discardableResult
    public static func warm(_ configuration: SandboxConfiguration, logger: Logger = .disabled) async throws -> Bool {
        var configuration = configuration
        configuration.startFromSnapshot = true
        let prepared = try await prepare(configuration)
        guard prepared.backend.supportsSnapshots else {
            throw SmolVMError.unsupported("boot snapshots", backend: prepared.backend.kind.rawValue)
        }
        guard configuration.mounts.isEmpty else {
            throw SmolVMError(
                .invalidArgument, "sandboxes with host folders always boot cold, so there is nothing to warm")
        }
        var probe = MachineSpec(
            id: "warm", runtimeDirectory: configuration.paths.run, kernel: prepared.kernel.url,
            rootImage: prepared.image.url, memoryMiB: configuration.memoryMiB, cpus: configuration.cpus,
            hostname: "warm", network: false, accelerator: prepared.accelerator,
            bootTimeout: configuration.bootTimeout, agentChannels: ownedAgentChannels)
        probe.connect(configuration.internet, publish: configuration.publish, mounts: [])
        if BootSnapshot(spec: probe, prepared: prepared, paths: configuration.paths).exists { return false }
        let sandbox = try await create(configuration, logger: logger)
        await sandbox.delete()
        return true
    }
}
