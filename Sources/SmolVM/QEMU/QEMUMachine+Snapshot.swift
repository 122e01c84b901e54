import Foundation
import SmolVMSystem

/// QEMU snapshots: the device and memory state travel as a migration stream
/// written to a file, the disk layer as a copy of the sandbox's qcow2 overlay
/// (its backing file, the shared base image, is never written).
///
/// QEMU 7.2 has no `file:` migration URI: a save streams through `exec:cat`,
/// a restore reads the file from a descriptor QEMU inherits (`fd:`).
enum QEMUSnapshotFiles {
    static let state = "state.migration"
    static let disk = "disk.qcow2"
    /// The guest's console up to the save, so `sandbox logs` of a restored sandbox shows its boot.
    static let console = "console.log"
}

extension QEMUMachine {
    /// QMP `migrate` to a file, then a copy of the overlay. The VM must be
    /// paused; it stays paused, and a later `cont` reactivates its disk.
    func saveState(to directory: URL) async throws {
        let qmp = try await QMPClient.connect(path: paths.qmpSocket.path)
        let status = try await qmp.execute("query-status")
        guard let running = status["running"] as? Bool, !running else {
            throw SmolVMError(.invalidState, "the VM must be paused before its state is saved")
        }
        let stateFile = directory.appendingPathComponent(QEMUSnapshotFiles.state)
        // The default bandwidth cap (128 MiB/s) would make a save take seconds; the
        // stream goes to a local file, so no cap is wanted.
        try await qmp.execute("migrate-set-parameters", arguments: ["max-bandwidth": Int64(1) << 40])
        try await qmp.execute("migrate", arguments: ["uri": "exec:cat > \(shellQuoted(stateFile.path))"])
        try await waitForMigration(qmp)
        // The migration flushed and inactivated the disk; the overlay is now
        // consistent with the memory image and nothing writes it.
        try copyFile(from: paths.overlay, to: directory.appendingPathComponent(QEMUSnapshotFiles.disk))
        try? copyFile(from: paths.console, to: directory.appendingPathComponent(QEMUSnapshotFiles.console))
    }

    /// Waits for `-incoming` to load (QMP `query-status` leaves `inmigrate`),
    /// then `cont`.
    func continueAfterIncoming(timeout: Duration) async throws {
        let qmp = try await QMPClient.connect(path: paths.qmpSocket.path)
        let deadline = ContinuousClock.now + timeout
        while true {
            let status = try await qmp.execute("query-status")
            switch status["status"] as? String {
            case "inmigrate":
                if watcher.hasExited || ContinuousClock.now > deadline {
                    throw SmolVMError(
                        .system,
                        "QEMU did not load the saved state\(watcher.hasExited ? " (it exited)" : " in time"): \(diagnostics())"
                    )
                }
                try await Task.sleep(for: .milliseconds(2))
            case "running":
                return
            default:
                try await qmp.execute("cont")
                return
            }
        }
    }

    private func waitForMigration(_ qmp: QMPClient) async throws {
        while true {
            let info = try await qmp.execute("query-migrate")
            switch info["status"] as? String {
            case "completed":
                return
            case "failed", "cancelled":
                let reason = info["error-desc"] as? String ?? "no reason given"
                throw SmolVMError(.system, "QEMU could not save the VM state: \(reason)")
            default:
                if watcher.hasExited { throw SmolVMError(.system, "QEMU exited while saving the VM state") }
                try await Task.sleep(for: .milliseconds(2))
            }
        }
    }
}

extension QEMUBackend {
    /// Starts QEMU with `-incoming` reading a saved state. The state was saved
    /// paused, and QEMU keeps a machine in the run state it arrived in, so once
    /// the stream is loaded a QMP `cont` starts the vCPUs. The new sandbox's disk is a
    /// copy of the saved layer, so the snapshot can be deleted at any time.
    func restore(_ spec: MachineSpec, from snapshot: URL, logger: Logger) async throws -> any VirtualMachine {
        let paths = QEMURuntimePaths(directory: spec.runtimeDirectory)
        try copyFile(from: snapshot.appendingPathComponent(QEMUSnapshotFiles.disk), to: paths.overlay)
        // QEMU appends to the console file, after the saved guest's own console.
        var console = (try? Data(contentsOf: snapshot.appendingPathComponent(QEMUSnapshotFiles.console))) ?? Data()
        console.append(
            contentsOf: Array("\n[smolvm] restored from a snapshot; the lines above are the saved guest's\n".utf8))
        try? console.write(to: paths.console)
        var spec = spec
        spec.reuseOverlay = true
        let state = snapshot.appendingPathComponent(QEMUSnapshotFiles.state)
        let machine = try await launch(spec, incomingState: state, logger: logger)
        // A restore answers in well under a second; a state that loads but never
        // answers (damaged memory) must fail in bounded time, not after a whole boot timeout.
        let timeout = min(spec.bootTimeout, .seconds(30))
        // The last resort against a peer that never reads or answers (a write or
        // a QMP reply that blocks): killing QEMU fails every pending call at once.
        let watchdog = Task { [watcher = machine.watcher, pid = machine.pid] in
            try await Task.sleep(for: timeout + .seconds(5))
            if !watcher.hasExited { Spawn.signal(pid, SIGKILL) }
        }
        defer { watchdog.cancel() }
        do {
            // Connected while the state loads, the agent's channel is open when the
            // guest wakes: it answers the first ping without a hang-up and reopen first.
            async let connected: Void = machine.connect(timeout: timeout, channels: spec.agentChannels)
            try await machine.continueAfterIncoming(timeout: timeout)
            try await connected
        } catch {
            let details = machine.diagnostics()
            await machine.kill()
            throw SmolVMError(
                .corrupted,
                "QEMU could not resume the saved state in \(snapshot.path) (\(error)); the snapshot may be damaged or its manifest edited\(details)",
                underlying: error)
        }
        return machine
    }
}

/// Quotes `text` for `/bin/sh`, which runs QEMU's `exec:` migration commands.
func shellQuoted(_ text: String) -> String {
    "'" + text.replacingOccurrences(of: "'", with: "'\\''") + "'"
}

/// Copies a file through a temporary name, so a crash never leaves a half-copied layer under the real name.
func copyFile(from source: URL, to destination: URL) throws {
    let temporary = destination.deletingLastPathComponent().appendingPathComponent(
        ".\(destination.lastPathComponent).partial")
    try? FileManager.default.removeItem(at: temporary)
    do {
        try FileManager.default.copyItem(at: source, to: temporary)
        if FileManager.default.fileExists(atPath: destination.path) {
            _ = try FileManager.default.replaceItemAt(destination, withItemAt: temporary)
        } else {
            try FileManager.default.moveItem(at: temporary, to: destination)
        }
    } catch {
        try? FileManager.default.removeItem(at: temporary)
        throw SmolVMError(.system, "cannot copy \(source.path) to \(destination.path)", underlying: error)
    }
}
