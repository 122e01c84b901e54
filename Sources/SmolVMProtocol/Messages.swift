/// A message that travels as a frame payload.
public protocol WireMessage: Sendable {
    func encode(into writer: inout ByteWriter)
    init(from reader: inout ByteReader) throws(ProtocolError)
}

extension WireMessage {
    public func encoded() -> [UInt8] {
        var writer = ByteWriter()
        encode(into: &writer)
        return writer.bytes
    }

    /// Decodes a whole payload; bytes left over are an error.
    public init(decoding payload: [UInt8]) throws(ProtocolError) {
        var reader = ByteReader(payload)
        self = try Self(from: &reader)
        try reader.finish()
    }
}

/// The protocol revision both sides speak. Bump on incompatible change.
/// 2: terminals (`ExecRequest` terminal size, `resize`).
/// 3: `identity` after a restore from a snapshot.
public let protocolVersion: UInt32 = 3

/// Sent by the agent when it starts serving on a channel.
public struct AgentHello: WireMessage, Equatable {
    public var protocolVersion: UInt32
    public var agentVersion: String

    public init(protocolVersion: UInt32, agentVersion: String) {
        self.protocolVersion = protocolVersion
        self.agentVersion = agentVersion
    }

    public func encode(into writer: inout ByteWriter) {
        writer.u32(protocolVersion)
        writer.string(agentVersion)
    }

    public init(from reader: inout ByteReader) throws(ProtocolError) {
        protocolVersion = try reader.u32("protocolVersion")
        agentVersion = try reader.string("agentVersion")
    }
}

/// Start a command in the guest.
///
/// Arguments and environment entries are raw bytes: they reach `execve(2)`
/// exactly as given, with no shell in between, so values holding `=`, quotes,
/// `$()` or newlines arrive intact.
public struct ExecRequest: WireMessage, Equatable {
    public struct Options: OptionSet, Sendable {
        public let rawValue: UInt32
        public init(rawValue: UInt32) { self.rawValue = rawValue }
        /// Standard input comes from `stdin` frames; otherwise it is `/dev/null`.
        public static let stdin = Options(rawValue: 1 << 0)
        /// Environment entries replace the agent's default environment instead of extending it.
        public static let clearEnvironment = Options(rawValue: 1 << 1)
        /// Run on a new pseudo-terminal (`terminalRows` x `terminalColumns`) as its
        /// session leader; output arrives as `stdout`, input goes in as `stdin`.
        public static let terminal = Options(rawValue: 1 << 2)
    }

    public var argv: [[UInt8]]
    /// `KEY=VALUE` entries, added to (or replacing) the default environment.
    public var environment: [[UInt8]]
    /// Empty means the default working directory (`/root`).
    public var workingDirectory: [UInt8]
    /// Milliseconds; 0 means no limit.
    public var timeoutMilliseconds: UInt64
    public var options: Options
    /// The terminal's size when `options` has `.terminal`.
    public var terminalRows: UInt32
    public var terminalColumns: UInt32

    public init(
        argv: [[UInt8]], environment: [[UInt8]] = [], workingDirectory: [UInt8] = [],
        timeoutMilliseconds: UInt64 = 0, options: Options = [], terminalRows: UInt32 = 0, terminalColumns: UInt32 = 0
    ) {
        self.argv = argv
        self.environment = environment
        self.workingDirectory = workingDirectory
        self.timeoutMilliseconds = timeoutMilliseconds
        self.options = options
        self.terminalRows = terminalRows
        self.terminalColumns = terminalColumns
    }

    public func encode(into writer: inout ByteWriter) {
        writer.blobs(argv)
        writer.blobs(environment)
        writer.blob(workingDirectory)
        writer.u64(timeoutMilliseconds)
        writer.u32(options.rawValue)
        writer.u32(terminalRows)
        writer.u32(terminalColumns)
    }

    public init(from reader: inout ByteReader) throws(ProtocolError) {
        argv = try reader.blobs("argv")
        guard !argv.isEmpty, !argv[0].isEmpty else { throw .invalidValue(field: "argv") }
        environment = try reader.blobs("environment")
        workingDirectory = try reader.blob("workingDirectory")
        timeoutMilliseconds = try reader.u64("timeoutMilliseconds")
        options = Options(rawValue: try reader.u32("options"))
        terminalRows = try reader.u32("terminalRows")
        terminalColumns = try reader.u32("terminalColumns")
        guard terminalRows <= 65535, terminalColumns <= 65535 else { throw .invalidValue(field: "terminal size") }
        // NUL bytes cannot reach execve: C strings would silently cut them.
        for value in argv + environment + [workingDirectory] where value.contains(0) {
            throw .invalidValue(field: "NUL byte in argument")
        }
    }
}

/// How a command ended.
public enum ExitStatus: WireMessage, Equatable {
    /// It called `exit` with this code.
    case exited(Int32)
    /// A signal ended it.
    case signaled(Int32)
    /// The timeout passed; the agent killed the process group with `SIGKILL`.
    case timedOut

    public func encode(into writer: inout ByteWriter) {
        switch self {
        case .exited(let code):
            writer.u8(0)
            writer.i32(code)
        case .signaled(let signal):
            writer.u8(1)
            writer.i32(signal)
        case .timedOut:
            writer.u8(2)
            writer.i32(0)
        }
    }

    public init(from reader: inout ByteReader) throws(ProtocolError) {
        let kind = try reader.u8("exit.kind")
        let value = try reader.i32("exit.value")
        switch kind {
        case 0: self = .exited(value)
        case 1: self = .signaled(value)
        case 2: self = .timedOut
        default: throw .invalidValue(field: "exit.kind")
        }
    }
}

