import Foundation

/// A named sandbox as the state store keeps it.
public struct SandboxRecord: Sendable, Codable, Equatable {
    public enum Status: String, Sendable, Codable {
        /// Being created or started by some `smolvm`.
        case starting
        case running
        /// Running, with its vCPUs frozen (QMP `stop`); memory and processes kept.
        case paused
        case stopped
        /// Its VMM exited without being asked to, or a start failed; `lastError` says which.
        case error
    }

    public var name: String
    public var id: String
    public var backend: String
    public var image: String
    public var memoryMiB: Int
    public var cpus: Int
    public var environment: [String: String]
    public var internet: InternetAccess
    public var publish: [PortPublication]
    public var mounts: [HostMount]
    public var status: Status
    /// The VMM's pid and its start time in clock ticks since boot: together
    /// they identify the process even after the pid is reused.
    public var vmmPID: Int32?
    public var vmmStartTime: UInt64?
    public var created: Date
    public var runtimeDirectory: String
    public var kernel: String
    public var rootImage: String
    public var lastError: String?
}

/// Names are DNS-label-like so they work as hostnames and in paths.
public enum SandboxName {
    public static func validate(_ name: String, what: String = "sandbox") throws {
        let scalars = Array(name.unicodeScalars)
        let valid =
            !scalars.isEmpty && scalars.count <= 63
            && scalars.allSatisfy { ("a"..."z").contains($0) || ("0"..."9").contains($0) || $0 == "-" }
            && scalars[0] != "-"
        guard valid else {
            throw SmolVMError(
                .invalidArgument,
                "invalid \(what) name '\(name)': use 1 to 63 characters from a-z, 0-9 and '-', starting with a letter or digit"
            )
        }
    }

    /// `adjective-noun-NNNN`, like container engines do.
    public static func generate() -> String {
        let adjectives = [
            "brisk", "calm", "eager", "fuzzy", "gentle", "happy", "keen", "lucid", "mellow", "nimble", "quiet", "swift",
            "tidy", "vivid", "witty", "zesty",
        ]
        let nouns = [
            "otter", "falcon", "maple", "comet", "harbor", "lynx", "pebble", "quartz", "raven", "summit", "tulip",
            "walrus", "yak", "zephyr", "badger", "cedar",
        ]
        return "\(adjectives.randomElement()!)-\(nouns.randomElement()!)-\(Int.random(in: 1000...9999))"
    }
}
