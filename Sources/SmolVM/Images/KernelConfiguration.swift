/// The guest kernel configuration: applied on top of `make tinyconfig` for
/// Debian's `linux-source-6.1`, it gives an uncompressed ELF `vmlinux` with a
/// PVH note that QEMU (`-kernel`) and Firecracker both boot directly, with
/// virtio-mmio, virtio-serial, vsock, 9p, overlayfs and ext4 built in and no
/// modules, initramfs or ACPI.
///
/// Part of the kernel's build key: editing it rebuilds the kernel.
enum KernelConfiguration {
    static let recipeVersion = "1"
    static let sourcePackage = "linux-source-6.1"
    static let sourceTarball = "/usr/src/linux-source-6.1.tar.xz"

    /// Options the built `.config` must contain; `olddefconfig` silently drops
    /// options whose dependencies are missing, so the build checks for these.
    static let required = [
        "CONFIG_PVH=y", "CONFIG_VIRTIO_MMIO=y", "CONFIG_VIRTIO_MMIO_CMDLINE_DEVICES=y", "CONFIG_VIRTIO_BLK=y",
        "CONFIG_VIRTIO_CONSOLE=y", "CONFIG_VIRTIO_VSOCKETS=y", "CONFIG_EXT4_FS=y", "CONFIG_OVERLAY_FS=y",
        "CONFIG_9P_FS=y", "CONFIG_DEVTMPFS=y", "CONFIG_SERIAL_8250_CONSOLE=y", "CONFIG_VIRTIO_NET=y",
        "CONFIG_UNIX98_PTYS=y", "CONFIG_KEYBOARD_ATKBD=y",
    ]

    static let fragment = """
        # --- base (applied on top of `make tinyconfig`) ---
        CONFIG_64BIT=y
        CONFIG_SMP=y
        CONFIG_NR_CPUS=16
        CONFIG_LOCALVERSION="-smolvm"
        CONFIG_DEFAULT_HOSTNAME="smolvm"
        CONFIG_PRINTK=y
        CONFIG_BUG=y
        CONFIG_EARLY_PRINTK=y
        CONFIG_MULTIUSER=y
        CONFIG_SYSVIPC=y
        CONFIG_POSIX_TIMERS=y
        CONFIG_FUTEX=y
        CONFIG_EPOLL=y
        CONFIG_SIGNALFD=y
        CONFIG_TIMERFD=y
        CONFIG_EVENTFD=y
        CONFIG_SHMEM=y
        CONFIG_AIO=y
        CONFIG_IO_URING=y
        CONFIG_FILE_LOCKING=y
        CONFIG_FHANDLE=y
        CONFIG_INOTIFY_USER=y
        CONFIG_ADVISE_SYSCALLS=y
        CONFIG_MEMBARRIER=y
        CONFIG_KALLSYMS=y
        CONFIG_BINFMT_ELF=y
        CONFIG_BINFMT_SCRIPT=y
        CONFIG_MODULES=n
        CONFIG_HIGH_RES_TIMERS=y
        CONFIG_NO_HZ_IDLE=y
        CONFIG_KERNEL_LZ4=y
        CONFIG_BLK_DEV_INITRD=y
        CONFIG_RD_GZIP=y
        CONFIG_RD_LZ4=y
        # --- KVM guest / boot ---
        CONFIG_HYPERVISOR_GUEST=y
        CONFIG_PARAVIRT=y
        CONFIG_PARAVIRT_SPINLOCKS=y
        CONFIG_KVM_GUEST=y
        CONFIG_PVH=y
        CONFIG_X86_MPPARSE=y
        CONFIG_X86_X2APIC=y
        CONFIG_X86_TSC=y
        CONFIG_SERIO=y
        CONFIG_SERIO_I8042=y
        CONFIG_ACPI=n
        CONFIG_RANDOMIZE_BASE=n
        # --- console ---
        CONFIG_TTY=y
        CONFIG_VT=n
        CONFIG_UNIX98_PTYS=y
        CONFIG_SERIAL_8250=y
        CONFIG_SERIAL_8250_CONSOLE=y
        CONFIG_SERIAL_8250_NR_UARTS=1
        CONFIG_SERIAL_8250_RUNTIME_UARTS=1
        CONFIG_HVC_DRIVER=y
        # --- buses / virtio ---
        CONFIG_PCI=y
        CONFIG_PCI_MSI=y
        CONFIG_VIRTIO_MENU=y
        CONFIG_VIRTIO=y
        CONFIG_VIRTIO_PCI=y
        CONFIG_VIRTIO_MMIO=y
        CONFIG_VIRTIO_MMIO_CMDLINE_DEVICES=y
        CONFIG_BLOCK=y
        CONFIG_BLK_DEV=y
        CONFIG_VIRTIO_BLK=y
        CONFIG_NETDEVICES=y
        CONFIG_NET_CORE=y
        CONFIG_VIRTIO_NET=y
        CONFIG_VIRTIO_CONSOLE=y
        CONFIG_HW_RANDOM=y
        CONFIG_HW_RANDOM_VIRTIO=y
        # --- net ---
        CONFIG_NET=y
        CONFIG_PACKET=y
        CONFIG_UNIX=y
        CONFIG_INET=y
        CONFIG_IPV6=n
        CONFIG_VSOCKETS=y
        CONFIG_VIRTIO_VSOCKETS=y
        # --- filesystems ---
        CONFIG_DEVTMPFS=y
        CONFIG_DEVTMPFS_MOUNT=y
        CONFIG_PROC_FS=y
        CONFIG_PROC_SYSCTL=y
        CONFIG_SYSFS=y
        CONFIG_TMPFS=y
        CONFIG_TMPFS_POSIX_ACL=y
        CONFIG_EXT4_FS=y
        CONFIG_EXT4_USE_FOR_EXT2=y
        CONFIG_OVERLAY_FS=y
        CONFIG_NETWORK_FILESYSTEMS=y
        CONFIG_NET_9P=y
        CONFIG_NET_9P_VIRTIO=y
        CONFIG_9P_FS=y
        CONFIG_FUSE_FS=y
        CONFIG_VIRTIO_FS=y
        # --- cgroups / namespaces ---
        CONFIG_CGROUPS=y
        CONFIG_MEMCG=y
        CONFIG_CGROUP_PIDS=y
        CONFIG_CGROUP_SCHED=y
        CONFIG_FAIR_GROUP_SCHED=y
        CONFIG_CGROUP_FREEZER=y
        CONFIG_NAMESPACES=y
        CONFIG_UTS_NS=y
        CONFIG_IPC_NS=y
        CONFIG_PID_NS=y
        CONFIG_NET_NS=y
        CONFIG_SECCOMP=y
        CONFIG_DEBUG_INFO_NONE=y
        # --- SmolVM additions ---
        # Firecracker's SendCtrlAltDel reaches the guest through the i8042 keyboard.
        CONFIG_INPUT=y
        CONFIG_INPUT_KEYBOARD=y
        CONFIG_KEYBOARD_ATKBD=y
        # Guest pseudo-terminals for interactive shells.
        CONFIG_DEVPTS_FS=y
        CONFIG_USER_NS=y
        CONFIG_POSIX_MQUEUE=y

        """
}
