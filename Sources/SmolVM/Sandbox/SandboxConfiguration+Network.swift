import Foundation
import SmolVMSystem

/// What the guest may reach over the network.
public enum InternetAccess: Sendable, Equatable, Codable, CustomStringConvertible {
    /// NAT to the outside (QEMU user-mode networking: no privileges needed).
    case on
    /// No route out at all; exec and files still work over the agent channel.
    /// Published ports still reach the guest.
    case off
    /// Only these IPv4 ranges are reachable, enforced on the host. Needs a TAP
    /// device and nftables, so it fails at create where the host cannot do that.
    case restricted(allow: [IPv4Range])

    /// `on`, `off`, or `restricted` with `allow`.
    public init(parsing text: String, allow: [IPv4Range] = []) throws {
        switch text.lowercased() {
        case "on": self = .on
        case "off": self = .off
        case "restricted": self = .restricted(allow: allow)
        default:
            throw SmolVMError(.invalidArgument, "unknown internet mode '\(text)': use on, off or restricted")
        }
        if self != .restricted(allow: allow), !allow.isEmpty {
            throw SmolVMError(.invalidArgument, "--allow only applies to --internet restricted")
        }
    }

    public var description: String {
        switch self {
        case .on: "on"
        case .off: "off"
        case .restricted(let allow): "restricted:" + allow.map(\.description).joined(separator: ",")
        }
    }

    public init(from decoder: any Decoder) throws {
        self = try InternetAccess(stored: try decoder.singleValueContainer().decode(String.self))
    }

    public func encode(to encoder: any Encoder) throws {
        var container = encoder.singleValueContainer()
        try container.encode(description)
    }

    /// Reads what `description` wrote (the state store keeps it as text).
    init(stored text: String) throws {
        if text.hasPrefix("restricted:") {
            let ranges = try text.dropFirst("restricted:".count).split(separator: ",").map {
                try IPv4Range(parsing: String($0))
            }
            self = .restricted(allow: ranges)
        } else {
            try self.init(parsing: text)
        }
    }
}

/// An IPv4 network in CIDR notation, such as `192.0.2.0/24` (a bare address is a /32).
public struct IPv4Range: Sendable, Equatable, Codable, CustomStringConvertible {
    /// The network address, host order, with the host bits cleared.
    public var network: UInt32
    public var prefixLength: Int

    public init(parsing text: String) throws {
        let parts = text.split(separator: "/", omittingEmptySubsequences: false)
        guard parts.count <= 2, let address = IPv4Range.parseAddress(String(parts[0])) else {
            throw SmolVMError(.invalidArgument, "'\(text)' is not an IPv4 range; write it like 192.0.2.0/24")
        }
        var prefix = 32
        if parts.count == 2 {
            guard let value = Int(parts[1]), (0...32).contains(value) else {
                throw SmolVMError(.invalidArgument, "'\(text)' has a bad prefix length; use /0 to /32")
            }
            prefix = value
        }
        prefixLength = prefix
        network = address & Self.mask(prefix)
    }

    public init(from decoder: any Decoder) throws {
        try self.init(parsing: try decoder.singleValueContainer().decode(String.self))
    }

    public func encode(to encoder: any Encoder) throws {
        var container = encoder.singleValueContainer()
        try container.encode(description)
    }

    public func contains(_ address: UInt32) -> Bool { address & Self.mask(prefixLength) == network }

    public var description: String { "\(Self.format(network))/\(prefixLength)" }

    static func mask(_ prefix: Int) -> UInt32 { prefix == 0 ? 0 : UInt32.max << (32 - prefix) }

    /// Strict dotted quad: four decimal parts, each 0...255, no leading signs or spaces.
    static func parseAddress(_ text: String) -> UInt32? {
        let parts = text.split(separator: ".", omittingEmptySubsequences: false)
        guard parts.count == 4 else { return nil }
        var value: UInt32 = 0
        for part in parts {
            guard !part.isEmpty, part.count <= 3, part.allSatisfy(\.isASCII), part.allSatisfy(\.isNumber),
                let byte = UInt32(part), byte <= 255
            else { return nil }
            value = value << 8 | byte
        }
        return value
    }

