import Foundation
import SmolVM
import SmolVMSystem

/// `smolvm sandbox`: named sandboxes that live across commands.
struct SandboxCommand: CLICommand {
    static let configuration = CommandConfiguration(
        name: "sandbox",
        abstract: "Named sandboxes that keep running between commands.",
        usage: "SUBCOMMAND",
        discussion: """
            A named sandbox outlives the smolvm that created it: create it once, then exec in it, move
            files in and out, stop and start it (its disk survives), and delete it when done. Any
            process can use it by name. State lives in SMOLVM_HOME/state.db.
            """,
        examples: [
            "smolvm sandbox create --name dev",
            "smolvm sandbox exec dev -- sh -c 'echo hi > /root/f'",
            "smolvm sandbox stop dev && smolvm sandbox start dev",
            "smolvm sandbox exec dev -- cat /root/f",
            "smolvm sandbox delete dev",
        ],
        subcommands: [
            SandboxCreateCommand.self, SandboxListCommand.self, SandboxInfoCommand.self, SandboxExecCommand.self,
            SandboxStopCommand.self, SandboxStartCommand.self, SandboxDeleteCommand.self, SandboxLogsCommand.self,
            SandboxFileCommand.self, SandboxShellCommand.self, SandboxPauseCommand.self, SandboxResumeCommand.self,
            SandboxPortsCommand.self,
        ])

    init(_ arguments: ParsedArguments) throws {
        throw UsageError("unknown sandbox subcommand '\(arguments.positionals.first ?? "")'")
    }

    func run() async throws -> Int32 { 2 }

    static func recordObject(_ record: SandboxRecord) -> Any { Output.jsonObject(record) }

    /// A lifecycle command's result: the record as JSON, or the name.
    static func printResult(_ record: SandboxRecord, json: Bool) -> Int32 {
        if json {
            Output.printEnvelope(ok: true, data: recordObject(record), error: nil)
        } else {
            print(record.name)
        }
        return 0
    }

    static func name(_ arguments: ParsedArguments, _ command: String) throws -> String {
        guard let name = arguments.positionals.first else {
            throw UsageError("missing the sandbox name: smolvm sandbox \(command) NAME")
        }
        if arguments.positionals.count > 1 {
            throw UsageError("unexpected argument '\(arguments.positionals[1])'")
        }
        return name
    }
}

struct SandboxCreateCommand: CLICommand {
    static let configuration = CommandConfiguration(
        name: "create",
        abstract: "Boot a named sandbox that keeps running after smolvm exits; print its name.",
        usage: "[--name NAME] [--image NAME] [--memory MIB] [--cpus N] [--env KEY=VALUE]...",
        examples: [
            "smolvm sandbox create --name t1", "smolvm sandbox create --image minimal --memory 256",
            "smolvm sandbox create --name web -p 8080:80 --mount ~/site:/srv",
            "smolvm sandbox create --name jail --internet restricted --allow 198.51.100.0/24",
        ],
        options: [
            .value(
                "--name", valueName: "NAME", help: "Name: a-z, 0-9 and '-', up to 63 characters (default: generated)."),
            .repeating("--env", "-e", valueName: "KEY=VALUE", help: "Environment for every command in the sandbox."),
            .flag("--json", help: "Print JSON."),
        ] + SandboxOptions.specs)

    let name: String?
    var configuration: SandboxConfiguration
    let json: Bool

    init(_ arguments: ParsedArguments) throws {
        if !arguments.positionals.isEmpty {
            throw UsageError("unexpected argument '\(arguments.positionals[0])'; the name goes after --name")
        }
        name = arguments.value("--name")
        if let name { try SandboxName.validate(name) }
        configuration = try SandboxOptions.configuration(arguments)
        configuration.environment = try SandboxOptions.environment(arguments.all("--env"))
        json = arguments.flag("--json")
    }

    func run() async throws -> Int32 {
        let sandbox = try await Sandbox.create(named: name, configuration, logger: SmolVMTool.logger())
        await sandbox.detach()
        let record = try Sandbox.info(named: sandbox.name!, paths: configuration.paths)
        if json {
            Output.printEnvelope(ok: true, data: SandboxCommand.recordObject(record), error: nil)
        } else {
            print(record.name)
        }
        return 0
    }
}

