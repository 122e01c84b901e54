import Foundation
import Testing

@testable import SmolVM

@Suite("Snapshots and snapshot-fast starts", .serialized)
struct SnapshotTests {
    static func text(_ bytes: [UInt8]) -> String {
        String(decoding: bytes, as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines)
    }

    static func exec(_ name: String, _ script: String) async throws -> (status: Int32, out: String, err: String) {
        let result = try await VMTest.cli(["sandbox", "exec", name, "--", "sh", "-c", script])
        return (result.status, text(result.stdout), text(result.stderr))
    }

    static func count(_ name: String) async throws -> Int {
        Int(try await exec(name, "cat /tmp/n").out) ?? -1
    }

    /// Waits (without asserting on time) until the counter in `name` passes `value`.
    static func counterPasses(_ name: String, _ value: Int) async throws -> Bool {
        for _ in 0..<100 {
            if try await count(name) > value { return true }
            try await Task.sleep(for: .milliseconds(200))
        }
        return false
    }

    static func snapshotName(_ prefix: String) -> String {
        "\(prefix)-\(UInt32.random(in: 0...UInt32.max))"
    }

    @Test(
        "create, snapshot, write, restore into two new sandboxes, read: memory, tmpfs, disk and processes come back, later writes do not, identities differ"
    )
    func roundTrip() async throws {
        let source = NamedSandboxTests.uniqueName("snap-src")
        let snapshot = Self.snapshotName("rt")
        let first = NamedSandboxTests.uniqueName("snap-a")
        let second = NamedSandboxTests.uniqueName("snap-b")
        try await Self.cleaningUp(sandboxes: [source, first, second], snapshots: [snapshot]) {
            try await roundTripBody(source: source, snapshot: snapshot, first: first, second: second)
        }
    }

    func roundTripBody(source: String, snapshot: String, first: String, second: String) async throws {
        let created = try await VMTest.cli([
            "sandbox", "create", "--name", source, "--image", "minimal", "--memory", "256", "--env", "ORIGIN=source",
        ])
        #expect(created.status == 0, "\(Self.text(created.stderr))")
        let setup = try await Self.exec(
            source,
            """
            echo on-disk > /root/before && echo in-tmpfs > /tmp/before && \
            setsid sh -c 'i=0; while :; do i=$((i+1)); echo $i > /tmp/n; sleep 0.2; done' </dev/null >/dev/null 2>&1 &
            """)
        #expect(setup.status == 0, "\(setup.err)")
        #expect(try await Self.counterPasses(source, 0))
        // A lower bound for the counter at the snapshot instant: the source keeps
        // counting after it is resumed, so a value read afterwards may be higher.
        let beforeSnapshot = try await Self.count(source)

        let made = try await VMTest.cli(["snapshot", "create", source, "--name", snapshot, "--json"])
        #expect(made.status == 0, "\(Self.text(made.stderr))")
        let manifest = try #require(try NamedSandboxTests.jsonData(made.stdout) as? [String: Any])
        #expect(manifest["name"] as? String == snapshot)
        #expect(manifest["memoryMiB"] as? Int == 256)
        #expect((manifest["files"] as? [String: Any])?.isEmpty == false)
        let afterSnapshot = try await Self.count(source)

        // The source carries on, and what it writes now is not in the snapshot.
        #expect(try await Self.exec(source, "echo later > /root/after && echo later > /tmp/after").status == 0)
        #expect(try await Self.counterPasses(source, afterSnapshot))

        for name in [first, second] {
            let restored = try await VMTest.cli(["snapshot", "restore", snapshot, "--name", name])
            #expect(restored.status == 0, "\(Self.text(restored.stderr))")
            #expect(Self.text(restored.stdout) == name)
        }
        for name in [first, second] {
            // Exec right after restore works, and sees the snapshot's files only.
            let files = try await Self.exec(
                name, "cat /root/before /tmp/before; ls /root/after /tmp/after 2>/dev/null; echo $ORIGIN")
            #expect(files.out == "on-disk\nin-tmpfs\nsource", "\(files)")
            // The counter process came back and keeps counting from where it was.
            let resumedAt = try await Self.count(name)
            #expect(resumedAt >= beforeSnapshot, "restored counter \(resumedAt), before the snapshot \(beforeSnapshot)")
            #expect(try await Self.counterPasses(name, resumedAt))
            #expect(try Sandbox.info(named: name).status == .running)
        }

        // Fresh identities: hostnames and random streams differ.
        let hostnames = try await [first, second, source].asyncMap { try await Self.exec($0, "hostname").out }
        #expect(hostnames[0] == first)
        #expect(hostnames[1] == second)
        #expect(try await Self.exec(second, "cat /etc/hostname").out == second)
        let random = try await [first, second].asyncMap {
            try await Self.exec($0, "head -c 16 /dev/urandom | od -An -tx1").out
        }
        #expect(!random[0].isEmpty)
        #expect(random[0] != random[1])

        // The two restored sandboxes do not see each other's writes.
        #expect(try await Self.exec(first, "echo mine > /root/only-a && sync").status == 0)
        #expect(try await Self.exec(second, "test -e /root/only-a").status == 1)
    }

