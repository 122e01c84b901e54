import CSmolVMShims

#if canImport(Glibc)
    import Glibc
#elseif canImport(Musl)
    import Musl
#endif

/// An open file descriptor. A thin wrapper: it does not close itself.
public struct FileDescriptor: Sendable, Hashable, CustomStringConvertible {
    public let rawValue: Int32

    public init(rawValue: Int32) { self.rawValue = rawValue }

    public static let standardInput = FileDescriptor(rawValue: 0)
    public static let standardOutput = FileDescriptor(rawValue: 1)
    public static let standardError = FileDescriptor(rawValue: 2)

    public var description: String { "fd \(rawValue)" }

    public struct OpenFlags: OptionSet, Sendable {
        public let rawValue: Int32
        public init(rawValue: Int32) { self.rawValue = rawValue }
        public static let readOnly = OpenFlags([])
        public static let writeOnly = OpenFlags(rawValue: O_WRONLY)
        public static let readWrite = OpenFlags(rawValue: O_RDWR)
        public static let create = OpenFlags(rawValue: O_CREAT)
        public static let truncate = OpenFlags(rawValue: O_TRUNC)
        public static let exclusive = OpenFlags(rawValue: O_EXCL)
        public static let append = OpenFlags(rawValue: O_APPEND)
        public static let nonBlocking = OpenFlags(rawValue: O_NONBLOCK)
        public static let directory = OpenFlags(rawValue: O_DIRECTORY)
        public static let noFollow = OpenFlags(rawValue: O_NOFOLLOW)
        public static let noControllingTerminal = OpenFlags(rawValue: O_NOCTTY)
    }

    /// `open(2)`, always with `O_CLOEXEC` so descriptors never leak into children.
    public static func open(_ path: String, _ flags: OpenFlags, mode: mode_t = 0o644) throws
        -> FileDescriptor
    {
        let fd = try retryOnInterrupt { Glibc.open(path, flags.rawValue | O_CLOEXEC, mode) }
        return FileDescriptor(rawValue: fd)
    }

    /// `open(2)` on a raw byte path (guest paths need not be UTF-8).
    public static func open(bytes path: [UInt8], _ flags: OpenFlags, mode: mode_t = 0o644) throws
        -> FileDescriptor
    {
        let fd = try retryOnInterrupt {
            (path + [0]).withUnsafeBufferPointer { buffer in
                buffer.withMemoryRebound(to: CChar.self) {
                    Glibc.open($0.baseAddress!, flags.rawValue | O_CLOEXEC, mode)
                }
            }
        }
        return FileDescriptor(rawValue: fd)
    }

    /// `close(2)`. Not retried on `EINTR`: on Linux the descriptor is gone either way.
    public func close() {
        _ = Glibc.close(rawValue)
    }

    /// `read(2)` into `buffer`; 0 means end of file.
    public func read(into buffer: UnsafeMutableRawBufferPointer) throws -> Int {
        try retryOnInterrupt { Glibc.read(rawValue, buffer.baseAddress, buffer.count) }
    }

    /// Reads up to `count` bytes; an empty result means end of file.
    public func read(upTo count: Int) throws -> [UInt8] {
        var result = [UInt8](repeating: 0, count: count)
        let n = try result.withUnsafeMutableBytes { (buffer) throws -> Int in try read(into: buffer) }
        result.removeSubrange(n...)
        return result
    }

    /// `write(2)` once; returns how much was written.
    public func write(_ buffer: UnsafeRawBufferPointer) throws -> Int {
        try retryOnInterrupt { Glibc.write(rawValue, buffer.baseAddress, buffer.count) }
    }

    /// Writes every byte, looping over short writes.
    public func writeAll(_ buffer: UnsafeRawBufferPointer) throws {
        var offset = 0
        while offset < buffer.count {
            offset += try write(UnsafeRawBufferPointer(rebasing: buffer[offset...]))
        }
    }

    public func writeAll(_ bytes: [UInt8]) throws {
        try bytes.withUnsafeBytes { (buffer) throws in try writeAll(buffer) }
    }

    public func writeAll(_ string: String) throws {
        try writeAll(Array(string.utf8))
    }

    /// Reads until end of file.
    public func readAll(limit: Int = .max) throws -> [UInt8] {
        var result = [UInt8]()
        var chunk = [UInt8](repeating: 0, count: 65536)
        while true {
            let n = try chunk.withUnsafeMutableBytes { (buffer) throws -> Int in try read(into: buffer) }
            if n == 0 { return result }
            result.append(contentsOf: chunk[0..<n])
            if result.count > limit { return result }
        }
    }

    public func setNonBlocking(_ enabled: Bool = true) throws {
        let flags = try retryOnInterrupt { fcntl(rawValue, F_GETFL) }
        let updated = enabled ? flags | O_NONBLOCK : flags & ~O_NONBLOCK
        _ = try retryOnInterrupt { fcntl(rawValue, F_SETFL, updated) }
    }

    /// `fsync(2)`.
    public func sync() throws {
        _ = try retryOnInterrupt { fsync(rawValue) }
    }

    /// `fstat(2)`.
    public func status() throws -> stat {
        var info = stat()
        _ = try retryOnInterrupt { fstat(rawValue, &info) }
        return info
    }

    /// `pipe2(2)` with `O_CLOEXEC`.
    public static func pipe() throws -> (read: FileDescriptor, write: FileDescriptor) {
        var fds: [Int32] = [-1, -1]
        _ = try retryOnInterrupt { smolvm_pipe(&fds) }
        return (FileDescriptor(rawValue: fds[0]), FileDescriptor(rawValue: fds[1]))
    }
}
