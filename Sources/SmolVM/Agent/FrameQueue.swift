import Foundation
import SmolVMProtocol

/// Frames for one request, from the connection's reader thread to an async consumer.
///
/// Bounded: when the consumer falls behind by more than `limit` bytes, the
/// reader thread waits, which stops reading the channel and pushes back on the
/// guest. So 50 MB of output never sits in host memory for a slow consumer.
/// A consumer that goes away abandons the queue, and frames for it are dropped
/// instead of blocking the reader forever.
final class FrameQueue: @unchecked Sendable {
    static let defaultLimit = 8 << 20

    private let condition = NSCondition()
    private var frames: [Frame] = []
    private var head = 0
    private var bufferedBytes = 0
    private var waiter: CheckedContinuation<Frame?, any Error>?
    private var failure: (any Error)?
    private var finished = false
    private var abandoned = false
    private let limit: Int

    init(limit: Int = FrameQueue.defaultLimit) {
        self.limit = limit
    }

    /// Called on the reader thread. Blocks while the queue is over its limit.
    func push(_ frame: Frame) {
        condition.lock()
        while bufferedBytes > limit, !abandoned, !finished {
            condition.wait()
        }
        if abandoned || finished {
            condition.unlock()
            return
        }
        if let waiter {
            self.waiter = nil
            condition.unlock()
            waiter.resume(returning: frame)
            return
        }
        frames.append(frame)
        bufferedBytes += frame.payload.count
        condition.unlock()
    }

    /// Ends the queue: the consumer sees the remaining frames, then `error` (or the end).
    func finish(throwing error: (any Error)? = nil) {
        condition.lock()
        guard !finished else {
            condition.unlock()
            return
        }
        finished = true
        failure = error
        let waiter = self.waiter
        self.waiter = nil
        condition.broadcast()
        condition.unlock()
        if let waiter {
            if let error { waiter.resume(throwing: error) } else { waiter.resume(returning: nil) }
        }
    }

    /// The consumer is gone: drop what is buffered and whatever comes.
    func abandon() {
        condition.lock()
        abandoned = true
        frames.removeAll()
        head = 0
        bufferedBytes = 0
        condition.broadcast()
        condition.unlock()
    }

    /// The next frame, or nil at the end.
    func next() async throws -> Frame? {
        try await withCheckedThrowingContinuation { continuation in
            condition.lock()
            if head < frames.count {
                let frame = frames[head]
                head += 1
                bufferedBytes -= frame.payload.count
                if head == frames.count {
                    frames.removeAll(keepingCapacity: true)
                    head = 0
                } else if head > 1024 {
                    frames.removeFirst(head)
                    head = 0
                }
                condition.broadcast()
                condition.unlock()
                continuation.resume(returning: frame)
                return
            }
            if finished {
                let failure = self.failure
                condition.unlock()
                if let failure { continuation.resume(throwing: failure) } else { continuation.resume(returning: nil) }
                return
            }
            waiter = continuation
            condition.unlock()
        }
    }
}
