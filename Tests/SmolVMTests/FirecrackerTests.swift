import Foundation
import SmolVMSystem
import Testing

@testable import SmolVM

/// Shared pieces of the Firecracker tests: the spec, the stub and fake peers.
enum FirecrackerTest {
    static let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .deletingLastPathComponent()
    static let specURL = root.appendingPathComponent("Tests/FirecrackerStub/firecracker.yaml")

    /// The stub built next to the tests (`swift build --build-tests` builds it).
    static var stubPath: String {
        let bundle = Bundle.main.bundleURL
        for directory in [bundle, bundle.deletingLastPathComponent()] {
            let candidate = directory.appendingPathComponent("FirecrackerStub").path
            if FileManager.default.isExecutableFile(atPath: candidate) { return candidate }
        }
        return root.appendingPathComponent(".build/debug/FirecrackerStub").path
    }

    /// A short scratch directory (Unix socket paths are limited to 107 bytes).
    static func temporaryDirectory() throws -> URL {
        let url = URL(fileURLWithPath: "/tmp/fc-\(UUID().uuidString.prefix(8))")
        try FileManager.default.createDirectory(at: url, withIntermediateDirectories: true)
        return url
    }

    /// This host as it is, except that KVM looks usable and `SMOLVM_FIRECRACKER`
    /// is the stub: resolution then picks the Firecracker backend.
    static func hostWithStub() -> HostFacts {
        var host = HostFacts.current
        host.environment["SMOLVM_FIRECRACKER"] = stubPath
        let fileExists = host.fileExists
        let canOpen = host.canOpenReadWrite
        let readText = host.readText
        host.fileExists = { path in
            path == "/dev/kvm" ? true : path == "/sys/module/kvm_pvm" ? false : fileExists(path)
        }
        host.canOpenReadWrite = { path in path == "/dev/kvm" ? true : canOpen(path) }
        host.readText = { path in path == "/proc/cpuinfo" ? "flags\t\t: fpu vmx sse\n" : readText(path) }
        return host
    }

    /// Runs the stub on a socket in a fresh directory; kills it (and its QEMU) afterwards, even on failure.
    static func withStub<T>(_ body: (FirecrackerAPIClient, URL) async throws -> T) async throws -> T {
        let directory = try temporaryDirectory()
        let socket = directory.appendingPathComponent("api.sock")
        let process = Process()
        process.executableURL = URL(fileURLWithPath: stubPath)
        process.arguments = ["--api-sock", socket.path]
        process.currentDirectoryURL = directory
        process.standardOutput = FileHandle.nullDevice
        process.standardError = FileHandle.nullDevice
        try process.run()
        defer {
            kill(process.processIdentifier, SIGKILL)
            process.waitUntilExit()
            try? FileManager.default.removeItem(at: directory)
        }
        return try await body(FirecrackerAPIClient(socketPath: socket.path), directory)
    }

    /// Expects the call to be rejected with a 400 whose fault message contains `fragment`.
    static func expectRejected(
        _ client: FirecrackerAPIClient, _ method: String, _ path: String, json: String, _ fragment: String,
        sourceLocation: SourceLocation = #_sourceLocation
    ) async {
        do {
            try await client.call(method, path, json: Array(json.utf8))
            Issue.record("\(method) \(path) \(json) was accepted", sourceLocation: sourceLocation)
        } catch let error as SmolVMError {
            #expect(error.message.contains("HTTP 400"), sourceLocation: sourceLocation)
            #expect(error.message.contains(fragment), "\(error.message)", sourceLocation: sourceLocation)
        } catch {
            Issue.record("unexpected \(error)", sourceLocation: sourceLocation)
        }
    }

    /// A one-connection fake server on a Unix socket; `answer` gets the accepted connection.
    static func fakeServer(_ path: String, _ answer: @escaping @Sendable (FileDescriptor) -> Void) throws
        -> FileDescriptor
    {
        let listener = try UnixSocket.listen(path: path)
        Thread.detachNewThread {
            guard let connection = try? UnixSocket.accept(listener) else { return }
            answer(connection)
            connection.close()
        }
        return listener
    }

    /// Reads one HTTP request's head from a fake server's connection.
    static func readRequestHead(_ fd: FileDescriptor) -> String {
        var bytes: [UInt8] = []
        while !String(decoding: bytes, as: UTF8.self).contains("\r\n\r\n"), let chunk = try? fd.read(upTo: 4096),
            !chunk.isEmpty
        {
            bytes += chunk
        }
        return String(decoding: bytes, as: UTF8.self)
    }

