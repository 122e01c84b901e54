import Foundation
import SmolVMProtocol
import SmolVMSystem
import Synchronization

/// The host end of the agent protocol over one byte stream (a virtio-serial
/// socket or a vsock connection).
///
/// A dedicated reader thread decodes frames and routes them by request id to
/// per-request queues; writes go through one serial queue so frames never
/// interleave. Everything the guest sends is bounded by the decoder's limits: a
/// malformed or oversized frame closes the connection and fails every request.
public final class AgentClient: @unchecked Sendable {
    private let fd: FileDescriptor
    private let writer = DispatchQueue(label: "smolvm.agent.writer")
    private let state = Mutex(State())
    private let logger: Logger
    private let readerDone = DispatchSemaphore(value: 0)

    private struct State {
        // Random, so frames still in flight for a previous client of the same
        // channel are never mistaken for this client's requests.
        var nextID = UInt32.random(in: 1...(UInt32.max / 2))
        var requests: [UInt32: FrameQueue] = [:]
        var closedError: SmolVMError?
        var hello: AgentHello?
        var helloWaiters: [CheckedContinuation<Void, Never>] = []
        var sawAnyFrame = false
    }

    /// Takes ownership of `fd`.
    init(fd: FileDescriptor, logger: Logger) {
        self.fd = fd
        self.logger = logger
        let thread = Thread { [self] in readLoop() }
        thread.name = "smolvm.agent.reader"
        thread.start()
    }

    deinit {
        UnixSocket.shutdownBoth(fd)
        readerDone.wait()
        fd.close()
    }

    /// Whether the connection has failed or been closed.
    public var isClosed: Bool { state.withLock { $0.closedError != nil } }

    /// Whether any frame has arrived from the agent yet.
    public var hasReceivedFrame: Bool { state.withLock { $0.sawAnyFrame } }

    /// The greeting the agent sent, once it has arrived.
    public var hello: AgentHello? { state.withLock { $0.hello } }

    /// Closes the connection; pending requests fail with `reason`.
    public func close(reason: String = "the connection to the guest agent was closed") {
        fail(SmolVMError(.agentUnreachable, reason))
        UnixSocket.shutdownBoth(fd)
    }

    // MARK: Requests

    /// Registers a new request and returns its id and frame queue.
    func open() throws -> (UInt32, FrameQueue) {
        let queue = FrameQueue()
        return try state.withLock { state in
            if let error = state.closedError { throw error }
            var id = state.nextID
            while id == 0 || state.requests[id] != nil { id &+= 1 }
            state.nextID = id &+ 1
            state.requests[id] = queue
            return (id, queue)
        }
    }

    /// Forgets a request; later frames for it are dropped.
    func release(_ id: UInt32) {
        let queue = state.withLock { $0.requests.removeValue(forKey: id) }
        queue?.abandon()
    }