    @Test("deleting a snapshot that running sandboxes came from is safe; they keep working and restart")
    func deleteWhileInUse() async throws {
        let source = NamedSandboxTests.uniqueName("snap-del")
        let restored = NamedSandboxTests.uniqueName("snap-del-r")
        let snapshot = Self.snapshotName("del")
        try await Self.cleaningUp(sandboxes: [source, restored], snapshots: [snapshot]) {
            try await deleteWhileInUseBody(source: source, restored: restored, snapshot: snapshot)
        }
    }

    func deleteWhileInUseBody(source: String, restored: String, snapshot: String) async throws {
        #expect(
            try await VMTest.cli(["sandbox", "create", "--name", source, "--image", "minimal", "--memory", "256"])
                .status == 0)
        #expect(try await Self.exec(source, "echo kept > /root/kept").status == 0)
        #expect(try await VMTest.cli(["snapshot", "create", source, "--name", snapshot]).status == 0)
        #expect(try await VMTest.cli(["snapshot", "restore", snapshot, "--name", restored]).status == 0)
        let deleted = try await VMTest.cli(["snapshot", "delete", snapshot])
        #expect(deleted.status == 0)
        #expect(!FileManager.default.fileExists(atPath: SnapshotStore().directory(snapshot).path))
        #expect(try await Self.exec(restored, "cat /root/kept").out == "kept")
        // It no longer needs the snapshot at all: a full stop and start keeps its disk.
        #expect(try await VMTest.cli(["sandbox", "stop", restored]).status == 0)
        #expect(try await VMTest.cli(["sandbox", "start", restored]).status == 0)
        #expect(try await Self.exec(restored, "cat /root/kept").out == "kept")

