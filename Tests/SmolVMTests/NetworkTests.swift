import Foundation
import SmolVMSystem
import Testing

@testable import SmolVM

#if canImport(FoundationNetworking)
    import FoundationNetworking
#endif

/// Internet modes, published ports and host folders, with real VMs. Traffic
/// goes only to loopback and to QEMU's own user-network addresses.
@Suite("Networking, published ports and host folders", .serialized)
struct NetworkTests {
    /// A host port nothing listens on right now.
    static func freePort() throws -> UInt16 {
        for _ in 0..<50 {
            let port = UInt16.random(in: 20000...60000)
            if (try? TCPPortProbe.bind(address: "127.0.0.1", port: port)) != nil { return port }
        }
        throw SmolVMError(.busy, "no free port found")
    }

    /// Fetches `http://127.0.0.1:port/path` over a plain socket, retrying while the guest server starts.
    static func httpGet(port: UInt16, path: String) async -> String? {
        let url = URL(string: "http://127.0.0.1:\(port)\(path)")!
        for _ in 0..<100 {
            if let data = try? await URLSession.shared.data(from: url).0, !data.isEmpty {
                return String(decoding: data, as: UTF8.self)
            }
            try? await Task.sleep(for: .milliseconds(200))
        }
        return nil
    }

    static func temporaryFolder() throws -> URL {
        let folder = URL(fileURLWithPath: "/tmp/smolvm-mount-\(UUID().uuidString.prefix(8))")
        try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
        return folder
    }

    @Test("internet off: no route to the gateway, while exec and files work")
    func internetOff() async throws {
        var configuration = VMTest.configuration()
        configuration.internet = .off
        try await Sandbox.withSandbox(configuration) { sandbox in
            let result = try await sandbox.run(Command.shell("nc -w 2 10.0.2.2 80 </dev/null; echo status=$?"))
            #expect(result.stdoutText.contains("status=1"), "\(result.stdoutText) \(result.stderrText)")
            let interfaces = try await sandbox.run(["ls", "/sys/class/net"]).stdoutText
            #expect(interfaces == "lo\n")
            try await sandbox.upload(Array("still works".utf8), to: "/root/f")
            #expect(try await sandbox.download(from: "/root/f") == Array("still works".utf8))
        }
    }

    @Test("internet on: the guest reaches QEMU's gateway, so the off test above can fail")
    func internetOn() async throws {
        var configuration = VMTest.configuration()
        configuration.internet = .on
        let port = try Self.freePort()
        // A host server on loopback, reached from the guest through the NAT gateway 10.0.2.2.
        // Spawn, not Foundation's Process: a Process started from a dispatch
        // thread inherits its blocked signals and would ignore SIGTERM.
        // http.server logs each request to stderr and fails the request when it cannot.
        let null = try FileDescriptor.open("/dev/null", .readWrite)
        let listener = try Spawn.start(
            path: "/usr/bin/python3",
            arguments: ["python3", "-m", "http.server", "\(port)", "--bind", "127.0.0.1", "--directory", "/tmp"],
            environment: [], fileDescriptors: [null, null, null])
        null.close()
        defer {
            Spawn.signal(listener, SIGKILL)
            _ = try? Spawn.wait(listener)
        }
        try await Sandbox.withSandbox(configuration) { sandbox in
            var reached = false
            for _ in 0..<50 where !reached {
                // busybox's static wget crashes in glibc's resolver; nc speaks plain TCP.
                let result = try await sandbox.run(
                    Command.shell("printf 'GET / HTTP/1.0\\r\\n\\r\\n' | nc -w 3 10.0.2.2 \(port)"))
                reached = result.stdoutText.hasPrefix("HTTP/1.0 200")
                if !reached { try await Task.sleep(for: .milliseconds(200)) }
            }
            #expect(reached, "the guest could not reach a host server through the gateway")
        }
    }

