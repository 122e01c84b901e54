import CSmolVMShims
import Glibc
import SmolVMProtocol
import SmolVMSystem

/// The agent's state and its event loop.
///
/// Single-threaded by design: one `poll(2)` loop watches the channel(s), every
/// command's output pipes, a `signalfd` for `SIGCHLD`, and the nearest
/// deadline. PID 1 must never block on one thing while another needs it.
final class Agent {
    static let version = "0.1.0"

    var connections: [Int32: Connection] = [:]
    var listener: FileDescriptor?
    var signals: FileDescriptor?
    /// Commands by pid.
    var processes: [pid_t: RunningProcess] = [:]
    /// Output pipes by descriptor: which command and which stream.
    var outputs: [Int32: (pid: pid_t, kind: FrameKind)] = [:]
    /// Files being uploaded, by connection and request id.
    var uploads: [RequestKey: Upload] = [:]
    var isInit: Bool { getpid() == 1 }
    /// One read buffer for the life of the agent: allocating and zeroing it per
    /// read costs more than the read itself under software emulation.
    let readBuffer = UnsafeMutableRawBufferPointer.allocate(byteCount: 256 << 10, alignment: 16)

    func run() -> Never {
        if isInit {
            mountKernelFileSystems()
        }
        // Read only now: /proc was not mounted before.
        let commandLine = KernelCommandLine.current()
        if isInit, let device = commandLine["overlay"] {
            enterOverlayRoot(scratchDevice: device)
        }
        if isInit {
            initializeGuest(commandLine)
            mountHostFolders(commandLine)
        }
        let signalFD = smolvm_signalfd_init()
        if signalFD >= 0 { signals = FileDescriptor(rawValue: signalFD) }
        // A write to a closed pipe must fail with EPIPE, not end PID 1.
        signal(SIGPIPE, SIG_IGN)
        openChannels(commandLine)
        Log.info("ready")
        while true {
            loopOnce()
        }
    }

    private enum Source {
        case signals
        case listener
        case connection(Connection)
        case output(Int32)
        case stdin(pid_t)
    }

    private func loopOnce() {
        let now = monotonicMilliseconds()
        var entries: [(FileDescriptor, Poll.Events)] = []
        var sources: [Source] = []
        if let signals {
            entries.append((signals, .readable))
            sources.append(.signals)
        }
        if let listener {
            entries.append((listener, .readable))
            sources.append(.listener)
        }
        let stdinBacklog = processes.values.reduce(0) { $0 + $1.pendingStdin.count }
        var timeout = Int32(-1)
        for connection in connections.values {
            // Backpressure: stop reading requests while commands have not taken their input.
            if stdinBacklog > RunningProcess.maxPendingStdin { continue }
            if connection.quietUntil > now {
                timeout = min(positive: timeout, Int32(connection.quietUntil - now))
                continue
            }
            entries.append((connection.fd, .readable))
            sources.append(.connection(connection))
        }
        for (fd, _) in outputs {
            entries.append((FileDescriptor(rawValue: fd), .readable))
            sources.append(.output(fd))
        }
        for (pid, process) in processes where process.stdin != nil && !process.pendingStdin.isEmpty {
            entries.append((process.stdin!, .writable))
            sources.append(.stdin(pid))
        }
        for process in processes.values {
            if let deadline = process.nextDeadline {
                timeout = min(positive: timeout, Int32(clamping: deadline > now ? deadline - now : 0))
            }
        }
        let events: [Poll.Events]
        do {
            events = try Poll.wait(entries, timeoutMilliseconds: timeout)
        } catch {
            Log.info("poll: \(error)")
            usleep(10_000)
            return
        }
        for (index, source) in sources.enumerated() where !events[index].isEmpty {
            switch source {
            case .signals: handleSignals()
            case .listener: acceptConnection()
            case .connection(let connection): readConnection(connection, events: events[index])
            case .output(let fd): readOutput(fd)
            case .stdin(let pid): flushStdin(pid)
            }
        }
        checkDeadlines()
    }

    private func acceptConnection() {
        guard let listener, let fd = try? UnixSocket.accept(listener) else { return }
        let connection = Connection(fd: fd, isSerialPort: false)
        connections[fd.rawValue] = connection
        greet(connection)
    }

    private func readConnection(_ connection: Connection, events: Poll.Events) {
        // A virtio-serial read returns at most one 4 KiB buffer: keep reading
        // while data is there instead of going back through poll each time.
        for _ in 0..<64 {
            guard connection.isOpen, connection.quietUntil == 0 || connection.quietUntil <= monotonicMilliseconds()
            else { return }
            if !readConnectionOnce(connection) { return }
        }
    }

