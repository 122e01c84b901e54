import Foundation

/// Which backend a sandbox will use, where that choice came from, and why.
///
/// Applications and `smolvm doctor` show the same value. The order is: the
/// explicit choice (configuration or `--backend`), then `SMOLVM_BACKEND`, then
/// the platform default (`auto`). `auto` takes Firecracker on Linux when it is
/// usable and QEMU otherwise; an explicitly named backend never falls back.
public struct BackendResolution: Sendable, Equatable {
    public enum Source: String, Sendable, Codable {
        case argument
        case environment
        case platformDefault = "default"
    }

    public var requested: BackendPreference
    public var source: Source
    public var backend: BackendKind
    public var reason: String
    /// Set when the sandbox's features overrode the choice `auto` would have
    /// made (Firecracker), so callers can tell the user.
    public var featureOverride: String? = nil

    /// Resolves without starting anything. Throws, naming what is missing and
    /// how to fix it, when the requested backend cannot run on `host`.
    ///
    /// `qemuOnly` names a feature of this sandbox that only QEMU provides
    /// (host folders over 9p, published ports through its user network):
    /// `auto` then picks QEMU and says why, and an explicit Firecracker fails.
    public static func resolve(explicit: BackendPreference?, host: HostFacts, qemuOnly: String? = nil) throws
        -> BackendResolution
    {
        let requested: BackendPreference
        let source: Source
        if let explicit {
            requested = explicit
            source = .argument
        } else if let raw = host.environment["SMOLVM_BACKEND"], !raw.trimmingCharacters(in: .whitespaces).isEmpty {
            do {
                requested = try BackendPreference(parsing: raw)
            } catch let error as SmolVMError {
                throw SmolVMError(
                    error.code,
                    "SMOLVM_BACKEND is set to an unknown value: \(error.message). Fix: unset it or set it to one of those"
                )
            }
            source = .environment
        } else {
            requested = .auto
            source = .platformDefault
        }
        let firecracker = FirecrackerAvailability.check(host)
        let qemu = QEMUAvailability.check(host)
        switch requested {
        case .firecracker:
            if let qemuOnly {
                throw SmolVMError(
                    .unsupported,
                    "the Firecracker backend cannot provide \(qemuOnly). Fix: use --backend qemu (or auto)")
            }
            if let problem = firecracker.problem {
                throw SmolVMError(.hostUnsupported, "Firecracker cannot run on this host: \(problem)")
            }
            return BackendResolution(
                requested: requested, source: source, backend: .firecracker,
                reason: "requested explicitly (\(source.rawValue))")
        case .qemu:
            if let error = qemu.acceleratorError { throw error }
            if let problem = qemu.problem {
                throw SmolVMError(.hostUnsupported, "QEMU cannot run on this host: \(problem)")
            }
            return BackendResolution(
                requested: requested, source: source, backend: .qemu,
                reason: "requested explicitly (\(source.rawValue))")
        case .auto:
            // A bad SMOLVM_ACCEL is the user's explicit choice failing: say that, not "no backend".
            if let error = qemu.acceleratorError { throw error }
            if let qemuOnly, qemu.problem == nil {
                let reason = "this sandbox uses \(qemuOnly), which only QEMU provides"
                let firecrackerWouldRun = host.operatingSystem == "linux" && firecracker.problem == nil
                return BackendResolution(
                    requested: requested, source: source, backend: .qemu, reason: reason,
                    featureOverride: firecrackerWouldRun ? "using QEMU instead of Firecracker: \(reason)" : nil)
            }
            if host.operatingSystem == "linux", firecracker.problem == nil {
                return BackendResolution(
                    requested: requested, source: source, backend: .firecracker,
                    reason: "Firecracker is installed and KVM is usable")
            }
            if qemu.problem == nil {
                let why =
                    host.operatingSystem == "linux"
                    ? "Firecracker is not usable (\(firecracker.reason ?? "")); using QEMU with \(qemu.accelerator?.accelerator.rawValue ?? "tcg")"
                    : "QEMU is the default on \(host.operatingSystem)"
                return BackendResolution(requested: requested, source: source, backend: .qemu, reason: why)
            }
            throw SmolVMError(
                .hostUnsupported,
                "No usable backend on this host.\n  firecracker: \(firecracker.problem ?? "ok")\n  qemu: \(qemu.problem ?? "ok")"
            )
        }
    }
}

