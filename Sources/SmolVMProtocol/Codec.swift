/// Errors raised while decoding bytes from a peer. Every one of them means the
/// peer is broken or hostile; the connection is not used again.
public enum ProtocolError: Error, Sendable, Equatable, CustomStringConvertible {
    case frameTooLarge(length: Int, limit: Int)
    case unknownFrameKind(UInt8)
    case reservedBitsSet
    case truncated(field: String)
    case invalidValue(field: String)
    case trailingBytes(count: Int)

    public var description: String {
        switch self {
        case .frameTooLarge(let length, let limit):
            "frame of \(length) bytes exceeds the \(limit)-byte limit"
        case .unknownFrameKind(let kind): "unknown frame kind 0x\(String(kind, radix: 16))"
        case .reservedBitsSet: "reserved header bits are set"
        case .truncated(let field): "message truncated in field '\(field)'"
        case .invalidValue(let field): "invalid value in field '\(field)'"
        case .trailingBytes(let count): "\(count) unexpected bytes after message"
        }
    }
}

/// Little-endian writer for message payloads.
public struct ByteWriter: Sendable {
    public private(set) var bytes: [UInt8] = []

    public init() {}

    public mutating func u8(_ value: UInt8) { bytes.append(value) }

    public mutating func u32(_ value: UInt32) {
        for shift in stride(from: 0, to: 32, by: 8) { bytes.append(UInt8(truncatingIfNeeded: value >> shift)) }
    }

    public mutating func u64(_ value: UInt64) {
        for shift in stride(from: 0, to: 64, by: 8) { bytes.append(UInt8(truncatingIfNeeded: value >> shift)) }
    }

    public mutating func i32(_ value: Int32) { u32(UInt32(bitPattern: value)) }

    /// A length-prefixed byte string.
    public mutating func blob(_ value: [UInt8]) {
        u32(UInt32(value.count))
        bytes.append(contentsOf: value)
    }

    public mutating func string(_ value: String) { blob(Array(value.utf8)) }

    public mutating func blobs(_ values: [[UInt8]]) {
        u32(UInt32(values.count))
        for value in values { blob(value) }
    }
}

/// Little-endian reader over an untrusted payload: every length is checked
/// against what is left before anything is allocated.
public struct ByteReader {
    private let bytes: [UInt8]
    private var offset: Int

    public init(_ bytes: [UInt8]) {
        self.bytes = bytes
        self.offset = 0
    }

    public var remaining: Int { bytes.count - offset }

    public mutating func u8(_ field: String) throws(ProtocolError) -> UInt8 {
        guard remaining >= 1 else { throw .truncated(field: field) }
        defer { offset += 1 }
        return bytes[offset]
    }

    public mutating func u32(_ field: String) throws(ProtocolError) -> UInt32 {
        guard remaining >= 4 else { throw .truncated(field: field) }
        var value: UInt32 = 0
        for index in 0..<4 { value |= UInt32(bytes[offset + index]) << (8 * index) }
        offset += 4
        return value
    }

    public mutating func u64(_ field: String) throws(ProtocolError) -> UInt64 {
        guard remaining >= 8 else { throw .truncated(field: field) }
        var value: UInt64 = 0
        for index in 0..<8 { value |= UInt64(bytes[offset + index]) << (8 * index) }
        offset += 8
        return value
    }

    public mutating func i32(_ field: String) throws(ProtocolError) -> Int32 {
        Int32(bitPattern: try u32(field))
    }

    public mutating func blob(_ field: String) throws(ProtocolError) -> [UInt8] {
        let count = Int(try u32(field))
        guard count <= remaining else { throw .truncated(field: field) }
        defer { offset += count }
        return Array(bytes[offset..<offset + count])
    }

    public mutating func string(_ field: String) throws(ProtocolError) -> String {
        let raw = try blob(field)
        guard let value = String(validating: raw, as: UTF8.self) else { throw .invalidValue(field: field) }
        return value
    }

    public mutating func blobs(_ field: String) throws(ProtocolError) -> [[UInt8]] {
        let count = Int(try u32(field))
        // Each entry needs at least its 4-byte length, which bounds a hostile count.
        guard count <= FrameLimits.maxListEntries, count * 4 <= remaining else {
            throw .invalidValue(field: field)
        }
        var values = [[UInt8]]()
        values.reserveCapacity(count)
        for _ in 0..<count { values.append(try blob(field)) }
        return values
    }

    /// Fails when the peer sent more than the message holds.
    public func finish() throws(ProtocolError) {
        guard remaining == 0 else { throw .trailingBytes(count: remaining) }
    }
}
