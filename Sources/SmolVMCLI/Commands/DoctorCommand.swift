import Foundation
import SmolVM

/// `smolvm doctor`: what this host can run, and why.
struct DoctorCommand: CLICommand {
    static let configuration = CommandConfiguration(
        name: "doctor",
        abstract: "Check this host: backends, accelerator, kernel and images.",
        examples: ["smolvm doctor", "smolvm doctor --json"],
        options: [
            .value("--backend", valueName: "NAME", help: "Check as if this backend were requested."),
            .flag("--json", help: "Print JSON."),
        ])

    let backend: BackendPreference?
    let json: Bool

    init(_ arguments: ParsedArguments) throws {
        backend = try arguments.value("--backend").map { try BackendPreference(parsing: $0) }
        json = arguments.flag("--json")
    }

    func run() async throws -> Int32 {
        let host = HostFacts.current
        let kvm = KVMState.detect(host)
        let accelerator = try? AcceleratorChoice.resolve(host)
        let resolution = try BackendResolution.resolve(explicit: backend, host: host)
        if json {
            Output.printEnvelope(
                ok: true,
                data: [
                    "requested": resolution.requested.rawValue, "source": resolution.source.rawValue,
                    "resolved": resolution.backend.rawValue, "reason": resolution.reason,
                    "kvm": kvm.summary, "accelerator": accelerator?.accelerator.rawValue ?? "none",
                ], error: nil)
        } else {
            print("kvm:         \(kvm.summary)")
            print("accelerator: \(accelerator.map { "\($0.accelerator.rawValue) (\($0.reason))" } ?? "none")")
            print("backend:     \(resolution.backend) (\(resolution.reason))")
        }
        return 0
    }
}