    @Test("a server in the guest answers on the published host port; the port is free again after delete")
    func publish() async throws {
        let port = try Self.freePort()
        var configuration = VMTest.configuration()
        configuration.publish = [PortPublication(hostPort: port, guestPort: 8080)]
        let sandbox = try await Sandbox.create(configuration)
        do {
            _ = try await sandbox.run(
                Command.shell("mkdir -p /srv && echo published > /srv/index.html && (httpd -p 8080 -h /srv &)"))
            let body = await Self.httpGet(port: port, path: "/index.html")
            #expect(body == "published\n")
        }
        await sandbox.delete()
        #expect((try? TCPPortProbe.bind(address: "127.0.0.1", port: port)) != nil, "the host port stayed taken")
    }

    @Test("a host port already in use is refused at create, naming it, and nothing is left behind")
    func portInUse() async throws {
        let port = try Self.freePort()
        let holder = try TCPListenerHolder.listenTCP(port: port)
        defer { holder.close() }
        let before = Set((try? FileManager.default.contentsOfDirectory(atPath: VMTest.paths.run.path)) ?? [])
        var configuration = VMTest.configuration()
        configuration.publish = [PortPublication(hostPort: port, guestPort: 80)]
        do {
            _ = try await Sandbox.create(configuration)
            Issue.record("a sandbox was created on a taken port")
        } catch let error as SmolVMError {
            #expect(error.message.contains("127.0.0.1:\(port)"))
            #expect(error.message.contains("already in use"))
        }
        let after = Set((try? FileManager.default.contentsOfDirectory(atPath: VMTest.paths.run.path)) ?? [])
        #expect(after.subtracting(before).isEmpty)

        let cli = try await VMTest.cli(["sandbox", "create", "--image", "minimal", "-p", "\(port):80"])
        #expect(cli.status == 1)
        #expect(String(decoding: cli.stderr, as: UTF8.self).contains("already in use"))
    }

    @Test("bad --publish, --internet and --allow values are usage errors that say what is wrong")
    func badNetworkArguments() async throws {
        for (arguments, message) in [
            (["-p", "80"], "[HOSTIP:]HOSTPORT:GUESTPORT"), (["-p", "0:80"], "not a host port"),
            (["-p", "70000:80"], "not a host port"), (["-p", "1.2.3:80:80"], "not an IPv4 host address"),
            (["-p", "0.0.0.0:18111:80", "-p", "127.0.0.1:18111:81"], "published twice"),
            (["--internet", "maybe"], "unknown internet mode"), (["--allow", "10.0.0.0/8"], "--internet restricted"),
            (["--internet", "restricted", "--allow", "10.0.0.0/33"], "bad prefix length"),
        ] {
            let result = try await VMTest.cli(["run", "--image", "minimal"] + arguments + ["--", "true"])
            #expect(result.status == 125, "\(arguments)")
            #expect(String(decoding: result.stderr, as: UTF8.self).contains(message), "\(arguments)")
        }
    }

