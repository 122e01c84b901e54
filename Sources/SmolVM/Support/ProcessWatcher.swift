import Foundation
import SmolVMSystem
import Synchronization

/// Waits for one child process to exit on a thread of its own, so async code
/// can ask "has it exited?" or wait for it with a deadline without polling.
final class ProcessWatcher: Sendable {
    let pid: pid_t
    private let state = Mutex<(Spawn.Termination?, [CheckedContinuation<Spawn.Termination, Never>])>((nil, []))

    /// Watches a child of this process, reaping it with `waitpid(2)`.
    init(child pid: pid_t) {
        self.pid = pid
        start { (try? Spawn.wait(pid)) ?? .signaled(SIGKILL) }
    }

    /// Watches a process this one did not start (a named sandbox's VMM started
    /// by another `smolvm`): it cannot be waited for, so its `/proc` entry is
    /// polled, and the start time guards against a reused pid.
    init(foreign pid: pid_t, startTime: UInt64) {
        self.pid = pid
        start {
            while Spawn.startTime(pid) == startTime, !StateStore.isZombie(pid) {
                usleep(20_000)
            }
            return .exited(0)
        }
    }

    private func start(_ waitForExit: @escaping @Sendable () -> Spawn.Termination) {
        let pid = self.pid
        let thread = Thread { [self] in
            let termination = waitForExit()
            let waiters = state.withLock { state in
                state.0 = termination
                defer { state.1 = [] }
                return state.1
            }
            for waiter in waiters { waiter.resume(returning: termination) }
        }
        thread.name = "smolvm.wait.\(pid)"
        thread.start()
    }

    var termination: Spawn.Termination? { state.withLock { $0.0 } }
    var hasExited: Bool { termination != nil }

    func wait() async -> Spawn.Termination {
        await withCheckedContinuation { continuation in
            let done = state.withLock { state -> Spawn.Termination? in
                if let termination = state.0 { return termination }
                state.1.append(continuation)
                return nil
            }
            if let done { continuation.resume(returning: done) }
        }
    }

    /// Waits up to `timeout`; true when the process exited.
    func wait(timeout: Duration) async -> Bool {
        let deadline = ContinuousClock.now + timeout
        while !hasExited {
            if ContinuousClock.now >= deadline { return false }
            try? await Task.sleep(for: .milliseconds(5))
        }
        return true
    }
}
