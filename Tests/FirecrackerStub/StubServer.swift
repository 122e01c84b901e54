import Foundation
import SmolVMSystem

/// The API server: one connection at a time on the main thread (Firecracker's
/// API thread is single too; QEMU is started from this long-lived thread so its
/// parent-death signal fires only when the stub exits).
final class StubServer {
    let spec: FirecrackerSpec

    enum Phase: String { case fresh, configured, running, paused }
    var phase = Phase.fresh
    /// Everything configured so far, by resource (`machine-config`, `drives/rootfs`, …).
    var resources: [String: [String: JSONValue]] = [:]
    var guest: Guest?

    init(spec: FirecrackerSpec) { self.spec = spec }

    func serve(socketPath: String) throws {
        let listener = try UnixSocket.listen(path: socketPath)
        stubLog("listening on \(socketPath)")
        while true {
            let connection = try UnixSocket.accept(listener)
            handle(connection)
            connection.close()
        }
    }

    struct Reply {
        var status: Int
        var body: String?
        static let noContent = Reply(status: 204)
        static func fault(_ message: String) -> Reply {
            stubLog("rejected: \(message)")
            let data = try! JSONSerialization.data(withJSONObject: ["fault_message": message])
            return Reply(status: 400, body: String(decoding: data, as: UTF8.self))
        }
        static func json(_ object: [String: Any]) -> Reply {
            let data = try! JSONSerialization.data(withJSONObject: object, options: [.sortedKeys])
            return Reply(status: 200, body: String(decoding: data, as: UTF8.self))
        }
    }

    /// Reads HTTP/1.1 requests until the client closes (keep-alive honoured).
    private func handle(_ fd: FileDescriptor) {
        var buffer: [UInt8] = []
        func fill() -> Bool {
            guard let chunk = try? fd.read(upTo: 65536), !chunk.isEmpty else { return false }
            buffer += chunk
            return true
        }
        while true {
            var headerEnd: Int?
            while headerEnd == nil {
                if let range = findCRLFCRLF(buffer) { headerEnd = range } else if !fill() { return }
            }
            let head = String(decoding: buffer[..<headerEnd!], as: UTF8.self)
            buffer.removeSubrange(..<(headerEnd! + 4))
            let lines = head.components(separatedBy: "\r\n")
            let requestLine = lines[0].split(separator: " ")
            var length = 0
            var closeAfter = false
            for line in lines.dropFirst() {
                let parts = line.split(separator: ":", maxSplits: 1)
                guard parts.count == 2 else { continue }
                let name = parts[0].lowercased()
                let value = parts[1].trimmingCharacters(in: .whitespaces)
                if name == "content-length" { length = Int(value) ?? 0 }
                if name == "connection", value.lowercased() == "close" { closeAfter = true }
            }
            while buffer.count < length { if !fill() { return } }
            let body = Array(buffer[..<length])
            buffer.removeSubrange(..<length)
            let reply: Reply
            if requestLine.count != 3 || !requestLine[2].hasPrefix("HTTP/1.") {
                reply = .fault("malformed request line: \(lines[0])")
            } else {
                reply = respond(method: String(requestLine[0]), path: String(requestLine[1]), body: body)
            }
            let reason =
                [200: "OK", 204: "No Content", 400: "Bad Request", 404: "Not Found", 405: "Method Not Allowed"][
                    reply.status] ?? "Error"
            var text = "HTTP/1.1 \(reply.status) \(reason)\r\nServer: Firecracker API\r\n"
            let payload = Array((reply.body ?? "").utf8)
            if !payload.isEmpty { text += "Content-Type: application/json\r\n" }
            text += "Content-Length: \(payload.count)\r\n\r\n"
            try? fd.writeAll(Array(text.utf8) + payload)
            if closeAfter { return }
        }
    }

    private func findCRLFCRLF(_ bytes: [UInt8]) -> Int? {
        guard bytes.count >= 4 else { return nil }
        for i in 0...(bytes.count - 4)
        where bytes[i] == 13 && bytes[i + 1] == 10 && bytes[i + 2] == 13 && bytes[i + 3] == 10 {
            return i
        }
        return nil
    }