    static var firecrackerOnPath: String? { Subprocess.which("firecracker") }
    static var realFirecrackerUsable: Bool { firecrackerOnPath != nil && KVMState.detect(.current).isUsable }
}

@Suite("Firecracker models follow the spec")
struct FirecrackerModelTests {
    /// The `properties` and `required` names of one definition, read from the YAML text.
    static func definition(_ name: String) throws -> (properties: Set<String>, required: Set<String>) {
        let text = try String(contentsOf: FirecrackerTest.specURL, encoding: .utf8)
        let lines = text.split(separator: "\n", omittingEmptySubsequences: false).map(String.init)
        guard let start = lines.firstIndex(of: "  \(name):") else { throw SmolVMError(.notFound, "no \(name)") }
        var properties: Set<String> = []
        var required: Set<String> = []
        var section = ""
        for line in lines[(start + 1)...] {
            if line.hasPrefix("  "), !line.hasPrefix("   "), !line.trimmingCharacters(in: .whitespaces).isEmpty {
                break
            }
            if line.hasPrefix("    "), !line.hasPrefix("     ") { section = line.trimmingCharacters(in: .whitespaces) }
            if section == "properties:", line.hasPrefix("      "), !line.hasPrefix("       "),
                line.hasSuffix(":")
            {
                properties.insert(String(line.trimmingCharacters(in: .whitespaces).dropLast()))
            }
            if section == "required:", line.hasPrefix("      - ") { required.insert(String(line.dropFirst(8))) }
        }
        return (properties, required)
    }

    /// Every key a fully populated model encodes is a property of its definition,
    /// and every required property is among them.
    func check(_ value: some Encodable, _ name: String, sourceLocation: SourceLocation = #_sourceLocation) throws {
        let json = try JSONSerialization.jsonObject(with: JSONEncoder().encode(value)) as! [String: Any]
        let spec = try Self.definition(name)
        #expect(!spec.properties.isEmpty, "\(name) has no properties in the YAML", sourceLocation: sourceLocation)
        #expect(
            Set(json.keys).subtracting(spec.properties).isEmpty, "\(name): \(json.keys.sorted())",
            sourceLocation: sourceLocation)
        #expect(
            spec.required.isSubset(of: Set(json.keys)), "\(name) lacks \(spec.required)", sourceLocation: sourceLocation
        )
    }

    @Test("field names cross-checked against firecracker.yaml")
    func fieldNames() throws {
        try check(
            MachineConfiguration(vcpuCount: 1, memSizeMib: 128, smt: false, trackDirtyPages: false),
            "MachineConfiguration")
        try check(BootSource(kernelImagePath: "k", bootArgs: "a", initrdPath: "i"), "BootSource")
        try check(
            Drive(
                driveID: "d", isRootDevice: true, isReadOnly: true, pathOnHost: "p", cacheType: .unsafe, ioEngine: .sync
            ),
            "Drive")
        try check(Vsock(guestCID: 3, udsPath: "v"), "Vsock")
        try check(
            NetworkInterface(ifaceID: "eth0", hostDevName: "tap0", guestMAC: "06:00:00:00:00:02"), "NetworkInterface")
        try check(InstanceActionInfo(actionType: .instanceStart), "InstanceActionInfo")
        try check(Vm(state: .paused), "Vm")
        try check(FirecrackerLogger(logPath: "l", level: .info, showLevel: true, showLogOrigin: false), "Logger")
        try check(FirecrackerMetrics(metricsPath: "m"), "Metrics")
        try check(
            SnapshotCreateParams(memFilePath: "m", snapshotPath: "s", snapshotType: .full), "SnapshotCreateParams")
        try check(
            SnapshotLoadParams(
                snapshotPath: "s", memBackend: MemoryBackend(backendType: .file, backendPath: "m"), resumeVM: true,
                vsockOverride: VsockOverride(udsPath: "v")), "SnapshotLoadParams")
        try check(MemoryBackend(backendType: .file, backendPath: "m"), "MemoryBackend")
        try check(FirecrackerFault(faultMessage: "x"), "Error")
        try check(FirecrackerVersion(firecrackerVersion: "1.7.0"), "FirecrackerVersion")
    }

    @Test("the kernel command line carries what Firecracker and the agent need")
    func kernelArguments() {
        let spec = MachineSpec(
            id: "abc", runtimeDirectory: URL(fileURLWithPath: "/tmp/x"), kernel: URL(fileURLWithPath: "/k"),
            rootImage: URL(fileURLWithPath: "/r"), memoryMiB: 256, cpus: 1, hostname: "box", network: false,
            accelerator: AcceleratorChoice(accelerator: .kvm, reason: "", overridden: false), bootTimeout: .seconds(5))
        let words = Set(FirecrackerBackend.kernelArguments(spec, tap: nil).split(separator: " ").map(String.init))
        for needed in [
            "reboot=k", "panic=1", "pci=off", "console=ttyS0", "init=/sbin/smolvm-agent", "SWIFT_ROOT=/",
            "smolvm.hostname=box", "smolvm.vsock=\(HybridVsock.agentPort)", "smolvm.overlay=/dev/vdb",
        ] {
            #expect(words.contains(needed), "\(needed)")
        }
    }

    @Test("the jailer argument vector")
    func jailer() throws {
        let jailer = JailerCommandLine(
            jailer: "/usr/bin/jailer", firecracker: "/usr/bin/firecracker", id: "a1b2c3", uid: 123, gid: 456,
            chrootBase: "/srv/jailer")
        #expect(
            jailer.arguments == [
                "/usr/bin/jailer", "--id", "a1b2c3", "--exec-file", "/usr/bin/firecracker", "--uid", "123", "--gid",
                "456", "--chroot-base-dir", "/srv/jailer", "--cgroup-version", "2", "--", "--api-sock",
                "/firecracker.sock",
            ])
        #expect(jailer.chrootRoot == "/srv/jailer/firecracker/a1b2c3/root")
        try JailerCommandLine.validateID("a1b2c3")
        #expect(throws: SmolVMError.self) { try JailerCommandLine.validateID("../etc") }
    }
}

