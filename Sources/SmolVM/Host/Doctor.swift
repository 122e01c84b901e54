import Foundation

/// `smolvm doctor`: what this host has, what each backend lacks, and which
/// backend `auto` picks and why. Every probe has a short deadline, so a broken
/// binary cannot make it hang.
public enum Doctor {
    public enum Status: String, Codable, Sendable, Comparable {
        case ok, warn, fail

        public static func < (a: Status, b: Status) -> Bool {
            let order: [Status] = [.ok, .warn, .fail]
            return order.firstIndex(of: a)! < order.firstIndex(of: b)!
        }
    }

    public struct Check: Codable, Sendable, Equatable {
        public var name: String
        public var status: Status
        public var detail: String
        public var fix: String?

        // `fix` is always present (null when none), so the JSON shape never varies.
        public func encode(to encoder: any Encoder) throws {
            var container = encoder.container(keyedBy: CodingKeys.self)
            try container.encode(name, forKey: .name)
            try container.encode(status, forKey: .status)
            try container.encode(detail, forKey: .detail)
            try container.encode(fix, forKey: .fix)
        }
    }

    public struct Summary: Codable, Sendable, Equatable {
        public var ok: Int
        public var warn: Int
        public var fail: Int
    }

    public struct Report: Codable, Sendable {
        public var requested: String
        public var source: String
        public var resolved: String?
        public var reason: String
        public var accelerator: String?
        public var checks: [Check]
        public var summary: Summary

        public func encode(to encoder: any Encoder) throws {
            var container = encoder.container(keyedBy: CodingKeys.self)
            try container.encode(requested, forKey: .requested)
            try container.encode(source, forKey: .source)
            try container.encode(resolved, forKey: .resolved)
            try container.encode(reason, forKey: .reason)
            try container.encode(accelerator, forKey: .accelerator)
            try container.encode(checks, forKey: .checks)
            try container.encode(summary, forKey: .summary)
        }

        /// 0 when nothing failed; 1 on a failure, or with `strict` on a warning too.
        public func exitStatus(strict: Bool) -> Int32 {
            if summary.fail > 0 { return 1 }
            if strict, summary.warn > 0 { return 1 }
            return 0
        }
    }

    /// The oldest releases SmolVM is tested against.
    public static let minimumQEMU = Version(6, 2, 0)
    public static let minimumFirecracker = Version(1, 4, 0)
    static let probeTimeout: Duration = .seconds(3)

