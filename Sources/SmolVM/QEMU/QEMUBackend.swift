import Foundation
import SmolVMProtocol
import SmolVMSystem
import Synchronization

/// Boots sandboxes with `qemu-system-*` on a `microvm` machine.
struct QEMUBackend: Backend {
    let binary: String
    var kind: BackendKind { .qemu }
    var supportsSnapshots: Bool { true }

    func boot(_ spec: MachineSpec, logger: Logger) async throws -> any VirtualMachine {
        let machine = try await launch(spec, logger: logger)
        do {
            try await machine.connect(timeout: spec.bootTimeout, channels: spec.agentChannels)
        } catch {
            await machine.kill()
            throw error
        }
        return machine
    }

    func attach(pid: pid_t, startTime: UInt64, runtimeDirectory: URL, logger: Logger) -> any VirtualMachine {
        QEMUMachine(
            pid: pid, paths: QEMURuntimePaths(directory: runtimeDirectory), logger: logger,
            watcher: ProcessWatcher(foreign: pid, startTime: startTime))
    }

    func hasWritableLayer(in runtimeDirectory: URL) -> Bool {
        FileManager.default.fileExists(atPath: QEMURuntimePaths(directory: runtimeDirectory).overlay.path)
    }

    /// Starts QEMU without waiting for the guest. With `incomingState`, QEMU
    /// loads that saved state (`-incoming fd:3`, the file opened here) instead of booting.
    func launch(_ spec: MachineSpec, incomingState: URL? = nil, logger: Logger) async throws -> QEMUMachine {
        let paths = QEMURuntimePaths(directory: spec.runtimeDirectory)
        let sockets = (0..<spec.agentChannels).map(paths.agentSocket) + [paths.qmpSocket]
        for socket in sockets where socket.path.utf8.count > UnixSocket.maxPathLength {
            throw SmolVMError(
                .invalidArgument,
                "the socket path \(socket.path) is longer than the \(UnixSocket.maxPathLength) bytes Unix sockets allow; set SMOLVM_HOME to a shorter directory"
            )
        }
        // Sockets left by a crashed run would make QEMU fail to bind.
        for stale in sockets + [paths.pidFile] { unlink(stale.path) }
        if !spec.reuseOverlay || !FileManager.default.fileExists(atPath: paths.overlay.path) {
            try await createOverlay(paths.overlay, over: spec.rootImage)
        }

        // QEMU reads the state straight from the file: no shell, no pipe, one copy.
        let state = try incomingState.map { url in
            do {
                return try FileDescriptor.open(url.path, .readOnly)
            } catch {
                throw SmolVMError(.notFound, "cannot open the saved state \(url.path)", underlying: error)
            }
        }
        defer { state?.close() }
        let commandLine = QEMUCommandLine(
            binary: binary, spec: spec, paths: paths, incoming: state == nil ? nil : "fd:3")
        logger.debug("starting \(commandLine.arguments.joined(separator: " "))")
        let log = try FileDescriptor.open(paths.vmmLog.path, [.writeOnly, .create, .append], mode: 0o644)
        defer { log.close() }
        let null = try FileDescriptor.open("/dev/null", .readOnly)
        defer { null.close() }
        let arguments = commandLine.arguments
        let environment = ProcessInfo.processInfo.environment.map { "\($0.key)=\($0.value)" }
        // A named sandbox's VMM outlives this process; an ephemeral one dies with it.
        let options: Spawn.Options = spec.detached ? [.newSession] : [.newSession, .dieWithParent]
        let pid = try await SpawnThread.shared.run {
            try Spawn.start(
                path: arguments[0], arguments: arguments, environment: environment,
                fileDescriptors: [null, log, log] + (state.map { [$0] } ?? []), options: options)
        }
        return QEMUMachine(pid: pid, paths: paths, logger: logger, watcher: ProcessWatcher(child: pid))
    }

