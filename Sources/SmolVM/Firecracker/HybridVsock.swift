import Foundation
import SmolVMSystem

/// Firecracker's hybrid vsock, host side: a host process reaches a guest
/// vsock port by connecting to the device's Unix socket (`uds_path` of
/// `PUT /vsock`), writing `CONNECT <port>\n` and reading `OK <host port>\n`.
/// After that the socket is a plain byte stream to the guest's listener.
enum HybridVsock {
    /// The guest port the agent listens on (`smolvm.vsock=` on the kernel command line).
    static let agentPort: UInt32 = 1024

    /// One handshake. Fails when the socket is missing, the guest is not
    /// listening yet (Firecracker closes the connection), or the answer is not
    /// `OK <n>`. The line is read byte by byte so that nothing the guest sends
    /// right after it (the agent's greeting) is consumed here.
    static func connect(udsPath: String, port: UInt32, timeout: Duration) throws -> FileDescriptor {
        let fd: FileDescriptor
        do {
            fd = try UnixSocket.connect(path: udsPath)
        } catch {
            throw SmolVMError(.agentUnreachable, "cannot connect to the vsock socket \(udsPath)", underlying: error)
        }
        do {
            try fd.writeAll("CONNECT \(port)\n")
            let deadline = ContinuousClock.now + timeout
            var line: [UInt8] = []
            while line.last != UInt8(ascii: "\n") {
                guard line.count < 64 else { break }
                let left = deadline - ContinuousClock.now
                guard left > .zero else {
                    throw SmolVMError(.agentUnreachable, "no answer to CONNECT \(port) on \(udsPath) within \(timeout)")
                }
                let events = try Poll.wait(
                    [(fd, [.readable])], timeoutMilliseconds: Int32(left.components.seconds * 1000 + 1))
                if events[0].isEmpty { continue }
                let byte = try fd.read(upTo: 1)
                guard let first = byte.first else {
                    throw SmolVMError(
                        .agentUnreachable,
                        "the vsock device closed the connection to port \(port) (nothing listening yet)")
                }
                line.append(first)
            }
            let text = String(decoding: line, as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines)
            let words = text.split(separator: " ")
            guard words.count == 2, words[0] == "OK", UInt32(words[1]) != nil else {
                throw SmolVMError(
                    .agentUnreachable,
                    "the vsock device answered CONNECT \(port) with \(text.debugDescription), not OK <port>")
            }
            return fd
        } catch {
            fd.close()
            if error is SmolVMError { throw error }
            throw SmolVMError(.agentUnreachable, "the hybrid vsock handshake on \(udsPath) failed", underlying: error)
        }
    }
}
