import Glibc
import SmolVMSystem

/// Host folders shared over virtio-9p (`smolvm.mountN=MODE:PATH` on the kernel
/// command line, the 9p tag `smolvmN`).
///
/// A writable folder is the 9p mount itself. A read-only one is exported
/// read-only by QEMU and gets an overlay here, so programs in the guest can
/// still write there; their changes land in the sandbox's own disk.
extension Agent {
    static let maxMounts = 64

    func mountHostFolders(_ commandLine: KernelCommandLine) {
        for index in 0..<Self.maxMounts {
            guard let value = commandLine["mount\(index)"] else { continue }
            guard let colon = value.firstIndex(of: ":"),
                let path = Self.percentDecoded(value[value.index(after: colon)...])
            else {
                Log.info("mount\(index): cannot parse '\(value)'")
                continue
            }
            let writable = value[..<colon] == "rw"
            mountHostFolder(tag: "smolvm\(index)", index: index, at: path, writable: writable)
        }
    }

    private func mountHostFolder(tag: String, index: Int, at path: String, writable: Bool) {
        // msize: larger messages make big reads and writes take fewer round trips.
        let options = "trans=virtio,version=9p2000.L,msize=524288,cache=mmap"
        makeDirectories(path)
        if writable {
            if mount(tag, path, "9p", 0, options) != 0 {
                Log.info("mount \(tag) on \(path): \(Errno.current)")
            }
            return
        }
        let lower = "/run/smolvm/mounts/\(index)"
        let state = "/var/lib/smolvm/mounts/\(index)"
        makeDirectories(lower)
        makeDirectories(state + "/upper")
        makeDirectories(state + "/work")
        guard mount(tag, lower, "9p", UInt(MS_RDONLY), options) == 0 else {
            Log.info("mount \(tag) on \(lower): \(Errno.current)")
            return
        }
        let overlay = "lowerdir=\(lower),upperdir=\(state)/upper,workdir=\(state)/work"
        if mount("overlay", path, "overlay", 0, overlay) != 0 {
            Log.info("overlay on \(path): \(Errno.current)")
        }
    }

    /// `mkdir -p`; an existing directory is fine.
    func makeDirectories(_ path: String) {
        var current = ""
        for component in path.split(separator: "/") {
            current += "/" + component
            if mkdir(current, 0o755) != 0, errno != EEXIST {
                Log.info("mkdir \(current): \(Errno.current)")
                return
            }
        }
    }

    /// Undoes the host's percent-encoding of a path; nil for a malformed escape.
    static func percentDecoded(_ text: Substring) -> String? {
        var bytes: [UInt8] = []
        var iterator = Array(text.utf8).makeIterator()
        while let byte = iterator.next() {
            if byte == UInt8(ascii: "%") {
                guard let high = iterator.next(), let low = iterator.next(),
                    let value = UInt8(String(decoding: [high, low], as: UTF8.self), radix: 16)
                else { return nil }
                bytes.append(value)
            } else {
                bytes.append(byte)
            }
        }
        return String(decoding: bytes, as: UTF8.self)
    }
}
