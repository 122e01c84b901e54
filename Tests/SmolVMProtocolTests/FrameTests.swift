import SmolVMProtocol
import Testing

/// Builds a raw 12-byte header without going through `Frame`, so tests can
/// describe headers that `Frame.appendHeader` refuses to produce.
private func rawHeader(
    length: UInt32, kind: UInt8, flags: UInt8 = 0, reserved: (UInt8, UInt8) = (0, 0), requestID: UInt32 = 7
) -> [UInt8] {
    var bytes = [UInt8]()
    for shift in stride(from: 0, to: 32, by: 8) { bytes.append(UInt8(truncatingIfNeeded: length >> shift)) }
    bytes.append(kind)
    bytes.append(flags)
    bytes.append(reserved.0)
    bytes.append(reserved.1)
    for shift in stride(from: 0, to: 32, by: 8) { bytes.append(UInt8(truncatingIfNeeded: requestID >> shift)) }
    return bytes
}

/// Drains every complete frame the decoder holds.
private func drain(_ decoder: inout FrameDecoder) throws -> [Frame] {
    var frames = [Frame]()
    while let frame = try decoder.next() { frames.append(frame) }
    return frames
}

/// A payload whose bytes differ from position to position, so an off-by-one
/// slice cannot go unnoticed.
private func patternedPayload(_ count: Int, seed: Int = 0) -> [UInt8] {
    (0..<count).map { UInt8(truncatingIfNeeded: $0 &* 31 &+ seed) }
}

@Suite("Frame encoding")
struct FrameEncodingTests {
    @Test func headerLayoutIsLittleEndian() {
        let frame = Frame(.exec, id: 0x0403_0201, payload: [0xAA, 0xBB, 0xCC])
        let bytes = frame.encoded()
        #expect(bytes.count == Frame.headerSize + 3)
        #expect(Array(bytes[0..<4]) == [3, 0, 0, 0])
        #expect(bytes[4] == FrameKind.exec.rawValue)
        #expect(Array(bytes[5..<8]) == [0, 0, 0])
        #expect(Array(bytes[8..<12]) == [0x01, 0x02, 0x03, 0x04])
        #expect(Array(bytes[12...]) == [0xAA, 0xBB, 0xCC])
    }

    @Test func appendHeaderMatchesEncoded() {
        let frame = Frame(.stdout, id: 99, payload: patternedPayload(300))
        var header = [UInt8]()
        Frame.appendHeader(to: &header, kind: .stdout, requestID: 99, payloadCount: 300)
        #expect(header.count == Frame.headerSize)
        #expect(header + frame.payload == frame.encoded())
    }

    @Test func frameKindRawValuesAreStable() {
        // The values are part of the wire format and must never be renumbered.
        let expected: [FrameKind: UInt8] = [
            .hello: 0x01, .ping: 0x02, .pong: 0x03, .ok: 0x04, .error: 0x05,
            .exec: 0x10, .stdin: 0x11, .stdinClose: 0x12, .stdout: 0x13, .stderr: 0x14,
            .exit: 0x15, .signal: 0x16, .started: 0x17, .resize: 0x18,
            .writeFile: 0x20, .readFile: 0x21, .fileData: 0x22, .fileEnd: 0x23, .fileInfo: 0x24,
            .shutdown: 0x30, .sync: 0x31, .identity: 0x32,
        ]
        #expect(FrameKind.allCases.count == expected.count)
        for kind in FrameKind.allCases {
            #expect(expected[kind] == kind.rawValue, "\(kind)")
        }
        #expect(Set(FrameKind.allCases.map(\.rawValue)).count == FrameKind.allCases.count)
    }
}

@Suite("FrameDecoder round trips")
struct FrameRoundTripTests {
    @Test(arguments: FrameKind.allCases)
    func emptyPayloadRoundTrip(kind: FrameKind) throws {
        let frame = Frame(kind, id: 0xDEAD_BEEF)
        let bytes = frame.encoded()
        #expect(bytes.count == Frame.headerSize)

        var decoder = FrameDecoder()
        decoder.append(bytes)
        let decoded = try #require(try decoder.next())
        #expect(decoded == frame)
        #expect(decoded.kind == kind)
        #expect(decoded.requestID == 0xDEAD_BEEF)
        #expect(decoded.payload.isEmpty)
        #expect(try decoder.next() == nil)
        #expect(decoder.bufferedCount == 0)
    }

    @Test(arguments: FrameKind.allCases)
    func smallPayloadRoundTrip(kind: FrameKind) throws {
        let frame = Frame(
            kind, id: UInt32(kind.rawValue) << 8 | 1, payload: patternedPayload(37, seed: Int(kind.rawValue)))
        var decoder = FrameDecoder()
        decoder.append(frame.encoded())
        #expect(try decoder.next() == frame)
        #expect(try decoder.next() == nil)
        #expect(decoder.bufferedCount == 0)
    }

