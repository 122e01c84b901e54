import Foundation
import SmolVMSystem

/// A small HTTP/1.1 client for Firecracker's REST API on its Unix socket.
///
/// One connection per call (`Connection: close`), JSON bodies, and a deadline
/// on both the connect (the socket may not exist yet while Firecracker
/// starts) and every call. A failed call surfaces the status and the
/// `fault_message` of the spec's `Error` definition verbatim.
struct FirecrackerAPIClient: Sendable {
    let socketPath: String
    var connectTimeout: Duration = .seconds(5)
    var callTimeout: Duration = .seconds(10)

    /// The answer to one call.
    struct Response: Sendable, Equatable {
        var status: Int
        var body: [UInt8]
    }

    /// Sends `body` as JSON; returns the response when its status is 2xx.
    @discardableResult
    func call<Body: Encodable & Sendable>(_ method: String, _ path: String, _ body: Body) async throws -> Response {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        return try await call(method, path, json: Array(try encoder.encode(body)))
    }

    /// `GET path`, decoding the JSON answer.
    func get<Answer: Decodable>(_ path: String, as type: Answer.Type) async throws -> Answer {
        let response = try await call("GET", path, json: nil)
        do {
            return try JSONDecoder().decode(Answer.self, from: Data(response.body))
        } catch {
            throw SmolVMError(
                .system,
                "Firecracker answered GET \(path) with a body that is not a \(Answer.self): \(String(decoding: response.body.prefix(200), as: UTF8.self))",
                underlying: error)
        }
    }

    /// Sends one request and reads its response; throws on a non-2xx status.
    @discardableResult
    func call(_ method: String, _ path: String, json: [UInt8]?) async throws -> Response {
        let socketPath = socketPath
        let connectTimeout = connectTimeout
        let callTimeout = callTimeout
        let response = try await onBlockingThread("smolvm.firecracker-api") {
            let fd = try Self.connect(socketPath, timeout: connectTimeout)
            defer { fd.close() }
            let deadline = ContinuousClock.now + callTimeout
            var request =
                "\(method) \(path) HTTP/1.1\r\nHost: localhost\r\nAccept: application/json\r\nConnection: close\r\n"
            if let json {
                request += "Content-Type: application/json\r\nContent-Length: \(json.count)\r\n"
            }
            request += "\r\n"
            do {
                try fd.writeAll(Array(request.utf8) + (json ?? []))
            } catch {
                throw SmolVMError(
                    .system, "cannot send \(method) \(path) to Firecracker at \(socketPath)", underlying: error)
            }
            var reader = DeadlineReader(fd: fd, deadline: deadline, what: "Firecracker's answer to \(method) \(path)")
            return try Self.readResponse(&reader, request: "\(method) \(path)")
        }
        guard (200..<300).contains(response.status) else {
            let fault = (try? JSONDecoder().decode(FirecrackerFault.self, from: Data(response.body)))?.faultMessage
            let detail = fault ?? String(decoding: response.body.prefix(500), as: UTF8.self)
            throw SmolVMError(.system, "Firecracker rejected \(method) \(path) (HTTP \(response.status)): \(detail)")
        }
        return response
    }

    /// Connects, retrying while the socket does not exist or does not accept yet.
    static func connect(_ path: String, timeout: Duration) throws -> FileDescriptor {
        let deadline = ContinuousClock.now + timeout
        while true {
            do {
                return try UnixSocket.connect(path: path)
            } catch let error as Errno where error == .noEntry || error == .connectionRefused {
                if ContinuousClock.now > deadline {
                    throw SmolVMError(
                        .bootFailed,
                        "Firecracker's API socket \(path) did not accept a connection within \(timeout) (\(error)); check the Firecracker log in the sandbox directory"
                    )
                }
                usleep(2_000)
            }
        }
    }

