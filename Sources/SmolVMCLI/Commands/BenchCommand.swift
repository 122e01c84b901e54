import Foundation
import SmolVM

/// `smolvm bench`: speed against the raw floor, measured in one run.
struct BenchCommand: CLICommand {
    static let configuration = CommandConfiguration(
        name: "bench",
        abstract: "Measure cold start, command round trips, upload throughput and memory against raw QEMU.",
        usage: "[--image NAME] [--runs N] [--cold-runs N] [--upload-to PATH] [--json]",
        discussion: """
            Every number is measured in this run next to its floor: the same kernel, image, memory and
            virtio-serial channel with the agent binary in raw mode (boot to /init, a raw echo, a raw
            fork-exec of /bin/true). Ratios are SmolVM / floor. The accelerator in use is printed first:
            under software emulation (tcg) absolute times are several times those on KVM.
            """,
        examples: ["smolvm bench", "smolvm bench --json", "smolvm bench --runs 50"],
        options: [
            .value("--image", valueName: "NAME", help: "Image to boot (default minimal)."),
            .value("--runs", valueName: "N", help: "Warm round trips per measurement (default 200)."),
            .value("--cold-runs", valueName: "N", help: "Cold boots per measurement (default 3)."),
            .value(
                "--upload-to", valueName: "PATH",
                help: "Guest path the upload is written to (default /root/bench-upload.bin)."),
            .flag("--json", help: "Print JSON."),
        ])

    var options = Benchmark.Options()
    let json: Bool

    init(_ arguments: ParsedArguments) throws {
        if let image = arguments.value("--image") { options.image = image }
        if let runs = try arguments.integer("--runs", in: 1...100_000) { options.warmRuns = runs }
        if let runs = try arguments.integer("--cold-runs", in: 1...100) { options.coldRuns = runs }
        if let path = arguments.value("--upload-to") {
            guard path.hasPrefix("/") else { throw UsageError("--upload-to expects an absolute guest path") }
            options.uploadPath = path
        }
        json = arguments.flag("--json")
    }

    func run() async throws -> Int32 {
        let quiet = json
        let report = try await Benchmark.run(options) { message in
            if !quiet { FileHandle.standardError.write(Data("[bench] \(message)\n".utf8)) }
        }
        if json {
            Output.printEnvelope(ok: true, data: Output.jsonObject(report), error: nil)
            return 0
        }
        print("accelerator: \(report.accelerator) (\(report.acceleratorReason))")
        print("qemu: \(report.qemu); image \(report.image), \(report.memoryMiB) MiB, \(report.cpus) vCPU")
        func format(_ value: Double?) -> String {
            guard let value, value.isFinite else { return "-" }
            return value >= 100 ? String(format: "%.0f", value) : String(format: "%.2f", value)
        }
        Output.table(
            ["METRIC", "SMOLVM", "FLOOR", "UNIT", "RATIO", "TARGET", "MET"],
            report.metrics.map {
                [
                    $0.name, format($0.smolvm), format($0.floor), $0.unit,
                    $0.ratio.map { String(format: "%.2fx", $0) } ?? "-",
                    $0.target, $0.met.map { $0 ? "yes" : "no" } ?? "-",
                ]
            })
        return 0
    }
}