    @Test(arguments: FrameKind.allCases)
    func maximumPayloadRoundTrip(kind: FrameKind) throws {
        let payload = patternedPayload(FrameLimits.maxPayload, seed: Int(kind.rawValue))
        let frame = Frame(kind, id: UInt32.max, payload: payload)
        let bytes = frame.encoded()
        #expect(bytes.count == Frame.headerSize + FrameLimits.maxPayload)
        // 1 MiB = 0x00100000, little endian.
        #expect(Array(bytes[0..<4]) == [0x00, 0x00, 0x10, 0x00])

        var decoder = FrameDecoder()
        decoder.append(bytes)
        let decoded = try #require(try decoder.next())
        #expect(decoded.kind == kind)
        #expect(decoded.requestID == UInt32.max)
        #expect(decoded.payload.count == FrameLimits.maxPayload)
        #expect(decoded.payload == payload)
        #expect(try decoder.next() == nil)
        #expect(decoder.bufferedCount == 0)
    }

    @Test func requestIDZeroIsDecoded() throws {
        var decoder = FrameDecoder()
        decoder.append(Frame(.hello, id: 0, payload: [1, 2]).encoded())
        let frame = try #require(try decoder.next())
        #expect(frame.requestID == 0)
        #expect(frame.kind == .hello)
    }
}

@Suite("FrameDecoder streaming")
struct FrameStreamingTests {
    /// One frame of every kind, with varied ids and payload sizes (including empty).
    static let sampleFrames: [Frame] = FrameKind.allCases.enumerated().map { index, kind in
        Frame(kind, id: UInt32(index * 1_000 + 1), payload: patternedPayload((index * 7) % 40, seed: index))
    }

    @Test func nothingBufferedReturnsNil() throws {
        var decoder = FrameDecoder()
        #expect(try decoder.next() == nil)
        #expect(decoder.bufferedCount == 0)
        decoder.append([UInt8]())
        #expect(try decoder.next() == nil)
        #expect(decoder.bufferedCount == 0)
    }

    @Test func oneByteAtATime() throws {
        let stream = Self.sampleFrames.flatMap { $0.encoded() }
        var decoder = FrameDecoder()
        var received = [Frame]()
        for (index, byte) in stream.enumerated() {
            decoder.append([byte])
            received += try drain(&decoder)
            // Nothing is lost or duplicated along the way.
            let consumed = received.reduce(0) { $0 + Frame.headerSize + $1.payload.count }
            #expect(consumed + decoder.bufferedCount == index + 1)
        }
        #expect(received == Self.sampleFrames)
        #expect(decoder.bufferedCount == 0)
        #expect(try decoder.next() == nil)
    }

    @Test func partialHeaderAndPartialPayloadWait() throws {
        let frame = Frame(.stdout, id: 5, payload: patternedPayload(20))
        let bytes = frame.encoded()
        var decoder = FrameDecoder()

        decoder.append(bytes[0..<11])
        #expect(try decoder.next() == nil)
        #expect(decoder.bufferedCount == 11)

        decoder.append(bytes[11..<(Frame.headerSize + 19)])
        #expect(try decoder.next() == nil)
        #expect(decoder.bufferedCount == Frame.headerSize + 19)

        decoder.append(bytes[(Frame.headerSize + 19)...])
        #expect(try decoder.next() == frame)
        #expect(decoder.bufferedCount == 0)
    }

    @Test func severalFramesInOneAppend() throws {
        let stream = Self.sampleFrames.flatMap { $0.encoded() }
        var decoder = FrameDecoder()
        decoder.append(stream)
        #expect(decoder.bufferedCount == stream.count)
        let received = try drain(&decoder)
        #expect(received == Self.sampleFrames)
        #expect(decoder.bufferedCount == 0)
    }

    @Test func framesSplitAcrossIrregularChunks() throws {
        // Includes a frame well past half the buffer, to exercise compaction.
        var frames = Self.sampleFrames
        frames.insert(Frame(.fileData, id: 42, payload: patternedPayload(FrameLimits.dataChunk)), at: 3)
        frames.append(Frame(.fileEnd, id: 42))
        let stream = frames.flatMap { $0.encoded() }

        for chunkSize in [2, 5, 13, 64, 4_097] {
            var decoder = FrameDecoder()
            var received = [Frame]()
            var offset = 0
            while offset < stream.count {
                let end = min(offset + chunkSize, stream.count)
                decoder.append(stream[offset..<end])
                received += try drain(&decoder)
                offset = end
            }
            #expect(received == frames, "chunk size \(chunkSize)")
            #expect(decoder.bufferedCount == 0, "chunk size \(chunkSize)")
        }
    }

    @Test func trailingPartialFrameStaysBuffered() throws {
        let first = Frame(.ping, id: 1, payload: [9, 9, 9])
        let second = Frame(.pong, id: 1, payload: [9, 9, 9])
        let secondBytes = second.encoded()
        var decoder = FrameDecoder()
        decoder.append(first.encoded() + secondBytes[0..<5])
        #expect(try decoder.next() == first)
        #expect(try decoder.next() == nil)
        #expect(decoder.bufferedCount == 5)
        decoder.append(secondBytes[5...])
        #expect(try decoder.next() == second)
        #expect(decoder.bufferedCount == 0)
    }
}

