/// A unit of the SmolVM wire protocol.
///
/// Every frame is a fixed 12-byte header followed by `payload`:
///
/// ```
/// offset  size  field
/// 0       4     payload length, little endian (at most `FrameLimits.maxPayload`)
/// 4       1     kind (`FrameKind`)
/// 5       1     flags (reserved, must be 0)
/// 6       2     reserved, must be 0
/// 8       4     request id, little endian (0 is reserved for unsolicited frames)
/// ```
///
/// Request ids multiplex many commands over one byte stream: every frame that
/// belongs to a command carries the id the host chose when it started it.
public struct Frame: Sendable, Equatable {
    public var kind: FrameKind
    public var requestID: UInt32
    public var payload: [UInt8]

    public init(_ kind: FrameKind, id requestID: UInt32, payload: [UInt8] = []) {
        self.kind = kind
        self.requestID = requestID
        self.payload = payload
    }

    /// The encoded frame, header included.
    public func encoded() -> [UInt8] {
        var bytes = [UInt8]()
        bytes.reserveCapacity(Frame.headerSize + payload.count)
        Frame.appendHeader(to: &bytes, kind: kind, requestID: requestID, payloadCount: payload.count)
        bytes.append(contentsOf: payload)
        return bytes
    }

    /// Appends a header describing a payload of `payloadCount` bytes, so callers
    /// that already hold the payload elsewhere avoid one copy.
    public static func appendHeader(
        to bytes: inout [UInt8], kind: FrameKind, requestID: UInt32, payloadCount: Int
    ) {
        precondition(payloadCount <= FrameLimits.maxPayload, "frame payload over the protocol limit")
        let length = UInt32(payloadCount)
        bytes.append(UInt8(truncatingIfNeeded: length))
        bytes.append(UInt8(truncatingIfNeeded: length >> 8))
        bytes.append(UInt8(truncatingIfNeeded: length >> 16))
        bytes.append(UInt8(truncatingIfNeeded: length >> 24))
        bytes.append(kind.rawValue)
        bytes.append(0)
        bytes.append(0)
        bytes.append(0)
        bytes.append(UInt8(truncatingIfNeeded: requestID))
        bytes.append(UInt8(truncatingIfNeeded: requestID >> 8))
        bytes.append(UInt8(truncatingIfNeeded: requestID >> 16))
        bytes.append(UInt8(truncatingIfNeeded: requestID >> 24))
    }

    public static let headerSize = 12
}

/// Bounds that both peers enforce. The host treats everything from the guest as
/// untrusted, so a frame over these limits ends the connection instead of
/// allocating what the peer asked for.
public enum FrameLimits {
    /// The largest payload either side sends or accepts.
    public static let maxPayload = 1 << 20
    /// The size bulk data (output, file contents) is cut into.
    public static let dataChunk = 64 << 10
    /// The most argv or environment entries one command may carry.
    public static let maxListEntries = 65_536
}

/// What a frame means. Values are part of the wire format: never renumber.
public enum FrameKind: UInt8, Sendable, CaseIterable {
    /// Guest to host, unsolicited, once the agent is serving. Payload: `AgentHello`.
    case hello = 0x01
    /// Host to guest. Answered by `pong` with the same id and payload.
    case ping = 0x02
    case pong = 0x03
    /// A request completed without a result of its own.
    case ok = 0x04
    /// A request failed. Payload: `RemoteError`.
    case error = 0x05

    /// Host to guest: start a command. Payload: `ExecRequest`.
    case exec = 0x10
    /// Host to guest: bytes for the command's standard input.
    case stdin = 0x11
    /// Host to guest: the command's standard input is complete.
    case stdinClose = 0x12
    /// Guest to host: raw bytes the command wrote to standard output.
    case stdout = 0x13
    /// Guest to host: raw bytes the command wrote to standard error.
    case stderr = 0x14
    /// Guest to host: the command ended. Payload: `ExitStatus`. Last frame of an exec.
    case exit = 0x15
    /// Host to guest: deliver a signal to the command's process group. Payload: u32 signal.
    case signal = 0x16
    /// Guest to host: the command is running. Payload: u32 pid.
    case started = 0x17
    /// Host to guest: the command's terminal changed size. Payload: `TerminalSize`.
    case resize = 0x18

    /// Host to guest: open a file for writing. Payload: `FileWriteRequest`.
    case writeFile = 0x20
    /// Host to guest: read a file. Payload: `FileReadRequest`.
    case readFile = 0x21
    /// Either direction: a chunk of file contents.
    case fileData = 0x22
    /// Either direction: no more file contents follow.
    case fileEnd = 0x23
    /// Guest to host: the file about to be sent. Payload: `FileInfo`.
    case fileInfo = 0x24

    /// Host to guest: stop every process, sync file systems and power off.
    case shutdown = 0x30
    /// Host to guest: flush file systems (`sync(2)`), answered by `ok`.
    case sync = 0x31
    /// Host to guest, after a restore from a snapshot: take a new identity
    /// (hostname, clock, random seed, MAC). Payload: `IdentityUpdate`; answered by `ok`.
    case identity = 0x32
}
