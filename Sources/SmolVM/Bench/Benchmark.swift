import Foundation
import SmolVMSystem

/// `smolvm bench`: SmolVM's speed as ratios against the raw floor, both
/// measured in the same run on the same kernel, image, memory and channel.
///
/// The floor boots the same agent binary in raw mode (`SMOLVM_RAW=1`): it
/// answers on the virtio-serial port without the protocol, so the ratios
/// isolate what SmolVM's host library, protocol and agent add.
public enum Benchmark {
    public struct Options: Sendable {
        public var image = "minimal"
        public var memoryMiB = 256
        public var coldRuns = 3
        public var warmRuns = 200
        /// Where the upload lands in the guest: on disk by default, as users' files do.
        public var uploadPath = "/root/bench-upload.bin"
        public var paths: SmolVMPaths = .fromEnvironment()
        public init() {}
    }

    public struct Metric: Codable, Sendable {
        public var name: String
        public var smolvm: Double
        public var floor: Double?
        public var unit: String
        /// smolvm / floor.
        public var ratio: Double?
        public var target: String
        public var met: Bool?
    }

    public struct Report: Codable, Sendable {
        public var accelerator: String
        public var acceleratorReason: String
        public var qemu: String
        public var image: String
        public var memoryMiB: Int
        public var cpus: Int
        public var metrics: [Metric]
    }