    /// Sends frames in order, without interleaving with other senders.
    func send(_ frames: [Frame]) async throws {
        try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<Void, any Error>) in
            writer.async { [self] in
                continuation.resume(with: Result { try writeNow(frames) })
            }
        }
    }

    func send(_ frame: Frame) async throws { try await send([frame]) }

    /// Runs `body` on the writer queue, where it may write frames directly with
    /// `writeNow` (bulk uploads read and write there without hopping per chunk).
    func withWriter<T: Sendable>(_ body: @escaping @Sendable () throws -> T) async throws -> T {
        try await withCheckedThrowingContinuation { continuation in
            writer.async { continuation.resume(with: Result { try body() }) }
        }
    }

    /// Writes frames now; call only on the writer queue.
    func writeNow(_ frames: [Frame]) throws {
        if let error = state.withLock({ $0.closedError }) { throw error }
        var bytes = [UInt8]()
        for frame in frames {
            Frame.appendHeader(
                to: &bytes, kind: frame.kind, requestID: frame.requestID, payloadCount: frame.payload.count)
            bytes.append(contentsOf: frame.payload)
        }
        do {
            try fd.writeAll(bytes)
        } catch {
            let failure = SmolVMError(.agentUnreachable, "lost the connection to the guest agent", underlying: error)
            fail(failure)
            throw failure
        }
    }

    /// Sends one request frame and waits for its single answer (`ok`, `pong`, …).
    func roundTrip(_ kind: FrameKind, payload: [UInt8] = []) async throws -> Frame {
        let (id, queue) = try open()
        defer { release(id) }
        try await send(Frame(kind, id: id, payload: payload))
        guard let answer = try await queue.next() else {
            throw SmolVMError(.agentUnreachable, "the guest agent closed the connection")
        }
        try Self.throwIfError(answer)
        return answer
    }

    static func throwIfError(_ frame: Frame) throws {
        guard frame.kind == .error else { return }
        let remote = try RemoteError(decoding: frame.payload)
        throw SmolVMError.fromRemote(remote)
    }

    /// Waits until the first frame from the agent arrives (its hello or any answer).
    func waitForFirstFrame() async {
        await withCheckedContinuation { continuation in
            let ready = state.withLock { state -> Bool in
                if state.sawAnyFrame || state.closedError != nil { return true }
                state.helloWaiters.append(continuation)
                return false
            }
            if ready { continuation.resume() }
        }
    }

    // MARK: Reader

    private func readLoop() {
        defer { readerDone.signal() }
        var decoder = FrameDecoder()
        var buffer = [UInt8](repeating: 0, count: 256 << 10)
        while true {
            let count: Int
            do {
                count = try buffer.withUnsafeMutableBytes { try fd.read(into: $0) }
            } catch {
                fail(SmolVMError(.agentUnreachable, "lost the connection to the guest agent", underlying: error))
                return
            }
            if count == 0 {
                fail(SmolVMError(.agentUnreachable, "the guest agent closed the connection"))
                return
            }
            decoder.append(buffer[0..<count])
            do {
                while let frame = try decoder.next() { route(frame) }
            } catch {
                logger.error("guest agent sent a malformed frame: \(error)")
                fail(SmolVMError(.agentError, "the guest agent broke the protocol: \(error)", underlying: error))
                UnixSocket.shutdownBoth(fd)
                return
            }
        }
    }

    private func route(_ frame: Frame) {
        let (queue, waiters) = state.withLock { state -> (FrameQueue?, [CheckedContinuation<Void, Never>]) in
            var waiters: [CheckedContinuation<Void, Never>] = []
            if !state.sawAnyFrame {
                state.sawAnyFrame = true
                waiters = state.helloWaiters
                state.helloWaiters = []
            }
            if frame.kind == .hello, let hello = try? AgentHello(decoding: frame.payload) {
                state.hello = hello
            }
            return (state.requests[frame.requestID], waiters)
        }
        for waiter in waiters { waiter.resume() }
        if frame.kind == .error, frame.requestID == 0, let remote = try? RemoteError(decoding: frame.payload) {
            logger.warning("guest agent: \(remote.message)")
        }
        queue?.push(frame)
    }

    private func fail(_ error: SmolVMError) {
        let (queues, waiters) = state.withLock { state -> ([FrameQueue], [CheckedContinuation<Void, Never>]) in
            if state.closedError == nil { state.closedError = error }
            let queues = Array(state.requests.values)
            let waiters = state.helloWaiters
            state.helloWaiters = []
            return (queues, waiters)
        }
        for queue in queues { queue.finish(throwing: error) }
        for waiter in waiters { waiter.resume() }
    }
}

extension SmolVMError {
    static func fromRemote(_ remote: RemoteError) -> SmolVMError {
        switch remote.code {
        case .notFound where remote.message.hasPrefix("executable not found"):
            SmolVMError(.commandNotFound, remote.message)
        case .notExecutable:
            SmolVMError(.commandNotExecutable, remote.message)
        case .notFound:
            SmolVMError(.notFound, remote.message)
        case .badRequest:
            SmolVMError(.invalidArgument, remote.message)
        default:
            SmolVMError(.agentError, remote.message)
        }
    }
}
