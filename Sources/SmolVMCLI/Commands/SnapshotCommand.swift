import Foundation
import SmolVM

/// `smolvm snapshot`: save a sandbox at one instant and start new sandboxes from it.
struct SnapshotCommand: CLICommand {
    static let configuration = CommandConfiguration(
        name: "snapshot",
        abstract: "Save a sandbox's memory, processes and disk; start new sandboxes from the saved state.",
        usage: "SUBCOMMAND",
        examples: [
            "smolvm snapshot create t1 --name ready", "smolvm snapshot restore ready --name t2",
            "smolvm snapshot list", "smolvm snapshot delete ready",
        ],
        subcommands: [
            SnapshotCreateCommand.self, SnapshotListCommand.self, SnapshotRestoreCommand.self,
            SnapshotDeleteCommand.self,
        ])

    init(_ arguments: ParsedArguments) throws {
        throw UsageError("unknown snapshot subcommand '\(arguments.positionals.first ?? "")'")
    }

    func run() async throws -> Int32 { 2 }

    static func single(_ arguments: ParsedArguments, _ what: String, usage: String) throws -> String {
        guard let value = arguments.positionals.first else { throw UsageError("missing the \(what): \(usage)") }
        if arguments.positionals.count > 1 {
            throw UsageError("unexpected argument '\(arguments.positionals[1])'")
        }
        return value
    }

    static func printManifest(_ manifest: SnapshotManifest, json: Bool) {
        if json {
            Output.printEnvelope(ok: true, data: Output.jsonObject(manifest), error: nil)
        } else {
            print(manifest.name)
        }
    }
}

struct SnapshotCreateCommand: CLICommand {
    static let configuration = CommandConfiguration(
        name: "create",
        abstract: "Snapshot a named sandbox (synced, paused for the save, then resumed); print the snapshot's name.",
        usage: "SANDBOX [--name SNAP]",
        examples: ["smolvm snapshot create t1", "smolvm snapshot create t1 --name ready --json"],
        options: [
            .value("--name", valueName: "SNAP", help: "Snapshot name (default: SANDBOX-snap-XXXX)."),
            .flag("--json", help: "Print the snapshot's manifest as JSON."),
        ])

    let sandbox: String
    let name: String?
    let json: Bool

    init(_ arguments: ParsedArguments) throws {
        sandbox = try SnapshotCommand.single(arguments, "sandbox name", usage: "smolvm snapshot create SANDBOX")
        try SandboxName.validate(sandbox)
        name = arguments.value("--name")
        if let name { try SandboxName.validate(name, what: "snapshot") }
        json = arguments.flag("--json")
    }

    func run() async throws -> Int32 {
        let manifest = try await Sandbox.snapshot(sandbox: sandbox, as: name, logger: SmolVMTool.logger())
        SnapshotCommand.printManifest(manifest, json: json)
        return 0
    }
}

struct SnapshotListCommand: CLICommand {
    static let configuration = CommandConfiguration(
        name: "list",
        abstract: "List snapshots with their source, image, size and age.",
        examples: ["smolvm snapshot list", "smolvm snapshot list --json"],
        options: [.flag("--json", help: "Print JSON.")])

    let json: Bool

    init(_ arguments: ParsedArguments) throws {
        if !arguments.positionals.isEmpty { throw UsageError("unexpected argument '\(arguments.positionals[0])'") }
        json = arguments.flag("--json")
    }

    func run() async throws -> Int32 {
        let (snapshots, damaged) = SnapshotStore().scan()
        for (name, problem) in damaged {
            FileHandle.standardError.write(
                Data(
                    "smolvm: warning: snapshot '\(name)' cannot be read (\(problem)); delete it with `smolvm snapshot delete \(name)`\n"
                        .utf8))
        }
        if json {
            Output.printEnvelope(ok: true, data: Output.jsonObject(snapshots), error: nil)
            return 0
        }
        guard !snapshots.isEmpty else {
            print("No snapshots. Take one with `smolvm snapshot create SANDBOX`.")
            return 0
        }
        let formatter = ISO8601DateFormatter()
        Output.table(
            ["NAME", "SOURCE", "BACKEND", "IMAGE", "MEMORY", "SIZE", "CREATED"],
            snapshots.map {
                [
                    $0.name, $0.source, $0.backend.rawValue, $0.image.name, "\($0.memoryMiB) MiB",
                    "\(ByteCount($0.size))", formatter.string(from: $0.created),
                ]
            })
        return 0
    }
}

struct SnapshotRestoreCommand: CLICommand {
    static let configuration = CommandConfiguration(
        name: "restore",
        abstract: "Start a new named sandbox from a snapshot; print its name. One snapshot can start many.",
        usage: "SNAP [--name NEW]",
        examples: ["smolvm snapshot restore ready", "smolvm snapshot restore ready --name t2"],
        options: [
            .value("--name", valueName: "NEW", help: "The new sandbox's name (default: generated)."),
            .flag("--json", help: "Print the new sandbox's record as JSON."),
        ])

    let snapshot: String
    let name: String?
    let json: Bool

    init(_ arguments: ParsedArguments) throws {
        snapshot = try SnapshotCommand.single(arguments, "snapshot name", usage: "smolvm snapshot restore SNAP")
        try SandboxName.validate(snapshot, what: "snapshot")
        name = arguments.value("--name")
        if let name { try SandboxName.validate(name) }
        json = arguments.flag("--json")
    }

    func run() async throws -> Int32 {
        let sandbox = try await Sandbox.restore(snapshot: snapshot, named: name, logger: SmolVMTool.logger())
        await sandbox.detach()
        return SandboxCommand.printResult(try Sandbox.info(named: sandbox.name!), json: json)
    }
}

struct SnapshotDeleteCommand: CLICommand {
    static let configuration = CommandConfiguration(
        name: "delete",
        abstract: "Delete a snapshot. Sandboxes restored from it keep running: each has its own copy.",
        usage: "SNAP",
        examples: ["smolvm snapshot delete ready"],
        options: [.flag("--json", help: "Print JSON.")])

    let snapshot: String
    let json: Bool

    init(_ arguments: ParsedArguments) throws {
        snapshot = try SnapshotCommand.single(arguments, "snapshot name", usage: "smolvm snapshot delete SNAP")
        try SandboxName.validate(snapshot, what: "snapshot")
        json = arguments.flag("--json")
    }

    func run() async throws -> Int32 {
        try SnapshotStore().delete(named: snapshot)
        if json {
            Output.printEnvelope(ok: true, data: ["name": snapshot], error: nil)
        } else {
            print(snapshot)
        }
        return 0
    }
}
