import Foundation
import SmolVMSystem

/// A minimal QMP client: JSON lines over QEMU's control socket.
///
/// Requests are synchronous and serialized; asynchronous `event` messages that
/// arrive in between are skipped. Calls block, so they run on a thread of their own.
final class QMPClient: @unchecked Sendable {
    private let fd: FileDescriptor
    private let lock = NSLock()
    private var buffer: [UInt8] = []

    private init(fd: FileDescriptor) { self.fd = fd }

    deinit { fd.close() }

    /// Connects and leaves capability-negotiation mode (`qmp_capabilities`).
    static func connect(path: String, timeout: Duration = .seconds(5)) async throws -> QMPClient {
        try await onBlockingThread("smolvm.qmp") {
            let deadline = ContinuousClock.now + timeout
            while true {
                do {
                    let client = QMPClient(fd: try UnixSocket.connect(path: path))
                    _ = try client.readMessage()  // the greeting
                    _ = try client.executeLocked("qmp_capabilities", arguments: nil)
                    return client
                } catch {
                    if ContinuousClock.now > deadline {
                        throw SmolVMError(.system, "cannot reach QEMU's control socket \(path)", underlying: error)
                    }
                    usleep(5_000)
                }
            }
        }
    }

    /// Runs one QMP command and returns its `return` object.
    @discardableResult
    func execute(_ command: String, arguments: [String: any Sendable]? = nil) async throws -> [String: Any] {
        let box = try await onBlockingThread("smolvm.qmp") { [self] in
            UncheckedBox(try executeLocked(command, arguments: arguments))
        }
        return box.value
    }

    private func executeLocked(_ command: String, arguments: [String: any Sendable]?) throws -> [String: Any] {
        lock.lock()
        defer { lock.unlock() }
        var message: [String: Any] = ["execute": command]
        if let arguments { message["arguments"] = arguments }
        var data = try JSONSerialization.data(withJSONObject: message)
        data.append(UInt8(ascii: "\n"))
        try fd.writeAll(Array(data))
        while true {
            let reply = try readMessage()
            if reply["event"] != nil { continue }
            if let error = reply["error"] as? [String: Any] {
                let description = error["desc"] as? String ?? "\(error)"
                throw SmolVMError(.system, "QEMU refused \(command): \(description)")
            }
            return reply["return"] as? [String: Any] ?? [:]
        }
    }

    private func readMessage() throws -> [String: Any] {
        while true {
            if let newline = buffer.firstIndex(of: UInt8(ascii: "\n")) {
                let line = Array(buffer[..<newline])
                buffer.removeSubrange(...newline)
                guard let object = try JSONSerialization.jsonObject(with: Data(line)) as? [String: Any] else {
                    throw SmolVMError(.system, "QEMU sent a QMP message that is not a JSON object")
                }
                return object
            }
            let chunk = try fd.read(upTo: 65536)
            if chunk.isEmpty { throw SmolVMError(.system, "QEMU closed its control socket") }
            buffer += chunk
            if buffer.count > 16 << 20 { throw SmolVMError(.system, "QEMU sent an oversized QMP message") }
        }
    }
}

struct UncheckedBox<T>: @unchecked Sendable {
    let value: T
    init(_ value: T) { self.value = value }
}