    /// A copy-on-write qcow2 layer over the shared base image: creating a
    /// sandbox copies nothing large, and the base is never written.
    private func createOverlay(_ overlay: URL, over base: URL) async throws {
        let qemuImg = URL(fileURLWithPath: binary).deletingLastPathComponent().appendingPathComponent("qemu-img").path
        let tool = FileManager.default.isExecutableFile(atPath: qemuImg) ? qemuImg : "qemu-img"
        guard Subprocess.which(tool) != nil else {
            throw SmolVMError(.notFound, "qemu-img was not found. Fix: sudo apt-get install -y qemu-utils")
        }
        try await Subprocess.check([tool, "create", "-q", "-f", "qcow2", "-F", "raw", "-b", base.path, overlay.path])
    }
}

/// A running QEMU process.
final class QEMUMachine: VirtualMachine, @unchecked Sendable {
    let pid: pid_t
    let paths: QEMURuntimePaths
    let watcher: ProcessWatcher
    private let logger: Logger
    private var client: AgentClient?
    private var channelLock: FileLock?
    var backend: BackendKind { .qemu }

    init(pid: pid_t, paths: QEMURuntimePaths, logger: Logger, watcher: ProcessWatcher) {
        self.pid = pid
        self.paths = paths
        self.logger = logger
        self.watcher = watcher
    }

    var agent: AgentClient { client! }

    /// Connects to the agent's socket and waits until the agent answers. Ready
    /// means an answer, never a fixed sleep; a VMM that dies first is reported
    /// with the end of its log and the guest console.
    func connect(timeout: Duration, channels: Int = 1) async throws {
        let deadline = ContinuousClock.now + timeout
        var fd: FileDescriptor?
        var channel = 0
        if channels > 1 {
            // Each host process takes a channel of its own; wait while all are taken.
            while channelLock == nil {
                for candidate in 0..<channels {
                    if let lock = try FileLock.tryAcquire(paths.agentLock(candidate).path) {
                        channelLock = lock
                        channel = candidate
                        break
                    }
                }
                if channelLock == nil {
                    if ContinuousClock.now > deadline {
                        throw SmolVMError(
                            .busy,
                            "all \(channels) agent channels of this sandbox are in use by other smolvm processes; try again when one finishes"
                        )
                    }
                    try await Task.sleep(for: .milliseconds(20))
                }
            }
        }
        while fd == nil {
            try checkAlive(deadline: deadline, timeout: timeout)
            do {
                fd = try UnixSocket.connect(path: paths.agentSocket(channel).path)
            } catch {
                try await Task.sleep(for: .milliseconds(2))
            }
        }
        let client = AgentClient(fd: fd!, logger: logger)
        self.client = client
        // The agent greets when it opens its port; pings cover a greeting sent
        // before this connection existed (QEMU drops guest output with no client).
        var lastPing = ContinuousClock.now - .seconds(1)
        // A guest that is stopped or never reads fills the socket and a ping's write
        // blocks: pings go out one at a time beside this loop, which keeps the deadline.
        let pingInFlight = InFlightFlag()
        defer {
            if client.hello == nil, !client.hasReceivedFrame {
                client.close(reason: "the guest agent did not answer")
            }
        }
        while client.hello == nil, !client.hasReceivedFrame {
            try checkAlive(deadline: deadline, timeout: timeout)
            if client.isClosed {
                // QEMU closes the channel as it exits; report the exit, which says more.
                if await watcher.wait(timeout: .seconds(2)) {
                    try checkAlive(deadline: deadline, timeout: timeout)
                }
                throw SmolVMError(.agentUnreachable, "the guest agent's channel closed during boot\(diagnostics())")
            }
            if ContinuousClock.now - lastPing > .milliseconds(50), pingInFlight.begin() {
                Task {
                    try? await client.send(Frame(.ping, id: 0))
                    pingInFlight.end()
                }
                lastPing = ContinuousClock.now
            }
            try await Task.sleep(for: .milliseconds(1))
        }
    }

