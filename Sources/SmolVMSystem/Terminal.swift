import CSmolVMShims

#if canImport(Glibc)
    import Glibc
#endif

/// The host terminal: its size (`TIOCGWINSZ`) and raw mode (`cfmakeraw`).
public final class Terminal: @unchecked Sendable {
    public let fd: FileDescriptor
    private var saved: UnsafeMutableRawPointer?

    public init(_ fd: FileDescriptor) { self.fd = fd }

    deinit { restore() }

    public var isTerminal: Bool { isatty(fd.rawValue) == 1 }

    /// Rows and columns, or nil when `fd` is not a terminal.
    public var size: (rows: Int, columns: Int)? {
        var rows: UInt16 = 0
        var columns: UInt16 = 0
        guard smolvm_get_window_size(fd.rawValue, &rows, &columns) == 0, rows > 0, columns > 0 else { return nil }
        return (Int(rows), Int(columns))
    }

    /// Raw mode: keys reach the guest as typed (Ctrl-C included); undone by `restore()`.
    public func makeRaw() throws {
        guard saved == nil else { return }
        let buffer = UnsafeMutableRawPointer.allocate(byteCount: Int(smolvm_termios_size()), alignment: 16)
        let result = smolvm_make_raw(fd.rawValue, buffer)
        guard result == 0 else {
            buffer.deallocate()
            throw Errno(rawValue: result)
        }
        saved = buffer
    }

    public func restore() {
        guard let saved else { return }
        _ = smolvm_restore_terminal(fd.rawValue, saved)
        saved.deallocate()
        self.saved = nil
    }
}