struct SandboxListCommand: CLICommand {
    static let configuration = CommandConfiguration(
        name: "list",
        abstract: "List named sandboxes (running ones; --all for every one).",
        examples: ["smolvm sandbox list", "smolvm sandbox list --all --json"],
        options: [
            .flag("--all", "-a", help: "Include stopped and failed sandboxes."),
            .flag("--quiet", "-q", help: "Print only names, one per line."),
            .flag("--json", help: "Print JSON."),
        ])

    let all: Bool
    let quiet: Bool
    let json: Bool

    init(_ arguments: ParsedArguments) throws {
        if !arguments.positionals.isEmpty { throw UsageError("unexpected argument '\(arguments.positionals[0])'") }
        all = arguments.flag("--all")
        quiet = arguments.flag("--quiet")
        json = arguments.flag("--json")
    }

    func run() async throws -> Int32 {
        let records = try Sandbox.list().filter { all || [.running, .starting, .paused].contains($0.status) }
        if quiet {
            for record in records { print(record.name) }
            return 0
        }
        if json {
            Output.printEnvelope(ok: true, data: records.map(SandboxCommand.recordObject), error: nil)
            return 0
        }
        if records.isEmpty {
            print(
                all
                    ? "No sandboxes. Create one with `smolvm sandbox create --name NAME`."
                    : "No running sandboxes (see --all).")
            return 0
        }
        let formatter = ISO8601DateFormatter()
        Output.table(
            ["NAME", "STATUS", "IMAGE", "MEMORY", "CPUS", "PID", "CREATED"],
            records.map {
                [
                    $0.name, $0.status.rawValue, $0.image, "\($0.memoryMiB) MiB", "\($0.cpus)",
                    $0.vmmPID.map(String.init) ?? "-", formatter.string(from: $0.created),
                ]
            })
        return 0
    }
}

struct SandboxInfoCommand: CLICommand {
    static let configuration = CommandConfiguration(
        name: "info", abstract: "Show one sandbox's record, with its true status.", usage: "NAME",
        examples: ["smolvm sandbox info t1", "smolvm sandbox info t1 --json"],
        options: [.flag("--json", help: "Print JSON.")])

    let name: String
    let json: Bool

    init(_ arguments: ParsedArguments) throws {
        name = try SandboxCommand.name(arguments, "info")
        json = arguments.flag("--json")
    }

    func run() async throws -> Int32 {
        let record = try Sandbox.info(named: name)
        if json {
            Output.printEnvelope(ok: true, data: SandboxCommand.recordObject(record), error: nil)
            return 0
        }
        let rows: [(String, String)] = [
            ("name", record.name), ("id", record.id), ("status", record.status.rawValue), ("backend", record.backend),
            ("image", record.image), ("memory", "\(record.memoryMiB) MiB"), ("cpus", "\(record.cpus)"),
            ("vmm pid", record.vmmPID.map(String.init) ?? "-"), ("internet", record.internet.description),
            ("ports", record.publish.isEmpty ? "-" : record.publish.map(\.description).joined(separator: ", ")),
            ("mounts", record.mounts.isEmpty ? "-" : record.mounts.map(\.description).joined(separator: ", ")),
            ("created", ISO8601DateFormatter().string(from: record.created)),
            ("directory", record.runtimeDirectory), ("last error", record.lastError ?? "-"),
        ]
        for (key, value) in rows { print("\(key.padding(toLength: 11, withPad: " ", startingAt: 0)) \(value)") }
        return 0
    }
}

struct SandboxExecCommand: CLICommand {
    static let configuration = CommandConfiguration(
        name: "exec",
        abstract: "Run a command in a named sandbox, with the same streaming and exit status as `smolvm run`.",
        usage: "NAME [--env KEY=VALUE]... [--workdir DIR] [--timeout SECONDS] -- COMMAND [ARG]...",
        examples: ["smolvm sandbox exec t1 -- uname -a", "smolvm sandbox exec t1 --workdir /tmp -- sh -c 'pwd; ls'"],
        options: CommandOptions.specs + [.flag("--resume", help: "Resume the sandbox first if it is paused.")])

    let name: String
    let command: Command
    let resume: Bool
    let json: Bool

    init(_ arguments: ParsedArguments) throws {
        guard arguments.positionals.count >= 2 else {
            throw UsageError("usage: smolvm sandbox exec NAME -- COMMAND [ARG]...")
        }
        name = arguments.positionals[0]
        try SandboxName.validate(name)
        json = arguments.flag("--json")
        command = try CommandOptions.command(Array(arguments.positionals.dropFirst()), arguments)
        resume = arguments.flag("--resume")
    }

