import Foundation
import SmolVM
import SmolVMSystem
import Synchronization

/// `smolvm run`: boot a fresh sandbox, run one command, stream its output, delete the sandbox.
struct RunCommand: CLICommand {
    static let configuration = CommandConfiguration(
        name: "run",
        abstract: "Run one command in a fresh sandbox, then delete it.",
        usage: "[OPTIONS] [--] COMMAND [ARG]...",
        discussion: """
            The command runs as an argv (no shell) unless you run a shell yourself (sh -c '...').
            Its stdout and stderr are streamed to ours as they come, byte for byte; our stdin is
            passed through when it is not a terminal. smolvm exits with the command's status:
            128+N when a signal N ended it, 124 on timeout, 125 when smolvm itself failed
            (with a one-line reason on stderr), 127 when the program does not exist.
            """,
        examples: [
            "smolvm run -- uname -a",
            "smolvm run --image minimal -- sh -c 'echo out; echo err >&2; exit 7'",
            "smolvm run --env GREETING='hello world' -- sh -c 'echo $GREETING'",
            "echo data | smolvm run -- wc -c",
            "smolvm run --timeout 5 -- sleep 60",
            "smolvm run --publish 127.0.0.1:18080:8080 -- python3 -m http.server 8080",
            "smolvm run --mount .:/workspace -- ls /workspace",
            "smolvm run --internet off -- sh -c 'echo no way out'",
        ],
        options: SandboxOptions.specs + CommandOptions.specs,
        optionsEndAtFirstPositional: true)

    let sandboxConfiguration: SandboxConfiguration
    let command: Command
    let json: Bool

    init(_ arguments: ParsedArguments) throws {
        guard !arguments.positionals.isEmpty else {
            throw UsageError("missing the command to run, e.g. smolvm run -- uname -a")
        }
        sandboxConfiguration = try SandboxOptions.configuration(arguments)
        command = try CommandOptions.command(arguments.positionals, arguments)
        json = arguments.flag("--json")
    }

    func run() async throws -> Int32 {
        let sandbox = try await Sandbox.create(sandboxConfiguration, logger: SmolVMTool.logger())
        let guardian = SignalGuardian(sandbox: sandbox)
        defer { guardian.disarm() }
        do {
            let status = try await CommandStreamer(json: json).run(command, in: sandbox)
            await sandbox.delete()
            return status
        } catch {
            // A signal tore the sandbox down under the command: the handler
            // exits with 128+N; this path must not report that as a failure.
            await guardian.waitIfFired()
            await sandbox.delete()
            throw error
        }
    }
}

/// Runs a command in a sandbox and relays it to this process's stdio.
/// Shared by every command that runs something (`run`, later `sandbox exec`).
struct CommandStreamer {
    var json: Bool

    func run(_ command: Command, in sandbox: Sandbox) async throws -> Int32 {
        let process: SandboxProcess
        do {
            process = try await sandbox.exec(command)
        } catch let error as SmolVMError where error.code == .commandNotFound || error.code == .commandNotExecutable {
            // The shells' convention: 127 for a missing program, 126 for one that cannot run.
            if json {
                Output.printEnvelope(
                    ok: false, data: nil, error: ["code": error.code.rawValue, "message": error.message])
            } else {
                FileHandle.standardError.write(Data("smolvm: \(error.message)\n".utf8))
            }
            return error.code == .commandNotFound ? 127 : 126
        }
        if command.standardInput == .stream {
            StandardInputPump.start(into: process)
        }
        if json {
            return try await printJSON(process)
        }
        do {
            for try await event in process.events {
                switch event {
                case .stdout(let bytes):
                    try Self.write(bytes, to: .standardOutput)
                case .stderr(let bytes):
                    try Self.write(bytes, to: .standardError)
                case .exit(let status):
                    return status.code
                }
            }
        } catch let error as SmolVMError where error.code == .timeout {
            FileHandle.standardError.write(Data("smolvm: \(error.message)\n".utf8))
            return 124
        } catch is BrokenPipe {
            return 128 + SIGPIPE
        }
        throw SmolVMError(.agentUnreachable, "the command's output ended without an exit status")
    }

