import Foundation

/// What a sandbox is made of. Pass one configuration to every sandbox your
/// application creates to set application-wide choices (the backend, say) in
/// one place; `SMOLVM_BACKEND` does the same for a whole environment.
public struct SandboxConfiguration: Sendable {
    /// A root file system image built by `smolvm setup` (`debian` or `minimal`).
    public var image: String = ImageStore.defaultImage
    /// Guest memory in MiB.
    public var memoryMiB: Int = 512
    public var cpus: Int = 1
    /// nil: `SMOLVM_BACKEND`, then the platform default.
    public var backend: BackendPreference?
    /// Added to every command's environment (a command's own values win).
    public var environment: [String: String] = [:]
    /// What the guest may reach: everything through NAT (the default), nothing,
    /// or only some IPv4 ranges.
    public var internet: InternetAccess = .on
    /// Guest TCP ports reachable on host addresses; they work in every internet mode.
    public var publish: [PortPublication] = []
    /// Host folders shown to the guest. Sandboxes with mounts boot cold and use
    /// QEMU (its 9p device); they cannot be snapshotted.
    public var mounts: [HostMount] = []
    /// Start from the boot snapshot for this configuration when one exists
    /// (making it on first use), instead of booting the kernel; several times
    /// faster. False forces a full boot (`--cold`).
    public var startFromSnapshot: Bool = true
    /// How long the guest agent may take to answer after the VMM starts.
    public var bootTimeout: Duration = .seconds(60)
    public var paths: SmolVMPaths = .fromEnvironment()
    public var host: HostFacts = .current

    /// The guest kernel is built with `CONFIG_NR_CPUS=16`; more vCPUs would sit unused.
    public static let maxCPUs = 16

    public init() {}

    public init(
        image: String = ImageStore.defaultImage, memoryMiB: Int = 512, cpus: Int = 1,
        backend: BackendPreference? = nil, environment: [String: String] = [:]
    ) {
        self.image = image
        self.memoryMiB = memoryMiB
        self.cpus = cpus
        self.backend = backend
        self.environment = environment
    }

    func validate() throws {
        try ImageStore.validateName(image)
        guard (64...(1 << 20)).contains(memoryMiB) else {
            throw SmolVMError(.invalidArgument, "memory must be between 64 and 1048576 MiB, got \(memoryMiB)")
        }
        guard (1...Self.maxCPUs).contains(cpus) else {
            throw SmolVMError(
                .invalidArgument,
                "cpus must be between 1 and \(Self.maxCPUs) (the guest kernel's limit), got \(cpus)")
        }
        if let hostMiB = HostFacts.physicalMemoryMiB(), memoryMiB > hostMiB {
            throw SmolVMError(
                .invalidArgument,
                "memory \(memoryMiB) MiB is more than this host has (\(hostMiB) MiB). Fix: ask for less, such as --memory 512"
            )
        }
        for key in environment.keys where key.isEmpty || key.contains("=") || key.utf8.contains(0) {
            throw SmolVMError(.invalidArgument, "invalid environment variable name '\(key)'")
        }
        guard bootTimeout > .zero else {
            throw SmolVMError(.invalidArgument, "the boot timeout must be positive")
        }
    }
}