    /// Parses a status line, headers and a `Content-Length` body.
    static func readResponse(_ reader: inout DeadlineReader, request: String) throws -> Response {
        let statusLine = try reader.readLine(limit: 8192)
        let parts = statusLine.split(separator: " ", maxSplits: 2)
        guard parts.count >= 2, parts[0].hasPrefix("HTTP/1."), let status = Int(parts[1]), (100..<600).contains(status)
        else {
            throw SmolVMError(
                .system, "Firecracker answered \(request) with a malformed status line: \(statusLine.debugDescription)")
        }
        var contentLength: Int?
        var headerCount = 0
        while true {
            let line = try reader.readLine(limit: 8192)
            if line.isEmpty { break }
            headerCount += 1
            guard headerCount < 100, let colon = line.firstIndex(of: ":") else {
                throw SmolVMError(
                    .system, "Firecracker answered \(request) with a malformed header: \(line.debugDescription)")
            }
            let name = line[..<colon].lowercased()
            let value = line[line.index(after: colon)...].trimmingCharacters(in: .whitespaces)
            if name == "content-length" {
                guard let length = Int(value), (0...(16 << 20)).contains(length) else {
                    throw SmolVMError(.system, "Firecracker answered \(request) with a bad Content-Length: \(value)")
                }
                contentLength = length
            }
        }
        let body: [UInt8]
        if let contentLength {
            body = try reader.read(exactly: contentLength)
        } else if status == 204 || status == 304 || status < 200 {
            body = []
        } else {
            // No length: the body runs to the end of the connection (we sent `Connection: close`).
            body = try reader.readToEnd(limit: 16 << 20)
        }
        return Response(status: status, body: body)
    }
}

/// Buffered reads from a socket, each bounded by one overall deadline.
struct DeadlineReader {
    let fd: FileDescriptor
    let deadline: ContinuousClock.Instant
    let what: String
    private(set) var buffer: [UInt8] = []

    init(fd: FileDescriptor, deadline: ContinuousClock.Instant, what: String) {
        self.fd = fd
        self.deadline = deadline
        self.what = what
    }

    /// Reads more bytes; false at end of file.
    private mutating func fill() throws -> Bool {
        while true {
            let left = deadline - ContinuousClock.now
            guard left > .zero else {
                throw SmolVMError(.timeout, "\(what) did not arrive in time")
            }
            let milliseconds = Int32(
                clamping: left.components.seconds * 1000 + left.components.attoseconds / 1_000_000_000_000_000 + 1)
            let events = try Poll.wait([(fd, [.readable])], timeoutMilliseconds: milliseconds)
            if events[0].isEmpty { continue }
            let chunk: [UInt8]
            do {
                chunk = try fd.read(upTo: 65536)
            } catch {
                throw SmolVMError(.system, "reading \(what) failed", underlying: error)
            }
            if chunk.isEmpty { return false }
            buffer += chunk
            return true
        }
    }

    /// One line without its `\r\n` (or `\n`).
    mutating func readLine(limit: Int) throws -> String {
        while true {
            if let newline = buffer.firstIndex(of: UInt8(ascii: "\n")) {
                var line = Array(buffer[..<newline])
                buffer.removeSubrange(...newline)
                if line.last == UInt8(ascii: "\r") { line.removeLast() }
                return String(decoding: line, as: UTF8.self)
            }
            guard buffer.count <= limit else {
                throw SmolVMError(.system, "\(what): a line longer than \(limit) bytes")
            }
            guard try fill() else {
                throw SmolVMError(.system, "\(what): the connection closed before a complete line")
            }
        }
    }

    mutating func read(exactly count: Int) throws -> [UInt8] {
        while buffer.count < count {
            guard try fill() else {
                throw SmolVMError(.system, "\(what): the connection closed after \(buffer.count) of \(count) bytes")
            }
        }
        let result = Array(buffer[..<count])
        buffer.removeSubrange(..<count)
        return result
    }

    mutating func readToEnd(limit: Int) throws -> [UInt8] {
        while try fill() {
            guard buffer.count <= limit else { throw SmolVMError(.system, "\(what): more than \(limit) bytes") }
        }
        defer { buffer = [] }
        return buffer
    }

    /// Bytes read past what was asked for (the start of the next protocol).
    mutating func takeBuffered() -> [UInt8] {
        defer { buffer = [] }
        return buffer
    }
}
