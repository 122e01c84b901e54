import Foundation
import SmolVMSystem

/// The real guest behind the stub: QEMU on a `microvm` machine with software
/// emulation, configured from what the API calls described, with the
/// agent's virtio-serial ports standing in for Firecracker's vsock device.
final class Guest: @unchecked Sendable {
    /// Several ports, so several host processes can hold an agent channel at once.
    static let agentPorts = 4
    let pid: pid_t
    let directory: String
    private let lock = NSLock()
    private var portsInUse: Set<Int> = []

    var qmpSocket: String { directory + "/stub-qmp.sock" }
    func agentSocket(_ port: Int) -> String { directory + "/stub-agent-\(port).sock" }

    struct Configuration: Codable {
        var kernel: String
        var bootArgs: String
        var drives: [[String: JSONValue]]
        var memoryMiB: Int
        var cpus: Int
        var udsPath: String?
    }

    private init(pid: pid_t, directory: String) {
        self.pid = pid
        self.directory = directory
    }

    /// Starts QEMU; with `incoming`, it waits for a saved state (`-incoming`).
    static func start(_ configuration: Configuration, incoming: String? = nil) throws -> Guest {
        let directory = FileManager.default.currentDirectoryPath
        let qemu = ProcessInfo.processInfo.environment["FIRECRACKER_STUB_QEMU"] ?? "/usr/bin/qemu-system-x86_64"
        // Firecracker attaches the root drive first, as /dev/vda, and names it on the command line.
        let drives = configuration.drives.sorted { a, b in
            a["is_root_device"] == .bool(true) && b["is_root_device"] != .bool(true)
        }
        var bootArgs = configuration.bootArgs
        if let root = drives.first, root["is_root_device"] == .bool(true) {
            bootArgs += root["is_read_only"] == .bool(true) ? " root=/dev/vda ro" : " root=/dev/vda rw"
        }
        var arguments = [
            qemu, "-M", "microvm,acpi=off", "-accel", "tcg,thread=multi", "-cpu", "max",
            "-m", "\(configuration.memoryMiB)", "-smp", "\(configuration.cpus)",
            "-nodefaults", "-no-user-config", "-no-reboot", "-display", "none",
            "-kernel", configuration.kernel, "-append", bootArgs,
            "-serial", "stdio",
        ]
        for (index, drive) in drives.enumerated() {
            guard case .string(let path) = drive["path_on_host"] else { continue }
            let readOnly = drive["is_read_only"] == .bool(true) ? ",readonly=on" : ""
            arguments += [
                "-drive", "id=drive\(index),file=\(path),format=raw,if=none\(readOnly)",
                "-device", "virtio-blk-device,drive=drive\(index)",
            ]
        }
        arguments += ["-device", "virtio-serial-device"]
        for port in 0..<agentPorts {
            unlink(directory + "/stub-agent-\(port).sock")
            let name = port == 0 ? "org.smolvm.agent" : "org.smolvm.agent.\(port)"
            arguments += [
                "-chardev", "socket,id=agent\(port),path=\(directory)/stub-agent-\(port).sock,server=on,wait=off",
                "-device", "virtserialport,chardev=agent\(port),name=\(name)",
            ]
        }
        unlink(directory + "/stub-qmp.sock")
        arguments += ["-qmp", "unix:\(directory)/stub-qmp.sock,server=on,wait=off", "-device", "virtio-rng-device"]
        if let incoming { arguments += ["-incoming", incoming] }
        stubLog("starting \(arguments.joined(separator: " "))")
        let null = try FileDescriptor.open("/dev/null", .readOnly)
        defer { null.close() }
        // QEMU dies with the stub, as a guest dies with its Firecracker process.
        let pid = try Spawn.start(
            path: qemu, arguments: arguments,
            environment: ProcessInfo.processInfo.environment.map { "\($0.key)=\($0.value)" },
            fileDescriptors: [null, .standardOutput, .standardError], options: [.dieWithParent])
        return Guest(pid: pid, directory: directory)
    }

    /// Waits until QEMU's QMP socket accepts a connection.
    func waitForQMP() throws {
        for _ in 0..<5000 {
            if let fd = try? UnixSocket.connect(path: qmpSocket) {
                fd.close()
                return
            }
            usleep(2_000)
        }
        throw StubError("QEMU's QMP socket never appeared")
    }

