import Foundation

/// The Debian packages SmolVM needs on the host, and installing them.
public enum HostPackages {
    /// Everything `smolvm setup` needs: the VMM, image tools and the kernel build.
    public static let required = [
        "qemu-system-x86", "qemu-utils", "linux-source-6.1", "busybox-static", "debootstrap", "e2fsprogs",
        "build-essential", "bc", "flex", "bison", "libelf-dev", "libssl-dev", "xz-utils", "ca-certificates",
        "libsqlite3-dev",
        // --internet restricted: the guest's TAP device and its host-side filter.
        "iproute2", "nftables",
    ]

    /// The `apt-get` line that installs `packages`.
    public static func installCommand(_ packages: [String]) -> String {
        "sudo apt-get update && sudo apt-get install -y --no-install-recommends \(packages.joined(separator: " "))"
    }

    /// The installed version of a package, or nil.
    static func installedVersion(_ package: String) async throws -> String? {
        guard Subprocess.which("dpkg-query") != nil else { return nil }
        let result = try await Subprocess.run(["dpkg-query", "-W", "-f=${Status}\t${Version}", package])
        guard result.succeeded else { return nil }
        let parts = result.outputText.split(separator: "\t")
        guard parts.count == 2, parts[0].hasSuffix("installed"), !parts[0].contains("not-installed") else { return nil }
        return String(parts[1])
    }

    /// The packages from `required` that are not installed.
    public static func missing(_ packages: [String] = required) async throws -> [String] {
        var missing: [String] = []
        for package in packages where try await installedVersion(package) == nil {
            missing.append(package)
        }
        return missing
    }

    /// Installs packages with apt-get (root only).
    static func install(_ packages: [String], progress: SetupProgress) async throws {
        let environment = ProcessInfo.processInfo.environment.merging(["DEBIAN_FRONTEND": "noninteractive"]) { $1 }
        progress.step("packages", "apt-get update")
        try await Subprocess.check(["apt-get", "update", "-q"], environment: environment, timeout: .seconds(900))
        progress.step("packages", "apt-get install \(packages.joined(separator: " "))")
        try await Subprocess.check(
            ["apt-get", "install", "-y", "-q", "--no-install-recommends"] + packages, environment: environment,
            timeout: .seconds(1800))
    }
}

/// Where setup reports what it is doing. The CLI prints these; the library does not.
public struct SetupProgress: Sendable {
    public var onStep: @Sendable (_ stage: String, _ message: String) -> Void
    public var onPercent: @Sendable (_ stage: String, _ percent: Int) -> Void

    public init(
        onStep: @escaping @Sendable (String, String) -> Void,
        onPercent: @escaping @Sendable (String, Int) -> Void = { _, _ in }
    ) {
        self.onStep = onStep
        self.onPercent = onPercent
    }

    public static let silent = SetupProgress(onStep: { _, _ in })

    func step(_ stage: String, _ message: String) { onStep(stage, message) }
    func percent(_ stage: String, _ value: Int) { onPercent(stage, value) }
}
