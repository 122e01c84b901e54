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

    public init(
        operatingSystem: String, architecture: String, environment: [String: String],
        fileExists: @escaping @Sendable (String) -> Bool, canOpenReadWrite: @escaping @Sendable (String) -> Bool,
        readText: @escaping @Sendable (String) -> String?, which: @escaping @Sendable (String) -> String?
    ) {
        self.operatingSystem = operatingSystem
        self.architecture = architecture
        self.environment = environment
        self.fileExists = fileExists
        self.canOpenReadWrite = canOpenReadWrite
        self.readText = readText
        self.which = which
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
            which: { Subprocess.which($0, path: environment["PATH"]) })
    }
}