@Suite("FrameDecoder rejections")
struct FrameRejectionTests {
    @Test func oversizedHeaderThrowsBeforePayloadArrives() throws {
        let length = UInt32(FrameLimits.maxPayload + 1)
        var decoder = FrameDecoder()
        // Only the header: not one byte of the announced payload.
        decoder.append(rawHeader(length: length, kind: FrameKind.stdout.rawValue))
        #expect(decoder.bufferedCount == Frame.headerSize)
        #expect(throws: ProtocolError.frameTooLarge(length: FrameLimits.maxPayload + 1, limit: FrameLimits.maxPayload))
        {
            try decoder.next()
        }
    }

    @Test func hugeLengthThrowsFrameTooLarge() throws {
        var decoder = FrameDecoder()
        decoder.append(rawHeader(length: .max, kind: FrameKind.exec.rawValue))
        #expect(throws: ProtocolError.frameTooLarge(length: Int(UInt32.max), limit: FrameLimits.maxPayload)) {
            try decoder.next()
        }
    }

    @Test func exactlyMaxPayloadHeaderIsAcceptedAndWaits() throws {
        var decoder = FrameDecoder()
        decoder.append(rawHeader(length: UInt32(FrameLimits.maxPayload), kind: FrameKind.fileData.rawValue))
        // Legal header, payload not there yet: wait rather than fail.
        #expect(try decoder.next() == nil)
        #expect(decoder.bufferedCount == Frame.headerSize)
    }

    @Test func unknownKindThrows() throws {
        for kind: UInt8 in [0x00, 0x06, 0x0F, 0x19, 0x25, 0x33, 0x7F, 0xFF] {
            var decoder = FrameDecoder()
            decoder.append(rawHeader(length: 0, kind: kind))
            #expect(throws: ProtocolError.unknownFrameKind(kind)) { try decoder.next() }
        }
    }

    @Test func unknownKindThrowsBeforePayloadArrives() throws {
        var decoder = FrameDecoder()
        decoder.append(rawHeader(length: 100, kind: 0xEE))
        #expect(throws: ProtocolError.unknownFrameKind(0xEE)) { try decoder.next() }
    }

    /// Flags byte, then the two reserved bytes.
    @Test(arguments: [
        [UInt8(1), 0, 0],
        [0x80, 0, 0],
        [0, 1, 0],
        [0, 0, 1],
        [0, 0, 0x80],
        [0xFF, 0xFF, 0xFF],
    ])
    func nonZeroFlagsOrReservedThrow(bits: [UInt8]) throws {
        var decoder = FrameDecoder()
        decoder.append(
            rawHeader(length: 0, kind: FrameKind.ping.rawValue, flags: bits[0], reserved: (bits[1], bits[2])))
        #expect(throws: ProtocolError.reservedBitsSet) { try decoder.next() }
    }

    @Test func reservedBitsCheckedBeforePayloadArrives() throws {
        var decoder = FrameDecoder()
        decoder.append(rawHeader(length: 64, kind: FrameKind.stdin.rawValue, flags: 2))
        #expect(throws: ProtocolError.reservedBitsSet) { try decoder.next() }
    }

    @Test func customMaxPayloadRejectsBiggerFrames() throws {
        var decoder = FrameDecoder(maxPayload: 16)
        #expect(decoder.maxPayload == 16)
        decoder.append(Frame(.stdout, id: 1, payload: patternedPayload(17)).encoded())
        #expect(throws: ProtocolError.frameTooLarge(length: 17, limit: 16)) { try decoder.next() }

        // Header only: still rejected at once.
        var headerOnly = FrameDecoder(maxPayload: 16)
        headerOnly.append(rawHeader(length: 1_000, kind: FrameKind.stdout.rawValue))
        #expect(throws: ProtocolError.frameTooLarge(length: 1_000, limit: 16)) { try headerOnly.next() }
    }

    @Test func customMaxPayloadAcceptsFramesAtTheLimit() throws {
        var decoder = FrameDecoder(maxPayload: 16)
        let atLimit = Frame(.stdout, id: 1, payload: patternedPayload(16))
        let empty = Frame(.stdinClose, id: 1)
        decoder.append(atLimit.encoded() + empty.encoded())
        #expect(try drain(&decoder) == [atLimit, empty])
        #expect(decoder.bufferedCount == 0)
    }

    @Test func badFrameAfterGoodFramesThrowsOnlyWhenReached() throws {
        let good = Frame(.stdout, id: 3, payload: [1, 2, 3])
        var decoder = FrameDecoder()
        decoder.append(good.encoded() + rawHeader(length: 0, kind: 0x99))
        #expect(try decoder.next() == good)
        #expect(throws: ProtocolError.unknownFrameKind(0x99)) { try decoder.next() }
    }
}
