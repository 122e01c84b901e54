import Foundation
import SmolVM

/// `smolvm bench`: speed against the raw floor, measured in one run.
struct BenchCommand: CLICommand {
    static let configuration = CommandConfiguration(
        name: "bench",
        abstract: "Measure cold start, command round trip, upload throughput and memory against raw QEMU.",
        examples: ["smolvm bench", "smolvm bench --json"],
        options: [.flag("--json", help: "Print JSON.")])

    init(_ arguments: ParsedArguments) throws {}

    func run() async throws -> Int32 {
        throw SmolVMError(.unsupported, "bench is not implemented yet")
    }
}
