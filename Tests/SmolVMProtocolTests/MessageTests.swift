import SmolVMProtocol
import Testing

// MARK: - Helpers

/// Encodes then decodes `message`, requiring the whole payload to be consumed.
private func roundTrip<M: WireMessage & Equatable>(_ message: M) throws -> M {
    try M(decoding: message.encoded())
}

/// The error decoding `bytes` as `M` raises, or nil when it decodes.
private func decodingError<M: WireMessage>(_: M.Type, _ bytes: [UInt8]) -> ProtocolError? {
    do {
        _ = try M(decoding: bytes)
        return nil
    } catch {
        return error
    }
}

private func isTruncated(_ error: ProtocolError?) -> Bool {
    if case .truncated = error { return true }
    return false
}

private func isInvalidValue(_ error: ProtocolError?) -> Bool {
    if case .invalidValue = error { return true }
    return false
}

/// Swift Testing also declares an `ExitStatus` (for exit tests).
typealias ExitStatus = SmolVMProtocol.ExitStatus

private func bytes(_ string: String) -> [UInt8] { Array(string.utf8) }

/// Argument and environment values a shell would mangle, plus bytes that are not UTF-8.
private let awkwardValues: [[UInt8]] = [
    bytes("a=b=c"),
    bytes("KEY=="),
    bytes("=leading-equals"),
    bytes("'single quoted' \"double quoted\""),
    bytes("$(rm -rf /)"),
    bytes("`id` ${HOME} $HOME"),
    bytes("line one\nline two\r\n"),
    bytes("tab\there"),
    bytes(";|&<>*?~!#"),
    bytes("back\\slash"),
    bytes("ünïcödé 🚀"),
    [0xFF, 0xFE],
    [0xC3, 0x28],  // Invalid two-byte UTF-8 sequence.
    [0xED, 0xA0, 0x80],  // Encoded surrogate, invalid UTF-8.
    [0x01, 0x1B, 0x7F],
    [],  // An empty argument is legal anywhere but argv[0].
]

// MARK: - Codec primitives