    @Test("parsing: ranges, publications and mount specs")
    func parsing() throws {
        #expect(try IPv4Range(parsing: "10.1.2.3/8").description == "10.0.0.0/8")
        #expect(try IPv4Range(parsing: "192.0.2.7").description == "192.0.2.7/32")
        #expect(try IPv4Range(parsing: "192.0.2.0/24").contains(IPv4Range.parseAddress("192.0.2.200")!))
        #expect(throws: SmolVMError.self) { try IPv4Range(parsing: "1.2.3.256") }
        #expect(throws: SmolVMError.self) { try IPv4Range(parsing: " 1.2.3.4") }
        #expect(try PortPublication(parsing: "8080:80") == PortPublication(hostPort: 8080, guestPort: 80))
        #expect(
            try PortPublication(parsing: "0.0.0.0:8080:80")
                == PortPublication(hostAddress: "0.0.0.0", hostPort: 8080, guestPort: 80))
        #expect(try HostMount(parsing: "/a:b").hostPath == "/a:b")
        #expect(try HostMount(parsing: "/a:/b").guestPath == "/b")
        #expect(try HostMount(parsing: ".").guestPath == "/workspace")
        #expect(
            try InternetAccess(stored: "restricted:10.0.0.0/8,192.0.2.1/32")
                == .restricted(allow: [
                    try IPv4Range(parsing: "10.0.0.0/8"), try IPv4Range(parsing: "192.0.2.1"),
                ]))
        #expect(QEMUCommandLine.percentEncoded("/my dir/ü") == "/my%20dir/%C3%BC")
        #expect(QEMUCommandLine.optionEscaped("/a,b") == "/a,,b")
    }

    @Test("read-only mount: the guest sees host files and may write, but nothing reaches the host; no symlink escapes")
    func readOnlyMount() async throws {
        let folder = try Self.temporaryFolder()
        defer { try? FileManager.default.removeItem(at: folder) }
        let secret = folder.deletingLastPathComponent().appendingPathComponent("smolvm-secret-\(UUID().uuidString)")
        try Data("host secret\n".utf8).write(to: secret)
        defer { try? FileManager.default.removeItem(at: secret) }
        try Data("from the host\n".utf8).write(to: folder.appendingPathComponent("hello.txt"))
        try FileManager.default.createSymbolicLink(
            atPath: folder.appendingPathComponent("escape").path, withDestinationPath: secret.path)
        let odd = "with space, comma & ü"
        try FileManager.default.createDirectory(
            at: folder.appendingPathComponent(odd), withIntermediateDirectories: true)

        var configuration = VMTest.configuration()
        configuration.mounts = [HostMount(hostPath: folder.path, guestPath: "/mnt/my project")]
        try await Sandbox.withSandbox(configuration) { sandbox in
            #expect(sandbox.startKind == .coldBoot)
            let listing = try await sandbox.run(["ls", "/mnt/my project"]).stdoutText
            #expect(listing.contains("hello.txt") && listing.contains(odd), "\(listing)")
            #expect(try await sandbox.run(["cat", "/mnt/my project/hello.txt"]).stdoutText == "from the host\n")
            let write = try await sandbox.run(
                Command.shell(
                    "echo guest > '/mnt/my project/new.txt' && echo changed > '/mnt/my project/hello.txt' && rm -rf '/mnt/my project/\(odd)' && cat '/mnt/my project/new.txt'"
                ))
            #expect(write.exitCode == 0, "\(write.stderrText)")
            #expect(write.stdoutText == "guest\n")
            let escape = try await sandbox.run(Command.shell("cat '/mnt/my project/escape'"))
            #expect(!escape.stdoutText.contains("host secret"))
        }
        #expect(!FileManager.default.fileExists(atPath: folder.appendingPathComponent("new.txt").path))
        #expect(
            try String(contentsOf: folder.appendingPathComponent("hello.txt"), encoding: .utf8) == "from the host\n")
        #expect(FileManager.default.fileExists(atPath: folder.appendingPathComponent(odd).path))
    }

    @Test("writable mount: guest writes reach the host; a named sandbox keeps its folder across stop and start")
    func writableMount() async throws {
        let folder = try Self.temporaryFolder()
        defer { try? FileManager.default.removeItem(at: folder) }
        let name = NamedSandboxTests.uniqueName("mount")
        let created = try await VMTest.cli([
            "sandbox", "create", "--name", name, "--image", "minimal", "--internet", "off", "--mount", folder.path,
            "--writable-mounts",
        ])
        #expect(created.status == 0, "\(String(decoding: created.stderr, as: UTF8.self))")
        defer { Task { try? await Sandbox.delete(named: name, force: true) } }
        let write = try await VMTest.cli([
            "sandbox", "exec", name, "--", "sh", "-c", "echo through > /workspace/out.txt",
        ])
        #expect(write.status == 0)
        #expect(try String(contentsOf: folder.appendingPathComponent("out.txt"), encoding: .utf8) == "through\n")
        #expect(try await VMTest.cli(["sandbox", "stop", name]).status == 0)
        try Data("while stopped\n".utf8).write(to: folder.appendingPathComponent("later.txt"))
        #expect(try await VMTest.cli(["sandbox", "start", name]).status == 0)
        let read = try await VMTest.cli(["sandbox", "exec", name, "--", "cat", "/workspace/later.txt"])
        #expect(String(decoding: read.stdout, as: UTF8.self) == "while stopped\n")
        let info = try Sandbox.info(named: name)
        #expect(info.mounts == [HostMount(hostPath: folder.path, guestPath: "/workspace", writable: true)])
        // A sandbox with a host folder cannot be snapshotted, and says why.
        let snapshot = try await VMTest.cli(["snapshot", "create", name])
        #expect(snapshot.status == 1)
        #expect(String(decoding: snapshot.stderr, as: UTF8.self).contains("9p"))
        try await Sandbox.delete(named: name, force: true)
    }

    @Test("mounts of missing paths, files and system folders are refused; Firecracker refuses mounts")
    func badMounts() async throws {
        let folder = try Self.temporaryFolder()
        defer { try? FileManager.default.removeItem(at: folder) }
        try Data().write(to: folder.appendingPathComponent("file"))
        for (mount, message) in [
            ("/no/such/folder-\(UUID().uuidString)", "does not exist"),
            (folder.appendingPathComponent("file").path, "not a directory"),
            ("\(folder.path):/proc", "belongs to the guest system"),
            ("\(folder.path):/a/../b", "absolute path"),
            ("\(folder.path):/usr", "belongs to the guest system"), ("/proc", "host's kernel and devices"),
            ("/dev:/mnt/dev", "host's kernel and devices"),
            ("\(folder.path):/lib", "belongs to the guest system"),
            ("\(folder.path):/var/lib/smolvm", "belongs to the guest system"),
            ("\(folder.path)/missing:relative", "must be absolute"),
        ] {
            let result = try await VMTest.cli(["run", "--image", "minimal", "--mount", mount, "--", "true"])
            #expect(result.status == 125, "\(mount)")
            #expect(String(decoding: result.stderr, as: UTF8.self).contains(message), "\(mount): \(message)")
        }
        let nested = try await VMTest.cli([
            "run", "--image", "minimal", "--mount", "\(folder.path):/w", "--mount", "\(folder.path):/w/x", "--", "true",
        ])
        #expect(nested.status == 125)
        #expect(String(decoding: nested.stderr, as: UTF8.self).contains("inside another mount"))
        // A guest path the agent cannot mount onto (a file in the image) fails the create, naming it.
        let ontoFile = try await VMTest.cli([
            "run", "--image", "minimal", "--mount", "\(folder.path):/linuxrc", "--", "true",
        ])
        #expect(ontoFile.status == 125)
        #expect(String(decoding: ontoFile.stderr, as: UTF8.self).contains("could not be mounted at /linuxrc"))
        let firecracker = try await VMTest.cli([
            "run", "--image", "minimal", "--backend", "firecracker", "--mount", folder.path, "--", "true",
        ])
        #expect(firecracker.status == 125)
        #expect(String(decoding: firecracker.stderr, as: UTF8.self).contains("--backend qemu"))
        let resolution = try BackendResolution.resolve(explicit: .auto, host: .current, qemuOnly: "host folders")
        #expect(resolution.backend == .qemu)
        #expect(resolution.reason.contains("host folders"))
    }

    @Test("sandbox ports lists what a named sandbox publishes")
    func ports() async throws {
        let port = try Self.freePort()
        let name = NamedSandboxTests.uniqueName("ports")
        let created = try await VMTest.cli([
            "sandbox", "create", "--name", name, "--image", "minimal", "--internet", "off", "-p", "\(port):8080",
        ])
        #expect(created.status == 0, "\(String(decoding: created.stderr, as: UTF8.self))")
        let ports = try await VMTest.cli(["sandbox", "ports", name])
        #expect(String(decoding: ports.stdout, as: UTF8.self) == "127.0.0.1:\(port) -> 8080/tcp\n")
        // Published ports work with the internet off, and the guest still reaches nothing.
        _ = try await VMTest.cli([
            "sandbox", "exec", name, "--", "sh", "-c",
            "mkdir -p /srv && echo off-but-published > /srv/i && (httpd -p 8080 -h /srv &)",
        ])
        #expect(await Self.httpGet(port: port, path: "/i") == "off-but-published\n")
        let out = try await VMTest.cli(["sandbox", "exec", name, "--", "sh", "-c", "nc -w 2 10.0.2.2 80 </dev/null"])
        #expect(out.status != 0)
        // No resolver to wait for: lookups fail at once instead of timing out.
        let resolver = try await VMTest.cli(["sandbox", "exec", name, "--", "cat", "/etc/resolv.conf"])
        #expect(!String(decoding: resolver.stdout, as: UTF8.self).contains("nameserver"))
        try await Sandbox.delete(named: name, force: true)
        #expect((try? TCPPortProbe.bind(address: "127.0.0.1", port: port)) != nil)
    }
}

