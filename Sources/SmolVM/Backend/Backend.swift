import Foundation

/// Everything a backend needs to boot one machine.
struct MachineSpec: Sendable {
    var id: String
    var runtimeDirectory: URL
    var kernel: URL
    var rootImage: URL
    var memoryMiB: Int
    var cpus: Int
    var hostname: String
    var network: Bool
    var accelerator: AcceleratorChoice
    var bootTimeout: Duration
    /// Appended to the kernel command line (the benchmark's raw floor uses it).
    var extraKernelArguments: [String] = []
    /// Agent channels: one per host process that may talk to the guest at once.
    var agentChannels: Int = 1
    /// The VMM outlives this process (a named sandbox) instead of dying with it.
    var detached: Bool = false
    /// Reuse the existing writable layer (restarting a stopped sandbox).
    var reuseOverlay: Bool = false
}

/// A virtual machine monitor. Optional abilities default to throwing
/// `unsupported`, so a backend that cannot do something says so clearly
/// instead of half-working.
protocol Backend: Sendable {
    var kind: BackendKind { get }
    /// Starts the VMM and returns once the guest agent answered.
    func boot(_ spec: MachineSpec, logger: Logger) async throws -> any VirtualMachine
}

/// One running VMM process and its guest.
protocol VirtualMachine: AnyObject, Sendable {
    var backend: BackendKind { get }
    var pid: pid_t { get }
    var agent: AgentClient { get }
    /// Asks the guest to power off, then the VMM to quit, then kills it after `deadline`.
    func stop(deadline: Duration) async
    /// Kills the VMM at once and waits for it to exit.
    func kill() async
    /// Freezes the vCPUs.
    func pause() async throws
    /// Resumes the vCPUs.
    func resume() async throws
}

extension VirtualMachine {
    func pause() async throws { throw SmolVMError.unsupported("pause", backend: backend.rawValue) }
    func resume() async throws { throw SmolVMError.unsupported("resume", backend: backend.rawValue) }
}