    /// Reads once; false when nothing more is available now.
    private func readConnectionOnce(_ connection: Connection) -> Bool {
        let count = Glibc.read(connection.fd.rawValue, readBuffer.baseAddress, readBuffer.count)
        if count > 0 {
            if connection.signalsOnActivity {
                _ = smolvm_set_async(connection.fd.rawValue, 0)
                connection.signalsOnActivity = false
            }
            connection.decoder.append(UnsafeRawBufferPointer(rebasing: readBuffer[0..<count]))
            do {
                while let frame = try connection.decoder.next() {
                    handle(frame, from: connection)
                }
            } catch {
                Log.info("dropping connection: \(error)")
                _ = connection.send(
                    Frame(.error, id: 0, payload: RemoteError(code: .badRequest, message: "\(error)").encoded()))
                disconnect(connection)
                return false
            }
            return true
        }
        if count < 0, Errno.current == .interrupted { return true }
        if count < 0, Errno.current == .wouldBlock { return false }
        // End of stream or hang-up: the host went away.
        disconnect(connection)
        return false
    }

    /// Forgets a host connection and everything it started. A serial port is kept
    /// open for the next host; the agent only stops polling it for a moment.
    func disconnect(_ connection: Connection) {
        for (pid, process) in processes where process.key.connection == connection.fd.rawValue {
            Spawn.signalGroup(process.processGroup, SIGKILL)
            processes[pid]?.detached = true
        }
        for key in uploads.keys where key.connection == connection.fd.rawValue {
            uploads.removeValue(forKey: key)?.fd?.close()
        }
        connection.decoder = FrameDecoder()
        if connection.isSerialPort {
            // A hung-up port polls as readable without end: set it aside, and have
            // the kernel raise SIGIO when a host opens it. The second is a safety net.
            if !connection.signalsOnActivity {
                connection.signalsOnActivity = smolvm_set_async(connection.fd.rawValue, 1) == 0
            }
            let reopened = smolvm_peer_connected(connection.fd.rawValue) == 1
            connection.quietUntil =
                reopened ? 0 : monotonicMilliseconds() + (connection.signalsOnActivity ? 1000 : 20)
        } else {
            connection.isOpen = false
            connections.removeValue(forKey: connection.fd.rawValue)
            connection.fd.close()
        }
    }

    private func handle(_ frame: Frame, from connection: Connection) {
        let key = RequestKey(connection: connection.fd.rawValue, id: frame.requestID)
        switch frame.kind {
        case .ping:
            _ = connection.send(Frame(.pong, id: frame.requestID, payload: frame.payload))
        case .exec:
            startCommand(frame, key: key, connection: connection)
        case .stdin:
            writeStdin(key, frame.payload)
        case .stdinClose:
            closeStdin(key)
        case .signal:
            signalCommand(key, frame.payload)
        case .resize:
            resizeTerminal(key, frame.payload)
        case .writeFile:
            beginUpload(frame, key: key, connection: connection)
        case .fileData:
            continueUpload(key, frame.payload)
        case .fileEnd:
            finishUpload(key, connection: connection)
        case .readFile:
            sendFile(frame, connection: connection)
        case .sync:
            Glibc.sync()
            _ = connection.send(Frame(.ok, id: frame.requestID))
        case .identity:
            applyIdentity(frame, connection: connection)
        case .shutdown:
            _ = connection.send(Frame(.ok, id: frame.requestID))
            if isInit { powerOff() }
            exit(0)
        case .hello, .pong, .ok, .error, .stdout, .stderr, .exit, .started, .fileInfo:
            reply(
                error: RemoteError(code: .unknownRequest, message: "unexpected \(frame.kind) frame from host"),
                id: frame.requestID, on: connection)
        }
    }

    func reply(error: RemoteError, id: UInt32, on connection: Connection) {
        _ = connection.send(Frame(.error, id: id, payload: error.encoded()))
    }

    private func handleSignals() {
        guard let signals else { return }
        while true {
            var source: Int32 = -1
            var code: Int32 = 0
            let signal = smolvm_signalfd_read_info(signals.rawValue, &source, &code)
            if signal <= 0 { break }
            if signal == SIGIO {
                // Only quiet ports raise it: their host end opened (or data came); look now.
                connections[source]?.quietUntil = 0
                continue
            }
            if signal == SIGTERM || signal == SIGINT {
                if isInit { powerOff() }
                // Outside a VM (development), behave like any daemon.
                exit(0)
            }
        }
        reapChildren()
    }
}

/// A request is named by the connection it arrived on and the id the host chose.
struct RequestKey: Hashable {
    var connection: Int32
    var id: UInt32
}

func monotonicMilliseconds() -> UInt64 {
    var now = timespec()
    clock_gettime(CLOCK_MONOTONIC, &now)
    return UInt64(now.tv_sec) * 1000 + UInt64(now.tv_nsec) / 1_000_000
}

/// The smaller of two poll timeouts where -1 means "none".
func min(positive a: Int32, _ b: Int32) -> Int32 {
    if a < 0 { return b }
    return Swift.min(a, b)
}
