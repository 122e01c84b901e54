import CSmolVMShims
import Glibc
import SmolVMSystem

extension Agent {
    /// What init must do before anything runs: kernel file systems, a hostname,
    /// loopback and the network the host described on the command line.
    func mountKernelFileSystems() {
        // Errors here are logged, not fatal: a guest missing one mount still serves.
        mountIfNeeded("proc", "/proc", "proc", flags: UInt(MS_NOSUID | MS_NODEV | MS_NOEXEC))
        mountIfNeeded("sysfs", "/sys", "sysfs", flags: UInt(MS_NOSUID | MS_NODEV | MS_NOEXEC))
        mountIfNeeded("devtmpfs", "/dev", "devtmpfs", flags: UInt(MS_NOSUID), data: "mode=0755")
        makeDirectory("/dev/pts", mode: 0o755)
        mountIfNeeded(
            "devpts", "/dev/pts", "devpts", flags: UInt(MS_NOSUID | MS_NOEXEC), data: "mode=0620,ptmxmode=0666")
        makeDirectory("/dev/shm", mode: 0o1777)
        mountIfNeeded("tmpfs", "/dev/shm", "tmpfs", flags: UInt(MS_NOSUID | MS_NODEV), data: "mode=1777")
        makeDirectory("/tmp", mode: 0o1777)
        mountIfNeeded("tmpfs", "/tmp", "tmpfs", flags: UInt(MS_NOSUID | MS_NODEV), data: "mode=1777")
        makeDirectory("/run", mode: 0o755)
        mountIfNeeded("tmpfs", "/run", "tmpfs", flags: UInt(MS_NOSUID | MS_NODEV), data: "mode=0755")
        if access("/sys/fs/cgroup", F_OK) == 0 {
            mountIfNeeded("cgroup2", "/sys/fs/cgroup", "cgroup2", flags: UInt(MS_NOSUID | MS_NODEV | MS_NOEXEC))
        }
        symlinkIfMissing("/proc/self/fd", "/dev/fd")
        symlinkIfMissing("/proc/self/fd/0", "/dev/stdin")
        symlinkIfMissing("/proc/self/fd/1", "/dev/stdout")
        symlinkIfMissing("/proc/self/fd/2", "/dev/stderr")
        makeDirectory("/root", mode: 0o700)
    }

    func initializeGuest(_ commandLine: KernelCommandLine) {

        _ = setHostname(commandLine["hostname"] ?? "smolvm")

        let loopback = smolvm_configure_interface("lo", inet("127.0.0.1"), 8, 0)
        if loopback != 0 { Log.info("loopback: \(Errno(rawValue: loopback))") }
        if let address = commandLine["ip"] {
            configureNetwork(address: address, gateway: commandLine["gw"], dns: commandLine["dns"])
        }
    }

    func configureNetwork(address: String, gateway: String?, dns: String?) {
        let parts = address.split(separator: "/")
        let prefix = parts.count > 1 ? Int32(parts[1]) ?? 24 : 24
        let result = smolvm_configure_interface(
            "eth0", inet(String(parts[0])), prefix, gateway.map(inet) ?? 0)
        if result != 0 { Log.info("eth0: \(Errno(rawValue: result))") }
        if let dns {
            // No resolver at all: glibc then asks 127.0.0.1, which refuses at once.
            writeFile(
                "/etc/resolv.conf", dns.isEmpty ? "# no resolver: this sandbox has no way out\n" : "nameserver \(dns)\n"
            )
        }
    }

    private func inet(_ text: String) -> UInt32 {
        var address = in_addr()
        guard inet_pton(AF_INET, text, &address) == 1 else { return 0 }
        return address.s_addr
    }

    private func mountIfNeeded(_ source: String, _ target: String, _ type: String, flags: UInt, data: String? = nil) {
        makeDirectory(target, mode: 0o755)
        let result = data.map { mount(source, target, type, flags, $0) } ?? mount(source, target, type, flags, nil)
        if result != 0, errno != EBUSY {
            Log.info("mount \(type) on \(target): \(Errno.current)")
        }
    }

    func makeDirectory(_ path: String, mode: mode_t) {
        if mkdir(path, mode) == 0 { _ = chmod(path, mode) }
    }

    private func symlinkIfMissing(_ target: String, _ path: String) {
        _ = symlink(target, path)
    }

    /// sethostname(2). SmolVM's images link /etc/hostname to the kernel's
    /// hostname, which saves a file write (costly the first time under
    /// software emulation, on every restore); other images get the file written.
    func setHostname(_ hostname: String) -> Bool {
        guard hostname.withCString({ sethostname($0, strlen($0)) }) == 0 else { return false }
        var status = stat()
        if lstat("/etc/hostname", &status) != 0 || (status.st_mode & S_IFMT) != S_IFLNK {
            writeFile("/etc/hostname", hostname + "\n")
        }
        return true
    }

    func writeFile(_ path: String, _ contents: String) {
        guard let fd = try? FileDescriptor.open(path, [.writeOnly, .create, .truncate], mode: 0o644) else { return }
        defer { fd.close() }
        try? fd.writeAll(contents)
    }

    /// Stops every process, flushes file systems and restarts the machine,
    /// which the VMM turns into an exit (`reboot=t` with `-no-reboot` on QEMU,
    /// `reboot=k` on Firecracker).
    func powerOff() -> Never {
        Log.info("shutting down")
        _ = kill(-1, SIGTERM)
        var waited = 0
        while waited < 20, processes.contains(where: { _ in true }) || hasChildren() {
            while Spawn.reapAny() != nil {}
            usleep(10_000)
            waited += 1
        }
        _ = kill(-1, SIGKILL)
        while Spawn.reapAny() != nil {}
        Glibc.sync()
        _ = mount("none", "/", nil, UInt(MS_REMOUNT | MS_RDONLY), nil)
        Glibc.sync()
        _ = smolvm_reboot_restart()
        _ = smolvm_reboot_power_off()
        exit(0)
    }

    private func hasChildren() -> Bool {
        var status: Int32 = 0
        return waitpid(-1, &status, WNOHANG) == 0
    }
}
