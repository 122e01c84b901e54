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
    /// Whether the guest has a network card at all.
    var network: Bool
    /// The card reaches nothing but published ports (QEMU's `restrict=on`).
    var networkRestricted: Bool = false
    var publish: [PortPublication] = []
    /// `--internet restricted`: the card is this TAP device, filtered on the host.
    var restrictedNetwork: RestrictedNetwork? = nil
    /// Validated host folders, in guest mount order.
    var mounts: [HostMount] = []
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
    /// The network card's address: random and locally administered, so no two sandboxes share one.
    var macAddress: [UInt8] = MachineSpec.randomMACAddress()

    static func randomMACAddress() -> [UInt8] {
        var bytes = (0..<6).map { _ in UInt8.random(in: 0...255) }
        bytes[0] = (bytes[0] & 0xfc) | 0x02
        return bytes
    }

    static func formatMACAddress(_ bytes: [UInt8]) -> String {
        bytes.map { String(format: "%02x", $0) }.joined(separator: ":")
    }
}

/// A virtual machine monitor. Optional abilities default to throwing
/// `unsupported`, so a backend that cannot do something says so clearly
/// instead of half-working.
protocol Backend: Sendable {
    var kind: BackendKind { get }
    /// The VMM executable.
    var binary: String { get }
    /// Whether `restore` and `VirtualMachine.saveState` work.
    var supportsSnapshots: Bool { get }
    /// Starts the VMM and returns once the guest agent answered.
    func boot(_ spec: MachineSpec, logger: Logger) async throws -> any VirtualMachine
    /// A handle on a VMM that another process started (a named sandbox),
    /// found by its pid and runtime directory. Nothing is connected yet.
    func attach(pid: pid_t, startTime: UInt64, runtimeDirectory: URL, logger: Logger) -> any VirtualMachine
    /// Whether the sandbox in `runtimeDirectory` still has its writable disk layer.
    func hasWritableLayer(in runtimeDirectory: URL) -> Bool
    /// Starts a new VMM from state written by `VirtualMachine.saveState(to:)`.
    /// The new machine gets a writable layer of its own over the saved disk
    /// layer; it returns running, with the agent answering.
    func restore(_ spec: MachineSpec, from snapshot: URL, logger: Logger) async throws -> any VirtualMachine
}

extension Backend {
    var supportsSnapshots: Bool { false }

    func restore(_ spec: MachineSpec, from snapshot: URL, logger: Logger) async throws -> any VirtualMachine {
        throw SmolVMError.unsupported("snapshot restore", backend: kind.rawValue)
    }
}

/// One running VMM process and its guest.
protocol VirtualMachine: AnyObject, Sendable {
    var backend: BackendKind { get }
    var pid: pid_t { get }
    var agent: AgentClient { get }
    /// Connects to the guest agent, taking one of `channels` agent channels,
    /// and returns once it answered.
    func connect(timeout: Duration, channels: Int) async throws
    /// Asks the guest to power off, then the VMM to quit, then kills it after `deadline`.
    func stop(deadline: Duration) async
    /// Kills the VMM at once and waits for it to exit.
    func kill() async
    /// Lets go of the agent channel without touching the VM (another process may use it next).
    func detach()
    /// Freezes the vCPUs.
    func pause() async throws
    /// Resumes the vCPUs.
    func resume() async throws
    /// Writes the paused machine's device and memory state and its writable
    /// disk layer into `directory`, as they are at this instant.
    func saveState(to directory: URL) async throws
}

extension VirtualMachine {
    func pause() async throws { throw SmolVMError.unsupported("pause", backend: backend.rawValue) }
    func resume() async throws { throw SmolVMError.unsupported("resume", backend: backend.rawValue) }
    func saveState(to directory: URL) async throws {
        throw SmolVMError.unsupported("snapshots", backend: backend.rawValue)
    }
}

/// The backend implementation for a resolved backend kind.
enum Backends {
    /// Finds the VMM binary on `host` and returns the backend that drives it.
    /// Fails, naming the fix, when the binary is missing.
    static func make(_ kind: BackendKind, host: HostFacts) throws -> any Backend {
        switch kind {
        case .qemu:
            let qemu = QEMUAvailability.check(host)
            guard let binary = qemu.binary else {
                throw SmolVMError(
                    .hostUnsupported, "QEMU cannot run on this host: \(qemu.problem ?? "unknown problem")")
            }
            return QEMUBackend(binary: binary)
        case .firecracker:
            guard let binary = FirecrackerAvailability.locate(host) else {
                throw SmolVMError(
                    .hostUnsupported,
                    "Firecracker cannot run on this host: \(FirecrackerAvailability.check(host).problem ?? "the firecracker binary was not found")"
                )
            }
            return FirecrackerBackend(
                binary: binary, jailer: host.environment["SMOLVM_JAILER"].flatMap { $0.isEmpty ? nil : $0 })
        }
    }
}