    /// Checks one request against the spec and the VM's state, then acts on it.
    func respond(method: String, path: String, body: [UInt8]) -> Reply {
        stubLog("\(method) \(path) \(String(decoding: body, as: UTF8.self))")
        guard let (operation, parameters) = spec.operation(method: method, path: path) else {
            let allowed = spec.methods(for: path)
            if !allowed.isEmpty {
                return Reply.fault(
                    "invalid request method \(method) for \(path); the spec allows \(allowed.joined(separator: ", "))")
            }
            return Reply.fault("invalid request: no path \(path) in the API")
        }
        var fields: [String: JSONValue] = [:]
        if let schema = operation.bodySchema {
            if body.isEmpty {
                if operation.bodyRequired { return .fault("\(method) \(path): the request needs a \(schema) body") }
            } else {
                guard let value = try? JSONDecoder().decode(JSONValue.self, from: Data(body)) else {
                    return .fault("\(method) \(path): the body is not valid JSON")
                }
                if let problem = spec.validate(value, against: schema) {
                    return .fault("\(method) \(path): \(problem) (\(schema))")
                }
                if case .object(let object) = value { fields = object }
            }
        } else if !body.isEmpty {
            return .fault("\(method) \(path) takes no body")
        }
        // Firecracker requires the id in the path to be the id in the body.
        for (name, value) in parameters where fields[name] != nil && fields[name] != .string(value) {
            return .fault("\(method) \(path): the path's \(name) (\(value)) differs from the body's")
        }
        let started = phase == .running || phase == .paused
        if operation.preBootOnly, started {
            return .fault("\(method) \(path): the operation is not allowed after the microVM started (pre-boot only)")
        }
        if operation.postBootOnly, !started {
            return .fault("\(method) \(path): the operation is not allowed before the microVM started (post-boot only)")
        }
        do {
            return try act(method: method, operation: operation.path, concrete: path, fields: fields)
        } catch {
            return .fault("\(method) \(path): \(error)")
        }
    }

    private func act(method: String, operation: String, concrete: String, fields: [String: JSONValue]) throws -> Reply {
        switch (method, operation) {
        case ("GET", "/"):
            let state =
                switch phase {
                case .fresh, .configured: "Not started"
                case .running: "Running"
                case .paused: "Paused"
                }
            return .json([
                "app_name": "Firecracker", "id": "anonymous-instance", "state": state, "vmm_version": "1.7.0",
            ])
        case ("GET", "/version"):
            return .json(["firecracker_version": "1.7.0"])
        case ("PUT", "/logger"), ("PUT", "/metrics"):
            // Firecracker opens these files; it does not create them.
            let key = operation == "/logger" ? "log_path" : "metrics_path"
            if case .string(let file) = fields[key], !FileManager.default.fileExists(atPath: file) {
                throw StubError("cannot open \(file): No such file or directory")
            }
            resources[String(operation.dropFirst())] = fields
            return .noContent
        case ("PUT", "/snapshot/load"):
            guard phase == .fresh, resources.keys.allSatisfy({ $0 == "logger" || $0 == "metrics" }) else {
                throw StubError(
                    "loading a snapshot is only allowed on a fresh microVM, before configuring anything but the logger and metrics"
                )
            }
            if fields["mem_backend"] != nil, fields["mem_file_path"] != nil {
                throw StubError("mem_backend and mem_file_path cannot both be present")
            }
            try loadSnapshot(fields)
            return .noContent
        case ("PUT", "/actions"):
            guard case .string(let action) = fields["action_type"] else { throw StubError("no action_type") }
            switch action {
            case "InstanceStart":
                guard phase == .fresh || phase == .configured else { throw StubError("the microVM is already running") }
                try start()
            case "SendCtrlAltDel":
                guard phase == .running else { throw StubError("the microVM is not running") }
                // The guest's i8042 would see Ctrl-Alt-Del; under QEMU, a system reset does the same with -no-reboot.
                try guest?.qmp("system_reset")
            default:
                break
            }
            return .noContent
        case ("PATCH", "/vm"):
            guard let guest, phase == .running || phase == .paused else {
                throw StubError("the microVM has not started, so it cannot be paused or resumed")
            }
            guard case .string(let state) = fields["state"] else { throw StubError("no state") }
            if state == "Paused" {
                try guest.qmp("stop")
                phase = .paused
            } else {
                try guest.qmp("cont")
                phase = .running
            }
            return .noContent
        case ("PUT", "/snapshot/create"):
            guard phase == .paused, let guest else {
                throw StubError("the microVM must be paused to create a snapshot (it is \(phase.rawValue))")
            }
            if case .string(let type) = fields["snapshot_type"], type == "Diff" {
                throw StubError("diff snapshots need track_dirty_pages, which was not enabled")
            }
            guard case .string(let memory) = fields["mem_file_path"],
                case .string(let vmstate) = fields["snapshot_path"]
            else {
                throw StubError("missing paths")
            }
            try guest.saveMemory(to: memory)
            let state = try JSONEncoder().encode(configuration())
            try state.write(to: URL(fileURLWithPath: vmstate))
            return .noContent
        case ("PUT", _):
            if operation == "/boot-source", case .string(let kernel) = fields["kernel_image_path"],
                !FileManager.default.fileExists(atPath: kernel)
            {
                throw StubError("the kernel file cannot be opened: \(kernel)")
            }
            if operation == "/drives/{drive_id}", case .string(let file) = fields["path_on_host"],
                !FileManager.default.fileExists(atPath: file)
            {
                throw StubError("unable to open the block device backing file \(file): No such file or directory")
            }
            if operation == "/drives/{drive_id}", fields["is_root_device"] == .bool(true),
                let other = resources.first(where: {
                    $0.key.hasPrefix("drives/") && $0.key != String(concrete.dropFirst())
                        && $0.value["is_root_device"] == .bool(true)
                })
            {
                throw StubError("a root block device already exists (\(other.key))")
            }
            resources[String(concrete.dropFirst())] = fields
            if phase == .fresh { phase = .configured }
            return .noContent
        case ("GET", _):
            return .json(resources[String(concrete.dropFirst())] ?? [:])
        default:
            throw StubError("the stub does not implement \(method) \(operation)")
        }
    }