@Suite("ByteWriter and ByteReader")
struct CodecTests {
    @Test func integersAreLittleEndian() {
        var writer = ByteWriter()
        writer.u8(0xAB)
        writer.u32(0x0403_0201)
        writer.u64(0x0807_0605_0403_0201)
        writer.i32(-2)
        #expect(
            writer.bytes == [
                0xAB,
                0x01, 0x02, 0x03, 0x04,
                0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x07, 0x08,
                0xFE, 0xFF, 0xFF, 0xFF,
            ])
    }

    @Test func primitivesRoundTrip() throws {
        var writer = ByteWriter()
        writer.u8(0)
        writer.u8(.max)
        writer.u32(.max)
        writer.u64(.max)
        writer.i32(.min)
        writer.i32(.max)
        writer.blob([])
        writer.blob([0xFF, 0x00, 0xFE])
        writer.string("héllo")
        writer.blobs([[1], [], [2, 3]])

        var reader = ByteReader(writer.bytes)
        #expect(try reader.u8("a") == 0)
        #expect(try reader.u8("b") == .max)
        #expect(try reader.u32("c") == .max)
        #expect(try reader.u64("d") == .max)
        #expect(try reader.i32("e") == .min)
        #expect(try reader.i32("f") == .max)
        #expect(try reader.blob("g") == [])
        #expect(try reader.blob("h") == [0xFF, 0x00, 0xFE])
        #expect(try reader.string("i") == "héllo")
        #expect(try reader.blobs("j") == [[1], [], [2, 3]])
        #expect(reader.remaining == 0)
        try reader.finish()
    }

    @Test func blobIsLengthPrefixed() {
        var writer = ByteWriter()
        writer.blob([7, 8, 9])
        #expect(writer.bytes == [3, 0, 0, 0, 7, 8, 9])
    }

    @Test func readsPastTheEndThrowTruncatedWithTheFieldName() {
        var reader = ByteReader([1, 2, 3])
        #expect(throws: ProtocolError.truncated(field: "x")) { try reader.u32("x") }
        var reader64 = ByteReader([1, 2, 3, 4, 5, 6, 7])
        #expect(throws: ProtocolError.truncated(field: "y")) { try reader64.u64("y") }
        var empty = ByteReader([])
        #expect(throws: ProtocolError.truncated(field: "z")) { try empty.u8("z") }
        var emptyI32 = ByteReader([])
        #expect(throws: ProtocolError.truncated(field: "w")) { try emptyI32.i32("w") }
    }

    @Test func blobLongerThanRemainingThrowsTruncated() {
        // Announces 10 bytes, holds 3.
        var reader = ByteReader([10, 0, 0, 0, 1, 2, 3])
        #expect(throws: ProtocolError.truncated(field: "data")) { try reader.blob("data") }

        // Announces 4 GiB - 1: must fail on the length check, not try to allocate.
        var huge = ByteReader([0xFF, 0xFF, 0xFF, 0xFF, 1, 2, 3])
        #expect(throws: ProtocolError.truncated(field: "data")) { try huge.blob("data") }
    }

    @Test func blobExactlyFillingTheRestDecodes() throws {
        var reader = ByteReader([3, 0, 0, 0, 1, 2, 3])
        #expect(try reader.blob("data") == [1, 2, 3])
        try reader.finish()
    }

    @Test func hostileListCountsThrowWithoutAllocating() {
        // 0xFFFFFFFF entries would need at least 16 GiB of length prefixes.
        var reader = ByteReader([0xFF, 0xFF, 0xFF, 0xFF])
        #expect(throws: ProtocolError.invalidValue(field: "list")) { try reader.blobs("list") }

        // Over the entry limit even though the bytes would be there.
        var writer = ByteWriter()
        writer.u32(UInt32(FrameLimits.maxListEntries + 1))
        let overLimit = writer.bytes + [UInt8](repeating: 0, count: (FrameLimits.maxListEntries + 1) * 4)
        var overLimitReader = ByteReader(overLimit)
        #expect(throws: ProtocolError.invalidValue(field: "list")) { try overLimitReader.blobs("list") }

        // Under the entry limit but more entries than the remaining bytes could hold.
        var short = ByteReader([100, 0, 0, 0] + [UInt8](repeating: 0, count: 99 * 4))
        #expect(throws: ProtocolError.invalidValue(field: "list")) { try short.blobs("list") }
    }

    @Test func listAtTheEntryLimitDecodes() throws {
        var writer = ByteWriter()
        writer.blobs([[UInt8]](repeating: [], count: FrameLimits.maxListEntries))
        var reader = ByteReader(writer.bytes)
        let values = try reader.blobs("list")
        #expect(values.count == FrameLimits.maxListEntries)
        #expect(values.allSatisfy { $0.isEmpty })
        try reader.finish()
    }

    @Test func stringRejectsInvalidUTF8() {
        var writer = ByteWriter()
        writer.blob([0xFF, 0xFE])
        var reader = ByteReader(writer.bytes)
        #expect(throws: ProtocolError.invalidValue(field: "s")) { try reader.string("s") }
    }

    @Test func finishReportsTrailingByteCount() throws {
        var reader = ByteReader([1, 2, 3, 4, 5])
        _ = try reader.u8("a")
        #expect(throws: ProtocolError.trailingBytes(count: 4)) { try reader.finish() }
    }

    @Test func errorDescriptionsNameTheProblem() {
        #expect(ProtocolError.frameTooLarge(length: 5, limit: 4).description.contains("5"))
        #expect(ProtocolError.unknownFrameKind(0xAB).description.contains("0xab"))
        #expect(ProtocolError.truncated(field: "argv").description.contains("argv"))
        #expect(ProtocolError.invalidValue(field: "path").description.contains("path"))
        #expect(ProtocolError.trailingBytes(count: 3).description.contains("3"))
    }
}

// MARK: - Message round trips

