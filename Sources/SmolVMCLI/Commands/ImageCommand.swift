import Foundation
import SmolVM

/// `smolvm image`: the guest kernel and root file system images.
struct ImageCommand: CLICommand {
    static let configuration = CommandConfiguration(
        name: "image",
        abstract: "Inspect the guest kernel and images.",
        usage: "SUBCOMMAND",
        subcommands: [ImageListCommand.self, ImageVerifyCommand.self, ImageWarmCommand.self])

    init(_ arguments: ParsedArguments) throws {
        throw UsageError("unknown image subcommand '\(arguments.positionals.first ?? "")'; try 'smolvm image list'")
    }

    func run() async throws -> Int32 { 2 }

    static func printTable(_ entries: [ImageStore.Entry]) {
        guard !entries.isEmpty else {
            print("No images yet. Run `smolvm setup` to build the kernel and images.")
            return
        }
        let formatter = ISO8601DateFormatter()
        Output.table(
            ["NAME", "KIND", "SIZE", "ON DISK", "KEY", "CREATED", "PATH"],
            entries.map {
                [
                    $0.name, $0.kind, "\(ByteCount($0.size))", "\(ByteCount($0.diskUsage))", $0.key,
                    formatter.string(from: $0.created), $0.path,
                ]
            })
    }
}

struct ImageListCommand: CLICommand {
    static let configuration = CommandConfiguration(
        name: "list",
        abstract: "List the guest kernel and images with their sizes.",
        examples: ["smolvm image list", "smolvm image list --json"],
        options: [.flag("--json", help: "Print JSON.")])

    let json: Bool
    init(_ arguments: ParsedArguments) throws {
        if !arguments.positionals.isEmpty { throw UsageError("unexpected argument '\(arguments.positionals[0])'") }
        json = arguments.flag("--json")
    }

    func run() async throws -> Int32 {
        let entries = try ImageStore().list()
        if json {
            Output.printEnvelope(ok: true, data: Output.jsonObject(entries), error: nil)
        } else {
            ImageCommand.printTable(entries)
        }
        return 0
    }
}

struct ImageVerifyCommand: CLICommand {
    static let configuration = CommandConfiguration(
        name: "verify",
        abstract: "Recompute every artifact's SHA-256 and compare it with its manifest.",
        examples: ["smolvm image verify"],
        options: [.flag("--json", help: "Print JSON.")])

    let json: Bool
    init(_ arguments: ParsedArguments) throws {
        json = arguments.flag("--json")
    }

    func run() async throws -> Int32 {
        let results = await ImageStore().verifyAll()
        let failed = results.filter { $0.error != nil }
        if json {
            let data = results.map {
                ["name": $0.name, "ok": $0.error == nil ? "true" : "false", "error": $0.error ?? ""]
            }
            Output.printEnvelope(ok: failed.isEmpty, data: data, error: nil)
        } else {
            for result in results {
                print("\(result.error == nil ? "ok  " : "FAIL") \(result.name)\(result.error.map { ": \($0)" } ?? "")")
            }
        }
        return failed.isEmpty ? 0 : 1
    }
}

struct ImageWarmCommand: CLICommand {
    static let configuration = CommandConfiguration(
        name: "warm",
        abstract: "Make the boot snapshot that lets sandboxes of this configuration start without booting.",
        usage: "IMAGE [--memory MIB] [--cpus N]",
        discussion: """
            Sandboxes start from a boot snapshot of their configuration (image, memory, vCPUs, backend) when
            one exists; the first start makes it. This makes it ahead of time. A snapshot whose inputs
            changed (a rebuilt image or kernel, another QEMU) is rebuilt, never used stale.
            """,
        examples: ["smolvm image warm debian", "smolvm image warm minimal --memory 256"],
        options: SandboxOptions.specs.filter { !$0.names.contains("--image") && !$0.names.contains("--cold") } + [
            .flag("--json", help: "Print JSON.")
        ])

    var configuration: SandboxConfiguration
    let json: Bool

    init(_ arguments: ParsedArguments) throws {
        let image = try SnapshotCommand.single(arguments, "image name", usage: "smolvm image warm IMAGE")
        configuration = try SandboxOptions.configuration(arguments)
        configuration.image = image
        json = arguments.flag("--json")
    }

    func run() async throws -> Int32 {
        let made = try await Sandbox.warm(configuration, logger: SmolVMTool.logger())
        if json {
            Output.printEnvelope(ok: true, data: ["image": configuration.image, "created": made], error: nil)
        } else {
            print(
                made
                    ? "boot snapshot for \(configuration.image) ready"
                    : "boot snapshot for \(configuration.image) already up to date")
        }
        return 0
    }
}