        let again = try await VMTest.cli(["snapshot", "delete", snapshot])
        #expect(again.status == 1)
        #expect(Self.text(again.stderr).contains("no snapshot named '\(snapshot)'"))
    }

    @Test("a snapshot with a damaged memory file or another kernel is refused clearly and harms nothing")
    func damagedSnapshotsAreRefused() async throws {
        let source = NamedSandboxTests.uniqueName("snap-bad")
        let target = NamedSandboxTests.uniqueName("snap-bad-r")
        let snapshot = Self.snapshotName("bad")
        try await Self.cleaningUp(sandboxes: [source, target], snapshots: [snapshot]) {
            try await damagedBody(source: source, target: target, snapshot: snapshot)
        }
    }

    func damagedBody(source: String, target: String, snapshot: String) async throws {
        #expect(
            try await VMTest.cli(["sandbox", "create", "--name", source, "--image", "minimal", "--memory", "256"])
                .status == 0)
        #expect(try await VMTest.cli(["snapshot", "create", source, "--name", snapshot]).status == 0)
        let directory = SnapshotStore().directory(snapshot)
        let state = directory.appendingPathComponent(QEMUSnapshotFiles.state)

        // Flip bytes in the middle of the memory file, keeping its size.
        let original = try Data(contentsOf: state)
        var damaged = original
        let middle = damaged.count / 2
        for offset in 0..<64 { damaged[middle + offset] ^= 0xff }
        try damaged.write(to: state)
        let refused = try await VMTest.cli(["snapshot", "restore", snapshot, "--name", target])
        #expect(refused.status == 1)
        #expect(Self.text(refused.stderr).contains("is damaged"), "\(Self.text(refused.stderr))")
        #expect(Self.text(refused.stderr).contains("does not match its checksum"))
        #expect((try? Sandbox.info(named: target)) == nil, "a refused restore left a sandbox record")

        // A file the manifest does not list would be used unchecked: refused too.
        let stray = directory.appendingPathComponent("extra.bin")
        try Data("x".utf8).write(to: stray)
        let unlisted = try await VMTest.cli(["snapshot", "restore", snapshot, "--name", target])
        #expect(unlisted.status == 1)
        #expect(Self.text(unlisted.stderr).contains("does not list extra.bin"), "\(Self.text(unlisted.stderr))")
        try FileManager.default.removeItem(at: stray)

        // A broken stream header that the cheap stamp check misses (size and mtime kept):
        // QEMU refuses it, and the error says what to do.
        let stamp = try FileManager.default.attributesOfItem(atPath: state.path)[.modificationDate] as! Date
        var header = original
        for offset in 0..<32 { header[offset] ^= 0xff }
        try header.write(to: state)
        try FileManager.default.setAttributes([.modificationDate: stamp], ofItemAtPath: state.path)
        let unreadable = try await VMTest.cli(["snapshot", "restore", snapshot, "--name", target])
        #expect(unreadable.status == 1)
        #expect(
            Self.text(unreadable.stderr).contains("smolvm snapshot delete \(snapshot)"),
            "\(Self.text(unreadable.stderr))")
        #expect((try? Sandbox.info(named: target)) == nil, "a failed restore left a sandbox record")

        // Put it back: the same bytes are accepted again (then remove that sandbox).
        try original.write(to: state)
        #expect(try await VMTest.cli(["snapshot", "restore", snapshot, "--name", target]).status == 0)
        #expect(try await Self.exec(target, "echo ok").out == "ok")
        try await Sandbox.delete(named: target, force: true)

        // A manifest naming another kernel is refused before anything starts.
        let manifestURL = directory.appendingPathComponent("manifest.json")
        let manifestText = try String(contentsOf: manifestURL, encoding: .utf8)
        var manifest = try SnapshotManifest.load(from: directory)
        manifest.kernel.sha256 = String(repeating: "0", count: 64)
        try manifest.save(in: directory)
        let otherKernel = try await VMTest.cli(["snapshot", "restore", snapshot, "--name", target])
        #expect(otherKernel.status == 1)
        #expect(Self.text(otherKernel.stderr).contains("another guest kernel"), "\(Self.text(otherKernel.stderr))")
        #expect((try? Sandbox.info(named: target)) == nil)
        try manifestText.write(to: manifestURL, atomically: true, encoding: .utf8)

        // The source never noticed.
        #expect(try await Self.exec(source, "echo alive").out == "alive")
    }

    @Test("snapshot names are validated, unknown snapshots and sandboxes are clear errors")
    func badNames() async throws {
        // A snapshot whose manifest cannot be read is listed as such and refused with the fix.
        let broken = Self.snapshotName("broken")
        let brokenDirectory = SnapshotStore().directory(broken)
        try FileManager.default.createDirectory(at: brokenDirectory, withIntermediateDirectories: true)
        try Data("{\"format\": 1".utf8).write(to: brokenDirectory.appendingPathComponent("manifest.json"))
        let listed = try await VMTest.cli(["snapshot", "list"])
        #expect(listed.status == 0)
        #expect(Self.text(listed.stderr).contains("snapshot '\(broken)' cannot be read"))
        let restoreBroken = try await VMTest.cli(["snapshot", "restore", broken])
        #expect(restoreBroken.status == 1)
        #expect(Self.text(restoreBroken.stderr).contains("smolvm snapshot delete \(broken)"))
        #expect(try await VMTest.cli(["snapshot", "delete", broken]).status == 0)
        #expect(!FileManager.default.fileExists(atPath: brokenDirectory.path))

        let badName = try await VMTest.cli(["snapshot", "restore", "Bad_Name"])
        #expect(badName.status == 2)
        #expect(Self.text(badName.stderr).contains("invalid snapshot name 'Bad_Name'"))
        let unknown = try await VMTest.cli(["snapshot", "restore", "no-such-snapshot-\(UInt16.random(in: 0...9999))"])
        #expect(unknown.status == 1)
        #expect(Self.text(unknown.stderr).contains("smolvm snapshot list"))
        let noSandbox = try await VMTest.cli(["snapshot", "create", "no-such-sandbox-\(UInt16.random(in: 0...9999))"])
        #expect(noSandbox.status == 1)
        #expect(Self.text(noSandbox.stderr).contains("no-such-sandbox"))
    }

    @Test("the library: pause keeps a counter, a boot snapshot is made on first start and used after; --cold boots")
    func bootSnapshots() async throws {
        var configuration = VMTest.configuration()
        // A memory size no other test uses, so this test sees the first start.
        configuration.memoryMiB = 200
        var spec = MachineSpec(
            id: "probe", runtimeDirectory: configuration.paths.run, kernel: URL(fileURLWithPath: "/"),
            rootImage: URL(fileURLWithPath: "/"), memoryMiB: 200, cpus: 1, hostname: "probe", network: false,
            accelerator: AcceleratorChoice(accelerator: .tcg, reason: "", overridden: false),
            bootTimeout: .seconds(1), agentChannels: Sandbox.ownedAgentChannels)
        spec.connect(configuration.internet, publish: [], mounts: [])
        let prepared = try await Sandbox.prepare(configuration)
        let boot = BootSnapshot(spec: spec, prepared: prepared, paths: configuration.paths)
        boot.discard()

        let first = try await Sandbox.create(configuration)
        #expect(first.startKind == .coldBoot)
        #expect(boot.exists, "no boot snapshot was made on first use")
        #expect(try await first.run(["echo", "one"]).stdoutText == "one\n")

        let second = try await Sandbox.create(configuration)
        #expect(second.startKind == .bootSnapshot)
        let hostnames = [
            try await first.run(["hostname"]).stdoutText, try await second.run(["hostname"]).stdoutText,
        ]
        #expect(hostnames[0] != hostnames[1])
        #expect(hostnames[1] == "smolvm-\(second.id.prefix(8))\n")
        // /etc/hostname follows the kernel's hostname, restored guest included.
        #expect(try await second.run(["cat", "/etc/hostname"]).stdoutText == hostnames[1])
        // The restored guest's clock is the host's, not the snapshot's.
        let guestTime = Int(try await second.run(["date", "+%s"]).stdoutText.dropLast()) ?? 0
        #expect(abs(guestTime - Int(Date().timeIntervalSince1970)) < 30)
        await first.delete()
        await second.delete()

        var cold = configuration
        cold.startFromSnapshot = false
        let third = try await Sandbox.create(cold)
        #expect(third.startKind == .coldBoot)
        await third.delete()

        // Other inputs, other key: a snapshot is never used for another configuration.
        var other = spec
        other.memoryMiB = 256
        #expect(BootSnapshot(spec: other, prepared: prepared, paths: configuration.paths).key != boot.key)

        // A damaged boot snapshot is not used: the sandbox boots cold and a new one is made.
        let state = boot.directory.appendingPathComponent(QEMUSnapshotFiles.state)
        let handle = try FileHandle(forWritingTo: state)
        try handle.seek(toOffset: 4096)
        handle.write(Data(repeating: 0xAB, count: 4096))
        try handle.close()
        let fourth = try await Sandbox.create(configuration)
        #expect(fourth.startKind == .coldBoot)
        #expect(try await fourth.run(["echo", "fine"]).stdoutText == "fine\n")
        await fourth.delete()
        #expect(boot.exists)
        let fifth = try await Sandbox.create(configuration)
        #expect(fifth.startKind == .bootSnapshot)
        // The console of a sandbox started from a boot snapshot shows the boot it came from.
        let console = try String(
            contentsOf: fifth.runtimeDirectory.appendingPathComponent("console.log"), encoding: .utf8)
        #expect(console.contains("restored from a snapshot"))
        #expect(console.contains("smolvm-agent"), "\(console.suffix(500))")
        await fifth.delete()

        // Damage that keeps the file's size and modification time (the cheap
        // check misses it): the restore fails in bounded time and the start falls back to a cold boot.
        let stamp = try FileManager.default.attributesOfItem(atPath: state.path)[.modificationDate] as! Date
        var memory = try Data(contentsOf: state)
        for page in stride(from: memory.count / 10, to: memory.count - 8192, by: 3 * 4096) {
            memory.replaceSubrange(page..<page + 2048, with: Data(count: 2048))
        }
        try memory.write(to: state)
        try FileManager.default.setAttributes([.modificationDate: stamp], ofItemAtPath: state.path)
        let sixth = try await Sandbox.create(configuration)
        #expect(sixth.startKind == .coldBoot)
        #expect(try await sixth.run(["echo", "recovered"]).stdoutText == "recovered\n")
        await sixth.delete()
        #expect(boot.exists, "the damaged boot snapshot was not replaced")

        // Boot snapshots whose image is gone (setup rebuilt it) are pruned; usable ones stay.
        let home = SmolVMPaths(home: URL(fileURLWithPath: "/tmp/smolvm-prune-\(UUID().uuidString.prefix(8))"))
        defer { try? FileManager.default.removeItem(at: home.home) }
        let store = SnapshotStore(paths: home)
        var stale = try SnapshotManifest.load(from: boot.directory)
        stale.image.path = "/nonexistent/rootfs.ext4"
        for (key, manifest) in [("usable", try SnapshotManifest.load(from: boot.directory)), ("stale", stale)] {
            try FileManager.default.createDirectory(at: store.bootDirectory(key), withIntermediateDirectories: true)
            try manifest.save(in: store.bootDirectory(key))
        }
        try FileManager.default.createDirectory(
            at: store.bootDirectory("unreadable"), withIntermediateDirectories: true)
        try Data("{".utf8).write(to: store.bootDirectory("unreadable").appendingPathComponent("manifest.json"))
        store.pruneBootSnapshots()
        let left = try FileManager.default.contentsOfDirectory(atPath: store.bootRoot.path)
        #expect(left == ["usable"])
    }

    /// Runs `body`, then deletes the named sandboxes and snapshots whether it passed or threw.
    @Test("a snapshot save cut off while the VM is stopped (the saver killed): the next command resumes the sandbox")
    func interruptedSaveIsRecovered() async throws {
        let name = NamedSandboxTests.uniqueName("snap-cut")
        try await Self.cleaningUp(sandboxes: [name], snapshots: []) {
            let created = try await VMTest.cli([
                "sandbox", "create", "--name", name, "--image", "minimal", "--memory", "256", "--internet", "off",
            ])
            #expect(created.status == 0, "\(Self.text(created.stderr))")
            let directory = URL(fileURLWithPath: try Sandbox.info(named: name).runtimeDirectory)
            // What a `snapshot create` killed after QEMU's save leaves: the mark with no
            // lock holder, and a VM stopped after a completed migration.
            let interrupted = InterruptedSave(runtimeDirectory: directory)
            try #require(try interrupted.begin())?.release()
            #expect(try await Self.stopAfterMigration(QEMURuntimePaths(directory: directory)) == "postmigrate")
            let after = try await Self.exec(name, "echo alive")
            #expect(after.status == 0 && after.out == "alive", "\(after)")
            #expect(!FileManager.default.fileExists(atPath: interrupted.marker.path))
            #expect(try Sandbox.info(named: name).status == .running)
            // `sandbox resume` does the same for a sandbox recorded running.
            try #require(try interrupted.begin())?.release()
            #expect(try await Self.stopAfterMigration(QEMURuntimePaths(directory: directory)) == "postmigrate")
            _ = try await Sandbox.resume(named: name)
            #expect(!FileManager.default.fileExists(atPath: interrupted.marker.path))
            #expect(try await Self.exec(name, "echo again").out == "again")
        }
    }

    /// Stops the VM and saves its state to nowhere, as a snapshot does; returns QEMU's run state after.
    static func stopAfterMigration(_ paths: QEMURuntimePaths) async throws -> String? {
        let qmp = try await QMPClient.connect(path: paths.qmpSocket.path)
        try await qmp.execute("stop")
        try await qmp.execute("migrate", arguments: ["uri": "exec:cat > /dev/null"])
        for _ in 0..<1000 {
            if try await qmp.execute("query-migrate")["status"] as? String == "completed" { break }
            try await Task.sleep(for: .milliseconds(10))
        }
        return try await qmp.execute("query-status")["status"] as? String
    }

    static func cleaningUp(
        sandboxes: [String], snapshots: [String], _ body: () async throws -> Void
    ) async throws {
        let outcome: Result<Void, any Error>
        do {
            try await body()
            outcome = .success(())
        } catch {
            outcome = .failure(error)
        }
        for name in sandboxes { try? await Sandbox.delete(named: name, force: true) }
        for name in snapshots { try? SnapshotStore().delete(named: name) }
        try outcome.get()
    }
}

extension Array {
    func asyncMap<T>(_ transform: (Element) async throws -> T) async rethrows -> [T] {
        var results: [T] = []
        for element in self { results.append(try await transform(element)) }
        return results
    }
}
