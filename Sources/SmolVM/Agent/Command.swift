/// A command to run in a sandbox.
///
/// The argument vector reaches `execve(2)` in the guest untouched; no shell
/// parses it unless you ask for one with `Command.shell(_:)`. Environment
/// values are passed the same way, so `=`, quotes, `$()` and newlines arrive
/// exactly as given.
public struct Command: Sendable, Equatable {
    public enum StandardInput: Sendable, Equatable {
        /// `/dev/null`.
        case none
        /// These bytes, then end of file.
        case bytes([UInt8])
        /// Written by the caller through `SandboxProcess.write(_:)` and `closeInput()`.
        case stream
    }

    public var arguments: [String]
    public var environment: [String: String]
    /// Arguments as raw bytes, for values that are not valid UTF-8; when set,
    /// they are sent instead of `arguments`.
    public var rawArguments: [[UInt8]]?
    /// Extra `KEY=VALUE` environment entries as raw bytes, added after `environment`.
    public var rawEnvironment: [[UInt8]] = []
    /// The directory the command starts in; nil means `/root`.
    public var workingDirectory: String?
    /// After this long, the command's whole process group is killed and the run fails with `.timeout`.
    public var timeout: Duration?
    public var standardInput: StandardInput
    /// Run on a pseudo-terminal of this size (an interactive shell): output
    /// comes as `.stdout` only, and the command is its terminal's session leader.
    public var terminal: TerminalSize?

    public struct TerminalSize: Sendable, Equatable {
        public var rows: Int
        public var columns: Int
        public init(rows: Int, columns: Int) {
            self.rows = rows
            self.columns = columns
        }
    }

    public init(
        _ arguments: [String], environment: [String: String] = [:], workingDirectory: String? = nil,
        timeout: Duration? = nil, standardInput: StandardInput = .none, terminal: TerminalSize? = nil
    ) {
        self.arguments = arguments
        self.environment = environment
        self.workingDirectory = workingDirectory
        self.timeout = timeout
        self.standardInput = standardInput
        self.terminal = terminal
    }

    /// `/bin/sh -c script`.
    public static func shell(
        _ script: String, environment: [String: String] = [:], workingDirectory: String? = nil,
        timeout: Duration? = nil, standardInput: StandardInput = .none
    ) -> Command {
        Command(
            ["/bin/sh", "-c", script], environment: environment, workingDirectory: workingDirectory,
            timeout: timeout, standardInput: standardInput)
    }

    /// The argument vector exactly as it will reach `execve`.
    var argumentBytes: [[UInt8]] { rawArguments ?? arguments.map { Array($0.utf8) } }

    func validate() throws {
        guard let first = argumentBytes.first else {
            throw SmolVMError(.invalidArgument, "a command needs at least one argument (the program to run)")
        }
        guard !first.isEmpty else {
            throw SmolVMError(.invalidArgument, "the program to run is an empty string")
        }
        if argumentBytes.contains(where: { $0.contains(0) }) {
            throw SmolVMError(.invalidArgument, "command arguments cannot contain NUL bytes")
        }
        for entry in rawEnvironment {
            let name = entry.prefix { $0 != UInt8(ascii: "=") }
            guard !name.isEmpty, name.count < entry.count, !entry.contains(0) else {
                throw SmolVMError(
                    .invalidArgument,
                    "invalid environment entry '\(String(decoding: entry, as: UTF8.self))': expected KEY=VALUE")
            }
        }
        for (key, value) in environment {
            guard !key.isEmpty, !key.contains("="), !key.utf8.contains(0), !value.utf8.contains(0) else {
                throw SmolVMError(
                    .invalidArgument,
                    "invalid environment variable name '\(key)': names must be non-empty and contain no '=' or NUL")
            }
        }
        if let terminal, !(0...65535).contains(terminal.rows) || !(0...65535).contains(terminal.columns) {
            throw SmolVMError(
                .invalidArgument,
                "a terminal size must be between 0 and 65535, got \(terminal.rows)x\(terminal.columns)")
        }
        if let timeout, timeout <= .zero {
            throw SmolVMError(.invalidArgument, "a timeout must be positive, got \(timeout)")
        }
        if let directory = workingDirectory, directory.isEmpty || directory.utf8.contains(0) {
            throw SmolVMError(.invalidArgument, "the working directory must be a non-empty path")
        }
    }
}

/// How a command ended.
public enum ExitStatus: Sendable, Equatable, CustomStringConvertible {
    case exited(Int32)
    case signaled(Int32)

    /// The shell convention: the exit code, or 128 + the signal number.
    public var code: Int32 {
        switch self {
        case .exited(let code): code
        case .signaled(let signal): 128 + signal
        }
    }

    public var description: String {
        switch self {
        case .exited(let code): "exited with code \(code)"
        case .signaled(let signal): "killed by signal \(signal)"
        }
    }
}

/// One piece of a running command's life, in the order the guest saw it.
public enum ExecEvent: Sendable, Equatable {
    case stdout([UInt8])
    case stderr([UInt8])
    case exit(ExitStatus)
}

/// What a finished command did.
public struct ExecResult: Sendable, Equatable {
    public var status: ExitStatus
    /// Exactly the bytes the command wrote.
    public var stdout: [UInt8]
    public var stderr: [UInt8]
    public var duration: Duration

    /// The exit code, or 128 + the signal number.
    public var exitCode: Int32 { status.code }
    /// Standard output as text; invalid UTF-8 becomes U+FFFD.
    public var stdoutText: String { String(decoding: stdout, as: UTF8.self) }
    /// Standard error as text; invalid UTF-8 becomes U+FFFD.
    public var stderrText: String { String(decoding: stderr, as: UTF8.self) }
}
