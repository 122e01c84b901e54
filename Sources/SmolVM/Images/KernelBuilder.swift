import Foundation

/// Builds the guest kernel from Debian's kernel source package.
struct KernelBuilder {
    let store: ImageStore
    let progress: SetupProgress

    /// The build key: the configuration, the source package version and the recipe.
    static func key(sourceVersion: String, architecture: String) -> (String, [String: String]) {
        let inputs = [
            "source": "\(KernelConfiguration.sourcePackage) \(sourceVersion)",
            "configSHA256": SHA256.hex(KernelConfiguration.fragment),
            "architecture": architecture,
            "recipe": KernelConfiguration.recipeVersion,
        ]
        let key = String(
            SHA256.hex(inputs.sorted { $0.key < $1.key }.map { "\($0.key)=\($0.value)" }.joined(separator: "\n"))
                .prefix(16))
        return (key, inputs)
    }

    /// Builds unless a kernel with the same key is installed and intact.
    func ensure(force: Bool) async throws -> ArtifactManifest {
        let sourceVersion = try await HostPackages.installedVersion(KernelConfiguration.sourcePackage)
        guard let sourceVersion, FileManager.default.fileExists(atPath: KernelConfiguration.sourceTarball) else {
            throw SmolVMError(
                .notFound,
                "\(KernelConfiguration.sourceTarball) is missing. Fix: sudo apt-get install -y \(KernelConfiguration.sourcePackage)"
            )
        }
        let (key, inputs) = Self.key(sourceVersion: sourceVersion, architecture: "x86_64")
        if !force, let current = try? ArtifactManifest.load(store.kernelManifestURL), current.key == key,
            let verified = try? await store.verify(current, at: store.kernelManifestURL)
        {
            progress.step("kernel", "up to date (\(key))")
            return verified.manifest
        }
        let workspace = store.paths.build.appendingPathComponent("kernel-\(key)")
        try? FileManager.default.removeItem(at: workspace)
        try FileManager.default.createDirectory(at: workspace, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: workspace) }

        progress.step("kernel", "extracting \(KernelConfiguration.sourceTarball)")
        try await Subprocess.check(["tar", "-xf", KernelConfiguration.sourceTarball, "-C", workspace.path])
        let source = workspace.appendingPathComponent("linux-source-6.1")
        progress.step("kernel", "configuring (tinyconfig + SmolVM fragment)")
        try await Subprocess.check(["make", "-C", source.path, "tinyconfig"])
        let config = source.appendingPathComponent(".config")
        let handle = try FileHandle(forWritingTo: config)
        handle.seekToEndOfFile()
        handle.write(Data(KernelConfiguration.fragment.utf8))
        try handle.close()
        try await Subprocess.check(["make", "-C", source.path, "olddefconfig"])
        let written = String(decoding: FileManager.default.contents(atPath: config.path) ?? Data(), as: UTF8.self)
        let lines = Set(written.split(separator: "\n").map(String.init))
        let missing = KernelConfiguration.required.filter { !lines.contains($0) }
        guard missing.isEmpty else {
            throw SmolVMError(
                .system, "the kernel configuration lost required options: \(missing.joined(separator: ", "))")
        }

        let jobs = max(1, ProcessInfo.processInfo.activeProcessorCount)
        progress.step("kernel", "compiling with \(jobs) jobs (about 7 minutes on 2 cores)")
        let counter = LineCounter(expected: 1700, report: { percent in progress.percent("kernel", percent) })
        try await Subprocess.check(
            ["make", "-C", source.path, "-j\(jobs)", "vmlinux"],
            onOutputLine: { line in
                if line.hasPrefix("  ") { counter.tick() }
            })
        let built = store.paths.kernels.appendingPathComponent(".vmlinux-\(key).partial")
        try FileManager.default.createDirectory(at: store.paths.kernels, withIntermediateDirectories: true)
        try? FileManager.default.removeItem(at: built)
        try FileManager.default.copyItem(at: source.appendingPathComponent("vmlinux"), to: built)
        let manifest = try await store.install(
            built: built, name: "kernel", key: key, fileName: "vmlinux-\(key)", inputs: inputs,
            manifestURL: store.kernelManifestURL)
        progress.step("kernel", "built \(manifest.file) (\(ByteCount(manifest.size)))")
        return manifest
    }
}

/// Turns a stream of build-output lines into a rough percentage.
final class LineCounter: @unchecked Sendable {
    private let lock = NSLock()
    private var count = 0
    private var lastReported = -1
    private let expected: Int
    private let report: @Sendable (Int) -> Void

    init(expected: Int, report: @escaping @Sendable (Int) -> Void) {
        self.expected = expected
        self.report = report
    }

    func tick() {
        lock.lock()
        count += 1
        let percent = min(99, count * 100 / expected)
        let shouldReport = percent >= lastReported + 5
        if shouldReport { lastReported = percent }
        lock.unlock()
        if shouldReport { report(percent) }
    }
}

/// A byte count for people: `12.3 MiB`.
public struct ByteCount: CustomStringConvertible, Sendable {
    public let value: UInt64
    public init(_ value: UInt64) { self.value = value }
    public init(_ value: Int) { self.value = UInt64(max(0, value)) }

    public var description: String {
        let units = ["B", "KiB", "MiB", "GiB", "TiB"]
        var amount = Double(value)
        var unit = 0
        while amount >= 1024, unit < units.count - 1 {
            amount /= 1024
            unit += 1
        }
        return unit == 0 ? "\(value) B" : String(format: "%.1f %@", amount, units[unit])
    }
}