    public static func run(_ options: Options, progress: @escaping @Sendable (String) -> Void) async throws -> Report {
        let host = HostFacts.current
        let qemu = QEMUAvailability.check(host)
        guard let binary = qemu.binary, let accelerator = qemu.accelerator else {
            throw SmolVMError(.hostUnsupported, "QEMU cannot run on this host: \(qemu.problem ?? "")")
        }
        let store = ImageStore(paths: options.paths)
        let kernel = try await store.kernel()
        let image = try await store.image(options.image)
        var configuration = SandboxConfiguration(
            image: options.image, memoryMiB: options.memoryMiB, cpus: 1, backend: .qemu)
        configuration.paths = options.paths
        configuration.internet = .off
        // Cold starts boot the kernel; snapshot-fast starts are measured on their own below.
        configuration.startFromSnapshot = false
        let version =
            (try? await Subprocess.run([binary, "--version"]).outputText.split(separator: "\n").first.map(String.init))
            ?? nil

        var rawBoots: [Double] = []
        var coldStarts: [Double] = []
        for run in 1...options.coldRuns {
            progress("cold start \(run)/\(options.coldRuns)")
            let raw = try await RawGuest.boot(
                binary: binary, kernel: kernel.url, image: image.url, options: options, accelerator: accelerator)
            rawBoots.append(raw.bootMilliseconds)
            await raw.shutdown()
            let start = ContinuousClock.now
            let sandbox = try await Sandbox.create(configuration)
            _ = try await sandbox.run(["true"])
            coldStarts.append(milliseconds(ContinuousClock.now - start))
            await sandbox.delete()
        }

        progress("snapshot-fast start (boot snapshot of this configuration)")
        var fast = configuration
        fast.startFromSnapshot = true
        try await Sandbox.warm(fast)
        var fastStarts: [Double] = []
        for _ in 1...max(3, options.coldRuns) {
            let start = ContinuousClock.now
            let sandbox = try await Sandbox.create(fast)
            _ = try await sandbox.run(["true"])
            fastStarts.append(milliseconds(ContinuousClock.now - start))
            let started = sandbox.startKind
            await sandbox.delete()
            guard started == .bootSnapshot else {
                throw SmolVMError(.system, "the snapshot-fast start booted cold; the boot snapshot could not be used")
            }
        }

        progress("raw floor: echo and fork-exec loops, QMP stop/cont, state save, idle memory")
        let raw = try await RawGuest.boot(
            binary: binary, kernel: kernel.url, image: image.url, options: options, accelerator: accelerator)
        let rawEcho = try await raw.roundTrips("e", count: options.warmRuns)
        let rawExec = try await raw.roundTrips("x", count: options.warmRuns)
        let rawUploadSeconds = try await raw.bulkUpload()
        try await Task.sleep(for: .seconds(2))
        let rawRSS = residentMiB(raw.machine.pid)
        var rawPauseResume: [Double] = []
        for _ in 0..<20 {
            let start = ContinuousClock.now
            try await raw.machine.pause()
            try await raw.machine.resume()
            rawPauseResume.append(milliseconds(ContinuousClock.now - start))
        }
        // The VMM's own save (migrate to a file plus the disk layer copy), with nothing of SmolVM's around it.
        let rawSaveDirectory = raw.directory.appendingPathComponent("save")
        try FileManager.default.createDirectory(at: rawSaveDirectory, withIntermediateDirectories: true)
        try await raw.machine.pause()
        let rawSaveStart = ContinuousClock.now
        try await raw.machine.saveState(to: rawSaveDirectory)
        let rawSave = milliseconds(ContinuousClock.now - rawSaveStart)
        await raw.shutdown()

        progress("smolvm: ping and `true` round trips, upload, idle memory")
        let sandbox = try await Sandbox.create(configuration)
        var pings: [Double] = []
        var trues: [Double] = []
        do {
            for _ in 0..<options.warmRuns { pings.append(milliseconds(try await sandbox.ping())) }
            for _ in 0..<options.warmRuns {
                let start = ContinuousClock.now
                _ = try await sandbox.run(["true"])
                trues.append(milliseconds(ContinuousClock.now - start))
            }
            try await Task.sleep(for: .seconds(2))
        } catch {
            await sandbox.delete()
            throw error
        }
        let rss = residentMiB(await sandbox.vmmProcessID ?? 0)
        let payload = [UInt8](repeating: 0x5a, count: RawGuest.uploadBytes)
        let uploadStart = ContinuousClock.now
        do {
            try await sandbox.upload(payload, to: options.uploadPath)
        } catch {
            await sandbox.delete()
            throw error
        }
        let uploadSeconds = milliseconds(ContinuousClock.now - uploadStart) / 1000

        progress("smolvm: pause/resume, snapshot create, restore to first result")
        var pauseResume: [Double] = []
        let snapshotName = "bench-\(Sandbox.makeID())"
        let snapshotStore = SnapshotStore(paths: options.paths)
        var snapshotMilliseconds = 0.0
        var snapshotBytes: UInt64 = 0
        var restores: [Double] = []
        do {
            for _ in 0..<20 {
                let start = ContinuousClock.now
                try await sandbox.pause()
                try await sandbox.resume()
                pauseResume.append(milliseconds(ContinuousClock.now - start))
            }
            let start = ContinuousClock.now
            let manifest = try await sandbox.snapshot(named: snapshotName)
            snapshotMilliseconds = milliseconds(ContinuousClock.now - start)
            snapshotBytes = manifest.size
            for _ in 1...options.coldRuns {
                let start = ContinuousClock.now
                let restored = try await Sandbox.restore(snapshot: snapshotName, paths: options.paths)
                _ = try await restored.run(["true"])
                restores.append(milliseconds(ContinuousClock.now - start))
                if let name = restored.name { try await Sandbox.delete(named: name, force: true, paths: options.paths) }
            }
        } catch {
            await sandbox.delete()
            try? snapshotStore.delete(named: snapshotName)
            throw error
        }
        try? snapshotStore.delete(named: snapshotName)
        await sandbox.delete()

        let cold = median(coldStarts)
        let rawBoot = median(rawBoots)
        let fastStart = median(fastStarts)
        let restore = median(restores)
        let metrics = [
            Metric(
                name: "cold start to first result", smolvm: cold, floor: rawBoot, unit: "ms", ratio: cold / rawBoot,
                target: "<= 1.15x raw boot to /init", met: cold / rawBoot <= 1.15),
            Metric(
                name: "warm `true` p50", smolvm: percentile(trues, 0.5), floor: percentile(rawExec, 0.5), unit: "ms",
                ratio: percentile(trues, 0.5) / percentile(rawExec, 0.5), target: "<= 1.2x raw fork-exec loop",
                met: percentile(trues, 0.5) / percentile(rawExec, 0.5) <= 1.2),
            Metric(
                name: "warm `true` p95", smolvm: percentile(trues, 0.95), floor: percentile(rawExec, 0.95), unit: "ms",
                ratio: percentile(trues, 0.95) / percentile(rawExec, 0.95), target: "(reported)", met: nil),
            Metric(
                name: "ping p50 (protocol overhead)", smolvm: percentile(pings, 0.5), floor: percentile(rawEcho, 0.5),
                unit: "ms", ratio: percentile(pings, 0.5) / percentile(rawEcho, 0.5), target: "<= 2x raw echo",
                met: percentile(pings, 0.5) / percentile(rawEcho, 0.5) <= 2),
            Metric(
                name: "upload throughput (64 MiB)", smolvm: Double(RawGuest.uploadBytes) / 1e6 / uploadSeconds,
                floor: Double(RawGuest.uploadBytes) / 1e6 / rawUploadSeconds, unit: "MB/s",
                ratio: rawUploadSeconds / uploadSeconds, target: ">= 100 MB/s",
                met: Double(RawGuest.uploadBytes) / 1e6 / uploadSeconds >= 100),
            Metric(
                name: "idle QEMU RSS", smolvm: rss, floor: rawRSS, unit: "MiB", ratio: rss / rawRSS,
                target: "<= 1.1x raw idle", met: rss / rawRSS <= 1.1),
            Metric(
                name: "snapshot-fast start to first result", smolvm: fastStart, floor: cold, unit: "ms",
                ratio: fastStart / cold, target: "<= 0.25x cold start", met: fastStart / cold <= 0.25),
            Metric(
                name: "restore a snapshot to first result", smolvm: restore, floor: cold, unit: "ms",
                ratio: restore / cold, target: "(reported, vs cold start)", met: nil),
            Metric(
                name: "pause + resume p50", smolvm: percentile(pauseResume, 0.5),
                floor: percentile(rawPauseResume, 0.5), unit: "ms",
                ratio: percentile(pauseResume, 0.5) / percentile(rawPauseResume, 0.5),
                target: "(reported, vs raw QMP stop+cont)", met: nil),
            Metric(
                name: "snapshot create", smolvm: snapshotMilliseconds, floor: rawSave, unit: "ms",
                ratio: snapshotMilliseconds / rawSave, target: "(reported, vs the VMM's own save)", met: nil),
            Metric(
                name: "snapshot size", smolvm: Double(snapshotBytes) / 1_048_576, floor: nil, unit: "MiB", ratio: nil,
                target: "(reported)", met: nil),
        ]
        return Report(
            accelerator: accelerator.accelerator.rawValue, acceleratorReason: accelerator.reason,
            qemu: version ?? binary,
            image: options.image, memoryMiB: options.memoryMiB, cpus: 1, metrics: metrics)
    }