    func run() async throws -> Int32 {
        if resume { try await Sandbox.resume(named: name) }
        let sandbox = try await Sandbox.attach(named: name, logger: SmolVMTool.logger())
        let status = try await CommandStreamer(json: json).run(command, in: sandbox)
        await sandbox.detach()
        return status
    }
}

struct SandboxDeleteCommand: CLICommand {
    static let configuration = CommandConfiguration(
        name: "delete",
        abstract: "Stop a sandbox, wait for its VMM to exit, and remove its disk, sockets and record.",
        usage: "NAME [--force]",
        examples: ["smolvm sandbox delete t1", "smolvm sandbox delete t1 --force"],
        options: [
            .flag("--force", "-f", help: "Kill the VMM at once instead of shutting the guest down cleanly."),
            .flag("--json", help: "Print JSON."),
        ])

    let name: String
    let force: Bool
    let json: Bool
    init(_ arguments: ParsedArguments) throws {
        name = try SandboxCommand.name(arguments, "delete")
        force = arguments.flag("--force")
        json = arguments.flag("--json")
    }

    func run() async throws -> Int32 {
        try await Sandbox.delete(named: name, force: force, logger: SmolVMTool.logger())
        if json {
            Output.printEnvelope(ok: true, data: ["name": name, "deleted": true], error: nil)
        } else {
            print(name)
        }
        return 0
    }
}

struct SandboxLogsCommand: CLICommand {
    static let configuration = CommandConfiguration(
        name: "logs", abstract: "Show a sandbox's console log.", usage: "NAME [--follow]",
        examples: ["smolvm sandbox logs t1", "smolvm sandbox logs t1 --follow"],
        options: [.flag("--follow", "-f", help: "Keep printing as the log grows, until the sandbox stops or Ctrl-C.")])

    let name: String
    let follow: Bool
    init(_ arguments: ParsedArguments) throws {
        name = try SandboxCommand.name(arguments, "logs")
        follow = arguments.flag("--follow")
    }

    func run() async throws -> Int32 {
        let record = try Sandbox.info(named: name)
        let path = URL(fileURLWithPath: record.runtimeDirectory).appendingPathComponent("console.log").path
        guard let handle = FileHandle(forReadingAtPath: path) else {
            throw SmolVMError(.notFound, "sandbox '\(name)' has no console log yet (\(path))")
        }
        defer { try? handle.close() }
        while true {
            let data = handle.availableData
            if !data.isEmpty {
                try FileDescriptor.standardOutput.writeAll([UInt8](data))
                continue
            }
            guard follow else { return 0 }
            let current = try Sandbox.info(named: name)
            if current.status != .running && current.status != .starting { return 0 }
            try await Task.sleep(for: .milliseconds(200))
        }
    }
}

struct SandboxFileCommand: CLICommand {
    static let configuration = CommandConfiguration(
        name: "file",
        abstract: "Copy files between the host and a named sandbox.",
        usage: "SUBCOMMAND",
        subcommands: [SandboxFileUploadCommand.self, SandboxFileDownloadCommand.self])

    init(_ arguments: ParsedArguments) throws {
        throw UsageError("unknown file subcommand '\(arguments.positionals.first ?? "")'; use upload or download")
    }

    func run() async throws -> Int32 { 2 }
}

struct SandboxFileUploadCommand: CLICommand {
    static let configuration = CommandConfiguration(
        name: "upload",
        abstract:
            "Copy a host file into a sandbox (streamed; an existing guest directory receives it under its own name).",
        usage: "NAME LOCAL REMOTE",
        examples: [
            "smolvm sandbox file upload t1 ./data.csv /root/",
            "smolvm sandbox file upload t1 'my file.txt' /tmp/copy.txt",
        ],
        options: [.flag("--json", help: "Print JSON.")])

    let name: String
    let local: String
    let remote: String
    let json: Bool

    init(_ arguments: ParsedArguments) throws {
        guard arguments.positionals.count == 3 else {
            throw UsageError("usage: smolvm sandbox file upload NAME LOCAL REMOTE")
        }
        name = arguments.positionals[0]
        local = arguments.positionals[1]
        remote = arguments.positionals[2]
        json = arguments.flag("--json")
        guard remote.hasPrefix("/") else { throw UsageError("REMOTE must be an absolute guest path, got '\(remote)'") }
    }