/// A host TCP listener held open by the test, to occupy a port.
struct TCPListenerHolder {
    let fd: Int32

    static func listenTCP(port: UInt16) throws -> TCPListenerHolder {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_port = port.bigEndian
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        let bound = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                bind(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size))
            }
        }
        guard bound == 0, listen(fd, 1) == 0 else {
            let error = Errno.current
            _ = Glibc.close(fd)
            throw error
        }
        return TCPListenerHolder(fd: fd)
    }

    func close() { _ = Glibc.close(fd) }
}

/// `--internet restricted` against test hosts in network namespaces this
/// suite creates and removes (documentation ranges, never routed anywhere else).
@Suite("Restricted internet", .serialized)
struct RestrictedNetworkTests {
    /// Two namespaces, each a host at the end of a veth pair serving HTTP on port 8000.
    final class TestHosts {
        let suffix = String(UInt32.random(in: 0...0xFFFF), radix: 16)
        var servers: [pid_t] = []
        let allowed = "198.51.100.2"
        let denied = "203.0.113.2"

        var namespaces: [String] { ["smt-a\(suffix)", "smt-b\(suffix)"] }

        func up() async throws {
            let pairs = [(namespaces[0], "198.51.100.1", allowed), (namespaces[1], "203.0.113.1", denied)]
            for (index, (namespace, hostSide, guestSide)) in pairs.enumerated() {
                let outer = "smt\(index)h\(suffix)"
                let inner = "smt\(index)n\(suffix)"
                for command in [
                    ["ip", "netns", "add", namespace],
                    ["ip", "link", "add", outer, "type", "veth", "peer", "name", inner],
                    ["ip", "link", "set", inner, "netns", namespace],
                    ["ip", "addr", "add", "\(hostSide)/30", "dev", outer], ["ip", "link", "set", outer, "up"],
                    ["ip", "netns", "exec", namespace, "ip", "addr", "add", "\(guestSide)/30", "dev", inner],
                    ["ip", "netns", "exec", namespace, "ip", "link", "set", inner, "up"],
                ] {
                    _ = try await Subprocess.check(command)
                }
                let null = try FileDescriptor.open("/dev/null", .readWrite)
                servers.append(
                    try Spawn.start(
                        path: "/usr/sbin/ip",
                        arguments: [
                            "ip", "netns", "exec", namespace, "python3", "-m", "http.server", "8000", "--bind",
                            guestSide,
                            "--directory", "/tmp",
                        ], environment: ["PATH=/usr/bin:/bin"], fileDescriptors: [null, null, null]))
                null.close()
            }
        }

