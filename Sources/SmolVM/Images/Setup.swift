import Foundation

/// `smolvm setup`: host packages, the guest kernel and the root file system images.
public struct Setup: Sendable {
    public struct Options: Sendable {
        public var images: [String] = ImageStore.buildableImages
        public var installPackages = true
        /// Rebuild what is up to date. The kernel is forced too only when every image is being built.
        public var force = false
        public init() {}
    }

    public let paths: SmolVMPaths
    public let progress: SetupProgress

    public init(paths: SmolVMPaths = .fromEnvironment(), progress: SetupProgress) {
        self.paths = paths
        self.progress = progress
    }

    public func run(_ options: Options) async throws {
        for image in options.images { try ImageStore.validateName(image) }
        let unknown = options.images.filter { !ImageStore.buildableImages.contains($0) }
        guard unknown.isEmpty else {
            throw SmolVMError(
                .invalidArgument,
                "setup cannot build \(unknown.map { "'\($0)'" }.joined(separator: ", ")). Buildable images: \(ImageStore.buildableImages.joined(separator: ", "))"
            )
        }
        if options.installPackages {
            let missing = try await HostPackages.missing()
            if !missing.isEmpty {
                guard getuid() == 0 else {
                    throw SmolVMError(
                        .notFound,
                        "missing host packages: \(missing.joined(separator: " ")). Install them with:\n  \(HostPackages.installCommand(missing))\nthen run smolvm setup again"
                    )
                }
                try await HostPackages.install(missing, progress: progress)
            } else {
                progress.step("packages", "all present")
            }
        }
        // Two setups at once would build into the same temporary names; the second waits.
        try paths.prepareHome()
        let lockPath = paths.home.appendingPathComponent("setup.lock").path
        var lock = try FileLock.tryAcquire(lockPath)
        if lock == nil { progress.step("setup", "waiting for another smolvm setup to finish") }
        while lock == nil {
            try await Task.sleep(for: .milliseconds(500))
            lock = try FileLock.tryAcquire(lockPath)
        }
        defer { lock?.release() }
        let agent = try AgentBinary.locate()
        progress.step("agent", agent.path)
        try paths.prepareHome()
        let store = ImageStore(paths: paths)
        let allImages = Set(options.images) == Set(ImageStore.buildableImages)
        _ = try await KernelBuilder(store: store, progress: progress).ensure(force: options.force && allImages)
        let builder = RootfsBuilder(store: store, agent: agent, progress: progress)
        for image in options.images {
            _ = try await builder.ensure(image, force: options.force)
        }
    }
}

/// The guest agent executable that goes into every image.
public enum AgentBinary {
    /// `SMOLVM_AGENT`, else `smolvm-agent` beside the running executable.
    public static func locate(environment: [String: String] = ProcessInfo.processInfo.environment) throws -> URL {
        var candidates: [URL] = []
        if let explicit = environment["SMOLVM_AGENT"], !explicit.isEmpty {
            candidates.append(URL(fileURLWithPath: explicit))
        } else {
            let executable = URL(fileURLWithPath: CommandLine.arguments[0]).resolvingSymlinksInPath()
            let own = URL(
                fileURLWithPath: (try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/exe"))
                    ?? executable.path)
            candidates.append(own.deletingLastPathComponent().appendingPathComponent("smolvm-agent"))
            candidates.append(executable.deletingLastPathComponent().appendingPathComponent("smolvm-agent"))
        }
        guard let found = candidates.first(where: { FileManager.default.isExecutableFile(atPath: $0.path) }) else {
            throw SmolVMError(
                .notFound,
                "the guest agent was not found at \(candidates.map(\.path).joined(separator: " or ")). Fix: build it with `swift build -c release` (it is linked statically), or set SMOLVM_AGENT to its path"
            )
        }
        guard try isStaticExecutable(found) else {
            throw SmolVMError(
                .invalidArgument,
                "\(found.path) is dynamically linked; the guest has no Swift runtime, so the agent must be a static executable. Fix: build it with `swift build -c release`"
            )
        }
        return found
    }

    /// An ELF file without a `PT_INTERP` program header needs no dynamic loader.
    static func isStaticExecutable(_ url: URL) throws -> Bool {
        guard let handle = try? FileHandle(forReadingFrom: url) else { return false }
        defer { try? handle.close() }
        let header = [UInt8](handle.readData(ofLength: 64))
        guard header.count == 64, header[0..<4] == [0x7f, 0x45, 0x4c, 0x46], header[4] == 2 else { return false }
        func u16(_ bytes: [UInt8], _ at: Int) -> Int { Int(bytes[at]) | Int(bytes[at + 1]) << 8 }
        func u64(_ bytes: [UInt8], _ at: Int) -> UInt64 {
            (0..<8).reduce(0) { $0 | UInt64(bytes[at + $1]) << (8 * $1) }
        }
        let phoff = u64(header, 32)
        let phentsize = u16(header, 54)
        let phnum = u16(header, 56)
        try handle.seek(toOffset: phoff)
        let table = [UInt8](handle.readData(ofLength: phentsize * phnum))
        guard table.count == phentsize * phnum else { return false }
        for index in 0..<phnum
        where table[index * phentsize] == 3 && table[index * phentsize + 1...index * phentsize + 3] == [0, 0, 0] {
            return false
        }
        return true
    }
}