@Suite("Message round trips")
struct MessageRoundTripTests {
    @Test func agentHello() throws {
        let hello = AgentHello(protocolVersion: protocolVersion, agentVersion: "0.1.0-dev+ünï 🚀")
        #expect(try roundTrip(hello) == hello)
        let empty = AgentHello(protocolVersion: .max, agentVersion: "")
        #expect(try roundTrip(empty) == empty)
    }

    @Test func agentHelloWireLayout() {
        let hello = AgentHello(protocolVersion: 1, agentVersion: "v2")
        #expect(hello.encoded() == [1, 0, 0, 0, 2, 0, 0, 0, UInt8(ascii: "v"), UInt8(ascii: "2")])
    }

    @Test func agentHelloRejectsNonUTF8Version() {
        var writer = ByteWriter()
        writer.u32(1)
        writer.blob([0xFF, 0xFE])
        #expect(isInvalidValue(decodingError(AgentHello.self, writer.bytes)))
    }

    @Test func execRequestMinimal() throws {
        let request = ExecRequest(argv: [bytes("/bin/true")])
        let decoded = try roundTrip(request)
        #expect(decoded == request)
        #expect(decoded.environment.isEmpty)
        #expect(decoded.workingDirectory.isEmpty)
        #expect(decoded.timeoutMilliseconds == 0)
        #expect(decoded.options.isEmpty)
    }

    @Test func execRequestWithAwkwardValues() throws {
        let request = ExecRequest(
            argv: [bytes("/bin/echo")] + awkwardValues,
            environment: awkwardValues.map { bytes("VAR=") + $0 } + [bytes("A=B=C"), bytes("NOEQUALS")],
            workingDirectory: [0x2F, 0xFF, 0xFE, 0x2F, 0x24, 0x28, 0x29],  // "/\xff\xfe/$()"
            timeoutMilliseconds: .max,
            options: [.stdin, .clearEnvironment]
        )
        let decoded = try roundTrip(request)
        #expect(decoded == request)
        #expect(decoded.argv.count == awkwardValues.count + 1)
        for (index, value) in awkwardValues.enumerated() {
            #expect(decoded.argv[index + 1] == value, "argv[\(index + 1)]")
            #expect(decoded.environment[index] == bytes("VAR=") + value, "environment[\(index)]")
        }
        #expect(decoded.options.contains(.stdin))
        #expect(decoded.options.contains(.clearEnvironment))
    }

    @Test(arguments: awkwardValues.filter { !$0.isEmpty })
    func execRequestAwkwardValueAsProgram(value: [UInt8]) throws {
        let request = ExecRequest(argv: [value, value], environment: [value])
        #expect(try roundTrip(request) == request)
    }

    @Test func execRequestOptionBitsSurvive() throws {
        for raw: UInt32 in [0, 1, 2, 3, 0x8000_0000] {
            let request = ExecRequest(argv: [bytes("sh")], options: .init(rawValue: raw))
            #expect(try roundTrip(request).options.rawValue == raw)
        }
    }

    @Test func execRequestThroughAFrame() throws {
        let request = ExecRequest(
            argv: [bytes("/bin/sh"), bytes("-c"), bytes("echo \"$(printf 'a\\nb')\" | tr a b")],
            environment: [bytes("PS1=$ "), [0x58, 0x3D, 0xFF, 0xFE]],
            workingDirectory: bytes("/tmp/with space"),
            timeoutMilliseconds: 30_000,
            options: .stdin
        )
        var decoder = FrameDecoder()
        decoder.append(Frame(.exec, id: 12, payload: request.encoded()).encoded())
        let frame = try #require(try decoder.next())
        #expect(frame.kind == .exec)
        #expect(frame.requestID == 12)
        #expect(try ExecRequest(decoding: frame.payload) == request)
    }

    @Test(arguments: [
        ExitStatus.exited(0), .exited(1), .exited(255), .exited(-1), .exited(.max), .exited(.min),
        .signaled(9), .signaled(15), .signaled(0), .timedOut,
    ])
    func exitStatus(status: ExitStatus) throws {
        #expect(status.encoded().count == 5)
        #expect(try roundTrip(status) == status)
    }