        func down() {
            for server in servers {
                Spawn.signal(server, SIGKILL)
                _ = try? Spawn.wait(server)
            }
            for namespace in namespaces { Subprocess.runQuietly(["ip", "netns", "del", namespace]) }
            for index in 0..<2 { Subprocess.runQuietly(["ip", "link", "del", "smt\(index)h\(suffix)"]) }
        }
    }

    /// Nil when this host can run the tests; otherwise the one-line reason.
    static var missing: String? {
        if geteuid() != 0 { return "needs root (TAP devices, nftables, network namespaces)" }
        do { _ = try RestrictedNetwork.checkHost() } catch let error as SmolVMError { return error.message } catch {
            return "\(error)"
        }
        return nil
    }

    static func fetch(_ address: String) -> String {
        "printf 'GET / HTTP/1.0\\r\\n\\r\\n' | nc -w 3 \(address) 8000 | head -1"
    }

    @Test("only the allowed range is reachable, and the host side is gone after delete")
    func allowedOnly() async throws {
        if let missing = Self.missing {
            print("skipped: restricted internet tests: \(missing)")
            return
        }
        let hosts = TestHosts()
        defer { hosts.down() }
        try await hosts.up()
        var configuration = VMTest.configuration()
        configuration.internet = .restricted(allow: [try IPv4Range(parsing: "\(hosts.allowed)/32")])
        let sandbox = try await Sandbox.create(configuration)
        let id = sandbox.id
        do {
            #expect(RestrictedNetwork.exists(for: id))
            var reached = false
            for _ in 0..<20 where !reached {
                reached = try await sandbox.run(.shell(Self.fetch(hosts.allowed))).stdoutText.hasPrefix("HTTP/1.0 200")
            }
            #expect(reached, "the allowed test host was not reachable")
            let denied = try await sandbox.run(.shell(Self.fetch(hosts.denied)))
            #expect(!denied.stdoutText.contains("HTTP"), "\(denied.stdoutText)")
            // The guest cannot lift the filter: it lives on the host.
            _ = try await sandbox.run(.shell("ip route add 203.0.113.0/30 dev eth0 2>/dev/null; true"))
            #expect(!(try await sandbox.run(.shell(Self.fetch(hosts.denied)))).stdoutText.contains("HTTP"))
        }
        await sandbox.delete()
        #expect(!RestrictedNetwork.exists(for: id), "the TAP device outlived the sandbox")
        let tables = try await Subprocess.run(["nft", "list", "tables"]).outputText
        #expect(!tables.contains(RestrictedNetwork.tableName(for: id)), "the nftables table outlived the sandbox")
    }