    func run() async throws -> Int32 {
        var isDirectory: ObjCBool = false
        guard FileManager.default.fileExists(atPath: local, isDirectory: &isDirectory) else {
            throw SmolVMError(.notFound, "\(local) does not exist")
        }
        guard !isDirectory.boolValue else {
            throw SmolVMError(.invalidArgument, "\(local) is a directory; upload files one at a time")
        }
        let sandbox = try await Sandbox.attach(named: name, logger: SmolVMTool.logger())
        defer { Task { await sandbox.detach() } }
        var destination = remote
        let baseName = URL(fileURLWithPath: local).lastPathComponent
        if remote.hasSuffix("/") {
            destination = remote + baseName
        } else if try await sandbox.run(["test", "-d", remote]).exitCode == 0 {
            destination = remote + "/" + baseName
        }
        try await sandbox.upload(from: local, to: destination)
        if json {
            Output.printEnvelope(ok: true, data: ["remote": destination], error: nil)
        } else {
            print(destination)
        }
        return 0
    }
}

struct SandboxFileDownloadCommand: CLICommand {
    static let configuration = CommandConfiguration(
        name: "download",
        abstract:
            "Copy a file out of a sandbox (streamed; an existing local directory receives it under its own name).",
        usage: "NAME REMOTE LOCAL",
        examples: [
            "smolvm sandbox file download t1 /root/result.json .",
            "smolvm sandbox file download t1 /tmp/out.bin ./out.bin",
        ],
        options: [.flag("--json", help: "Print JSON.")])

    let name: String
    let remote: String
    let local: String
    let json: Bool

    init(_ arguments: ParsedArguments) throws {
        guard arguments.positionals.count == 3 else {
            throw UsageError("usage: smolvm sandbox file download NAME REMOTE LOCAL")
        }
        name = arguments.positionals[0]
        remote = arguments.positionals[1]
        local = arguments.positionals[2]
        json = arguments.flag("--json")
        guard remote.hasPrefix("/") else { throw UsageError("REMOTE must be an absolute guest path, got '\(remote)'") }
    }

    func run() async throws -> Int32 {
        var destination = local
        var isDirectory: ObjCBool = false
        if FileManager.default.fileExists(atPath: local, isDirectory: &isDirectory), isDirectory.boolValue {
            destination =
                URL(fileURLWithPath: local).appendingPathComponent(URL(fileURLWithPath: remote).lastPathComponent).path
        }
        let sandbox = try await Sandbox.attach(named: name, logger: SmolVMTool.logger())
        defer { Task { await sandbox.detach() } }
        try await sandbox.download(from: remote, to: destination)
        if json { Output.printEnvelope(ok: true, data: ["local": destination], error: nil) } else { print(destination) }
        return 0
    }
}

struct SandboxShellCommand: CLICommand {
    static let configuration = CommandConfiguration(
        name: "shell",
        abstract: "Open an interactive shell in a named sandbox (Ctrl-D or `exit` ends it).",
        usage: "NAME [--shell PATH]",
        discussion: """
            The shell runs on a pseudo-terminal in the guest; this terminal is put in raw mode and its
            window size follows yours. bash is used when the image has it, otherwise sh.
            """,
        examples: ["smolvm sandbox shell t1", "smolvm sandbox shell t1 --shell /bin/sh"],
        options: [.value("--shell", valueName: "PATH", help: "The shell to run (default: bash if present, else sh).")])

    let name: String
    let shell: String?

    init(_ arguments: ParsedArguments) throws {
        name = try SandboxCommand.name(arguments, "shell")
        shell = arguments.value("--shell")
    }