    @Test func exitStatusWireLayout() {
        #expect(ExitStatus.exited(3).encoded() == [0, 3, 0, 0, 0])
        #expect(ExitStatus.signaled(9).encoded() == [1, 9, 0, 0, 0])
        #expect(ExitStatus.timedOut.encoded() == [2, 0, 0, 0, 0])
        #expect(ExitStatus.exited(-1).encoded() == [0, 0xFF, 0xFF, 0xFF, 0xFF])
    }

    @Test func remoteErrorEveryCode() throws {
        let codes: [RemoteError.Code] = [.system, .badRequest, .notFound, .unknownRequest, .busy]
        for (index, code) in codes.enumerated() {
            let error = RemoteError(code: code, errno: Int32(index * 10), message: "failed: '$(x)'\n\"quoted\" ü")
            #expect(try roundTrip(error) == error)
        }
        let negative = RemoteError(code: .system, errno: -1, message: "")
        #expect(try roundTrip(negative) == negative)
        #expect(RemoteError(code: .busy, message: "m").errno == 0)
    }

    @Test func remoteErrorUnknownCodeFallsBackToSystem() throws {
        var writer = ByteWriter()
        writer.u32(999)
        writer.i32(2)
        writer.string("mystery")
        let decoded = try RemoteError(decoding: writer.bytes)
        #expect(decoded == RemoteError(code: .system, errno: 2, message: "mystery"))
    }

    @Test func remoteErrorNonUTF8MessageIsRepairedNotRejected() throws {
        var writer = ByteWriter()
        writer.u32(RemoteError.Code.system.rawValue)
        writer.i32(5)
        writer.blob([0x6F, 0x6B, 0xFF, 0xFE])
        let decoded = try RemoteError(decoding: writer.bytes)
        #expect(decoded.code == .system)
        #expect(decoded.errno == 5)
        #expect(decoded.message.hasPrefix("ok"))
        #expect(decoded.message.contains("\u{FFFD}"))
    }

    @Test func fileWriteRequest() throws {
        let defaults = FileWriteRequest(path: bytes("/etc/motd"))
        #expect(defaults.mode == 0o644)
        #expect(defaults.createParents)
        #expect(try roundTrip(defaults) == defaults)

        let awkward = FileWriteRequest(
            path: [0x2F, 0x74, 0x6D, 0x70, 0x2F, 0xFF, 0xFE] + bytes("/$(x) 'q'\n=\"y\""), mode: 0o7755,
            createParents: false)
        #expect(try roundTrip(awkward) == awkward)

        for mode: UInt32 in [0, 0o600, 0o755, 0o4755, 0o7777] {
            let request = FileWriteRequest(path: bytes("/f"), mode: mode)
            #expect(try roundTrip(request).mode == mode)
        }
    }

    @Test func fileWriteRequestMasksFileTypeBits() throws {
        // Only permission bits travel: a peer cannot smuggle S_IFMT bits through.
        let request = FileWriteRequest(path: bytes("/f"), mode: 0o100644)
        #expect(try roundTrip(request).mode == 0o644)
        let all = FileWriteRequest(path: bytes("/f"), mode: .max)
        #expect(try roundTrip(all).mode == 0o7777)
    }

    @Test func fileReadRequest() throws {
        for path in [bytes("/"), bytes("/etc/hostname"), [0x2F, 0xFF, 0xFE], bytes("/a b/$(c)/'d'/\"e\"/f=g\nh")] {
            let request = FileReadRequest(path: path)
            #expect(try roundTrip(request) == request)
        }
    }

    @Test func fileInfo() throws {
        for info in [
            FileInfo(size: 0, mode: 0), FileInfo(size: 12_345, mode: 0o100644),
            FileInfo(size: .max, mode: .max),
        ] {
            #expect(try roundTrip(info) == info)
            #expect(info.encoded().count == 12)
        }
    }
}

