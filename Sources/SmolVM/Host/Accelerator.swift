import Foundation

/// The hardware (or software) that runs guest instructions.
public enum Accelerator: String, Sendable, Codable, CaseIterable {
    /// Linux KVM with hardware virtualization.
    case kvm
    /// macOS Hypervisor.framework.
    case hvf
    /// QEMU's software emulation: works everywhere, much slower.
    case tcg
}

/// What `/dev/kvm` on this host can do, and why.
public enum KVMState: Sendable, Equatable {
    /// `/dev/kvm` does not exist (no KVM module, or a container without the device).
    case missing
    /// It exists but this user cannot open it.
    case notAccessible
    /// It opens, but there is no hardware virtualization behind it: `reason` says
    /// which (a PVM module, or no `vmx`/`svm` CPU flag). Guests crawl through the
    /// instruction emulator and then fail, so it is not used.
    case noHardwareVirtualization(reason: String)
    case usable

    public var isUsable: Bool { self == .usable }

    /// One sentence for humans.
    public var summary: String {
        switch self {
        case .missing: "/dev/kvm does not exist"
        case .notAccessible: "/dev/kvm exists but this user cannot open it"
        case .noHardwareVirtualization(let reason): "/dev/kvm is present but \(reason)"
        case .usable: "/dev/kvm is usable with hardware virtualization"
        }
    }

    /// What would make KVM usable, when it is not.
    public var fix: String? {
        switch self {
        case .missing:
            "load the KVM module (modprobe kvm_intel or kvm_amd) on a host with VT-x/AMD-V, or pass /dev/kvm into the container"
        case .notAccessible:
            "add this user to the kvm group (sudo usermod -aG kvm $USER, then log in again) or run as root"
        case .noHardwareVirtualization:
            "run on a host with hardware virtualization (VT-x/AMD-V, or nested virtualization enabled for this VM)"
        case .usable: nil
        }
    }

    /// Reads the state from the host.
    public static func detect(_ host: HostFacts) -> KVMState {
        guard host.fileExists("/dev/kvm") else { return .missing }
        guard host.canOpenReadWrite("/dev/kvm") else { return .notAccessible }
        if host.fileExists("/sys/module/kvm_pvm") {
            return .noHardwareVirtualization(reason: "backed by the PVM module (kvm_pvm), not VT-x/AMD-V")
        }
        if host.architecture == "x86_64", let cpuinfo = host.readText("/proc/cpuinfo") {
            let hasFlag = cpuinfo.split(separator: "\n").contains { line in
                line.hasPrefix("flags") && line.split(separator: " ").contains { $0 == "vmx" || $0 == "svm" }
            }
            if !hasFlag {
                return .noHardwareVirtualization(reason: "the CPU reports neither vmx nor svm")
            }
        }
        return .usable
    }
}

/// The accelerator QEMU should use on this host, and why.
public struct AcceleratorChoice: Sendable, Equatable {
    public var accelerator: Accelerator
    public var reason: String
    /// True when `SMOLVM_ACCEL` chose it.
    public var overridden: Bool

    /// KVM when usable (HVF on macOS), otherwise TCG; `SMOLVM_ACCEL=kvm|tcg|hvf` overrides,
    /// and an override the host cannot honour fails here rather than at boot.
    public static func resolve(_ host: HostFacts) throws -> AcceleratorChoice {
        let kvm = KVMState.detect(host)
        if let raw = host.environment["SMOLVM_ACCEL"]?.trimmingCharacters(in: .whitespaces).lowercased(), !raw.isEmpty {
            guard let accelerator = Accelerator(rawValue: raw) else {
                throw SmolVMError(
                    .invalidArgument,
                    "Unsupported accelerator '\(raw)' in SMOLVM_ACCEL. Supported values: kvm, tcg, hvf")
            }
            switch accelerator {
            case .kvm where host.operatingSystem != "linux":
                throw SmolVMError(.hostUnsupported, "SMOLVM_ACCEL=kvm needs Linux; unset SMOLVM_ACCEL or use hvf/tcg")
            case .kvm where !kvm.isUsable:
                throw SmolVMError(
                    .hostUnsupported,
                    "SMOLVM_ACCEL=kvm, but \(kvm.summary). Fix: \(kvm.fix ?? ""); or unset SMOLVM_ACCEL to use software emulation (tcg)"
                )
            case .hvf where host.operatingSystem != "macos":
                throw SmolVMError(.hostUnsupported, "SMOLVM_ACCEL=hvf needs macOS; use kvm or tcg on this host")
            default:
                break
            }
            return AcceleratorChoice(accelerator: accelerator, reason: "SMOLVM_ACCEL=\(raw)", overridden: true)
        }
        if host.operatingSystem == "macos" {
            return AcceleratorChoice(accelerator: .hvf, reason: "macOS Hypervisor.framework", overridden: false)
        }
        if kvm.isUsable {
            return AcceleratorChoice(accelerator: .kvm, reason: kvm.summary, overridden: false)
        }
        return AcceleratorChoice(
            accelerator: .tcg, reason: "software emulation because \(kvm.summary)", overridden: false)
    }
}
