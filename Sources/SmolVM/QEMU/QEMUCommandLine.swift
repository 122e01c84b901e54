import Foundation

/// The `qemu-system` argument vector for a SmolVM sandbox.
///
/// A `microvm` machine with no firmware, no PCI and no ACPI: the ELF kernel is
/// loaded directly through its PVH note, and every device is virtio-mmio (QEMU
/// puts the `virtio_mmio.device=` parameters on the kernel command line itself
/// when ACPI is off).
struct QEMUCommandLine {
    /// The names the agent looks for under `/sys/class/virtio-ports`.
    static func agentPortName(_ channel: Int) -> String {
        channel == 0 ? "org.smolvm.agent" : "org.smolvm.agent.\(channel)"
    }

    static func mountTag(_ index: Int) -> String { "smolvm\(index)" }

    /// QEMU splits option values at commas; a literal comma is written twice.
    static func optionEscaped(_ value: String) -> String { value.replacingOccurrences(of: ",", with: ",,") }

    /// Kernel parameters end at spaces and cannot be quoted reliably, so paths
    /// travel percent-encoded; the agent decodes them.
    static func percentEncoded(_ path: String) -> String {
        var text = ""
        for byte in path.utf8 {
            switch byte {
            case UInt8(ascii: "a")...UInt8(ascii: "z"), UInt8(ascii: "A")...UInt8(ascii: "Z"),
                UInt8(ascii: "0")...UInt8(ascii: "9"), UInt8(ascii: "/"), UInt8(ascii: "_"), UInt8(ascii: "."),
                UInt8(ascii: "-"):
                text.append(Character(UnicodeScalar(byte)))
            default:
                text += String(format: "%%%02X", byte)
            }
        }
        return text
    }

    var binary: String
    var spec: MachineSpec
    var paths: QEMURuntimePaths
    /// A migration URI to load the machine's state from instead of booting it.
    var incoming: String? = nil

    var kernelArguments: String {
        var arguments = [
            "console=ttyS0", "reboot=t", "panic=-1", "root=/dev/vda", "rw", "rootfstype=ext4",
            "init=/sbin/smolvm-agent", "quiet", "8250.nr_uarts=1",
            // The static Swift runtime looks for itself through /proc, which is not mounted yet.
            "SWIFT_ROOT=/",
            "smolvm.hostname=\(spec.hostname)",
        ]
        if let restricted = spec.restrictedNetwork {
            arguments += restricted.kernelArguments
        } else if spec.network && spec.networkRestricted {
            // A card that reaches nothing but published ports: no way out, and no resolver to
            // wait for, so lookups and connections fail at once instead of timing out.
            arguments += ["smolvm.ip=10.0.2.15/24", "smolvm.dns="]
        } else if spec.network {
            // QEMU's user-mode network: the guest is 10.0.2.15, the host's NAT gateway 10.0.2.2, DNS 10.0.2.3.
            arguments += ["smolvm.ip=10.0.2.15/24", "smolvm.gw=10.0.2.2", "smolvm.dns=10.0.2.3"]
        }
        for (index, mount) in spec.mounts.enumerated() {
            arguments.append(
                "smolvm.mount\(index)=\(mount.writable ? "rw" : "ro"):\(Self.percentEncoded(mount.guestPath))")
        }
        arguments += spec.extraKernelArguments
        return arguments.joined(separator: " ")
    }

    var arguments: [String] {
        var args = [binary]
        args += ["-M", "microvm,acpi=off"]
        switch spec.accelerator.accelerator {
        case .kvm: args += ["-accel", "kvm", "-cpu", "host"]
        case .hvf: args += ["-accel", "hvf", "-cpu", "host"]
        case .tcg: args += ["-accel", "tcg,thread=multi", "-cpu", "max"]
        }
        args += [
            "-m", "\(spec.memoryMiB)", "-smp", "\(spec.cpus)",
            "-nodefaults", "-no-user-config", "-no-reboot", "-display", "none",
            "-kernel", spec.kernel.path, "-append", kernelArguments,
            // append=on: a restarted or restored sandbox keeps the console lines before it.
            "-chardev", "file,id=console,path=\(Self.optionEscaped(paths.console.path)),append=on",
            "-serial", "chardev:console",
            "-drive", "id=root,file=\(Self.optionEscaped(paths.overlay.path)),format=qcow2,if=none,discard=unmap",
            "-device", "virtio-blk-device,drive=root",
            "-device", "virtio-serial-device",
        ]
        for channel in 0..<spec.agentChannels {
            args += [
                "-chardev",
                "socket,id=agent\(channel),path=\(Self.optionEscaped(paths.agentSocket(channel).path)),server=on,wait=off",
                "-device", "virtserialport,chardev=agent\(channel),name=\(Self.agentPortName(channel))",
            ]
        }
        args += [
            "-qmp", "unix:\(Self.optionEscaped(paths.qmpSocket.path)),server=on,wait=off",
            "-pidfile", paths.pidFile.path,
            "-device", "virtio-rng-device",
        ]
        if let restricted = spec.restrictedNetwork {
            args += [
                "-netdev", "tap,id=net0,ifname=\(restricted.tap.name),script=no,downscript=no",
                "-device", "virtio-net-device,netdev=net0,mac=\(MachineSpec.formatMACAddress(spec.macAddress))",
            ]
        } else if spec.network {
            var netdev = "user,id=net0"
            // The guest reaches nothing, not even the host; forwarded ports still work.
            if spec.networkRestricted { netdev += ",restrict=on" }
            for publication in spec.publish {
                netdev += ",hostfwd=tcp:\(publication.hostAddress):\(publication.hostPort)-:\(publication.guestPort)"
            }
            args += [
                "-netdev", netdev,
                "-device", "virtio-net-device,netdev=net0,mac=\(MachineSpec.formatMACAddress(spec.macAddress))",
            ]
        }
        for (index, mount) in spec.mounts.enumerated() {
            // A read-only export is enforced by QEMU; the guest layers its own changes over it.
            args += [
                "-fsdev",
                "local,id=fs\(index),path=\(Self.optionEscaped(mount.hostPath)),security_model=none"
                    + (mount.writable ? "" : ",readonly=on"),
                "-device", "virtio-9p-device,fsdev=fs\(index),mount_tag=\(Self.mountTag(index))",
            ]
        }
        if let incoming { args += ["-incoming", incoming] }
        return args
    }
}

/// The files of one QEMU sandbox, all under its runtime directory.
struct QEMURuntimePaths: Sendable {
    let directory: URL

    var overlay: URL { directory.appendingPathComponent("overlay.qcow2") }
    var console: URL { directory.appendingPathComponent("console.log") }
    var vmmLog: URL { directory.appendingPathComponent("qemu.log") }
    var agentSocket: URL { agentSocket(0) }
    var pidFile: URL { directory.appendingPathComponent("qemu.pid") }

    func agentSocket(_ channel: Int) -> URL {
        directory.appendingPathComponent(channel == 0 ? "agent.sock" : "agent-\(channel).sock")
    }

    /// Held by the host process using that channel, so two never share one.
    func agentLock(_ channel: Int) -> URL { directory.appendingPathComponent("agent-\(channel).lock") }
    var qmpSocket: URL { directory.appendingPathComponent("qmp.sock") }
}