    func run() async throws -> Int32 {
        let sandbox = try await Sandbox.attach(named: name, logger: SmolVMTool.logger())
        let terminal = Terminal(.standardInput)
        let size = terminal.size ?? Terminal(.standardOutput).size ?? (24, 80)
        let argv =
            shell.map { [$0, "-l"] }
            ?? ["/bin/sh", "-c", "if command -v bash >/dev/null 2>&1; then exec bash -l; else exec sh -l; fi"]
        var environment: [String: String] = [:]
        environment["TERM"] = ProcessInfo.processInfo.environment["TERM"] ?? "xterm-256color"
        let process = try await sandbox.exec(
            Command(
                argv, environment: environment, standardInput: .stream,
                terminal: .init(rows: size.rows, columns: size.columns)))
        if terminal.isTerminal { try terminal.makeRaw() }
        defer { terminal.restore() }
        let resize = DispatchSource.makeSignalSource(signal: SIGWINCH, queue: .global())
        signal(SIGWINCH, SIG_IGN)
        resize.setEventHandler {
            guard let size = terminal.size else { return }
            Task { try? await process.resize(rows: size.rows, columns: size.columns) }
        }
        resize.resume()
        defer { resize.cancel() }
        StandardInputPump.start(into: process)
        var status: Int32 = 0
        for try await event in process.events {
            switch event {
            case .stdout(let bytes), .stderr(let bytes):
                try? FileDescriptor.standardOutput.writeAll(bytes)
            case .exit(let exit):
                status = exit.code
            }
        }
        terminal.restore()
        await sandbox.detach()
        return status
    }
}

/// `stop`, `start`, `pause`, `resume`: a name in, the sandbox's record out.
protocol SandboxLifecycleCommand: CLICommand {
    static var verb: String { get }
    static func perform(_ name: String) async throws -> SandboxRecord
    var name: String { get }
    var json: Bool { get }
    init(name: String, json: Bool)
}

extension SandboxLifecycleCommand {
    init(_ arguments: ParsedArguments) throws {
        self.init(name: try SandboxCommand.name(arguments, Self.verb), json: arguments.flag("--json"))
    }

    func run() async throws -> Int32 {
        SandboxCommand.printResult(try await Self.perform(name), json: json)
    }

    static func lifecycleConfiguration(_ abstract: String, examples: [String]) -> CommandConfiguration {
        CommandConfiguration(
            name: verb, abstract: abstract, usage: "NAME", examples: examples,
            options: [.flag("--json", help: "Print JSON.")])
    }
}

struct SandboxStopCommand: SandboxLifecycleCommand {
    static let verb = "stop"
    static let configuration = lifecycleConfiguration(
        "Shut a sandbox down cleanly; its disk is kept.", examples: ["smolvm sandbox stop t1"])
    let name: String
    let json: Bool
    static func perform(_ name: String) async throws -> SandboxRecord {
        try await Sandbox.stop(named: name, logger: SmolVMTool.logger())
    }
}

struct SandboxStartCommand: SandboxLifecycleCommand {
    static let verb = "start"
    static let configuration = lifecycleConfiguration(
        "Boot a stopped sandbox again, with its disk as it was.", examples: ["smolvm sandbox start t1"])
    let name: String
    let json: Bool
    static func perform(_ name: String) async throws -> SandboxRecord {
        try await Sandbox.start(named: name, logger: SmolVMTool.logger())
    }
}

struct SandboxPauseCommand: SandboxLifecycleCommand {
    static let verb = "pause"
    static let configuration = lifecycleConfiguration(
        "Freeze a running sandbox: memory, processes and disk are kept.",
        examples: ["smolvm sandbox pause t1", "smolvm sandbox resume t1"])
    let name: String
    let json: Bool
    static func perform(_ name: String) async throws -> SandboxRecord { try await Sandbox.pause(named: name) }
}

struct SandboxResumeCommand: SandboxLifecycleCommand {
    static let verb = "resume"
    static let configuration = lifecycleConfiguration(
        "Thaw a paused sandbox; it carries on where it was.", examples: ["smolvm sandbox resume t1"])
    let name: String
    let json: Bool
    static func perform(_ name: String) async throws -> SandboxRecord { try await Sandbox.resume(named: name) }
}

struct SandboxPortsCommand: CLICommand {
    static let configuration = CommandConfiguration(
        name: "ports", abstract: "List a sandbox's published ports: host address and port, then guest port.",
        usage: "NAME",
        examples: ["smolvm sandbox create --name web -p 8080:80", "smolvm sandbox ports web"],
        options: [.flag("--json", help: "Print JSON.")])

    let name: String
    let json: Bool

    init(_ arguments: ParsedArguments) throws {
        name = try SandboxCommand.name(arguments, "ports")
        json = arguments.flag("--json")
    }

    func run() async throws -> Int32 {
        let record = try Sandbox.info(named: name)
        if json {
            Output.printEnvelope(ok: true, data: Output.jsonObject(record.publish), error: nil)
            return 0
        }
        for publication in record.publish {
            print("\(publication.hostAddress):\(publication.hostPort) -> \(publication.guestPort)/tcp")
        }
        return 0
    }
}
