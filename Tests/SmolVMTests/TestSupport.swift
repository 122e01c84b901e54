import Foundation
import SmolVMSystem
import Testing

@testable import SmolVM

/// Shared set-up for tests that boot real VMs with the real kernel and agent.
/// They need `smolvm setup` to have run; without it they fail (not skip) and say so.
enum VMTest {
    static let paths = SmolVMPaths.fromEnvironment()

    static func configuration(image: String = "minimal") -> SandboxConfiguration {
        var configuration = SandboxConfiguration(image: image, memoryMiB: 256)
        configuration.backend = .qemu
        configuration.paths = paths
        configuration.internet = .off
        configuration.bootTimeout = .seconds(120)
        return configuration
    }

    /// The `smolvm` executable built next to the test bundle.
    static var cliPath: String {
        let bundle = Bundle.main.bundleURL
        for directory in [bundle, bundle.deletingLastPathComponent()] {
            let candidate = directory.appendingPathComponent("smolvm").path
            if FileManager.default.isExecutableFile(atPath: candidate) { return candidate }
        }
        let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .deletingLastPathComponent()
        for configuration in ["debug", "release"] {
            let candidate = root.appendingPathComponent(".build/\(configuration)/smolvm").path
            if FileManager.default.isExecutableFile(atPath: candidate) { return candidate }
        }
        return "smolvm"
    }

    /// Runs the CLI and returns its exit status, stdout and stderr.
    static func cli(_ arguments: [String], stdin: [UInt8]? = nil, environment: [String: String] = [:]) async throws
        -> (status: Int32, stdout: [UInt8], stderr: [UInt8])
    {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: cliPath)
        process.arguments = arguments
        process.environment = ProcessInfo.processInfo.environment.merging(environment) { $1 }
        let out = Pipe()
        let err = Pipe()
        let input = Pipe()
        process.standardOutput = out
        process.standardError = err
        process.standardInput = input
        try process.run()
        let stdoutTask = Task.detached { out.fileHandleForReading.readDataToEndOfFile() }
        let stderrTask = Task.detached { err.fileHandleForReading.readDataToEndOfFile() }
        if let stdin { input.fileHandleForWriting.write(Data(stdin)) }
        try input.fileHandleForWriting.close()
        let stdout = await stdoutTask.value
        let stderr = await stderrTask.value
        process.waitUntilExit()
        return (process.terminationStatus, [UInt8](stdout), [UInt8](stderr))
    }

    /// Child processes of `pid` (from /proc), to find a CLI's QEMU.
    static func children(of pid: Int32) -> [Int32] {
        guard let entries = try? FileManager.default.contentsOfDirectory(atPath: "/proc") else { return [] }
        return entries.compactMap(Int32.init).filter { child in
            guard let stat = try? String(contentsOfFile: "/proc/\(child)/stat", encoding: .utf8),
                let close = stat.lastIndex(of: ")")
            else { return false }
            let fields = stat[stat.index(after: close)...].split(separator: " ")
            return fields.count > 2 && Int32(fields[1]) == pid
        }
    }

    /// Waits (without asserting on time) until `condition` holds or `limit` passes.
    static func eventually(_ limit: Duration = .seconds(30), _ condition: () -> Bool) async -> Bool {
        let deadline = ContinuousClock.now + limit
        while ContinuousClock.now < deadline {
            if condition() { return true }
            try? await Task.sleep(for: .milliseconds(50))
        }
        return condition()
    }

    static func isRunningProcess(_ pid: Int32) -> Bool {
        guard let stat = try? String(contentsOfFile: "/proc/\(pid)/stat", encoding: .utf8) else { return false }
        // A zombie has exited; only its parent's wait is missing.
        guard let close = stat.lastIndex(of: ")") else { return false }
        return !stat[stat.index(after: close)...].hasPrefix(" Z")
    }

    static func sha256(_ path: String) throws -> String {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/sha256sum")
        process.arguments = [path]
        let out = Pipe()
        process.standardOutput = out
        try process.run()
        let data = out.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        return String(String(decoding: data, as: UTF8.self).prefix(64))
    }
}