    static func milliseconds(_ duration: Duration) -> Double {
        Double(duration.components.seconds) * 1000 + Double(duration.components.attoseconds) / 1e15
    }

    static func median(_ values: [Double]) -> Double { percentile(values, 0.5) }

    static func percentile(_ values: [Double], _ fraction: Double) -> Double {
        guard !values.isEmpty else { return .nan }
        let sorted = values.sorted()
        let index = min(sorted.count - 1, Int((Double(sorted.count - 1) * fraction).rounded()))
        return sorted[index]
    }

    static func residentMiB(_ pid: Int32) -> Double {
        guard let status = try? String(contentsOfFile: "/proc/\(pid)/status", encoding: .utf8) else { return .nan }
        for line in status.split(separator: "\n") where line.hasPrefix("VmRSS:") {
            let kib = Double(line.split(separator: " ").dropFirst().first ?? "") ?? .nan
            return kib / 1024
        }
        return .nan
    }
}

/// The raw floor guest: same QEMU command line, kernel and image as a sandbox,
/// with the agent binary in raw mode.
struct RawGuest {
    let machine: QEMUMachine
    let fd: FileDescriptor
    let directory: URL
    let bootMilliseconds: Double

    static func boot(
        binary: String, kernel: URL, image: URL, options: Benchmark.Options, accelerator: AcceleratorChoice
    ) async throws -> RawGuest {
        let directory = options.paths.run.appendingPathComponent("bench-\(Sandbox.makeID())")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        let spec = MachineSpec(
            id: "bench", runtimeDirectory: directory, kernel: kernel, rootImage: image, memoryMiB: options.memoryMiB,
            cpus: 1, hostname: "bench", network: false, accelerator: accelerator, bootTimeout: .seconds(120),
            extraKernelArguments: ["SMOLVM_RAW=1"])
        let start = ContinuousClock.now
        let machine = try await QEMUBackend(binary: binary).launch(spec, logger: .disabled)
        let socket = QEMURuntimePaths(directory: directory).agentSocket.path
        do {
            let fd = try await onBlockingThread { () throws -> FileDescriptor in
                let deadline = ContinuousClock.now + .seconds(120)
                while true {
                    if let fd = try? UnixSocket.connect(path: socket) {
                        let line = try RawGuest.readLineFrom(fd)
                        guard line == "R" else { throw SmolVMError(.agentError, "raw guest said '\(line)'") }
                        return fd
                    }
                    if ContinuousClock.now > deadline || machine.watcher.hasExited {
                        throw SmolVMError(.bootFailed, "the raw benchmark guest did not start\(machine.diagnostics())")
                    }
                    usleep(1000)
                }
            }
            let boot = Benchmark.milliseconds(ContinuousClock.now - start)
            return RawGuest(machine: machine, fd: fd, directory: directory, bootMilliseconds: boot)
        } catch {
            await machine.kill()
            try? FileManager.default.removeItem(at: directory)
            throw error
        }
    }