/// A failure reported by the agent: an `errno` (0 when none applies) and a message.
public struct RemoteError: WireMessage, Equatable, Error {
    public enum Code: UInt32, Sendable {
        case system = 1
        case badRequest = 2
        case notFound = 3
        case unknownRequest = 4
        case busy = 5
        /// The program exists but cannot be executed (a directory, no permission, not a binary).
        case notExecutable = 6
    }

    public var code: Code
    public var errno: Int32
    public var message: String

    public init(code: Code, errno: Int32 = 0, message: String) {
        self.code = code
        self.errno = errno
        self.message = message
    }

    public func encode(into writer: inout ByteWriter) {
        writer.u32(code.rawValue)
        writer.i32(errno)
        writer.string(message)
    }

    public init(from reader: inout ByteReader) throws(ProtocolError) {
        code = Code(rawValue: try reader.u32("error.code")) ?? .system
        errno = try reader.i32("error.errno")
        message = String(decoding: try reader.blob("error.message"), as: UTF8.self)
    }
}

/// Open a guest file for writing; `fileData` frames follow, then `fileEnd`.
public struct FileWriteRequest: WireMessage, Equatable {
    public var path: [UInt8]
    /// Permission bits for a file that does not exist yet.
    public var mode: UInt32
    /// Create missing parent directories.
    public var createParents: Bool

    public init(path: [UInt8], mode: UInt32 = 0o644, createParents: Bool = true) {
        self.path = path
        self.mode = mode
        self.createParents = createParents
    }

    public func encode(into writer: inout ByteWriter) {
        writer.blob(path)
        writer.u32(mode)
        writer.u8(createParents ? 1 : 0)
    }

    public init(from reader: inout ByteReader) throws(ProtocolError) {
        path = try reader.blob("path")
        guard !path.isEmpty, !path.contains(0) else { throw .invalidValue(field: "path") }
        mode = try reader.u32("mode") & 0o7777
        createParents = try reader.u8("createParents") != 0
    }
}

/// Read a guest file; answered by `fileInfo`, `fileData` frames and `fileEnd`, or `error`.
public struct FileReadRequest: WireMessage, Equatable {
    public var path: [UInt8]

    public init(path: [UInt8]) { self.path = path }

    public func encode(into writer: inout ByteWriter) { writer.blob(path) }

    public init(from reader: inout ByteReader) throws(ProtocolError) {
        path = try reader.blob("path")
        guard !path.isEmpty, !path.contains(0) else { throw .invalidValue(field: "path") }
    }
}

/// What the guest knows about a file it is about to send.
public struct FileInfo: WireMessage, Equatable {
    public var size: UInt64
    public var mode: UInt32

    public init(size: UInt64, mode: UInt32) {
        self.size = size
        self.mode = mode
    }

    public func encode(into writer: inout ByteWriter) {
        writer.u64(size)
        writer.u32(mode)
    }

    public init(from reader: inout ByteReader) throws(ProtocolError) {
        size = try reader.u64("size")
        mode = try reader.u32("mode")
    }
}

/// A terminal's size, for `resize` frames.
public struct TerminalSize: WireMessage, Equatable {
    public var rows: UInt32
    public var columns: UInt32

    public init(rows: UInt32, columns: UInt32) {
        self.rows = rows
        self.columns = columns
    }

    public func encode(into writer: inout ByteWriter) {
        writer.u32(rows)
        writer.u32(columns)
    }

    public init(from reader: inout ByteReader) throws(ProtocolError) {
        rows = try reader.u32("rows")
        columns = try reader.u32("columns")
        guard rows <= 65535, columns <= 65535 else { throw .invalidValue(field: "terminal size") }
    }
}

/// A restored guest's new identity. Every sandbox restored from one snapshot
/// would otherwise share the hostname, the random state and the MAC address
/// of the machine the snapshot was taken from, and its clock would be stuck
/// at the instant of the snapshot.
public struct IdentityUpdate: WireMessage, Equatable {
    public var hostname: String
    /// The host's wall clock, nanoseconds since the Unix epoch.
    public var realtimeNanoseconds: UInt64
    /// Fresh randomness from the host, mixed into the guest's pool and credited.
    public var seed: [UInt8]
    /// Six bytes for `eth0`, or empty to keep the current address.
    public var macAddress: [UInt8]

    public init(hostname: String, realtimeNanoseconds: UInt64, seed: [UInt8], macAddress: [UInt8] = []) {
        self.hostname = hostname
        self.realtimeNanoseconds = realtimeNanoseconds
        self.seed = seed
        self.macAddress = macAddress
    }

    public func encode(into writer: inout ByteWriter) {
        writer.string(hostname)
        writer.u64(realtimeNanoseconds)
        writer.blob(seed)
        writer.blob(macAddress)
    }

    public init(from reader: inout ByteReader) throws(ProtocolError) {
        hostname = try reader.string("hostname")
        realtimeNanoseconds = try reader.u64("realtimeNanoseconds")
        seed = try reader.blob("seed")
        macAddress = try reader.blob("macAddress")
        // sethostname(2) takes at most 64 bytes; the pool takes at most a page per call.
        guard (1...64).contains(hostname.utf8.count) else { throw .invalidValue(field: "hostname") }
        guard seed.count <= 512 else { throw .invalidValue(field: "seed") }
        guard macAddress.isEmpty || macAddress.count == 6 else { throw .invalidValue(field: "macAddress") }
    }
}
