#if canImport(Glibc)
    import Glibc
#elseif canImport(Musl)
    import Musl
#elseif canImport(Darwin)
    import Darwin
#endif

/// A POSIX error number with its system description.
public struct Errno: Error, Sendable, Equatable, Hashable, CustomStringConvertible {
    public let rawValue: Int32

    public init(rawValue: Int32) { self.rawValue = rawValue }

    /// The calling thread's `errno`.
    public static var current: Errno { Errno(rawValue: errno) }

    public var description: String { String(cString: strerror(rawValue)) }

    public static let interrupted = Errno(rawValue: EINTR)
    public static let wouldBlock = Errno(rawValue: EAGAIN)
    public static let noEntry = Errno(rawValue: ENOENT)
    public static let permissionDenied = Errno(rawValue: EACCES)
    public static let notPermitted = Errno(rawValue: EPERM)
    public static let exists = Errno(rawValue: EEXIST)
    public static let connectionRefused = Errno(rawValue: ECONNREFUSED)
    public static let brokenPipe = Errno(rawValue: EPIPE)
    public static let noChild = Errno(rawValue: ECHILD)
    public static let noSuchProcess = Errno(rawValue: ESRCH)
    public static let isDirectory = Errno(rawValue: EISDIR)
    public static let notEmpty = Errno(rawValue: ENOTEMPTY)
    public static let notDirectory = Errno(rawValue: ENOTDIR)
    public static let addressInUse = Errno(rawValue: EADDRINUSE)
    public static let addressNotAvailable = Errno(rawValue: EADDRNOTAVAIL)
}

/// Runs a syscall-shaped body until it stops failing with `EINTR`.
///
/// `body` returns -1 with `errno` set on failure, like the C calls it wraps.
@inline(__always)
public func retryOnInterrupt<T: FixedWidthInteger>(_ body: () -> T) throws -> T {
    while true {
        let result = body()
        if result != -1 { return result }
        let error = Errno.current
        if error != .interrupted { throw error }
    }
}