    private func checkAlive(deadline: ContinuousClock.Instant, timeout: Duration) throws {
        if let termination = watcher.termination {
            let log = (try? String(contentsOf: paths.vmmLog, encoding: .utf8)) ?? ""
            if log.contains("Could not set up host forwarding rule") {
                // The port was free when checked, and something took it before QEMU bound it.
                throw SmolVMError(
                    .invalidArgument,
                    "a host port to publish was taken by another process while the sandbox started. Fix: choose another host port, or stop what listens there\(diagnostics())"
                )
            }
            throw SmolVMError(.bootFailed, "QEMU exited during boot (\(termination))\(diagnostics())")
        }
        if ContinuousClock.now > deadline {
            throw SmolVMError(
                .agentUnreachable,
                "the guest agent did not answer within \(timeout); raise the limit with SMOLVM_BOOT_TIMEOUT or check the guest console\(diagnostics())"
            )
        }
    }

    /// The tail of QEMU's own log and of the guest console, for boot errors.
    func diagnostics() -> String {
        var text = ""
        for (title, url) in [("QEMU", paths.vmmLog), ("guest console", paths.console)] {
            guard let data = FileManager.default.contents(atPath: url.path), !data.isEmpty else { continue }
            let lines = String(decoding: data, as: UTF8.self).split(separator: "\n").suffix(12)
            text += "\n--- \(title) (\(url.path)) ---\n" + lines.joined(separator: "\n")
        }
        return text
    }

    func stop(deadline: Duration) async {
        defer { releaseChannel() }
        guard !watcher.hasExited else { return }
        if let client, !client.isClosed {
            let asked = await withTimeout(.seconds(3)) { _ = try await client.roundTrip(.shutdown) }
            if asked, await watcher.wait(timeout: deadline) { return }
        }
        if let qmp = try? await QMPClient.connect(path: paths.qmpSocket.path, timeout: .seconds(1)) {
            _ = try? await qmp.execute("quit")
            if await watcher.wait(timeout: .seconds(2)) { return }
        }
        await kill()
    }

    func kill() async {
        client?.close(reason: "the sandbox was stopped")
        Spawn.signal(pid, SIGKILL)
        _ = await watcher.wait()
        releaseChannel()
    }

    /// Lets go of the agent channel without touching the VM (another process may use it next).
    func detach() {
        client?.close(reason: "detached from the sandbox")
        client = nil
        releaseChannel()
    }

    private func releaseChannel() {
        channelLock?.release()
        channelLock = nil
    }

    func pause() async throws {
        let qmp = try await QMPClient.connect(path: paths.qmpSocket.path)
        try await qmp.execute("stop")
    }

    func resume() async throws {
        let qmp = try await QMPClient.connect(path: paths.qmpSocket.path)
        try await qmp.execute("cont")
    }
}

/// Runs `body` with a deadline; false when it failed or ran out of time.
/// The body is not awaited past the deadline (it may be stuck on a peer that
/// never answers); it is cancelled and left to finish on its own.
func withTimeout(_ timeout: Duration, _ body: @escaping @Sendable () async throws -> Void) async -> Bool {
    let once = OnceContinuation()
    return await withCheckedContinuation { continuation in
        once.set(continuation)
        let work = Task {
            let ok = (try? await body()) != nil
            once.take()?.resume(returning: ok)
        }
        Task {
            try? await Task.sleep(for: timeout)
            if let waiting = once.take() {
                work.cancel()
                waiting.resume(returning: false)
            }
        }
    }
}

/// One operation at a time: `begin` is false while one is running.
final class InFlightFlag: Sendable {
    private let busy = Atomic<Bool>(false)
    func begin() -> Bool {
        busy.compareExchange(expected: false, desired: true, ordering: .acquiringAndReleasing).exchanged
    }
    func end() { busy.store(false, ordering: .releasing) }
}

private final class OnceContinuation: Sendable {
    private let slot = Mutex<CheckedContinuation<Bool, Never>?>(nil)
    func set(_ continuation: CheckedContinuation<Bool, Never>) { slot.withLock { $0 = continuation } }
    func take() -> CheckedContinuation<Bool, Never>? { slot.withLock { $0.take() } }
}
