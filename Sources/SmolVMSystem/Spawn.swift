import CSmolVMShims

#if canImport(Glibc)
    import Glibc
#endif

/// Starting and reaping child processes: `fork(2)`/`execve(2)` through the C
/// shim (Swift cannot call `fork`), `waitpid(2)` and `kill(2)`.
public enum Spawn {
    public struct Options: OptionSet, Sendable {
        public let rawValue: Int32
        public init(rawValue: Int32) { self.rawValue = rawValue }
        /// A process group of its own, so the whole group can be signalled.
        public static let processGroup = Options(rawValue: Int32(SMOLVM_SPAWN_PROCESS_GROUP))
        /// A session of its own.
        public static let newSession = Options(rawValue: Int32(SMOLVM_SPAWN_NEW_SESSION))
        /// `SIGKILL` when the spawning thread exits: spawn from a thread that lives as long as the process.
        public static let dieWithParent = Options(rawValue: Int32(SMOLVM_SPAWN_DIE_WITH_PARENT))
        /// Child fd 0 becomes the controlling terminal.
        public static let controllingTerminal = Options(rawValue: Int32(SMOLVM_SPAWN_CONTROLLING_TTY))
        /// `fork` even where `posix_spawn` would do; only the benchmark's floor wants this.
        public static let forceFork = Options(rawValue: Int32(SMOLVM_SPAWN_FORCE_FORK))
    }

    /// Starts `path` with raw argv and environment entries. `fileDescriptors[i]`
    /// becomes the child's fd `i` (nil closes it).
    public static func start(
        path: [UInt8], arguments: [[UInt8]], environment: [[UInt8]],
        fileDescriptors: [FileDescriptor?], workingDirectory: [UInt8]? = nil, options: Options = []
    ) throws -> pid_t {
        // Everything the child touches is allocated before fork.
        let cPath = CStringArray([path])
        let cArgs = CStringArray(arguments)
        let cEnv = CStringArray(environment)
        let cwd = CStringArray(workingDirectory.map { [$0] } ?? [])
        let map = fileDescriptors.map { $0?.rawValue ?? -1 }
        var pid: pid_t = 0
        let result = map.withUnsafeBufferPointer { mapBuffer in
            smolvm_spawn(
                cPath.pointers[0], cArgs.pointers, cEnv.pointers, mapBuffer.baseAddress, Int32(map.count),
                workingDirectory == nil ? nil : cwd.pointers[0], options.rawValue, &pid)
        }
        withExtendedLifetime((cPath, cArgs, cEnv, cwd)) {}
        if result != 0 { throw Errno(rawValue: result) }
        return pid
    }

    public static func start(
        path: String, arguments: [String], environment: [String],
        fileDescriptors: [FileDescriptor?], workingDirectory: String? = nil, options: Options = []
    ) throws -> pid_t {
        try start(
            path: Array(path.utf8), arguments: arguments.map { Array($0.utf8) },
            environment: environment.map { Array($0.utf8) }, fileDescriptors: fileDescriptors,
            workingDirectory: workingDirectory.map { Array($0.utf8) }, options: options)
    }

    /// How a reaped child ended.
    public enum Termination: Sendable, Equatable {
        case exited(Int32)
        case signaled(Int32)
    }

    /// `waitpid(2)` without blocking: nil while the child runs.
    public static func poll(_ pid: pid_t) throws -> Termination? {
        var status: Int32 = 0
        let result = try retryOnInterrupt { waitpid(pid, &status, WNOHANG) }
        if result == 0 { return nil }
        return termination(status)
    }

    /// `waitpid(2)`, blocking. Call it off the cooperative thread pool.
    public static func wait(_ pid: pid_t) throws -> Termination {
        var status: Int32 = 0
        _ = try retryOnInterrupt { waitpid(pid, &status, 0) }
        return termination(status)
    }

    /// Reaps any child without blocking: the pid and how it ended, or nil.
    public static func reapAny() -> (pid_t, Termination)? {
        var status: Int32 = 0
        let pid = waitpid(-1, &status, WNOHANG)
        if pid <= 0 { return nil }
        return (pid, termination(status))
    }

    static func termination(_ status: Int32) -> Termination {
        // WIFEXITED / WEXITSTATUS / WTERMSIG, which Swift does not import as macros.
        let signal = status & 0x7f
        if signal == 0 { return .exited((status >> 8) & 0xff) }
        return .signaled(signal)
    }

    /// `kill(2)`; a process already gone is not an error.
    public static func signal(_ pid: pid_t, _ signal: Int32) {
        _ = Glibc.kill(pid, signal)
    }

    /// `kill(2)` on a whole process group.
    public static func signalGroup(_ group: pid_t, _ signal: Int32) {
        _ = Glibc.kill(-group, signal)
    }

    /// Whether a process with this pid exists (it may be a zombie).
    public static func isAlive(_ pid: pid_t) -> Bool {
        Glibc.kill(pid, 0) == 0 || errno == EPERM
    }

    /// The process start time in clock ticks since boot, from `/proc/PID/stat`;
    /// with the pid it identifies a process even after the pid is reused.
    public static func startTime(_ pid: pid_t) -> UInt64 {
        UInt64(smolvm_process_start_time(pid))
    }
}

/// NUL-terminated copies of byte strings with a NULL-terminated pointer array,
/// alive as long as this value.
final class CStringArray {
    let storage: [UnsafeMutablePointer<CChar>]
    let pointers: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>

    init(_ strings: [[UInt8]]) {
        storage = strings.map { bytes in
            let pointer = UnsafeMutablePointer<CChar>.allocate(capacity: bytes.count + 1)
            bytes.withUnsafeBytes { raw in
                UnsafeMutableRawPointer(pointer).copyMemory(
                    from: raw.baseAddress ?? UnsafeRawPointer(pointer), byteCount: bytes.count)
            }
            pointer[bytes.count] = 0
            return pointer
        }
        pointers = .allocate(capacity: storage.count + 1)
        for (index, pointer) in storage.enumerated() { pointers[index] = pointer }
        pointers[storage.count] = nil
    }

    deinit {
        for pointer in storage { pointer.deallocate() }
        pointers.deallocate()
    }
}
