import Foundation

/// A built file (a kernel or a root file system image) and what it was built from.
///
/// Artifacts are written under a temporary name and renamed when complete, so
/// a half-built one is never used. `current.json` beside them names the one in use.
public struct ArtifactManifest: Codable, Sendable, Equatable {
    public var name: String
    /// A hash of every input: when an input changes, so does the key, and the artifact is rebuilt.
    public var key: String
    /// The file, relative to the manifest's directory.
    public var file: String
    public var sha256: String
    public var size: UInt64
    public var created: Date
    /// Human-readable inputs (package versions, recipe) for `image list` and `doctor`.
    public var inputs: [String: String]
    /// The file's identity when its checksum was last verified; a file whose
    /// identity changed is hashed again before use.
    public var verified: FileStamp?
}

/// Size, modification time and inode: cheap to read, and any rewrite changes one of them.
public struct FileStamp: Codable, Sendable, Equatable {
    public var size: UInt64
    public var modified: Int64
    public var inode: UInt64

    public static func read(_ path: String) -> FileStamp? {
        var info = stat()
        guard stat(path, &info) == 0 else { return nil }
        return FileStamp(
            size: UInt64(info.st_size),
            modified: Int64(info.st_mtim.tv_sec) * 1_000_000_000 + Int64(info.st_mtim.tv_nsec),
            inode: UInt64(info.st_ino))
    }
}

/// A verified artifact ready to boot.
public struct VerifiedArtifact: Sendable {
    public var manifest: ArtifactManifest
    public var url: URL
}

extension ArtifactManifest {
    static func load(_ url: URL) throws -> ArtifactManifest? {
        guard let data = FileManager.default.contents(atPath: url.path) else { return nil }
        do {
            let decoder = JSONDecoder()
            decoder.dateDecodingStrategy = .iso8601
            return try decoder.decode(ArtifactManifest.self, from: data)
        } catch {
            throw SmolVMError(.corrupted, "\(url.path) is damaged; run `smolvm setup` to rebuild it", underlying: error)
        }
    }

    /// Writes atomically (temporary file, then rename).
    func save(_ url: URL) throws {
        let encoder = JSONEncoder()
        encoder.dateEncodingStrategy = .iso8601
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
        try encoder.encode(self).write(to: url, options: .atomic)
    }
}
