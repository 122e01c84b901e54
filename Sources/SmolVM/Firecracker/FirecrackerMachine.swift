import Foundation
import SmolVMProtocol
import SmolVMSystem

/// A running Firecracker process and its guest.
final class FirecrackerMachine: VirtualMachine, @unchecked Sendable {
    let pid: pid_t
    let paths: FirecrackerRuntimePaths
    let watcher: ProcessWatcher
    let api: FirecrackerAPIClient
    private let logger: Logger
    private var client: AgentClient?
    private var tap: TapDevice?
    var backend: BackendKind { .firecracker }

    init(pid: pid_t, paths: FirecrackerRuntimePaths, logger: Logger, watcher: ProcessWatcher, tap: TapDevice?) {
        self.pid = pid
        self.paths = paths
        self.logger = logger
        self.watcher = watcher
        self.tap = tap
        self.api = FirecrackerAPIClient(socketPath: paths.apiSocket.path)
    }

    var agent: AgentClient { client! }

    /// Hybrid vsock to the agent: `CONNECT` + `OK`, then the agent must answer
    /// a ping. Until the guest listens, Firecracker closes each attempt, so
    /// attempts repeat (bounded by `timeout`); a VMM that dies first is
    /// reported with the end of its log and the guest console. `channels` is
    /// not needed here: every host process gets a vsock connection of its own,
    /// and the agent accepts any number of them.
    func connect(timeout: Duration, channels: Int = 1) async throws {
        let deadline = ContinuousClock.now + timeout
        var lastError: (any Error)?
        while true {
            if let termination = watcher.termination {
                throw SmolVMError(.bootFailed, "Firecracker exited during boot (\(termination))\(diagnostics())")
            }
            if ContinuousClock.now > deadline {
                throw SmolVMError(
                    .agentUnreachable,
                    "the guest agent did not answer over vsock within \(timeout) (last attempt: \(lastError.map { "\($0)" } ?? "none")); raise the limit with SMOLVM_BOOT_TIMEOUT or check the guest console\(diagnostics())"
                )
            }
            let udsPath = paths.vsock.path
            do {
                let fd = try await onBlockingThread("smolvm.vsock") {
                    try HybridVsock.connect(udsPath: udsPath, port: HybridVsock.agentPort, timeout: .seconds(2))
                }
                let candidate = AgentClient(fd: fd, logger: logger)
                if await Self.answers(candidate) {
                    client = candidate
                    return
                }
                candidate.close(reason: "the agent did not answer a ping")
                lastError = SmolVMError(.agentUnreachable, "the agent did not answer a ping")
            } catch {
                lastError = error
            }
            try await Task.sleep(for: .milliseconds(20))
        }
    }

    /// Ready means the agent said hello or answered a ping within a second.
    private static func answers(_ client: AgentClient) async -> Bool {
        await withTimeout(.seconds(2)) {
            try await client.send(Frame(.ping, id: 0))
            while client.hello == nil, !client.hasReceivedFrame {
                if client.isClosed { throw SmolVMError(.agentUnreachable, "closed") }
                try await Task.sleep(for: .milliseconds(1))
            }
        }
    }

    /// The tail of Firecracker's log and of the guest console, for boot errors.
    func diagnostics() -> String {
        var text = ""
        for (title, url) in [("Firecracker log", paths.vmmLog), ("guest console", paths.console)] {
            guard let data = FileManager.default.contents(atPath: url.path), !data.isEmpty else { continue }
            let lines = String(decoding: data, as: UTF8.self).split(separator: "\n").suffix(12)
            text += "\n--- \(title) (\(url.path)) ---\n" + lines.joined(separator: "\n")
        }
        return text
    }

    /// Adds the VMM's exit and logs to an API error that a dying VMM caused.
    func explain(_ error: any Error) -> any Error {
        guard let smol = error as? SmolVMError, !smol.message.contains("---") else { return error }
        if let termination = watcher.termination {
            return SmolVMError(smol.code, "\(smol.message); Firecracker exited (\(termination))\(diagnostics())")
        }
        return error
    }

    /// Agent shutdown first (it syncs the disks), then Ctrl-Alt-Del through
    /// `PUT /actions`, then `SIGKILL` once `deadline` passed.
    func stop(deadline: Duration) async {
        defer { cleanUp() }
        guard !watcher.hasExited else { return }
        if let client, !client.isClosed {
            let asked = await withTimeout(.seconds(3)) { _ = try await client.roundTrip(.shutdown) }
            if asked, await watcher.wait(timeout: deadline) { return }
        }
        let api = self.api
        let sent = await withTimeout(.seconds(2)) {
            try await api.call("PUT", "/actions", InstanceActionInfo(actionType: .sendCtrlAltDel))
        }
        if sent, await watcher.wait(timeout: .seconds(2)) { return }
        await kill()
    }

    func kill() async {
        client?.close(reason: "the sandbox was stopped")
        Spawn.signal(pid, SIGKILL)
        _ = await watcher.wait()
        cleanUp()
    }

    func detach() {
        client?.close(reason: "detached from the sandbox")
        client = nil
    }

    private func cleanUp() {
        for socket in [paths.apiSocket, paths.vsock] { unlink(socket.path) }
        if let tap {
            tap.remove()
            self.tap = nil
        }
    }

    /// `PATCH /vm {"state": "Paused"}`.
    func pause() async throws {
        try await api.call("PATCH", "/vm", Vm(state: .paused))
    }

    /// `PATCH /vm {"state": "Resumed"}`.
    func resume() async throws {
        try await api.call("PATCH", "/vm", Vm(state: .resumed))
    }

    /// `PUT /snapshot/create` (a full snapshot: memory + vmstate) on the paused
    /// VM, then a sparse copy of the scratch disk, consistent with the memory
    /// because the vCPUs are stopped.
    func saveState(to directory: URL) async throws {
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        let files = FirecrackerSnapshotFiles(directory: directory)
        var slow = api
        slow.callTimeout = .seconds(120)
        try await slow.call(
            "PUT", "/snapshot/create",
            SnapshotCreateParams(memFilePath: files.memory.path, snapshotPath: files.vmstate.path, snapshotType: .full))
        try await FirecrackerBackend.copySparse(paths.scratch, to: files.scratch)
    }
}