@Suite("Firecracker API client")
struct FirecrackerAPIClientTests {
    @Test("a socket that never appears fails with the path and a hint")
    func socketNeverAppears() async throws {
        var client = FirecrackerAPIClient(socketPath: "/tmp/fc-missing-\(UUID().uuidString.prefix(8)).sock")
        client.connectTimeout = .milliseconds(200)
        do {
            try await client.call("GET", "/", json: nil)
            Issue.record("expected an error")
        } catch let error as SmolVMError {
            #expect(error.code == .bootFailed)
            #expect(error.message.contains("did not accept a connection"))
        }
    }

    @Test("a server that never answers runs into the call timeout")
    func slowResponse() async throws {
        let directory = try FirecrackerTest.temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: directory) }
        let path = directory.appendingPathComponent("api.sock").path
        let listener = try FirecrackerTest.fakeServer(path) { fd in
            _ = FirecrackerTest.readRequestHead(fd)
            _ = try? fd.read(upTo: 1)  // holds the connection open, silent, until the client gives up
        }
        defer { listener.close() }
        var client = FirecrackerAPIClient(socketPath: path)
        client.callTimeout = .milliseconds(300)
        do {
            try await client.call("PUT", "/actions", InstanceActionInfo(actionType: .instanceStart))
            Issue.record("expected a timeout")
        } catch let error as SmolVMError {
            #expect(error.code == .timeout)
            #expect(error.message.contains("PUT /actions"))
        }
    }

    @Test("malformed responses are errors, not crashes")
    func malformed() async throws {
        let answers = [
            "garbage\r\n\r\n": "malformed status line",
            "HTTP/1.1 abc OK\r\n\r\n": "malformed status line",
            "HTTP/1.1 200 OK\r\nContent-Length: 50\r\n\r\n{\"short\"": "closed after",
            "HTTP/1.1 200 OK\r\nno colon here\r\n\r\n": "malformed header",
            "HTTP/1.1 200 OK\r\nContent-Length: -4\r\n\r\n": "bad Content-Length",
            "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n[]": "not a FirecrackerVersion",
        ]
        for (answer, expected) in answers {
            let directory = try FirecrackerTest.temporaryDirectory()
            defer { try? FileManager.default.removeItem(at: directory) }
            let path = directory.appendingPathComponent("api.sock").path
            let listener = try FirecrackerTest.fakeServer(path) { fd in
                _ = FirecrackerTest.readRequestHead(fd)
                try? fd.writeAll(answer)
            }
            defer { listener.close() }
            do {
                _ = try await FirecrackerAPIClient(socketPath: path).get("/version", as: FirecrackerVersion.self)
                Issue.record("accepted \(answer.debugDescription)")
            } catch let error as SmolVMError {
                #expect(error.message.contains(expected), "\(answer.debugDescription): \(error.message)")
            }
        }
    }

    @Test("a fault_message is surfaced verbatim with the status")
    func faultMessage() async throws {
        let directory = try FirecrackerTest.temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: directory) }
        let path = directory.appendingPathComponent("api.sock").path
        let fault = "The requested operation is not supported after starting the microVM."
        let body = "{\"fault_message\":\"\(fault)\"}"
        let listener = try FirecrackerTest.fakeServer(path) { fd in
            let head = FirecrackerTest.readRequestHead(fd)
            // The request is HTTP/1.1 with a JSON body of the right length.
            precondition(head.hasPrefix("PUT /boot-source HTTP/1.1\r\n"))
            precondition(head.contains("Content-Type: application/json"))
            try? fd.writeAll("HTTP/1.1 400 Bad Request\r\nContent-Length: \(body.utf8.count)\r\n\r\n\(body)")
        }
        defer { listener.close() }
        do {
            try await FirecrackerAPIClient(socketPath: path).call(
                "PUT", "/boot-source", BootSource(kernelImagePath: "/k"))
            Issue.record("expected an error")
        } catch let error as SmolVMError {
            #expect(error.message == "Firecracker rejected PUT /boot-source (HTTP 400): \(fault)")
        }
    }

    @Test("hybrid vsock: CONNECT, OK, and the bytes after OK stay unread")
    func hybridVsock() async throws {
        let directory = try FirecrackerTest.temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: directory) }
        let path = directory.appendingPathComponent("v.sock").path
        let listener = try FirecrackerTest.fakeServer(path) { fd in
            var line: [UInt8] = []
            while line.last != 10, let byte = try? fd.read(upTo: 1), !byte.isEmpty { line += byte }
            precondition(String(decoding: line, as: UTF8.self) == "CONNECT 1024\n")
            try? fd.writeAll("OK 1073741824\nhello")
            _ = try? fd.read(upTo: 1)
        }
        defer { listener.close() }
        let fd = try HybridVsock.connect(udsPath: path, port: 1024, timeout: .seconds(10))
        defer { fd.close() }
        var rest: [UInt8] = []
        while rest.count < 5, let chunk = try? fd.read(upTo: 16), !chunk.isEmpty { rest += chunk }
        #expect(String(decoding: rest, as: UTF8.self) == "hello")

        let refusing = directory.appendingPathComponent("r.sock").path
        let refuser = try FirecrackerTest.fakeServer(refusing) { fd in
            _ = try? fd.read(upTo: 64)
            try? fd.writeAll("NOPE\n")
        }
        defer { refuser.close() }
        #expect(throws: SmolVMError.self) {
            try HybridVsock.connect(udsPath: refusing, port: 1024, timeout: .seconds(10)).close()
        }
    }
}

