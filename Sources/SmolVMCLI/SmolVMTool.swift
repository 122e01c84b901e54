import Foundation
import SmolVM

/// The root command: dispatches to subcommands and turns errors into one line and an exit code.
enum SmolVMTool {
    static let version = "0.1.0"

    struct Root: CLICommand {
        static let configuration = CommandConfiguration(
            name: "smolvm",
            abstract: "Disposable Linux microVMs for programs and AI agents.",
            usage: "SUBCOMMAND [OPTIONS]",
            discussion: """
                SmolVM boots a hardware-isolated Linux computer in about a second, runs commands in it with
                byte-exact output and exit codes, moves files in and out, and leaves nothing behind.
                Start with `smolvm setup`, then `smolvm run -- uname -a`.

                Environment: SMOLVM_HOME (default ~/.smolvm), SMOLVM_BACKEND (auto|firecracker|qemu),
                SMOLVM_ACCEL (kvm|tcg|hvf), SMOLVM_LOG (debug|info|warning).
                """,
            examples: [
                "smolvm setup",
                "smolvm run -- python3 -c 'print(6 * 7)'",
                "smolvm run --image minimal -- sh -c 'echo out; echo err >&2; exit 7'",
                "smolvm image list",
                "smolvm bench",
            ],
            options: [.flag("--version", help: "Print the version and exit.")],
            subcommands: [
                RunCommand.self, SandboxCommand.self, SnapshotCommand.self, SetupCommand.self, ImageCommand.self,
                DoctorCommand.self,
                BenchCommand.self, CompletionCommand.self,
            ])

        let showVersion: Bool
        init(_ arguments: ParsedArguments) throws {
            showVersion = arguments.flag("--version")
            if !showVersion, let first = arguments.positionals.first {
                let names = Self.configuration.subcommands.map { $0.configuration.name }
                let suggestion = names.min { editDistance($0, first) < editDistance($1, first) }
                let hint = suggestion.map { editDistance($0, first) <= 2 ? " (did you mean '\($0)'?)" : "" } ?? ""
                throw UsageError("unknown command '\(first)'\(hint). Run 'smolvm --help' for the list")
            }
        }

        func run() async throws -> Int32 {
            if showVersion {
                print("smolvm \(SmolVMTool.version)")
                return 0
            }
            print(CLICommandHelp.render(Self.configuration, commandPath: ["smolvm"]), terminator: "")
            return 0
        }
    }

    static func main(_ arguments: [String]) async -> Int32 {
        _ = logLevel
        signal(SIGPIPE, SIG_IGN)
        var command: any CLICommand.Type = Root.self
        var path = ["smolvm"]
        var rest = arguments
        while let first = rest.first,
            let sub = command.configuration.subcommands.first(where: { $0.configuration.name == first })
        {
            command = sub
            path.append(first)
            rest.removeFirst()
        }
        let runsCommands = command == RunCommand.self || command == SandboxExecCommand.self
        let failureStatus: Int32 = runsCommands ? 125 : 1
        let usageStatus: Int32 = runsCommands ? 125 : 2
        let json =
            rest.contains("--json")
            && !(command == RunCommand.self
                && rest.firstIndex(of: "--").map { rest.firstIndex(of: "--json")! > $0 } == true)
        do {
            var parsed = try ParsedArguments.parse(rest, for: command.configuration)
            parsed.commandPath = path
            if parsed.flag("--help") {
                print(CLICommandHelp.render(command.configuration, commandPath: path), terminator: "")
                return 0
            }
            if command.configuration.subcommands.count > 0, command != Root.self, parsed.positionals.isEmpty {
                print(CLICommandHelp.render(command.configuration, commandPath: path), terminator: "")
                return 0
            }
            let instance: any CLICommand
            do {
                instance = try command.init(parsed)
            } catch let error as SmolVMError where error.code == .invalidArgument {
                // A bad value on the command line (a name, a port, a CIDR) is a usage error.
                throw UsageError(error.message)
            }
            return try await instance.run()
        } catch let error as UsageError {
            report(
                error.message, json: json, code: "usage", hint: "Run '\(path.joined(separator: " ")) --help' for usage."
            )
            return usageStatus
        } catch let error as SmolVMError {
            report(error.description, json: json, code: error.code.rawValue, hint: nil)
            return failureStatus
        } catch {
            report("\(error)", json: json, code: "internal", hint: nil)
            return failureStatus
        }
    }

    static func report(_ message: String, json: Bool, code: String, hint: String?) {
        if json {
            Output.printEnvelope(ok: false, data: nil, error: ["code": code, "message": message])
        } else {
            var text = "smolvm: error: \(message)\n"
            if let hint { text += "\(hint)\n" }
            FileHandle.standardError.write(Data(text.utf8))
        }
    }

    /// The library logger for CLI runs: warnings to stderr, more with SMOLVM_LOG.
    static func logger() -> Logger {
        Logger.standardError(label: "smolvm", level: logLevel)
    }

    /// Read once, so a bad value is reported once, whatever the command.
    static let logLevel: Logger.Level = {
        let requested = ProcessInfo.processInfo.environment["SMOLVM_LOG"]
        switch requested?.lowercased() {
        case "trace": return .trace
        case "debug": return .debug
        case "info": return .info
        case "error": return .error
        case nil, "", "warning": return .warning
        default:
            FileHandle.standardError.write(
                Data(
                    "smolvm: warning: SMOLVM_LOG='\(requested ?? "")' is not a level; using warning (levels: trace, debug, info, warning, error)\n"
                        .utf8))
            return .warning
        }
    }()
}
