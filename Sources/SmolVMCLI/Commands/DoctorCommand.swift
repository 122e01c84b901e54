import Foundation
import SmolVM

/// `smolvm doctor`: what this host can run, and why.
struct DoctorCommand: CLICommand {
    static let configuration = CommandConfiguration(
        name: "doctor",
        abstract: "Check this host: backends, KVM and the accelerator, kernel and images, SMOLVM_HOME.",
        usage: "[--backend NAME] [--json] [--strict]",
        discussion: """
            One check per line with its status (ok, warn, fail), what was found, and how to fix it;
            last, the backend `auto` (or --backend, or SMOLVM_BACKEND) resolves to and why. Every probe
            has a short timeout. Exit status: 0 when nothing fails, 1 on a failure (with --strict, also
            on a warning).
            """,
        examples: [
            "smolvm doctor", "smolvm doctor --json", "smolvm doctor --backend firecracker", "smolvm doctor --strict",
        ],
        options: [
            .value(
                "--backend", valueName: "NAME",
                help: "Check as if this backend were requested (auto, firecracker, qemu)."),
            .flag("--json", help: "Print one JSON object."),
            .flag("--strict", help: "Exit 1 on warnings too."),
        ])

    let backend: BackendPreference?
    let json: Bool
    let strict: Bool

    init(_ arguments: ParsedArguments) throws {
        if !arguments.positionals.isEmpty { throw UsageError("unexpected argument '\(arguments.positionals[0])'") }
        backend = try arguments.value("--backend").map { try BackendPreference(parsing: $0) }
        json = arguments.flag("--json")
        strict = arguments.flag("--strict")
    }

    func run() async throws -> Int32 {
        let report = try await Doctor.run(explicit: backend, host: .current, paths: .fromEnvironment())
        let status = report.exitStatus(strict: strict)
        if json {
            Output.printEnvelope(ok: status == 0, data: Output.jsonObject(report), error: nil)
            return status
        }
        let width = report.checks.map(\.name.count).max() ?? 0
        for check in report.checks {
            let label = check.status.rawValue.uppercased().padding(toLength: 4, withPad: " ", startingAt: 0)
            print("\(label)  \(check.name.padding(toLength: width, withPad: " ", startingAt: 0))  \(check.detail)")
            if let fix = check.fix {
                print("      \(String(repeating: " ", count: width))  fix: \(fix)")
            }
        }
        print("")
        print(
            "backend: \(report.resolved ?? "none") (requested \(report.requested) from \(report.source)): \(report.reason)"
        )
        print("summary: \(report.summary.ok) ok, \(report.summary.warn) warn, \(report.summary.fail) fail")
        return status
    }
}
