/// Splits a byte stream into frames.
///
/// Feed it whatever a `read(2)` returned with `append(_:)`, then call `next()`
/// until it returns nil. A header that breaks the format throws at once, before
/// the payload it announces is buffered.
public struct FrameDecoder: Sendable {
    private var buffer: [UInt8] = []
    private var start = 0
    public let maxPayload: Int

    public init(maxPayload: Int = FrameLimits.maxPayload) {
        self.maxPayload = maxPayload
    }

    /// Bytes received but not yet returned as frames.
    public var bufferedCount: Int { buffer.count - start }

    public mutating func append<C: Collection>(_ bytes: C) where C.Element == UInt8 {
        compact()
        buffer.append(contentsOf: bytes)
    }

    /// Appends raw memory with one copy (the generic path may go byte by byte).
    public mutating func append(_ bytes: UnsafeRawBufferPointer) {
        compact()
        buffer.append(contentsOf: bytes.bindMemory(to: UInt8.self))
    }

    private mutating func compact() {
        if start > 0, start >= buffer.count / 2 {
            buffer.removeFirst(start)
            start = 0
        }
    }

    public mutating func next() throws(ProtocolError) -> Frame? {
        guard bufferedCount >= Frame.headerSize else { return nil }
        let base = start
        let length =
            Int(buffer[base]) | Int(buffer[base + 1]) << 8 | Int(buffer[base + 2]) << 16
            | Int(buffer[base + 3]) << 24
        guard length <= maxPayload else { throw .frameTooLarge(length: length, limit: maxPayload) }
        guard let kind = FrameKind(rawValue: buffer[base + 4]) else {
            throw .unknownFrameKind(buffer[base + 4])
        }
        guard buffer[base + 5] == 0, buffer[base + 6] == 0, buffer[base + 7] == 0 else {
            throw .reservedBitsSet
        }
        let requestID =
            UInt32(buffer[base + 8]) | UInt32(buffer[base + 9]) << 8 | UInt32(buffer[base + 10]) << 16
            | UInt32(buffer[base + 11]) << 24
        guard bufferedCount >= Frame.headerSize + length else { return nil }
        let payloadStart = base + Frame.headerSize
        let payload = Array(buffer[payloadStart..<payloadStart + length])
        start = payloadStart + length
        if start == buffer.count {
            buffer.removeAll(keepingCapacity: true)
            start = 0
        }
        return Frame(kind, id: requestID, payload: payload)
    }
}