    static func format(_ address: UInt32) -> String {
        "\(address >> 24).\((address >> 16) & 255).\((address >> 8) & 255).\(address & 255)"
    }
}

/// A guest TCP port reachable on a host address (`[HOSTIP:]HOSTPORT:GUESTPORT`).
public struct PortPublication: Sendable, Equatable, Codable, CustomStringConvertible {
    public var hostAddress: String
    public var hostPort: UInt16
    public var guestPort: UInt16

    public init(hostAddress: String = "127.0.0.1", hostPort: UInt16, guestPort: UInt16) {
        self.hostAddress = hostAddress
        self.hostPort = hostPort
        self.guestPort = guestPort
    }

    public init(parsing text: String) throws {
        if text.hasPrefix("[") {
            throw SmolVMError(
                .invalidArgument,
                "'\(text)': IPv6 host addresses are not supported; publish on an IPv4 address such as 127.0.0.1")
        }
        let parts = text.split(separator: ":", omittingEmptySubsequences: false).map(String.init)
        guard parts.count == 2 || parts.count == 3 else {
            throw SmolVMError(
                .invalidArgument, "'\(text)' is not a port publication; write [HOSTIP:]HOSTPORT:GUESTPORT, like 8080:80"
            )
        }
        func port(_ value: String, _ what: String) throws -> UInt16 {
            guard let number = UInt16(value), number > 0 else {
                throw SmolVMError(.invalidArgument, "'\(value)' in '\(text)' is not a \(what) port (1 to 65535)")
            }
            return number
        }
        let address = parts.count == 3 ? parts[0] : "127.0.0.1"
        guard IPv4Range.parseAddress(address) != nil else {
            throw SmolVMError(.invalidArgument, "'\(address)' in '\(text)' is not an IPv4 host address")
        }
        self.init(
            hostAddress: address, hostPort: try port(parts[parts.count - 2], "host"),
            guestPort: try port(parts[parts.count - 1], "guest"))
    }

    public var description: String { "\(hostAddress):\(hostPort)->\(guestPort)/tcp" }

    /// Fails, naming the port, when something on the host already listens there:
    /// the VMM would otherwise fail later with a less helpful message, or not at all.
    func checkAvailable() throws {
        do {
            try TCPPortProbe.bind(address: hostAddress, port: hostPort)
        } catch let error as Errno {
            let problem: String
            let fix: String
            switch error {
            case .addressInUse:
                problem = "that host address and port are already in use"
                fix = "choose another host port, or stop what listens there"
            case .addressNotAvailable:
                problem = "\(hostAddress) is not an address of this host"
                fix = "use 127.0.0.1 (the default), 0.0.0.0 for every interface, or one of this host's addresses"
            case .permissionDenied:
                problem = "ports below 1024 need root"
                fix = "use a host port of 1024 or more, or run as root"
            default:
                problem = "it cannot be bound"
                fix = "choose another host address or port"
            }
            throw SmolVMError(
                .invalidArgument,
                "cannot publish guest port \(guestPort) on \(hostAddress):\(hostPort): \(problem) (\(error)). Fix: \(fix)",
                underlying: error)
        }
    }
}

/// A host directory shown to the guest (`HOSTDIR[:GUESTDIR]`).
public struct HostMount: Sendable, Equatable, Codable, CustomStringConvertible {
    public static let defaultGuestPath = "/workspace"

    /// Absolute and resolved (no symlinks, no `..`).
    public var hostPath: String
    public var guestPath: String
    /// Guest writes reach the host; otherwise they stay in the sandbox's own layer.
    public var writable: Bool

    public init(hostPath: String, guestPath: String = HostMount.defaultGuestPath, writable: Bool = false) {
        self.hostPath = hostPath
        self.guestPath = guestPath
        self.writable = writable
    }

