import Glibc
import SmolVMSystem

extension Agent {
    /// Where the new root is assembled: a tmpfs over `/mnt`, which every image
    /// has, because the read-only root allows no new directory.
    static let overlayStaging = "/mnt"

    /// Makes the root writable without writing the shared base image.
    ///
    /// Firecracker has no copy-on-write disk format: the base image is attached
    /// read-only (`/dev/vda`, mounted `ro` as `/`) and a per-sandbox scratch disk
    /// is named by `smolvm.overlay=/dev/vdb`. The scratch disk holds the upper
    /// and work directories of an overlayfs whose lower layer is the read-only
    /// root; the kernel file systems mounted so far are moved into it, then it
    /// becomes `/` (`MS_MOVE` onto `/` + `chroot`, as `switch_root` does).
    /// On any failure the agent keeps serving from the read-only root, and says why.
    func enterOverlayRoot(scratchDevice device: String) {
        let staging = Agent.overlayStaging
        let scratch = staging + "/scratch"
        let root = staging + "/root"
        guard mount("tmpfs", staging, "tmpfs", UInt(MS_NOSUID | MS_NODEV), "mode=0755") == 0 else {
            Log.info("overlay: mount tmpfs on \(staging): \(Errno.current); the root stays read-only")
            return
        }
        makeDirectory(scratch, mode: 0o755)
        makeDirectory(root, mode: 0o755)
        guard mount(device, scratch, "ext4", 0, nil) == 0 else {
            Log.info("overlay: mount \(device): \(Errno.current); the root stays read-only")
            return
        }
        // The upper and work directories survive a restart of the sandbox: they are its disk.
        makeDirectory(scratch + "/upper", mode: 0o755)
        makeDirectory(scratch + "/work", mode: 0o755)
        let options = "lowerdir=/,upperdir=\(scratch)/upper,workdir=\(scratch)/work"
        guard mount("overlay", root, "overlay", 0, options) == 0 else {
            Log.info("overlay: mount overlay (\(options)): \(Errno.current); the root stays read-only")
            return
        }
        // Moving a mount carries its submounts (/dev/pts, /dev/shm, cgroup2) along.
        for mountPoint in ["/dev", "/proc", "/sys", "/tmp", "/run"] {
            makeDirectory(root + mountPoint, mode: 0o755)
            if mount(mountPoint, root + mountPoint, nil, UInt(MS_MOVE), nil) != 0 {
                Log.info("overlay: move \(mountPoint): \(Errno.current)")
            }
        }
        guard chdir(root) == 0, mount(".", "/", nil, UInt(MS_MOVE), nil) == 0, chroot(".") == 0, chdir("/") == 0
        else {
            Log.info("overlay: switching root: \(Errno.current)")
            return
        }
        Log.info("root is an overlay on \(device)")
    }
}
