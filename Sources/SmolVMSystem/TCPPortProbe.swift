#if canImport(Glibc)
    import Glibc
#endif

/// Whether a host TCP address and port are free to listen on.
public enum TCPPortProbe {
    /// `socket(2)` + `setsockopt(SO_REUSEADDR)` + `bind(2)` + `listen(2)` on
    /// an IPv4 address, then closes the socket. `SO_REUSEADDR` matches what
    /// QEMU's user network sets on its forwarding sockets, so a port held only
    /// by connections in `TIME_WAIT` counts as free, as it will be for QEMU.
    public static func bind(address: String, port: UInt16) throws {
        var socketAddress = sockaddr_in()
        socketAddress.sin_family = sa_family_t(AF_INET)
        socketAddress.sin_port = port.bigEndian
        guard inet_pton(AF_INET, address, &socketAddress.sin_addr) == 1 else {
            throw Errno(rawValue: EINVAL)
        }
        let fd = try retryOnInterrupt { socket(AF_INET, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0) }
        defer { _ = close(fd) }
        var one: Int32 = 1
        _ = setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, socklen_t(MemoryLayout<Int32>.size))
        _ = try withUnsafePointer(to: &socketAddress) { pointer in
            try pointer.withMemoryRebound(to: sockaddr.self, capacity: 1) { address in
                try retryOnInterrupt { Glibc.bind(fd, address, socklen_t(MemoryLayout<sockaddr_in>.size)) }
            }
        }
        _ = try retryOnInterrupt { listen(fd, 1) }
    }
}