    /// `HOSTDIR[:GUESTDIR]`; the host side may be relative to the current directory.
    public init(parsing text: String, writable: Bool = false) throws {
        guard !text.isEmpty else { throw SmolVMError(.invalidArgument, "--mount needs HOSTDIR[:GUESTDIR]") }
        if let colon = text.lastIndex(of: ":"), text[text.index(after: colon)...].hasPrefix("/") {
            self.init(
                hostPath: String(text[..<colon]), guestPath: String(text[text.index(after: colon)...]),
                writable: writable)
        } else {
            self.init(hostPath: text, writable: writable)
        }
    }

    public var description: String { "\(hostPath):\(guestPath) (\(writable ? "writable" : "read-only"))" }

    /// The host directory resolved, checked to exist and to be a directory,
    /// and the guest path checked to be a plain absolute path outside the
    /// guest's kernel file systems.
    func validated() throws -> HostMount {
        guard !hostPath.isEmpty, !hostPath.utf8.contains(0) else {
            throw SmolVMError(.invalidArgument, "the host folder to mount is empty")
        }
        let absolute =
            hostPath.hasPrefix("/") ? hostPath : FileManager.default.currentDirectoryPath + "/" + hostPath
        guard let resolved = realpath(absolute, nil) else {
            let hint =
                hostPath.contains(":") ? " (a guest folder after ':' must be absolute, as in HOSTDIR:/workspace)" : ""
            throw SmolVMError(
                .notFound,
                "cannot mount \(hostPath): it does not exist\(hint). Fix: create the folder or correct the path",
                underlying: Errno.current)
        }
        let real = String(cString: resolved)
        free(resolved)
        for system in ["/proc", "/sys", "/dev"] where real == system || real.hasPrefix(system + "/") || real == "/" {
            throw SmolVMError(
                .invalidArgument,
                "cannot mount \(hostPath): \(real == "/" ? "the host's root" : system) would expose the host's kernel and devices to the guest; mount a project folder instead"
            )
        }
        var isDirectory: ObjCBool = false
        guard FileManager.default.fileExists(atPath: real, isDirectory: &isDirectory), isDirectory.boolValue else {
            throw SmolVMError(.invalidArgument, "cannot mount \(hostPath): it is not a directory; mount its folder")
        }
        let components = guestPath.split(separator: "/", omittingEmptySubsequences: false).dropFirst()
        let plain = components.allSatisfy { !$0.isEmpty && $0 != "." && $0 != ".." }
        guard guestPath.hasPrefix("/"), guestPath != "/", plain, !guestPath.utf8.contains(0),
            guestPath.utf8.count <= 256
        else {
            throw SmolVMError(
                .invalidArgument,
                "the guest path '\(guestPath)' must be an absolute path like /workspace, without '.', '..' or a trailing '/', and not '/'"
            )
        }
        for reserved in [
            "/proc", "/sys", "/dev", "/run", "/tmp", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32", "/usr",
            "/etc", "/boot", "/var/lib/smolvm",
        ]
        where guestPath == reserved || guestPath.hasPrefix(reserved + "/") {
            throw SmolVMError(
                .invalidArgument,
                "cannot mount onto \(guestPath): \(reserved) belongs to the guest system; use /workspace or /mnt/NAME")
        }
        return HostMount(hostPath: real, guestPath: guestPath, writable: writable)
    }
}

extension SandboxConfiguration {
    /// Checks the network and folder settings before anything starts.
    func validateNetworkAndMounts() throws -> [HostMount] {
        if case .restricted(let allow) = internet {
            guard !allow.isEmpty else {
                throw SmolVMError(
                    .invalidArgument,
                    "--internet restricted needs at least one --allow CIDR (such as --allow 192.0.2.0/24)")
            }
            guard publish.isEmpty else {
                throw SmolVMError(
                    .unsupported,
                    "--publish works with --internet on or off, not restricted (its card is a host TAP device, not QEMU's user network). Fix: drop --publish, or use --internet off with --publish"
                )
            }
            _ = try RestrictedNetwork.checkHost()
        }
        for (index, publication) in publish.enumerated() {
            // 0.0.0.0 covers every address, so it clashes with any other use of the port.
            let clash = publish[..<index].first {
                $0.hostPort == publication.hostPort
                    && ($0.hostAddress == publication.hostAddress || $0.hostAddress == "0.0.0.0"
                        || publication.hostAddress == "0.0.0.0")
            }
            if let clash {
                throw SmolVMError(
                    .invalidArgument,
                    "host port \(publication.hostPort) is published twice (\(clash.hostAddress) and \(publication.hostAddress)); use one host port per guest port"
                )
            }
        }
        let resolved = try mounts.map { try $0.validated() }
        for (index, mount) in resolved.enumerated() {
            for other in resolved[..<index] {
                guard mount.guestPath != other.guestPath else {
                    throw SmolVMError(.invalidArgument, "two folders are mounted at \(mount.guestPath)")
                }
                let (outer, inner) =
                    mount.guestPath.count < other.guestPath.count ? (mount, other) : (other, mount)
                if inner.guestPath.hasPrefix(outer.guestPath + "/") {
                    throw SmolVMError(
                        .invalidArgument,
                        "\(inner.guestPath) is inside another mount, \(outer.guestPath); mount host folders side by side, such as /mnt/a and /mnt/b"
                    )
                }
            }
        }
        return resolved
    }
}