    /// The guest as configured so far; also what a snapshot's vmstate file records.
    private func configuration() throws -> Guest.Configuration {
        guard let boot = resources["boot-source"], case .string(let kernel) = boot["kernel_image_path"] else {
            throw StubError("cannot start the microVM: no boot source was configured")
        }
        var bootArgs = ""
        if case .string(let text) = boot["boot_args"] { bootArgs = text }
        var memory = 128
        var cpus = 1
        if case .integer(let value) = resources["machine-config"]?["mem_size_mib"] { memory = Int(value) }
        if case .integer(let value) = resources["machine-config"]?["vcpu_count"] { cpus = Int(value) }
        var uds: String?
        if case .string(let path) = resources["vsock"]?["uds_path"] { uds = path }
        let drives = resources.filter { $0.key.hasPrefix("drives/") }.sorted { $0.key < $1.key }.map(\.value)
        return Guest.Configuration(
            kernel: kernel, bootArgs: bootArgs, drives: drives, memoryMiB: memory, cpus: cpus, udsPath: uds)
    }

    private func start() throws {
        let configuration = try configuration()
        let guest = try Guest.start(configuration)
        self.guest = guest
        watch(guest)
        try guest.waitForQMP()
        if let uds = configuration.udsPath { try guest.serveVsock(udsPath: uds) }
        phase = .running
    }

    /// Starts QEMU on the snapshot's memory and drives (the paths recorded at save time).
    private func loadSnapshot(_ fields: [String: JSONValue]) throws {
        guard case .string(let vmstate) = fields["snapshot_path"] else { throw StubError("no snapshot_path") }
        var memory: String?
        if case .object(let backend) = fields["mem_backend"], case .string(let path) = backend["backend_path"] {
            guard backend["backend_type"] == .string("File") else {
                throw StubError("the stub loads File memory backends only")
            }
            memory = path
        } else if case .string(let path) = fields["mem_file_path"] {
            memory = path
        }
        guard let memory else { throw StubError("exactly one of mem_backend and mem_file_path must be present") }
        var configuration = try JSONDecoder().decode(
            Guest.Configuration.self, from: Data(contentsOf: URL(fileURLWithPath: vmstate)))
        if case .object(let override) = fields["vsock_override"], case .string(let path) = override["uds_path"] {
            configuration.udsPath = path
        }
        for drive in configuration.drives {
            if case .string(let file) = drive["path_on_host"], !FileManager.default.fileExists(atPath: file) {
                throw StubError("the snapshot's drive \(file) cannot be opened")
            }
        }
        let guest = try Guest.start(configuration, incoming: "exec:cat '\(memory)'")
        self.guest = guest
        watch(guest)
        try guest.waitForQMP()
        while ["inmigrate", "prelaunch"].contains(guest.status()) { usleep(5_000) }
        if let uds = configuration.udsPath { try guest.serveVsock(udsPath: uds) }
        if fields["resume_vm"] == .bool(true) {
            try guest.qmp("cont")
            phase = .running
        } else {
            phase = .paused
        }
    }

    /// Firecracker exits when its guest shuts down or reboots; so does the stub.
    private func watch(_ guest: Guest) {
        let pid = guest.pid
        Thread.detachNewThread {
            let termination = try? Spawn.wait(pid)
            stubLog("QEMU exited (\(termination.map { "\($0)" } ?? "?")); exiting")
            exit(0)
        }
    }
}
