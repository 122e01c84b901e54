import Foundation
import SmolVMProtocol

extension AgentClient {
    /// Starts a command and returns its handle once the agent confirmed the start.
    func exec(_ command: Command) async throws -> SandboxProcess {
        try command.validate()
        var options: ExecRequest.Options = []
        if command.standardInput != .none { options.insert(.stdin) }
        if command.terminal != nil { options.insert(.terminal) }
        let environment =
            command.environment.sorted { $0.key < $1.key }.map { Array("\($0.key)=\($0.value)".utf8) }
            + command.rawEnvironment
        let timeout = command.timeout.map { duration -> UInt64 in
            let (seconds, attoseconds) = duration.components
            return UInt64(max(1, seconds * 1000 + attoseconds / 1_000_000_000_000_000))
        }
        let request = ExecRequest(
            argv: command.argumentBytes, environment: environment,
            workingDirectory: Array((command.workingDirectory ?? "").utf8), timeoutMilliseconds: timeout ?? 0,
            options: options, terminalRows: UInt32(clamping: command.terminal?.rows ?? 0),
            terminalColumns: UInt32(clamping: command.terminal?.columns ?? 0))
        let encoded = request.encoded()
        guard encoded.count <= FrameLimits.maxPayload else {
            throw SmolVMError(
                .invalidArgument, "the command's arguments and environment exceed \(FrameLimits.maxPayload) bytes")
        }
        let (id, queue) = try open()
        do {
            var frames = [Frame(.exec, id: id, payload: encoded)]
            if case .bytes(let input) = command.standardInput {
                var offset = 0
                while offset < input.count {
                    let end = min(offset + FrameLimits.dataChunk, input.count)
                    frames.append(Frame(.stdin, id: id, payload: Array(input[offset..<end])))
                    offset = end
                }
                frames.append(Frame(.stdinClose, id: id))
            }
            try await send(frames)
            guard let first = try await queue.next() else {
                throw SmolVMError(.agentUnreachable, "the guest agent closed the connection")
            }
            try Self.throwIfError(first)
            guard first.kind == .started else {
                throw SmolVMError(.agentError, "the guest agent answered exec with \(first.kind)")
            }
            return SandboxProcess(client: self, id: id, queue: queue, command: command)
        } catch {
            release(id)
            throw error
        }
    }
}

/// A command running in a sandbox: its output as an async sequence of events
/// ending with `.exit`, and its standard input.
///
/// Iterate `events` once. Leaving the loop early detaches from the command's
/// output (the command keeps running until it ends or times out).
public final class SandboxProcess: Sendable {
    let client: AgentClient
    let id: UInt32
    let queue: FrameQueue
    public let command: Command
    let started = ContinuousClock.now

    /// When the command was started, for durations.
    public var startedAt: ContinuousClock.Instant { started }

    init(client: AgentClient, id: UInt32, queue: FrameQueue, command: Command) {
        self.client = client
        self.id = id
        self.queue = queue
        self.command = command
    }

    deinit {
        client.release(id)
    }

    public var events: Events { Events(process: self) }

    /// Writes to the command's standard input (when started with `.stream`).
    public func write(_ bytes: [UInt8]) async throws {
        var frames: [Frame] = []
        var offset = 0
        while offset < bytes.count {
            let end = min(offset + FrameLimits.dataChunk, bytes.count)
            frames.append(Frame(.stdin, id: id, payload: Array(bytes[offset..<end])))
            offset = end
        }
        try await client.send(frames)
    }

    /// Ends the command's standard input.
    public func closeInput() async throws {
        try await client.send(Frame(.stdinClose, id: id))
    }

    /// Tells a terminal command its window changed size.
    public func resize(rows: Int, columns: Int) async throws {
        let size = SmolVMProtocol.TerminalSize(rows: UInt32(clamping: rows), columns: UInt32(clamping: columns))
        try await client.send(Frame(.resize, id: id, payload: size.encoded()))
    }

    /// Sends a signal to the command's process group.
    public func signal(_ signal: Int32) async throws {
        var writer = ByteWriter()
        writer.u32(UInt32(signal))
        try await client.send(Frame(.signal, id: id, payload: writer.bytes))
    }

    /// Collects every event into a result.
    public func result() async throws -> ExecResult {
        var stdout: [UInt8] = []
        var stderr: [UInt8] = []
        for try await event in events {
            switch event {
            case .stdout(let bytes): stdout.append(contentsOf: bytes)
            case .stderr(let bytes): stderr.append(contentsOf: bytes)
            case .exit(let status):
                return ExecResult(
                    status: status, stdout: stdout, stderr: stderr, duration: ContinuousClock.now - started)
            }
        }
        throw SmolVMError(.agentUnreachable, "the command's output ended without an exit status")
    }

    public struct Events: AsyncSequence, Sendable {
        public typealias Element = ExecEvent
        let process: SandboxProcess

        public func makeAsyncIterator() -> Iterator { Iterator(process: process) }

        public struct Iterator: AsyncIteratorProtocol {
            let process: SandboxProcess
            var done = false

            public mutating func next() async throws -> ExecEvent? {
                guard !done else { return nil }
                guard let frame = try await process.queue.next() else {
                    done = true
                    throw SmolVMError(
                        .agentUnreachable, "the connection to the guest agent ended while the command ran")
                }
                switch frame.kind {
                case .stdout: return .stdout(frame.payload)
                case .stderr: return .stderr(frame.payload)
                case .exit:
                    done = true
                    switch try SmolVMProtocol.ExitStatus(decoding: frame.payload) {
                    case .exited(let code): return .exit(.exited(code))
                    case .signaled(let signal): return .exit(.signaled(signal))
                    case .timedOut:
                        let limit = process.command.timeout.map { "\($0)" } ?? "its timeout"
                        throw SmolVMError(.timeout, "the command did not finish within \(limit) and was killed")
                    }
                case .error:
                    done = true
                    try AgentClient.throwIfError(frame)
                    return nil
                default:
                    done = true
                    throw SmolVMError(.agentError, "unexpected \(frame.kind) frame in a command's output")
                }
            }
        }
    }
}