extension SandboxConfiguration {
    /// Fails when a host port to publish is taken. Checked when a sandbox
    /// starts, not in `prepare`, which also runs for sandboxes that hold them.
    func checkPublishedPorts() throws {
        for publication in publish { try publication.checkAvailable() }
    }
}

extension Sandbox {
    /// Sets up the host side of a restricted sandbox's network (nothing for
    /// other modes) and puts it in `spec`. The caller removes it with
    /// `releaseNetwork` when the sandbox's VMM is gone.
    static func attachNetwork(_ spec: inout MachineSpec, internet: InternetAccess) async throws {
        guard case .restricted(let allow) = internet else { return }
        spec.restrictedNetwork = try await RestrictedNetwork.create(
            for: spec.id, allow: allow, directory: spec.runtimeDirectory)
        spec.network = true
        spec.networkRestricted = false
    }

    /// Checks, through the guest's `/proc/mounts`, that every host folder is
    /// mounted where it was asked for: the agent mounts them at boot, before
    /// anyone can hear about a failure.
    static func verifyMounts(_ mounts: [HostMount], agent: AgentClient) async throws {
        guard !mounts.isEmpty else { return }
        let table = String(decoding: try await agent.download(from: "/proc/mounts"), as: UTF8.self)
        let mountPoints = Set(
            table.split(separator: "\n").compactMap { line -> String? in
                let fields = line.split(separator: " ")
                return fields.count > 1 ? unescapeMountField(String(fields[1])) : nil
            })
        for mount in mounts where !mountPoints.contains(mount.guestPath) {
            throw SmolVMError(
                .system,
                "the host folder \(mount.hostPath) could not be mounted at \(mount.guestPath) in the guest (is that path a file, or inside another mount?). Fix: mount it at an empty or new folder such as /workspace or /mnt/NAME"
            )
        }
    }

    /// `/proc/mounts` writes space, tab, newline and backslash as octal escapes.
    static func unescapeMountField(_ field: String) -> String {
        var bytes: [UInt8] = []
        let source = Array(field.utf8)
        var index = 0
        while index < source.count {
            if source[index] == UInt8(ascii: "\\"), index + 3 < source.count,
                let value = UInt8(String(decoding: source[(index + 1)...(index + 3)], as: UTF8.self), radix: 8)
            {
                bytes.append(value)
                index += 4
            } else {
                bytes.append(source[index])
                index += 1
            }
        }
        return String(decoding: bytes, as: UTF8.self)
    }

    static func releaseNetwork(id: String, internet: InternetAccess) {
        if case .restricted = internet { RestrictedNetwork.remove(for: id) }
    }
}

extension MachineSpec {
    /// Sets the network card and folders for a sandbox's settings. With the
    /// internet off the guest gets a card only when ports are published, and
    /// that card reaches nothing (QEMU's `restrict=on` still forwards published ports).
    mutating func connect(_ internet: InternetAccess, publish: [PortPublication], mounts: [HostMount]) {
        network = internet != .off || !publish.isEmpty
        networkRestricted = internet == .off
        self.publish = publish
        self.mounts = mounts
    }
}