/// Whether Firecracker can run here; the first problem found, with its fix.
public struct FirecrackerAvailability: Sendable {
    public var binary: String?
    public var kvm: KVMState
    /// What is missing and how to fix it.
    public var problem: String?
    /// What is missing, without the fix (for `auto`'s explanation).
    public var reason: String?

    public static func locate(_ host: HostFacts) -> String? {
        if let explicit = host.environment["SMOLVM_FIRECRACKER"], !explicit.isEmpty {
            return host.fileExists(explicit) ? explicit : nil
        }
        let home = SmolVMPaths.fromEnvironment(host.environment).home.appendingPathComponent("bin/firecracker").path
        if host.fileExists(home) { return home }
        return host.which("firecracker")
    }

    public static func check(_ host: HostFacts) -> FirecrackerAvailability {
        let kvm = KVMState.detect(host)
        let binary = locate(host)
        var problem: String?
        if host.operatingSystem != "linux" {
            problem = "Firecracker runs only on Linux with KVM; use --backend qemu on \(host.operatingSystem)"
        } else if !kvm.isUsable {
            problem = "\(kvm.summary). Fix: \(kvm.fix ?? ""); or use --backend qemu"
            if binary == nil {
                problem! +=
                    ". Also, the firecracker binary was not found (SMOLVM_FIRECRACKER, ~/.smolvm/bin, PATH): download an official release from github.com/firecracker-microvm/firecracker/releases"
            }
        } else if binary == nil {
            problem =
                "the firecracker binary was not found (SMOLVM_FIRECRACKER, ~/.smolvm/bin, PATH). Fix: download a release from github.com/firecracker-microvm/firecracker/releases and put firecracker on PATH; or use --backend qemu"
        }
        let reason: String? =
            if problem == nil { nil } else if host.operatingSystem != "linux" {
                "it runs only on Linux"
            } else if !kvm.isUsable { kvm.summary } else { "the firecracker binary was not found" }
        return FirecrackerAvailability(binary: binary, kvm: kvm, problem: problem, reason: reason)
    }
}

/// Whether QEMU can run here; the first problem found, with its fix.
public struct QEMUAvailability: Sendable {
    public var binary: String?
    public var accelerator: AcceleratorChoice?
    public var problem: String?
    /// Set when QEMU is installed but the accelerator choice (SMOLVM_ACCEL) cannot work.
    public var acceleratorError: SmolVMError?

    public static func systemBinaryName(_ host: HostFacts) -> String {
        "qemu-system-\(host.architecture == "aarch64" ? "aarch64" : "x86_64")"
    }

    public static func check(_ host: HostFacts) -> QEMUAvailability {
        let name = systemBinaryName(host)
        let binary = host.environment["SMOLVM_QEMU"].flatMap { host.fileExists($0) ? $0 : nil } ?? host.which(name)
        guard let binary else {
            let fix =
                host.operatingSystem == "macos"
                ? "brew install qemu" : "sudo apt-get install -y qemu-system-x86 qemu-utils (or run smolvm setup)"
            return QEMUAvailability(
                binary: nil, accelerator: nil, problem: "\(name) was not found in PATH. Fix: \(fix)")
        }
        do {
            let accelerator = try AcceleratorChoice.resolve(host)
            return QEMUAvailability(binary: binary, accelerator: accelerator, problem: nil)
        } catch let error as SmolVMError {
            return QEMUAvailability(binary: binary, accelerator: nil, problem: error.message, acceleratorError: error)
        } catch {
            return QEMUAvailability(binary: binary, accelerator: nil, problem: "\(error)")
        }
    }
}