    /// Runs every check. Throws only for an unknown backend name (argument or
    /// `SMOLVM_BACKEND`), which is a usage error, reported before any probe runs.
    public static func run(explicit: BackendPreference?, host: HostFacts, paths: SmolVMPaths) async throws -> Report {
        // A bad SMOLVM_BACKEND fails here, at once, with the list of accepted values.
        if explicit == nil, let raw = host.environment["SMOLVM_BACKEND"],
            !raw.trimmingCharacters(in: .whitespaces).isEmpty
        {
            _ = try BackendPreference(parsing: raw)
        }
        var checks: [Check] = []
        let supportedArchitecture = host.architecture == "x86_64" || host.architecture == "aarch64"
        checks.append(
            Check(
                name: "platform", status: supportedArchitecture && host.operatingSystem != "unknown" ? .ok : .fail,
                detail: "\(host.operatingSystem) \(host.architecture)",
                fix: supportedArchitecture ? nil : "SmolVM runs on x86_64 and aarch64 hosts"))

        // KVM and the accelerator QEMU would use.
        let kvm = KVMState.detect(host)
        checks.append(
            Check(name: "kvm", status: kvm.isUsable ? .ok : .warn, detail: kvm.summary, fix: kvm.fix))
        var acceleratorName: String?
        do {
            let choice = try AcceleratorChoice.resolve(host)
            acceleratorName = choice.accelerator.rawValue
            let slow = choice.accelerator == .tcg
            checks.append(
                Check(
                    name: "accelerator", status: slow && !choice.overridden ? .warn : .ok,
                    detail: "\(choice.accelerator.rawValue): \(choice.reason)",
                    fix: slow && !choice.overridden
                        ? "guests run under software emulation, several times slower than with KVM; \(kvm.fix ?? "")"
                        : nil))
        } catch {
            checks.append(
                Check(
                    name: "accelerator", status: .fail, detail: "\(error)",
                    fix: "unset SMOLVM_ACCEL or set it to kvm, tcg or hvf"))
        }

        // Each backend's binaries and versions.
        let qemuName = QEMUAvailability.systemBinaryName(host)
        let qemuBinary =
            host.environment["SMOLVM_QEMU"].flatMap { host.fileExists($0) ? $0 : nil } ?? host.which(qemuName)
        checks.append(
            await versionCheck(
                name: "qemu", binary: qemuBinary, displayName: qemuName, minimum: minimumQEMU, host: host,
                missingFix: host.operatingSystem == "macos"
                    ? "brew install qemu" : "sudo apt-get install -y qemu-system-x86 (or run smolvm setup)",
                missingStatus: .fail))
        checks.append(
            await versionCheck(
                name: "qemu-img", binary: host.which("qemu-img"), displayName: "qemu-img", minimum: minimumQEMU,
                host: host,
                missingFix: "sudo apt-get install -y qemu-utils", missingStatus: .fail))
        let firecrackerBinary = FirecrackerAvailability.locate(host)
        let firecrackerRequested =
            (explicit ?? (try? host.environment["SMOLVM_BACKEND"].map(BackendPreference.init(parsing:))) ?? nil)
            == .firecracker
        checks.append(
            await versionCheck(
                name: "firecracker", binary: firecrackerBinary, displayName: "firecracker", minimum: minimumFirecracker,
                host: host,
                missingFix:
                    "download a release from github.com/firecracker-microvm/firecracker/releases and put firecracker on PATH (or set SMOLVM_FIRECRACKER)",
                missingStatus: firecrackerRequested ? .fail : .warn))

        // Kernel and images.
        let store = ImageStore(paths: paths)
        checks.append(
            await artifactCheck(
                name: "kernel", manifestURL: store.kernelManifestURL, store: store, missingStatus: .fail))
        for image in ImageStore.buildableImages {
            checks.append(
                await artifactCheck(
                    name: "image \(image)", manifestURL: store.imageManifestURL(image), store: store,
                    missingStatus: image == ImageStore.defaultImage ? .fail : .warn, setupImage: image))
        }

        // SMOLVM_HOME.
        let home = paths.home.path
        if !host.isWritableDirectory(home) {
            checks.append(
                Check(
                    name: "home", status: .fail, detail: "\(home) is not writable",
                    fix: "set SMOLVM_HOME to a writable directory or fix its permissions"))
        } else if let free = host.freeBytes(home) {
            let low = free < 2 << 30
            checks.append(
                Check(
                    name: "home", status: low ? .warn : .ok, detail: "\(home) writable, \(ByteCount(free)) free",
                    fix: low ? "free disk space: each sandbox writes its own overlay, and setup needs about 3 GiB" : nil
                ))
        } else {
            checks.append(Check(name: "home", status: .ok, detail: "\(home) writable", fix: nil))
        }
        let stale = RuntimeJanitor(paths: paths, logger: .disabled).staleDirectories()
        checks.append(
            Check(
                name: "stale runtime files", status: stale.isEmpty ? .ok : .warn,
                detail: stale.isEmpty
                    ? "none"
                    : "\(stale.count) left by crashed sandboxes: \(stale.map(\.lastPathComponent).joined(separator: ", "))",
                fix: stale.isEmpty
                    ? nil
                    : "they are removed by the next sandbox start, or now with: rm -rf \(stale.map(\.path).joined(separator: " "))"
            ))

        // Finally, what `auto` (or the request) resolves to.
        var resolution: BackendResolution?
        var reason: String
        do {
            let resolved = try BackendResolution.resolve(explicit: explicit, host: host)
            resolution = resolved
            reason = resolved.reason
            checks.append(
                Check(
                    name: "backend", status: .ok,
                    detail:
                        "\(resolved.backend) (\(resolved.requested) from \(resolved.source.rawValue)): \(resolved.reason)",
                    fix: nil))
        } catch let error as SmolVMError {
            reason = error.message
            checks.append(
                Check(
                    name: "backend", status: .fail, detail: error.message,
                    fix: "use --backend qemu, or fix what the message names"))
        }
        let requested: BackendPreference =
            explicit ?? ((try? host.environment["SMOLVM_BACKEND"].map(BackendPreference.init(parsing:))) ?? nil)
            ?? .auto
        let source: BackendResolution.Source =
            explicit != nil
            ? .argument
            : (host.environment["SMOLVM_BACKEND"].map { !$0.trimmingCharacters(in: .whitespaces).isEmpty } == true
                ? .environment : .platformDefault)
        let summary = Summary(
            ok: checks.filter { $0.status == .ok }.count, warn: checks.filter { $0.status == .warn }.count,
            fail: checks.filter { $0.status == .fail }.count)
        return Report(
            requested: requested.rawValue, source: source.rawValue, resolved: resolution?.backend.rawValue,
            reason: reason,
            accelerator: resolution?.backend == .qemu ? acceleratorName : (resolution == nil ? nil : "kvm"),
            checks: checks,
            summary: summary)
    }

