import Foundation
import SmolVMSystem

/// Runs every spawn on one thread that lives as long as the process.
///
/// `PR_SET_PDEATHSIG` fires when the *thread* that forked a child exits, not
/// the process. Cooperative-pool and Dispatch worker threads come and go, so a
/// VMM forked from one of them could be killed when that worker retires. Forks
/// made here are tied to the life of the process, and so a VMM never outlives
/// the `smolvm` that owns it.
final class SpawnThread: @unchecked Sendable {
    static let shared = SpawnThread()

    private let condition = NSCondition()
    private var jobs: [() -> Void] = []

    private init() {
        let thread = Thread { [unowned self] in self.loop() }
        thread.name = "smolvm.spawn"
        thread.start()
    }

    private func loop() {
        while true {
            condition.lock()
            while jobs.isEmpty { condition.wait() }
            let job = jobs.removeFirst()
            condition.unlock()
            job()
        }
    }

    /// Runs `body` on the spawn thread and returns its result.
    func run<T: Sendable>(_ body: @escaping @Sendable () throws -> T) async throws -> T {
        try await withCheckedThrowingContinuation { continuation in
            condition.lock()
            jobs.append { continuation.resume(with: Result { try body() }) }
            condition.signal()
            condition.unlock()
        }
    }
}

/// Runs blocking work (waitpid, file hashing, socket reads) on a thread of its
/// own, keeping it off Swift's cooperative thread pool.
func onBlockingThread<T: Sendable>(_ name: String = "smolvm.blocking", _ body: @escaping @Sendable () throws -> T)
    async throws -> T
{
    try await withCheckedThrowingContinuation { continuation in
        let thread = Thread { continuation.resume(with: Result { try body() }) }
        thread.name = name
        thread.start()
    }
}
