import Foundation
import SmolVMSystem

/// An exclusive `flock(2)` on a file, held for the life of this value's owner.
///
/// A sandbox's runtime directory holds one while its owner lives; the kernel
/// drops it when that process dies, however it dies, which is how a later
/// `smolvm` tells a crashed run's leftovers from a live sandbox.
final class FileLock: @unchecked Sendable {
    let path: String
    private let fd: FileDescriptor

    private init(path: String, fd: FileDescriptor) {
        self.path = path
        self.fd = fd
    }

    /// Takes the lock without waiting; nil when another process holds it.
    static func tryAcquire(_ path: String) throws -> FileLock? {
        let fd = try FileDescriptor.open(path, [.readWrite, .create], mode: 0o644)
        if flock(fd.rawValue, LOCK_EX | LOCK_NB) != 0 {
            let error = Errno.current
            fd.close()
            if error == .wouldBlock { return nil }
            throw SmolVMError(.system, "cannot lock \(path)", underlying: error)
        }
        return FileLock(path: path, fd: fd)
    }

    /// Whether some live process holds the lock on `path`.
    static func isHeld(_ path: String) -> Bool {
        guard let lock = try? tryAcquire(path) else { return FileManager.default.fileExists(atPath: path) }
        lock.release()
        return false
    }

    func release() {
        fd.close()
    }
}
