import Foundation

/// What SmolVM reads about the host, behind one seam so tests can describe any
/// host (no `/dev/kvm`, PVM-only KVM, no `vmx`) without touching this one.
public struct HostFacts: Sendable {
    public var operatingSystem: String
    public var architecture: String
    public var environment: [String: String]
    /// Whether a path exists.
    public var fileExists: @Sendable (String) -> Bool
    /// Whether this user can open a path for reading and writing.
    public var canOpenReadWrite: @Sendable (String) -> Bool
    /// A small text file's contents (`/proc/cpuinfo`), nil when unreadable.
    public var readText: @Sendable (String) -> String?
    /// An executable's full path, searched in `PATH`.
    public var which: @Sendable (String) -> String?
    /// Runs a probe (`qemu-system-x86_64 --version`) with a deadline; its exit
    /// status and output, or nil when it could not start or did not finish in time.
    public var probe: @Sendable ([String], Duration) async -> ProbeResult?
    /// Free bytes on the file system holding a path.
    public var freeBytes: @Sendable (String) -> UInt64?
    /// Whether this process can create files in a directory (creating it if needed).
    public var isWritableDirectory: @Sendable (String) -> Bool

    public init(
        operatingSystem: String, architecture: String, environment: [String: String],
        fileExists: @escaping @Sendable (String) -> Bool, canOpenReadWrite: @escaping @Sendable (String) -> Bool,
        readText: @escaping @Sendable (String) -> String?, which: @escaping @Sendable (String) -> String?,
        probe: @escaping @Sendable ([String], Duration) async -> ProbeResult? = { _, _ in nil },
        freeBytes: @escaping @Sendable (String) -> UInt64? = { _ in nil },
        isWritableDirectory: @escaping @Sendable (String) -> Bool = { _ in true }
    ) {
        self.operatingSystem = operatingSystem
        self.architecture = architecture
        self.environment = environment
        self.fileExists = fileExists
        self.canOpenReadWrite = canOpenReadWrite
        self.readText = readText
        self.which = which
        self.probe = probe
        self.freeBytes = freeBytes
        self.isWritableDirectory = isWritableDirectory
    }

    /// The machine this process runs on.
    public static var current: HostFacts {
        #if os(macOS)
            let os = "macos"
        #else
            let os = "linux"
        #endif
        #if arch(x86_64)
            let arch = "x86_64"
        #elseif arch(arm64)
            let arch = "aarch64"
        #else
            let arch = "unknown"
        #endif
        let environment = ProcessInfo.processInfo.environment
        return HostFacts(
            operatingSystem: os, architecture: arch, environment: environment,
            fileExists: { FileManager.default.fileExists(atPath: $0) },
            canOpenReadWrite: { path in
                let fd = open(path, O_RDWR | O_CLOEXEC)
                if fd >= 0 { close(fd) }
                return fd >= 0
            },
            readText: { path in
                guard let data = FileManager.default.contents(atPath: path) else { return nil }
                return String(decoding: data, as: UTF8.self)
            },
            which: { Subprocess.which($0, path: environment["PATH"]) },
            probe: { arguments, timeout in
                do {
                    let result = try await Subprocess.run(arguments, timeout: timeout)
                    let status: Int32
                    switch result.status {
                    case .exited(let code): status = code
                    case .signaled(let signal): status = 128 + signal
                    }
                    return ProbeResult(status: status, output: result.outputText + result.errorText)
                } catch {
                    return nil
                }
            },
            freeBytes: { path in
                var info = statvfs()
                guard statvfs(path, &info) == 0 else { return nil }
                return UInt64(info.f_bavail) * UInt64(info.f_frsize)
            },
            isWritableDirectory: { path in
                do {
                    try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
                    let probe = (path as NSString).appendingPathComponent(".smolvm-write-test-\(getpid())")
                    guard FileManager.default.createFile(atPath: probe, contents: Data()) else { return false }
                    try FileManager.default.removeItem(atPath: probe)
                    return true
                } catch {
                    return false
                }
            })
    }
}

/// What a probe printed and how it ended.
public struct ProbeResult: Sendable, Equatable {
    public var status: Int32
    public var output: String

    public init(status: Int32, output: String) {
        self.status = status
        self.output = output
    }
}

extension HostFacts {
    /// The host's physical memory (`MemTotal` in `/proc/meminfo`), or nil where unknown.
    static func physicalMemoryMiB() -> Int? {
        guard let text = try? String(contentsOfFile: "/proc/meminfo", encoding: .utf8) else { return nil }
        for line in text.split(separator: "\n") where line.hasPrefix("MemTotal:") {
            let fields = line.split(separator: " ")
            if fields.count >= 2, let kib = Int(fields[1]) { return kib / 1024 }
        }
        return nil
    }
}