    /// Runs one QMP command; returns the raw `return` object or throws the QMP error.
    @discardableResult
    func qmp(_ command: String, _ arguments: [String: Any]? = nil) throws -> Any {
        let fd = try UnixSocket.connect(path: qmpSocket)
        defer { fd.close() }
        var buffer: [UInt8] = []
        func readMessage() throws -> [String: Any] {
            while true {
                if let newline = buffer.firstIndex(of: 10) {
                    let line = Array(buffer[..<newline])
                    buffer.removeSubrange(...newline)
                    if let object = try JSONSerialization.jsonObject(with: Data(line)) as? [String: Any],
                        object["event"] == nil
                    {
                        return object
                    }
                    continue
                }
                let chunk = try fd.read(upTo: 65536)
                if chunk.isEmpty { throw StubError("QMP closed") }
                buffer += chunk
            }
        }
        func send(_ object: [String: Any]) throws -> Any {
            try fd.writeAll(Array(try JSONSerialization.data(withJSONObject: object)) + [10])
            let answer = try readMessage()
            if let error = answer["error"] { throw StubError("QMP \(object["execute"] ?? ""): \(error)") }
            return answer["return"] ?? [:]
        }
        _ = try readMessage()
        _ = try send(["execute": "qmp_capabilities"])
        var message: [String: Any] = ["execute": command]
        if let arguments { message["arguments"] = arguments }
        return try send(message)
    }

    func status() -> String {
        ((try? qmp("query-status")) as? [String: Any])?["status"] as? String ?? "unknown"
    }

    /// Saves memory and device state to `path` (QEMU's migration stream).
    func saveMemory(to path: String) throws {
        try qmp("migrate", ["uri": "exec:cat > '\(path)'"])
        while true {
            let info = try qmp("query-migrate") as? [String: Any]
            switch info?["status"] as? String {
            case "completed": return
            case "failed", "cancelled": throw StubError("QEMU migration to \(path) failed: \(info ?? [:])")
            default: usleep(5_000)
            }
        }
    }

    /// Serves the hybrid vsock device on `udsPath`: each `CONNECT <port>\n`
    /// gets `OK <n>\n` and is then spliced to a free agent port of QEMU.
    func serveVsock(udsPath: String) throws {
        let listener = try UnixSocket.listen(path: udsPath)
        Thread.detachNewThread { [self] in
            var hostPort: UInt32 = 1_073_741_824
            while let client = try? UnixSocket.accept(listener) {
                hostPort += 1
                let assigned = hostPort
                Thread.detachNewThread { self.handleVsock(client, hostPort: assigned) }
            }
        }
    }

    private func handleVsock(_ client: FileDescriptor, hostPort: UInt32) {
        var line: [UInt8] = []
        while line.last != 10, line.count < 64, let byte = try? client.read(upTo: 1), let first = byte.first {
            line.append(first)
        }
        let text = String(decoding: line, as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines)
        let words = text.split(separator: " ")
        guard words.count == 2, words[0] == "CONNECT", UInt32(words[1]) != nil else {
            stubLog("vsock: bad handshake \(text.debugDescription)")
            client.close()
            return
        }
        guard let port = takePort(), let agent = try? UnixSocket.connect(path: agentSocket(port)) else {
            // Firecracker closes a connection nothing in the guest accepts.
            client.close()
            return
        }
        try? client.writeAll("OK \(hostPort)\n")
        let done = DispatchGroup()
        for (from, to) in [(client, agent), (agent, client)] {
            done.enter()
            Thread.detachNewThread {
                while let chunk = try? from.read(upTo: 65536), !chunk.isEmpty, (try? to.writeAll(chunk)) != nil {}
                UnixSocket.shutdownBoth(from)
                UnixSocket.shutdownBoth(to)
                done.leave()
            }
        }
        done.wait()
        client.close()
        agent.close()
        releasePort(port)
    }

    private func takePort() -> Int? {
        lock.lock()
        defer { lock.unlock() }
        guard let free = (0..<Self.agentPorts).first(where: { !portsInUse.contains($0) }) else { return nil }
        portsInUse.insert(free)
        return free
    }

    private func releasePort(_ port: Int) {
        lock.lock()
        portsInUse.remove(port)
        lock.unlock()
    }
}

struct StubError: Error, CustomStringConvertible {
    var description: String
    init(_ description: String) { self.description = description }
}

func stubLog(_ message: String) {
    FileHandle.standardError.write(Data("firecracker-stub: \(message)\n".utf8))
}
