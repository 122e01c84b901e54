import CSmolVMShims

#if canImport(Glibc)
    import Glibc
#endif

/// `AF_UNIX` stream sockets: QMP, the agent channel, Firecracker's API and vsock.
public enum UnixSocket {
    /// The longest path `sockaddr_un` holds, NUL excluded.
    public static let maxPathLength = 107

    /// `socket(2)` + `connect(2)` to a filesystem path.
    public static func connect(path: String) throws -> FileDescriptor {
        let fd = try makeSocket()
        do {
            try withAddress(path) { (address, length) throws in
                _ = try retryOnInterrupt { Glibc.connect(fd.rawValue, address, length) }
            }
        } catch {
            fd.close()
            throw error
        }
        return fd
    }

    /// `socket(2)` + `bind(2)` + `listen(2)` on a filesystem path (an existing
    /// socket file is replaced).
    public static func listen(path: String, backlog: Int32 = 16) throws -> FileDescriptor {
        let fd = try makeSocket()
        do {
            _ = unlink(path)
            try withAddress(path) { (address, length) throws in
                _ = try retryOnInterrupt { Glibc.bind(fd.rawValue, address, length) }
            }
            _ = try retryOnInterrupt { Glibc.listen(fd.rawValue, backlog) }
        } catch {
            fd.close()
            throw error
        }
        return fd
    }

    /// `accept4(2)` with `SOCK_CLOEXEC`.
    public static func accept(_ listener: FileDescriptor) throws -> FileDescriptor {
        FileDescriptor(rawValue: try retryOnInterrupt { smolvm_accept(listener.rawValue) })
    }

    /// `shutdown(2)` of the write side, so the peer reads end of file.
    public static func shutdownWrite(_ fd: FileDescriptor) {
        _ = Glibc.shutdown(fd.rawValue, Int32(SHUT_WR))
    }

    /// `shutdown(2)` of both directions; wakes a thread blocked reading the socket.
    public static func shutdownBoth(_ fd: FileDescriptor) {
        _ = Glibc.shutdown(fd.rawValue, Int32(SHUT_RDWR))
    }

    private static func makeSocket() throws -> FileDescriptor {
        FileDescriptor(
            rawValue: try retryOnInterrupt {
                socket(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
            })
    }

    private static func withAddress(
        _ path: String, _ body: (UnsafePointer<sockaddr>, socklen_t) throws -> Void
    ) throws {
        let bytes = Array(path.utf8)
        guard bytes.count <= maxPathLength else { throw Errno(rawValue: ENAMETOOLONG) }
        var address = sockaddr_un()
        address.sun_family = sa_family_t(AF_UNIX)
        withUnsafeMutableBytes(of: &address.sun_path) { raw in
            raw.copyBytes(from: bytes)
        }
        let length = socklen_t(MemoryLayout<sa_family_t>.size + bytes.count + 1)
        try withUnsafePointer(to: &address) { (pointer) throws in
            try pointer.withMemoryRebound(to: sockaddr.self, capacity: 1) { (sa) throws in
                try body(sa, length)
            }
        }
    }
}
