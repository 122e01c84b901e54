import Foundation

/// The argument vector of Firecracker's `jailer`, used when `SMOLVM_JAILER`
/// names one: it chroots Firecracker into
/// `<chroot-base>/firecracker/<id>/root`, drops to `uid`/`gid` and execs it
/// with the arguments after `--`. Paths SmolVM gives Firecracker are relative
/// (see `FirecrackerRuntimePaths`), so they resolve inside the chroot unchanged.
struct JailerCommandLine: Equatable, Sendable {
    var jailer: String
    var firecracker: String
    /// `--id`: alphanumeric and `-`, at most 64 characters.
    var id: String
    var uid: UInt32
    var gid: UInt32
    var chrootBase: String
    var apiSocket: String = "/firecracker.sock"
    /// `--daemonize` and `--new-pid-ns` are left off: SmolVM supervises the child itself.
    var cgroupVersion: Int = 2

    static func validateID(_ id: String) throws {
        let valid =
            (1...64).contains(id.count)
            && id.unicodeScalars.allSatisfy { $0.properties.isASCIIHexDigit || ("a"..."z").contains($0) || $0 == "-" }
        guard valid else {
            throw SmolVMError(
                .invalidArgument, "the jailer id '\(id)' must be 1 to 64 characters of a-z, 0-9 and '-'")
        }
    }

    /// The root of the chroot the jailer builds, where the drives must be linked.
    var chrootRoot: String {
        let name = URL(fileURLWithPath: firecracker).lastPathComponent
        return "\(chrootBase)/\(name)/\(id)/root"
    }

    var arguments: [String] {
        [
            jailer,
            "--id", id,
            "--exec-file", firecracker,
            "--uid", "\(uid)",
            "--gid", "\(gid)",
            "--chroot-base-dir", chrootBase,
            "--cgroup-version", "\(cgroupVersion)",
            "--",
            "--api-sock", apiSocket,
        ]
    }
}