@Suite("Firecracker stub enforces the spec")
struct FirecrackerStubTests {
    @Test("a deliberately wrong request body is caught by the stub")
    func wrongBody() async throws {
        try await FirecrackerTest.withStub { client, _ in
            // A string where the spec says integer.
            await FirecrackerTest.expectRejected(
                client, "PUT", "/machine-config", json: #"{"vcpu_count":"two","mem_size_mib":256}"#,
                "vcpu_count: expected integer, got string")
            // A misspelled field name.
            await FirecrackerTest.expectRejected(
                client, "PUT", "/machine-config", json: #"{"vcpu_count":1,"mem_size_mb":256}"#,
                "missing required field `mem_size_mib`")
            await FirecrackerTest.expectRejected(
                client, "PUT", "/machine-config", json: #"{"vcpu_count":1,"mem_size_mib":256,"memory":1}"#,
                "unknown field `memory`")
            // Out of the spec's bounds, and not in an enum.
            await FirecrackerTest.expectRejected(
                client, "PUT", "/machine-config", json: #"{"vcpu_count":33,"mem_size_mib":256}"#, "above the maximum 32"
            )
            await FirecrackerTest.expectRejected(
                client, "PUT", "/actions", json: #"{"action_type":"Start"}"#,
                "is not one of FlushMetrics, InstanceStart, SendCtrlAltDel")
            await FirecrackerTest.expectRejected(
                client, "PUT", "/vsock", json: #"{"guest_cid":2,"uds_path":"v.sock"}"#, "below the minimum 3")
            await FirecrackerTest.expectRejected(
                client, "PUT", "/drives/rootfs",
                json: #"{"drive_id":"rootfs","is_root_device":"yes","is_read_only":true,"path_on_host":"/dev/null"}"#,
                "is_root_device: expected boolean")
            // The path's id must be the body's.
            await FirecrackerTest.expectRejected(
                client, "PUT", "/drives/rootfs",
                json: #"{"drive_id":"other","is_root_device":true,"is_read_only":true,"path_on_host":"/dev/null"}"#,
                "differs from the body's")
            // Paths and methods outside the spec.
            await FirecrackerTest.expectRejected(client, "PUT", "/machine-configuration", json: "{}", "no path")
            await FirecrackerTest.expectRejected(
                client, "POST", "/vm", json: #"{"state":"Paused"}"#, "invalid request method POST")
            // A correct body is accepted.
            try await client.call("PUT", "/machine-config", MachineConfiguration(vcpuCount: 1, memSizeMib: 256))
        }
    }

    @Test("the stub rejects calls in the wrong lifecycle state")
    func lifecycle() async throws {
        try await FirecrackerTest.withStub { client, directory in
            // Post-boot only, and snapshots need a paused VM.
            await FirecrackerTest.expectRejected(
                client, "PUT", "/snapshot/create", json: #"{"mem_file_path":"m","snapshot_path":"s"}"#,
                "post-boot only")
            await FirecrackerTest.expectRejected(
                client, "PATCH", "/vm", json: #"{"state":"Paused"}"#, "has not started")
            // InstanceStart without a boot source.
            await FirecrackerTest.expectRejected(
                client, "PUT", "/actions", json: #"{"action_type":"InstanceStart"}"#, "no boot source")
            // Snapshot load only on a fresh process: after the machine was configured, it is refused.
            try await client.call("PUT", "/machine-config", MachineConfiguration(vcpuCount: 1, memSizeMib: 128))
            await FirecrackerTest.expectRejected(
                client, "PUT", "/snapshot/load",
                json: #"{"snapshot_path":"s","mem_backend":{"backend_type":"File","backend_path":"m"}}"#,
                "only allowed on a fresh microVM")
            // The logger must name a file that exists.
            await FirecrackerTest.expectRejected(
                client, "PUT", "/logger", json: #"{"log_path":"\#(directory.path)/missing.log"}"#, "No such file")
            let version = try await client.get("/version", as: FirecrackerVersion.self)
            #expect(version.firecrackerVersion == "1.7.0")
            let info = try await client.get("/", as: InstanceInfo.self)
            #expect(info.state == "Not started")
        }
    }
}

/// The same checks against the stub (here) and the real binary (where it can run).
enum FirecrackerScenario {
    static func configuration(host: HostFacts) -> SandboxConfiguration {
        var configuration = VMTest.configuration(image: "minimal")
        configuration.backend = .firecracker
        configuration.host = host
        return configuration
    }

    /// Boot, exec, files, pause/resume, a writable overlay root that leaves the
    /// base image unchanged, and a delete that leaves no process or file behind.
    static func lifecycle(host: HostFacts) async throws {
        let configuration = configuration(host: host)
        let image = try await ImageStore(paths: configuration.paths).image("minimal").url
        let baseBefore = try VMTest.sha256(image.path)
        let sandbox = try await Sandbox.create(configuration)
        let vmm = try #require(await sandbox.vmmProcessID)
        let helpers = VMTest.children(of: vmm)
        do {
            #expect(sandbox.resolution.backend == .firecracker)
            let result = try await sandbox.run([
                "sh", "-c", "echo written > /root/proof && cat /root/proof && grep ' / ' /proc/mounts",
            ])
            #expect(result.exitCode == 0, "\(result.stderrText)")
            #expect(result.stdoutText.hasPrefix("written\n"))
            #expect(result.stdoutText.contains("overlay"), "the root is not the overlay: \(result.stdoutText)")

            let payload = (0..<100_000).map { UInt8(truncatingIfNeeded: $0 &* 7) }
            try await sandbox.upload(payload, to: "/root/payload.bin")
            #expect(try await sandbox.download(from: "/root/payload.bin") == payload)

            try await sandbox.pause()
            try await sandbox.resume()
            #expect(try await sandbox.run(["cat", "/root/proof"]).stdoutText == "written\n")
        } catch {
            await sandbox.delete()
            throw error
        }
        await sandbox.delete()
        #expect(!FileManager.default.fileExists(atPath: sandbox.runtimeDirectory.path))
        #expect(await VMTest.eventually { !VMTest.isRunningProcess(vmm) })
        for helper in helpers { #expect(await VMTest.eventually { !VMTest.isRunningProcess(helper) }) }
        #expect(try VMTest.sha256(image.path) == baseBefore, "the shared base image was written")
    }

    /// Snapshot a paused sandbox, then restore it in a new sandbox directory
    /// with a fresh VMM process; the guest's memory and disk come back.
    static func snapshot(host: HostFacts) async throws {
        let configuration = configuration(host: host)
        let snapshotDirectory = configuration.paths.home.appendingPathComponent(
            "fc-snapshot-\(UUID().uuidString.prefix(8))")
        defer { try? FileManager.default.removeItem(at: snapshotDirectory) }
        let sandbox = try await Sandbox.create(configuration)
        do {
            _ = try await sandbox.run([
                "sh", "-c", "echo on-disk > /root/disk; mkdir -p /dev/shm/m; echo in-memory > /dev/shm/m/x",
            ])
            try await sandbox.pause()
            guard case .running(let machine) = await sandbox.state else {
                throw SmolVMError(.invalidState, "not running")
            }
            try await machine.saveState(to: snapshotDirectory)
        } catch {
            await sandbox.delete()
            throw error
        }
        await sandbox.delete()
        for file in ["memory", "vmstate", "scratch.ext4"] {
            #expect(FileManager.default.fileExists(atPath: snapshotDirectory.appendingPathComponent(file).path))
        }

        let prepared = try await Sandbox.prepare(configuration)
        let id = Sandbox.makeID()
        let directory = configuration.paths.runtime(id)
        defer { try? FileManager.default.removeItem(at: directory) }
        let spec = MachineSpec(
            id: id, runtimeDirectory: directory, kernel: prepared.kernel.url, rootImage: prepared.image.url,
            memoryMiB: configuration.memoryMiB, cpus: configuration.cpus, hostname: "restored", network: false,
            accelerator: prepared.accelerator, bootTimeout: configuration.bootTimeout)
        let restored = try await prepared.backend.restore(spec, from: snapshotDirectory, logger: .disabled)
        do {
            let process = try await restored.agent.exec(Command(["cat", "/root/disk", "/dev/shm/m/x"]))
            let result = try await process.result()
            #expect(result.stdoutText == "on-disk\nin-memory\n", "\(result.stderrText)")
        } catch {
            await restored.kill()
            throw error
        }
        await restored.stop(deadline: .seconds(10))
        #expect(await VMTest.eventually { !VMTest.isRunningProcess(restored.pid) })
    }
}

@Suite("Firecracker backend through the stub", .serialized)
struct FirecrackerStubBackendTests {
    @Test("boot, exec, files, pause/resume, overlay root; delete leaves nothing")
    func lifecycle() async throws {
        try await FirecrackerScenario.lifecycle(host: FirecrackerTest.hostWithStub())
    }

    @Test("snapshot a paused sandbox and restore it on a fresh process")
    func snapshot() async throws {
        try await FirecrackerScenario.snapshot(host: FirecrackerTest.hostWithStub())
    }

    @Test("a wrong request from the backend fails the boot with the stub's fault message")
    func stubCatchesBackendMistake() async throws {
        // A kernel path that does not exist: the stub rejects PUT /boot-source as Firecracker would.
        let backend = FirecrackerBackend(binary: FirecrackerTest.stubPath)
        let directory = try FirecrackerTest.temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: directory) }
        let spec = MachineSpec(
            id: "0123456789ab", runtimeDirectory: directory, kernel: URL(fileURLWithPath: "/nonexistent/vmlinux"),
            rootImage: URL(fileURLWithPath: "/dev/null"), memoryMiB: 128, cpus: 1, hostname: "x", network: false,
            accelerator: AcceleratorChoice(accelerator: .kvm, reason: "", overridden: false), bootTimeout: .seconds(10))
        do {
            _ = try await backend.boot(spec, logger: .disabled)
            Issue.record("expected the boot to fail")
        } catch let error as SmolVMError {
            #expect(error.message.contains("Firecracker rejected PUT /boot-source (HTTP 400)"), "\(error.message)")
            #expect(error.message.contains("/nonexistent/vmlinux"))
        }
        #expect(!FileManager.default.fileExists(atPath: directory.appendingPathComponent("firecracker.sock").path))
    }
}

extension FirecrackerStubBackendTests {
    @Test("after InstanceStart the stub refuses pre-boot calls, and snapshots of a running VM")
    func preBootOnlyAfterStart() async throws {
        let sandbox = try await Sandbox.create(FirecrackerScenario.configuration(host: FirecrackerTest.hostWithStub()))
        do {
            guard case .running(let machine as FirecrackerMachine) = await sandbox.state else {
                throw SmolVMError(.invalidState, "not a running Firecracker machine")
            }
            await FirecrackerTest.expectRejected(
                machine.api, "PUT", "/machine-config", json: #"{"vcpu_count":2,"mem_size_mib":256}"#,
                "pre-boot only")
            await FirecrackerTest.expectRejected(
                machine.api, "PUT", "/drives/extra",
                json: #"{"drive_id":"extra","is_root_device":false,"is_read_only":true,"path_on_host":"/dev/null"}"#,
                "pre-boot only")
            await FirecrackerTest.expectRejected(
                machine.api, "PUT", "/snapshot/create", json: #"{"mem_file_path":"m","snapshot_path":"s"}"#,
                "must be paused")
            await FirecrackerTest.expectRejected(
                machine.api, "PUT", "/actions", json: #"{"action_type":"InstanceStart"}"#, "already running")
            let info = try await machine.api.get("/", as: InstanceInfo.self)
            #expect(info.state == "Running")
        } catch {
            await sandbox.delete()
            throw error
        }
        await sandbox.delete()
    }

    @Test("a configured jailer is refused before anything starts, not silently skipped")
    func jailerRefused() async throws {
        let backend = FirecrackerBackend(binary: FirecrackerTest.stubPath, jailer: "/usr/bin/jailer")
        let directory = try FirecrackerTest.temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: directory) }
        let spec = MachineSpec(
            id: "0123456789ab", runtimeDirectory: directory, kernel: URL(fileURLWithPath: "/k"),
            rootImage: URL(fileURLWithPath: "/dev/null"), memoryMiB: 128, cpus: 1, hostname: "x", network: false,
            accelerator: AcceleratorChoice(accelerator: .kvm, reason: "", overridden: false), bootTimeout: .seconds(10))
        do {
            _ = try await backend.boot(spec, logger: .disabled)
            Issue.record("expected the jailer to be refused")
        } catch let error as SmolVMError {
            #expect(error.code == .unsupported)
            #expect(error.message.contains("unset SMOLVM_JAILER"))
        }
        #expect(try FileManager.default.contentsOfDirectory(atPath: directory.path).isEmpty)
    }
}

@Suite("Firecracker with the real binary", .serialized)
struct FirecrackerRealTests {
    @Test(
        "boot, exec, files, pause/resume, delete with real Firecracker",
        .enabled(
            if: FirecrackerTest.realFirecrackerUsable, "skipped: needs firecracker on PATH and usable hardware KVM"))
    func lifecycle() async throws {
        try await FirecrackerScenario.lifecycle(host: .current)
    }

    @Test(
        "snapshot and restore with real Firecracker",
        .enabled(
            if: FirecrackerTest.realFirecrackerUsable, "skipped: needs firecracker on PATH and usable hardware KVM"))
    func snapshot() async throws {
        try await FirecrackerScenario.snapshot(host: .current)
    }

    @Test("where Firecracker cannot run, --backend firecracker fails early with the reason and the fix")
    func failsEarly() async throws {
        guard !FirecrackerTest.realFirecrackerUsable else { return }
        let result = try await VMTest.cli(
            ["run", "--backend", "firecracker", "--", "true"], environment: ["SMOLVM_FIRECRACKER": ""])
        let message = String(decoding: result.stderr, as: UTF8.self)
        #expect(result.status == 125)
        #expect(message.contains("Firecracker cannot run on this host"))
        #expect(message.contains("Fix:"))
        #expect(message.contains("github.com/firecracker-microvm/firecracker/releases") || message.contains("kvm"))
    }
}
