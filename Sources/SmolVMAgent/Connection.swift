import CSmolVMShims
import Glibc
import SmolVMProtocol
import SmolVMSystem

/// One byte stream to the host: the virtio-serial port, or one accepted vsock connection.
final class Connection {
    let fd: FileDescriptor
    /// The virtio-serial port stays open across host reconnects; vsock connections do not.
    let isSerialPort: Bool
    var decoder = FrameDecoder()
    /// While the host end of a serial port is closed, the port reports `POLLHUP`
    /// continuously; the agent then checks it again only after this monotonic time.
    var quietUntil: UInt64 = 0
    /// `O_ASYNC` is on: set while no host is connected, so its arrival raises
    /// SIGIO; cleared once data flows, so frames do not raise signals too.
    var signalsOnActivity = false
    var isOpen = true

    init(fd: FileDescriptor, isSerialPort: Bool) {
        self.fd = fd
        self.isSerialPort = isSerialPort
        try? fd.setNonBlocking()
    }

    /// Writes a whole frame. The descriptor is non-blocking so that a host that
    /// went away (`POLLHUP`) is noticed instead of blocking PID 1 forever.
    func send(_ frame: Frame) -> Bool {
        send(kind: frame.kind, id: frame.requestID, payload: frame.payload[...])
    }

    func send(kind: FrameKind, id: UInt32, payload: ArraySlice<UInt8>) -> Bool {
        payload.withUnsafeBytes { send(kind: kind, id: id, bytes: $0) }
    }

    func send(kind: FrameKind, id: UInt32, bytes payload: UnsafeRawBufferPointer) -> Bool {
        guard isOpen else { return false }
        var bytes = [UInt8]()
        bytes.reserveCapacity(Frame.headerSize + payload.count)
        Frame.appendHeader(to: &bytes, kind: kind, requestID: id, payloadCount: payload.count)
        bytes.append(contentsOf: payload)
        var offset = 0
        while offset < bytes.count {
            let written = bytes[offset...].withUnsafeBytes { Glibc.write(fd.rawValue, $0.baseAddress, $0.count) }
            if written > 0 {
                offset += written
                continue
            }
            let error = Errno.current
            if written < 0, error == .interrupted { continue }
            if written < 0, error == .wouldBlock {
                let events = (try? Poll.wait([(fd, .writable)], timeoutMilliseconds: 1000)) ?? [.error]
                if events[0].contains(.hangUp) || events[0].contains(.error) || events[0].contains(.invalid) {
                    return false
                }
                continue
            }
            return false
        }
        return true
    }
}

extension Agent {
    /// The name the host gives the agent's virtio-serial port; more ports, for
    /// more host processes at once, are named `org.smolvm.agent.N`.
    static let serialPortName = "org.smolvm.agent"

    /// The first agent port (the benchmark's raw mode uses only that one).
    func findSerialPort() -> String? {
        findSerialPorts().first { $0.name == Agent.serialPortName }?.path
    }

    /// Finds every `/dev/vportNpM` whose `/sys/class/virtio-ports/*/name` is ours.
    /// Devices may appear a little after init starts, so this retries briefly
    /// until the primary port is there.
    func findSerialPorts(attempts: Int = 200) -> [(name: String, path: String)] {
        for _ in 0..<attempts {
            var found: [(name: String, path: String)] = []
            if let dir = opendir("/sys/class/virtio-ports") {
                defer { closedir(dir) }
                while let entry = readdir(dir) {
                    let name = withUnsafeBytes(of: entry.pointee.d_name) { raw in
                        String(decoding: raw.prefix(while: { $0 != 0 }), as: UTF8.self)
                    }
                    guard name.hasPrefix("vport") else { continue }
                    let nameFile = "/sys/class/virtio-ports/\(name)/name"
                    guard let fd = try? FileDescriptor.open(nameFile, .readOnly) else { continue }
                    let bytes = (try? fd.readAll(limit: 256)) ?? []
                    fd.close()
                    let portName = String(decoding: bytes, as: UTF8.self).trimmingNewlines()
                    if portName == Agent.serialPortName || portName.hasPrefix(Agent.serialPortName + ".") {
                        found.append((portName, "/dev/\(name)"))
                    }
                }
            }
            if found.contains(where: { $0.name == Agent.serialPortName }) { return found }
            usleep(5_000)
        }
        return []
    }

    /// Opens the channels the host asked for: vsock when `smolvm.vsock=PORT` is
    /// set, otherwise the virtio-serial port.
    func openChannels(_ commandLine: KernelCommandLine) {
        // Outside a VM (development), the agent can serve a Unix socket instead.
        if !isInit, let path = getenv("SMOLVM_AGENT_SOCKET").map({ String(cString: $0) }) {
            do {
                listener = try UnixSocket.listen(path: path)
                Log.info("listening on \(path)")
            } catch {
                Log.info("listen \(path): \(error)")
            }
            return
        }
        if let portText = commandLine["vsock"], let port = UInt32(portText) {
            let fd = smolvm_vsock_listen(port)
            if fd >= 0 {
                listener = FileDescriptor(rawValue: fd)
                Log.info("listening on vsock port \(port)")
            } else {
                Log.info("vsock port \(port): \(Errno(rawValue: -fd)); trying the serial port")
            }
        }
        // With vsock listening, a serial port is served too when one is already
        // there (a VMM that emulates vsock over virtio-serial, like the test stub),
        // but not waited for: Firecracker has no virtio-serial at all.
        let ports = findSerialPorts(attempts: listener == nil ? 200 : 1)
        if ports.isEmpty, listener != nil { return }
        if ports.isEmpty {
            Log.info("no virtio-serial port named \(Agent.serialPortName) and no vsock: nothing to serve")
            return
        }
        for port in ports {
            do {
                let fd = try FileDescriptor.open(port.path, .readWrite)
                // While no host is behind the port it raises SIGIO when one opens it
                // (see `disconnect`), so the port need not be polled often meanwhile.
                let sigio = smolvm_enable_sigio(fd.rawValue)
                if sigio != 0 { Log.info("\(port.path): no SIGIO (\(Errno(rawValue: -sigio)))") }
                let connection = Connection(fd: fd, isSerialPort: true)
                connections[fd.rawValue] = connection
                greet(connection)
            } catch {
                Log.info("open \(port.path): \(error)")
            }
        }
    }

    func greet(_ connection: Connection) {
        let hello = AgentHello(protocolVersion: protocolVersion, agentVersion: Agent.version)
        _ = connection.send(Frame(.hello, id: 0, payload: hello.encoded()))
    }
}

extension String {
    func trimmingNewlines() -> String {
        var result = self
        while let last = result.last, last == "\n" || last == " " || last == "\0" { result.removeLast() }
        return result
    }
}