    /// The raw guest's bulk size (`u`), also what SmolVM uploads, to compare like with like.
    static let uploadBytes = 64 << 20

    /// Sends `u` and 64 MiB, and waits for the guest to have read them all; seconds.
    func bulkUpload() async throws -> Double {
        let fd = self.fd
        return try await onBlockingThread {
            let chunk = [UInt8](repeating: 0x5a, count: 1 << 20)
            let start = ContinuousClock.now
            try fd.writeAll("u")
            for _ in 0..<(RawGuest.uploadBytes >> 20) { try fd.writeAll(chunk) }
            _ = try RawGuest.readLineFrom(fd)
            return Benchmark.milliseconds(ContinuousClock.now - start) / 1000
        }
    }

    /// Sends `command` and waits for its answer, `count` times; milliseconds each.
    func roundTrips(_ command: String, count: Int) async throws -> [Double] {
        let fd = self.fd
        return try await onBlockingThread {
            var times: [Double] = []
            for _ in 0..<count {
                let start = ContinuousClock.now
                try fd.writeAll(command + "\n")
                _ = try RawGuest.readLineFrom(fd)
                times.append(Benchmark.milliseconds(ContinuousClock.now - start))
            }
            return times
        }
    }

    func shutdown() async {
        fd.close()
        await machine.kill()
        try? FileManager.default.removeItem(at: directory)
    }

    static func readLineFrom(_ fd: FileDescriptor) throws -> String {
        var line: [UInt8] = []
        var byte: UInt8 = 0
        while true {
            let count = try withUnsafeMutableBytes(of: &byte) { try fd.read(into: $0) }
            if count == 0 { throw SmolVMError(.agentUnreachable, "the raw guest closed the channel") }
            if byte == UInt8(ascii: "\n") { return String(decoding: line, as: UTF8.self) }
            line.append(byte)
        }
    }
}
