import Foundation
import SmolVMProtocol

/// What a snapshot holds and what it needs to be restored: the kernel and
/// image it ran on, the machine's shape, the VMM that wrote it, and a
/// checksum for every file. Restoring into anything else would resume a
/// guest on hardware or a disk it never saw, so each is checked first.
public struct SnapshotManifest: Codable, Sendable, Equatable {
    public static let currentFormat = 1

    public enum Kind: String, Codable, Sendable {
        /// Taken by a user from a sandbox.
        case user
        /// Taken right after a cold boot, for snapshot-fast starts.
        case boot
    }

    public struct Artifact: Codable, Sendable, Equatable {
        public var name: String
        public var key: String
        public var sha256: String
        public var path: String
    }

    /// The VMM binary; a different binary may not read the saved device state.
    public struct VMM: Codable, Sendable, Equatable {
        public var path: String
        public var stamp: FileStamp
    }

    public struct File: Codable, Sendable, Equatable {
        public var size: UInt64
        public var sha256: String
        /// The file's identity when hashed; a file whose identity changed is hashed again.
        public var stamp: FileStamp
    }

    public var format: Int
    public var name: String
    public var kind: Kind
    public var created: Date
    /// The sandbox it was taken from.
    public var source: String
    public var backend: BackendKind
    public var vmm: VMM
    public var accelerator: Accelerator
    public var protocolVersion: UInt32
    public var kernel: Artifact
    public var image: Artifact
    public var memoryMiB: Int
    public var cpus: Int
    public var agentChannels: Int
    /// Whether the machine has a network card (its device state is in the snapshot).
    public var network: Bool
    /// The source sandbox's internet mode; nil in snapshots from before it existed.
    public var internet: InternetAccess?
    /// The source sandbox's environment, so a restored sandbox behaves the same.
    public var environment: [String: String]
    public var files: [String: File]

    /// Total bytes on disk.
    public var size: UInt64 { files.values.reduce(0) { $0 + $1.size } }
}

extension SnapshotManifest {
    static let fileName = "manifest.json"

    static func load(from directory: URL) throws -> SnapshotManifest {
        let url = directory.appendingPathComponent(fileName)
        guard let data = FileManager.default.contents(atPath: url.path) else {
            throw SmolVMError(.corrupted, "the snapshot in \(directory.path) has no manifest")
        }
        let decoder = JSONDecoder()
        decoder.dateDecodingStrategy = .iso8601
        do {
            return try decoder.decode(SnapshotManifest.self, from: data)
        } catch {
            throw SmolVMError(.corrupted, "the snapshot manifest \(url.path) cannot be read", underlying: error)
        }
    }

    func save(in directory: URL) throws {
        let encoder = JSONEncoder()
        encoder.dateEncodingStrategy = .iso8601
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
        try encoder.encode(self).write(to: directory.appendingPathComponent(Self.fileName), options: .atomic)
    }

    /// Checksums every file in `directory` for a new manifest.
    static func describeFiles(in directory: URL) async throws -> [String: File] {
        var files: [String: File] = [:]
        let names = try FileManager.default.contentsOfDirectory(atPath: directory.path)
        for name in names.sorted() where name != fileName && !name.hasPrefix(".") {
            let path = directory.appendingPathComponent(name).path
            guard let stamp = FileStamp.read(path) else { continue }
            files[name] = File(size: stamp.size, sha256: try await SHA256.file(path), stamp: stamp)
        }
        return files
    }

    /// Refuses, naming the difference, a snapshot that this host cannot restore
    /// faithfully: another kernel, image, VMM binary, accelerator or protocol.
    func checkCompatible(
        backend: BackendKind, vmmPath: String, accelerator: Accelerator, kernel: VerifiedArtifact,
        image: VerifiedArtifact
    ) throws {
        func refuse(_ what: String) throws -> Never {
            throw SmolVMError(
                .corrupted,
                "snapshot '\(name)' cannot be restored here: \(what). Take a new snapshot with this setup (`smolvm snapshot create`)"
            )
        }
        guard format == Self.currentFormat else { try refuse("it uses snapshot format \(format)") }
        guard self.backend == backend else { try refuse("it was taken with \(self.backend), not \(backend)") }
        guard protocolVersion == SmolVMProtocol.protocolVersion else {
            try refuse("its agent speaks protocol \(protocolVersion), this smolvm \(SmolVMProtocol.protocolVersion)")
        }
        guard self.accelerator == accelerator else {
            try refuse("it was taken under \(self.accelerator.rawValue), this host would use \(accelerator.rawValue)")
        }
        guard self.kernel.sha256 == kernel.manifest.sha256 else {
            try refuse("it was taken with another guest kernel (\(self.kernel.key), now \(kernel.manifest.key))")
        }
        guard self.image.sha256 == image.manifest.sha256 else {
            try refuse(
                "the image '\(self.image.name)' was rebuilt since (\(self.image.key), now \(image.manifest.key))")
        }
        guard vmm.path == vmmPath, FileStamp.read(vmmPath) == vmm.stamp else {
            try refuse("the \(backend) binary changed since (\(vmm.path))")
        }
    }

    /// Checks that every file is present and unchanged; a file touched since
    /// it was hashed is hashed again.
    func verifyFiles(in directory: URL) async throws {
        // A file the manifest does not list would be used unchecked.
        let present = (try? FileManager.default.contentsOfDirectory(atPath: directory.path)) ?? []
        for fileName in present where fileName != Self.fileName && files[fileName] == nil {
            throw SmolVMError(
                .corrupted,
                "snapshot '\(name)' is damaged: its manifest does not list \(fileName). Delete it with `smolvm snapshot delete \(name)`"
            )
        }
        for (fileName, file) in files.sorted(by: { $0.key < $1.key }) {
            let path = directory.appendingPathComponent(fileName).path
            guard let stamp = FileStamp.read(path) else {
                throw SmolVMError(
                    .corrupted,
                    "snapshot '\(name)' is damaged: \(fileName) is missing. Delete it with `smolvm snapshot delete \(name)`"
                )
            }
            if stamp == file.stamp { continue }
            let digest = stamp.size == file.size ? try await SHA256.file(path) : ""
            guard digest == file.sha256 else {
                throw SmolVMError(
                    .corrupted,
                    "snapshot '\(name)' is damaged: \(fileName) does not match its checksum. Delete it with `smolvm snapshot delete \(name)`"
                )
            }
        }
    }
}
