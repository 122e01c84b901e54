#if canImport(Glibc)
    import Glibc
#endif

/// `poll(2)` over a set of descriptors.
public enum Poll {
    public struct Events: OptionSet, Sendable {
        public let rawValue: Int16
        public init(rawValue: Int16) { self.rawValue = rawValue }
        public static let readable = Events(rawValue: Int16(POLLIN))
        public static let writable = Events(rawValue: Int16(POLLOUT))
        public static let error = Events(rawValue: Int16(POLLERR))
        public static let hangUp = Events(rawValue: Int16(POLLHUP))
        public static let invalid = Events(rawValue: Int16(POLLNVAL))
    }

    /// Waits up to `timeoutMilliseconds` (-1: forever); returns each entry's
    /// returned events in order. An interrupted wait returns no events.
    public static func wait(_ entries: [(FileDescriptor, Events)], timeoutMilliseconds: Int32) throws
        -> [Events]
    {
        var fds = entries.map { pollfd(fd: $0.0.rawValue, events: $0.1.rawValue, revents: 0) }
        let result = Glibc.poll(&fds, nfds_t(fds.count), timeoutMilliseconds)
        if result < 0 {
            let error = Errno.current
            if error == .interrupted { return Array(repeating: [], count: entries.count) }
            throw error
        }
        return fds.map { Events(rawValue: $0.revents) }
    }
}
