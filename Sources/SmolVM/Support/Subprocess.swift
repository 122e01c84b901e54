import Foundation
import SmolVMSystem

/// Runs host tools (qemu-img, mkfs.ext4, make, debootstrap, apt-get).
///
/// Foundation's `Process` waits for grandchildren that inherit its pipes and can
/// deadlock reading stdout then stderr; this spawns through `fork`/`execve` in a
/// process group of its own, reads both pipes with `poll`, and kills the whole
/// group on timeout.
struct Subprocess {
    struct Result: Sendable {
        var status: Spawn.Termination
        var standardOutput: [UInt8]
        var standardError: [UInt8]

        var succeeded: Bool { status == .exited(0) }
        var outputText: String { String(decoding: standardOutput, as: UTF8.self) }
        var errorText: String { String(decoding: standardError, as: UTF8.self) }
    }

    /// Runs a short command to completion, synchronously, ignoring its output
    /// and status: best-effort teardown that must also work outside async code.
    static func runQuietly(_ arguments: [String]) {
        guard let executable = which(arguments[0]) else { return }
        let process = Process()
        process.executableURL = URL(fileURLWithPath: executable)
        process.arguments = Array(arguments.dropFirst())
        process.standardOutput = FileHandle.nullDevice
        process.standardError = FileHandle.nullDevice
        if (try? process.run()) != nil { process.waitUntilExit() }
    }

    /// Finds an executable in `PATH` (or returns an absolute path unchanged when it is executable).
    static func which(_ name: String, path: String? = ProcessInfo.processInfo.environment["PATH"]) -> String? {
        if name.contains("/") { return FileManager.default.isExecutableFile(atPath: name) ? name : nil }
        let search = (path ?? "/usr/local/bin:/usr/bin:/bin") + ":/usr/local/sbin:/usr/sbin:/sbin"
        for directory in search.split(separator: ":") {
            let candidate = "\(directory)/\(name)"
            if FileManager.default.isExecutableFile(atPath: candidate) { return candidate }
        }
        return nil
    }

    /// Runs `arguments[0]` to completion. `onOutputLine` receives each line of
    /// both streams as it arrives (for progress); the result holds the last
    /// `keepBytes` of each stream.
    static func run(
        _ arguments: [String], environment: [String: String]? = nil, workingDirectory: String? = nil,
        timeout: Duration? = nil, keepBytes: Int = 1 << 20, onOutputLine: (@Sendable (String) -> Void)? = nil
    ) async throws -> Result {
        guard let executable = which(arguments[0]) else {
            throw SmolVMError(.notFound, "\(arguments[0]) is not installed (not found in PATH)")
        }
        let env = (environment ?? ProcessInfo.processInfo.environment).map { "\($0.key)=\($0.value)" }
        return try await onBlockingThread("smolvm.subprocess") {
            let out = try FileDescriptor.pipe()
            let err = try FileDescriptor.pipe()
            let null = try FileDescriptor.open("/dev/null", .readOnly)
            let pid: pid_t
            do {
                pid = try Spawn.start(
                    path: executable, arguments: arguments, environment: env,
                    fileDescriptors: [null, out.write, err.write], workingDirectory: workingDirectory,
                    options: [.processGroup])
            } catch {
                for fd in [out.read, out.write, err.read, err.write, null] { fd.close() }
                throw SmolVMError(.system, "cannot start \(arguments[0])", underlying: error)
            }
            out.write.close()
            err.write.close()
            null.close()
            defer {
                out.read.close()
                err.read.close()
            }
            let deadline = timeout.map { ContinuousClock.now + $0 }
            var buffers: [[UInt8]] = [[], []]
            var lines: [[UInt8]] = [[], []]
            var open = [true, true]
            let fds = [out.read, err.read]
            var timedOut = false
            while open[0] || open[1] {
                var wait: Int32 = -1
                if let deadline {
                    let left = deadline - ContinuousClock.now
                    if left <= .zero {
                        timedOut = true
                        Spawn.signalGroup(pid, SIGKILL)
                        break
                    }
                    wait = Int32(clamping: left.components.seconds * 1000 + 1)
                }
                let active = (0..<2).filter { open[$0] }
                let events = try Poll.wait(active.map { (fds[$0], .readable) }, timeoutMilliseconds: wait)
                for (slot, index) in active.enumerated() where !events[slot].isEmpty {
                    let chunk = try fds[index].read(upTo: 65536)
                    if chunk.isEmpty {
                        open[index] = false
                        continue
                    }
                    buffers[index].append(contentsOf: chunk)
                    if buffers[index].count > keepBytes * 2 {
                        buffers[index].removeFirst(buffers[index].count - keepBytes)
                    }
                    if let onOutputLine {
                        lines[index].append(contentsOf: chunk)
                        while let newline = lines[index].firstIndex(of: UInt8(ascii: "\n")) {
                            onOutputLine(String(decoding: lines[index][..<newline], as: UTF8.self))
                            lines[index].removeSubrange(...newline)
                        }
                    }
                }
            }
            let status = try Spawn.wait(pid)
            if timedOut {
                throw SmolVMError(.timeout, "\(arguments[0]) did not finish within \(timeout!)")
            }
            return Result(
                status: status, standardOutput: Array(buffers[0].suffix(keepBytes)),
                standardError: Array(buffers[1].suffix(keepBytes)))
        }
    }

    /// Runs a tool and throws, with the tail of its output, unless it exits 0.
    @discardableResult
    static func check(
        _ arguments: [String], environment: [String: String]? = nil, workingDirectory: String? = nil,
        timeout: Duration? = nil, onOutputLine: (@Sendable (String) -> Void)? = nil
    ) async throws -> Result {
        let result = try await run(
            arguments, environment: environment, workingDirectory: workingDirectory, timeout: timeout,
            onOutputLine: onOutputLine)
        guard result.succeeded else {
            let tail = (result.errorText + result.outputText).split(separator: "\n").suffix(15).joined(separator: "\n")
            throw SmolVMError(.system, "\(arguments.joined(separator: " ")) failed (\(result.status)):\n\(tail)")
        }
        return result
    }
}
