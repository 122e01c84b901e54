import Foundation

/// The files of one Firecracker sandbox, all in its runtime directory.
///
/// Firecracker records the paths of drives and of the vsock socket in a
/// snapshot and reopens exactly those paths on `PUT /snapshot/load`. SmolVM
/// therefore gives Firecracker *relative* paths (`rootfs.ext4`,
/// `scratch.ext4`, `vsock.sock`) and starts it with the sandbox's runtime
/// directory as its working directory: a snapshot taken in one sandbox and
/// loaded in another resolves them against the new sandbox's directory, whose
/// `rootfs.ext4` is a symlink to the shared base image and whose
/// `scratch.ext4` is that sandbox's own copy of the saved disk. Relative paths
/// also keep the vsock path short, and work unchanged inside a jailer chroot.
struct FirecrackerRuntimePaths: Sendable {
    let directory: URL

    /// Relative to `directory`, as given to Firecracker.
    static let rootfsName = "rootfs.ext4"
    static let scratchName = "scratch.ext4"
    static let vsockName = "vsock.sock"

    var apiSocket: URL { directory.appendingPathComponent("firecracker.sock") }
    /// A symlink to the shared read-only base image.
    var rootfs: URL { directory.appendingPathComponent(Self.rootfsName) }
    /// The sandbox's sparse ext4 scratch disk: the overlay's upper layer.
    var scratch: URL { directory.appendingPathComponent(Self.scratchName) }
    var vsock: URL { directory.appendingPathComponent(Self.vsockName) }
    /// Firecracker's own log (`PUT /logger`).
    var vmmLog: URL { directory.appendingPathComponent("firecracker.log") }
    /// Firecracker's metrics (`PUT /metrics`).
    var metrics: URL { directory.appendingPathComponent("firecracker.metrics") }
    /// Firecracker's stdout and stderr: the guest serial console.
    var console: URL { directory.appendingPathComponent("console.log") }
}

/// The files `VirtualMachine.saveState(to:)` writes for Firecracker.
struct FirecrackerSnapshotFiles: Sendable {
    let directory: URL
    var memory: URL { directory.appendingPathComponent("memory") }
    var vmstate: URL { directory.appendingPathComponent("vmstate") }
    var scratch: URL { directory.appendingPathComponent("scratch.ext4") }
}