    static func versionCheck(
        name: String, binary: String?, displayName: String, minimum: Version, host: HostFacts, missingFix: String,
        missingStatus: Status
    ) async -> Check {
        guard let binary else {
            return Check(name: name, status: missingStatus, detail: "\(displayName) not found", fix: missingFix)
        }
        guard let result = await host.probe([binary, "--version"], probeTimeout) else {
            return Check(
                name: name, status: .fail, detail: "\(binary) did not answer --version within \(probeTimeout)",
                fix: "reinstall \(displayName); the binary at \(binary) hangs or cannot run")
        }
        guard result.status == 0, let version = Version.first(in: result.output) else {
            let firstLine = result.output.split(separator: "\n").first.map(String.init) ?? ""
            return Check(
                name: name, status: .fail, detail: "\(binary) --version failed (status \(result.status)): \(firstLine)",
                fix: "reinstall \(displayName)")
        }
        if version < minimum {
            return Check(
                name: name, status: .fail,
                detail: "\(binary) is version \(version), older than the \(minimum) SmolVM needs",
                fix: "install \(displayName) \(minimum) or newer")
        }
        return Check(name: name, status: .ok, detail: "\(binary) \(version)", fix: nil)
    }

    static func artifactCheck(
        name: String, manifestURL: URL, store: ImageStore, missingStatus: Status, setupImage: String? = nil
    ) async -> Check {
        let setup = setupImage.map { "smolvm setup --image \($0)" } ?? "smolvm setup"
        do {
            guard let manifest = try ArtifactManifest.load(manifestURL) else {
                return Check(name: name, status: missingStatus, detail: "not built", fix: "run `\(setup)`")
            }
            let verified = try await store.verify(manifest, at: manifestURL)
            return Check(
                name: name, status: .ok,
                detail:
                    "\(verified.url.path) (\(ByteCount(manifest.size)), sha256 \(manifest.sha256.prefix(12))… verified)",
                fix: nil)
        } catch let error as SmolVMError {
            return Check(name: name, status: .fail, detail: error.message, fix: "run `\(setup) --force`")
        } catch {
            return Check(name: name, status: .fail, detail: "\(error)", fix: "run `\(setup) --force`")
        }
    }
}

/// A dotted version number (`7.2.22`).
public struct Version: Comparable, Sendable, CustomStringConvertible, Codable {
    public var parts: [Int]

    public init(_ major: Int, _ minor: Int, _ patch: Int) { parts = [major, minor, patch] }
    init(parts: [Int]) { self.parts = parts }

    public var description: String { parts.map(String.init).joined(separator: ".") }

    /// The first `N.N[.N]` in a tool's `--version` output ("QEMU emulator version 7.2.22 (Debian …)", "Firecracker v1.7.0").
    public static func first(in text: String) -> Version? {
        let characters = Array(text)
        var index = 0
        while index < characters.count {
            if characters[index].isNumber,
                index == 0 || !(characters[index - 1].isNumber || characters[index - 1] == ".")
            {
                var end = index
                while end < characters.count, characters[end].isNumber || characters[end] == "." { end += 1 }
                let numbers = String(characters[index..<end]).split(separator: ".").compactMap { Int($0) }
                if numbers.count >= 2 { return Version(parts: Array(numbers.prefix(3))) }
                index = end
            } else {
                index += 1
            }
        }
        return nil
    }

    public static func < (a: Version, b: Version) -> Bool {
        for index in 0..<max(a.parts.count, b.parts.count) {
            let left = index < a.parts.count ? a.parts[index] : 0
            let right = index < b.parts.count ? b.parts[index] : 0
            if left != right { return left < right }
        }
        return false
    }
}