    struct BrokenPipe: Error {}

    /// One JSON object: text views of the output (lenient UTF-8) and the exact
    /// bytes in base64. A timeout still reports what was printed before it.
    private func printJSON(_ process: SandboxProcess) async throws -> Int32 {
        var stdout: [UInt8] = []
        var stderr: [UInt8] = []
        var status: ExitStatus?
        var failure: SmolVMError?
        do {
            for try await event in process.events {
                switch event {
                case .stdout(let bytes): stdout += bytes
                case .stderr(let bytes): stderr += bytes
                case .exit(let exit): status = exit
                }
            }
        } catch let error as SmolVMError where error.code == .timeout {
            failure = error
        }
        let elapsed = ContinuousClock.now - process.startedAt
        var data: [String: Any] = [
            "stdout": String(decoding: stdout, as: UTF8.self), "stderr": String(decoding: stderr, as: UTF8.self),
            "stdoutBase64": Data(stdout).base64EncodedString(), "stderrBase64": Data(stderr).base64EncodedString(),
            "durationMs": Double(elapsed.components.seconds) * 1000 + Double(elapsed.components.attoseconds) / 1e15,
        ]
        if let failure {
            data["exitCode"] = 124
            data["status"] = "timed out"
            Output.printEnvelope(ok: false, data: data, error: ["code": "timeout", "message": failure.message])
            return 124
        }
        guard let status else {
            throw SmolVMError(.agentUnreachable, "the command's output ended without an exit status")
        }
        data["exitCode"] = Int(status.code)
        data["status"] = status.description
        Output.printEnvelope(ok: true, data: data, error: nil)
        return status.code
    }

    static func write(_ bytes: [UInt8], to fd: FileDescriptor) throws {
        do {
            try fd.writeAll(bytes)
        } catch let error as Errno where error == .brokenPipe {
            throw BrokenPipe()
        }
    }
}

/// Copies our stdin into a running command, in order, one chunk in flight at a time.
enum StandardInputPump {
    static func start(into process: SandboxProcess) {
        let thread = Thread {
            while true {
                let chunk = (try? FileDescriptor.standardInput.read(upTo: 64 << 10)) ?? []
                let done = DispatchSemaphore(value: 0)
                let isEnd = chunk.isEmpty
                Task {
                    if isEnd { try? await process.closeInput() } else { try? await process.write(chunk) }
                    done.signal()
                }
                done.wait()
                if isEnd { return }
            }
        }
        thread.name = "smolvm.stdin"
        thread.start()
    }
}

/// On SIGINT, SIGTERM or SIGHUP, deletes the sandbox before exiting, so an
/// interrupted `smolvm run` leaves nothing behind.
final class SignalGuardian: @unchecked Sendable {
    private var sources: [DispatchSourceSignal] = []
    private let fired = FiredFlag()

    init(sandbox: Sandbox) {
        for signalNumber in [SIGINT, SIGTERM, SIGHUP] {
            signal(signalNumber, SIG_IGN)
            let source = DispatchSource.makeSignalSource(signal: signalNumber, queue: .global())
            source.setEventHandler { [fired] in
                fired.set()
                Task {
                    await sandbox.delete()
                    exit(128 + signalNumber)
                }
            }
            source.resume()
            sources.append(source)
        }
    }

    /// When a signal arrived, never returns: the handler is about to exit.
    func waitIfFired() async {
        guard fired.isSet else { return }
        while true { try? await Task.sleep(for: .seconds(60)) }
    }

    func disarm() {
        for source in sources { source.cancel() }
        for signalNumber in [SIGINT, SIGTERM, SIGHUP] { signal(signalNumber, SIG_DFL) }
    }
}

/// Set once by a signal handler, read by the main flow.
final class FiredFlag: Sendable {
    private let value = Mutex(false)
    func set() { value.withLock { $0 = true } }
    var isSet: Bool { value.withLock { $0 } }
}