// MARK: - Hostile payloads

@Suite("Hostile payloads")
struct HostilePayloadTests {
    /// For fixed-layout messages every strict prefix must fail as truncated.
    @Test func truncatedFixedLayoutMessagesThrowTruncated() {
        func check<M: WireMessage & Equatable>(_ message: M, sourceLocation: SourceLocation = #_sourceLocation) {
            let full = message.encoded()
            for length in 0..<full.count {
                let error = decodingError(M.self, Array(full[0..<length]))
                #expect(
                    isTruncated(error),
                    "\(M.self) cut to \(length) of \(full.count) bytes: \(String(describing: error))",
                    sourceLocation: sourceLocation)
            }
        }
        check(AgentHello(protocolVersion: 1, agentVersion: "agent-1.0"))
        check(ExitStatus.exited(42))
        check(ExitStatus.signaled(9))
        check(ExitStatus.timedOut)
        check(RemoteError(code: .notFound, errno: 2, message: "no such file"))
        check(FileWriteRequest(path: bytes("/some/path"), mode: 0o600, createParents: true))
        check(FileReadRequest(path: bytes("/some/path")))
        check(FileInfo(size: 99, mode: 0o644))
    }

    /// ExecRequest truncation: cut inside a field, the decoder reports `.truncated`;
    /// cut so that a list count promises more entries than bytes remain, the list
    /// guard reports `.invalidValue` for that list. Either way it must throw.
    @Test func truncatedExecRequestAlwaysThrows() {
        let request = ExecRequest(
            argv: [bytes("/bin/echo"), bytes("a=b"), [0xFF, 0xFE]],
            environment: [bytes("K=V"), bytes("Q='$(x)'")],
            workingDirectory: bytes("/root"),
            timeoutMilliseconds: 1_000,
            options: .stdin
        )
        let full = request.encoded()
        for length in 0..<full.count {
            let error = decodingError(ExecRequest.self, Array(full[0..<length]))
            let acceptable =
                isTruncated(error) || error == .invalidValue(field: "argv")
                || error == .invalidValue(field: "environment")
            #expect(acceptable, "cut to \(length) of \(full.count) bytes: \(String(describing: error))")
        }
    }

    @Test func truncatedExecRequestInsideFieldsThrowsTruncated() {
        let request = ExecRequest(argv: [bytes("/bin/echo"), bytes("hello")], workingDirectory: bytes("/root"))
        let full = request.encoded()
        // Cut inside the argv[1] blob, inside the working directory and inside the trailing integers.
        let argv1Start = 4 + (4 + 9)
        let workingDirectoryStart = argv1Start + (4 + 5) + 4
        for length in [2, argv1Start + 6, workingDirectoryStart + 5, full.count - 10, full.count - 1] {
            let error = decodingError(ExecRequest.self, Array(full[0..<length]))
            #expect(isTruncated(error), "cut to \(length) of \(full.count) bytes: \(String(describing: error))")
        }
    }

    @Test func trailingBytesAreRejected() {
        func check<M: WireMessage & Equatable>(_ message: M, sourceLocation: SourceLocation = #_sourceLocation) {
            for extra in [[UInt8(0)], [1, 2, 3], [UInt8](repeating: 0xFF, count: 100)] {
                let error = decodingError(M.self, message.encoded() + extra)
                #expect(error == .trailingBytes(count: extra.count), "\(M.self)", sourceLocation: sourceLocation)
            }
        }
        check(AgentHello(protocolVersion: 1, agentVersion: "x"))
        check(ExecRequest(argv: [bytes("/bin/true")]))
        check(ExitStatus.exited(0))
        check(ExitStatus.timedOut)
        check(RemoteError(code: .busy, message: "busy"))
        check(FileWriteRequest(path: bytes("/a")))
        check(FileReadRequest(path: bytes("/a")))
        check(FileInfo(size: 1, mode: 2))
    }

    @Test func execRequestWithEmptyArgvIsInvalid() {
        // Empty argv, then a complete remainder.
        var writer = ByteWriter()
        writer.blobs([])
        writer.blobs([])
        writer.blob([])
        writer.u64(0)
        writer.u32(0)
        #expect(decodingError(ExecRequest.self, writer.bytes) == .invalidValue(field: "argv"))

        // Encoding a request with empty argv does not make it decodable.
        #expect(decodingError(ExecRequest.self, ExecRequest(argv: []).encoded()) == .invalidValue(field: "argv"))
    }

    @Test func execRequestWithEmptyProgramIsInvalid() {
        let request = ExecRequest(argv: [[], bytes("arg")])
        #expect(isInvalidValue(decodingError(ExecRequest.self, request.encoded())))
    }

    @Test(arguments: [
        [UInt8(0)],
        [0x61, 0x00],
        [0x00, 0x61],
        [0x61, 0x00, 0x62],
    ])
    func nulByteInArgvIsInvalid(value: [UInt8]) {
        let first = ExecRequest(argv: [bytes("/bin/echo") + value])
        #expect(isInvalidValue(decodingError(ExecRequest.self, first.encoded())))
        let later = ExecRequest(argv: [bytes("/bin/echo"), bytes("ok"), value])
        #expect(isInvalidValue(decodingError(ExecRequest.self, later.encoded())))
    }

    @Test func nulByteInEnvironmentOrWorkingDirectoryIsInvalid() {
        let environment = ExecRequest(argv: [bytes("/bin/env")], environment: [bytes("A=1"), [0x42, 0x3D, 0x00]])
        #expect(isInvalidValue(decodingError(ExecRequest.self, environment.encoded())))
        let directory = ExecRequest(argv: [bytes("/bin/pwd")], workingDirectory: [0x2F, 0x00, 0x2F])
        #expect(isInvalidValue(decodingError(ExecRequest.self, directory.encoded())))
    }

    @Test func execRequestHostileArgvCountThrowsWithoutAllocating() {
        // Count 0xFFFFFFFF followed by almost nothing.
        let payload: [UInt8] = [0xFF, 0xFF, 0xFF, 0xFF, 1, 0, 0, 0, 0x61]
        #expect(decodingError(ExecRequest.self, payload) == .invalidValue(field: "argv"))
        #expect(decodingError(ExecRequest.self, [0xFF, 0xFF, 0xFF, 0xFF]) == .invalidValue(field: "argv"))
    }

    @Test func execRequestHostileEnvironmentCountThrows() {
        var writer = ByteWriter()
        writer.blobs([bytes("/bin/true")])
        writer.u32(0xFFFF_FFFF)
        writer.blob([])
        writer.u64(0)
        writer.u32(0)
        #expect(decodingError(ExecRequest.self, writer.bytes) == .invalidValue(field: "environment"))
    }

    @Test func execRequestTooManyArgumentsIsRejected() {
        let tooMany = ExecRequest(argv: [[UInt8]](repeating: bytes("x"), count: FrameLimits.maxListEntries + 1))
        #expect(decodingError(ExecRequest.self, tooMany.encoded()) == .invalidValue(field: "argv"))
        let atLimit = ExecRequest(argv: [[UInt8]](repeating: bytes("x"), count: FrameLimits.maxListEntries))
        #expect(decodingError(ExecRequest.self, atLimit.encoded()) == nil)
    }

    @Test func blobLengthBeyondRemainingThrowsTruncated() {
        // FileReadRequest whose path claims 0xFFFFFFFF bytes.
        #expect(
            decodingError(FileReadRequest.self, [0xFF, 0xFF, 0xFF, 0xFF, 0x2F, 0x61])
                == .truncated(field: "path"))
        // Claims one byte more than present.
        #expect(decodingError(FileReadRequest.self, [3, 0, 0, 0, 0x2F, 0x61]) == .truncated(field: "path"))

        // An argv entry that claims more than the payload holds.
        var writer = ByteWriter()
        writer.u32(1)
        writer.u32(1_000)
        #expect(writer.bytes.count == 8)
        let argvPayload = writer.bytes + bytes("/bin/sh")
        #expect(decodingError(ExecRequest.self, argvPayload) == .truncated(field: "argv"))

        // A working directory that claims more than the payload holds.
        var cwd = ByteWriter()
        cwd.blobs([bytes("/bin/true")])
        cwd.blobs([])
        cwd.u32(0x7FFF_FFFF)
        cwd.u64(0)
        cwd.u32(0)
        #expect(decodingError(ExecRequest.self, cwd.bytes) == .truncated(field: "workingDirectory"))

        // A hello whose version string overruns the payload.
        #expect(
            decodingError(AgentHello.self, [1, 0, 0, 0, 0xFF, 0xFF, 0xFF, 0xFF, 0x61])
                == .truncated(field: "agentVersion"))

        // A remote error whose message overruns the payload.
        var remote = ByteWriter()
        remote.u32(1)
        remote.i32(0)
        remote.u32(50)
        #expect(decodingError(RemoteError.self, remote.bytes + bytes("short")) == .truncated(field: "error.message"))
    }

    @Test(arguments: [UInt8(3), 4, 0x7F, 0x80, 0xFF])
    func exitStatusWithUnknownKindThrows(kind: UInt8) {
        let payload: [UInt8] = [kind, 0, 0, 0, 0]
        #expect(decodingError(ExitStatus.self, payload) == .invalidValue(field: "exit.kind"))
    }

    @Test func fileRequestsRejectEmptyOrNulPaths() {
        #expect(
            decodingError(FileReadRequest.self, FileReadRequest(path: []).encoded()) == .invalidValue(field: "path"))
        #expect(
            decodingError(FileReadRequest.self, FileReadRequest(path: [0x2F, 0x00, 0x61]).encoded())
                == .invalidValue(field: "path"))
        #expect(
            decodingError(FileWriteRequest.self, FileWriteRequest(path: []).encoded()) == .invalidValue(field: "path"))
        #expect(
            decodingError(FileWriteRequest.self, FileWriteRequest(path: [0x2F, 0x61, 0x00]).encoded())
                == .invalidValue(field: "path"))
    }

    @Test func emptyPayloadsThrowTruncated() {
        #expect(isTruncated(decodingError(AgentHello.self, [])))
        #expect(isTruncated(decodingError(ExecRequest.self, [])))
        #expect(isTruncated(decodingError(ExitStatus.self, [])))
        #expect(isTruncated(decodingError(RemoteError.self, [])))
        #expect(isTruncated(decodingError(FileWriteRequest.self, [])))
        #expect(isTruncated(decodingError(FileReadRequest.self, [])))
        #expect(isTruncated(decodingError(FileInfo.self, [])))
    }
}

@Suite("Terminal messages")
struct TerminalMessageTests {
    @Test func execRequestCarriesTerminalSize() throws {
        let request = ExecRequest(
            argv: [Array("sh".utf8)], options: [.terminal, .stdin], terminalRows: 33, terminalColumns: 101)
        let decoded = try ExecRequest(decoding: request.encoded())
        #expect(decoded == request)
        #expect(decoded.options.contains(.terminal))
        #expect(decoded.terminalRows == 33)
        #expect(decoded.terminalColumns == 101)
    }

    @Test func terminalSizeRoundTripsAndRejectsAbsurdSizes() throws {
        let size = TerminalSize(rows: 50, columns: 200)
        #expect(try TerminalSize(decoding: size.encoded()) == size)
        #expect(throws: ProtocolError.self) {
            try TerminalSize(decoding: TerminalSize(rows: 70_000, columns: 80).encoded())
        }
        #expect(throws: ProtocolError.self) {
            try ExecRequest(
                decoding: ExecRequest(argv: [Array("sh".utf8)], terminalRows: 1, terminalColumns: 1 << 20).encoded())
        }
        #expect(throws: ProtocolError.self) { try TerminalSize(decoding: [1, 0, 0]) }
    }
}