    @Test("a named restricted sandbox keeps its filter across stop and start and cleans up on delete; no snapshot")
    func named() async throws {
        if let missing = Self.missing {
            print("skipped: restricted internet tests: \(missing)")
            return
        }
        let hosts = TestHosts()
        defer { hosts.down() }
        try await hosts.up()
        let name = NamedSandboxTests.uniqueName("restricted")
        let created = try await VMTest.cli([
            "sandbox", "create", "--name", name, "--image", "minimal", "--internet", "restricted", "--allow",
            "\(hosts.allowed)/32",
        ])
        #expect(created.status == 0, "\(String(decoding: created.stderr, as: UTF8.self))")
        let id = try Sandbox.info(named: name).id
        #expect(try await VMTest.cli(["sandbox", "stop", name]).status == 0)
        #expect(!RestrictedNetwork.exists(for: id))
        #expect(try await VMTest.cli(["sandbox", "start", name]).status == 0)
        let reached = try await VMTest.cli(["sandbox", "exec", name, "--", "sh", "-c", Self.fetch(hosts.allowed)])
        #expect(String(decoding: reached.stdout, as: UTF8.self).hasPrefix("HTTP/1.0 200"))
        let denied = try await VMTest.cli(["sandbox", "exec", name, "--", "sh", "-c", Self.fetch(hosts.denied)])
        #expect(!String(decoding: denied.stdout, as: UTF8.self).contains("HTTP"))
        let snapshot = try await VMTest.cli(["snapshot", "create", name])
        #expect(snapshot.status == 1)
        #expect(String(decoding: snapshot.stderr, as: UTF8.self).contains("restricted internet"))
        try await Sandbox.delete(named: name)
        #expect(!RestrictedNetwork.exists(for: id))
    }

    @Test("restricted refuses --publish and a missing --allow, at create")
    func refusals() async throws {
        let noAllow = try await VMTest.cli(["run", "--image", "minimal", "--internet", "restricted", "--", "true"])
        #expect(noAllow.status == 125)
        #expect(String(decoding: noAllow.stderr, as: UTF8.self).contains("--allow"))
        let publish = try await VMTest.cli([
            "run", "--image", "minimal", "--internet", "restricted", "--allow", "198.51.100.2", "-p", "18099:80", "--",
            "true",
        ])
        #expect(publish.status == 125)
        #expect(String(decoding: publish.stderr, as: UTF8.self).contains("--publish"))
    }
}
