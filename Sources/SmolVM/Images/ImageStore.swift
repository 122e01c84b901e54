import Foundation
import SmolVMSystem

/// The kernels and root file system images under `SMOLVM_HOME`.
public struct ImageStore: Sendable {
    public let paths: SmolVMPaths

    public init(paths: SmolVMPaths = .fromEnvironment()) {
        self.paths = paths
    }

    /// The images `smolvm setup` knows how to build.
    public static let buildableImages = ["debian", "minimal"]
    public static let defaultImage = "debian"

    var kernelManifestURL: URL { paths.kernels.appendingPathComponent("current.json") }
    func imageManifestURL(_ name: String) -> URL { paths.image(name).appendingPathComponent("current.json") }

    /// The guest kernel, checksum verified.
    public func kernel() async throws -> VerifiedArtifact {
        guard let manifest = try ArtifactManifest.load(kernelManifestURL) else {
            throw SmolVMError(.notFound, "the guest kernel is not built yet. Fix: run `smolvm setup`")
        }
        return try await verify(manifest, at: kernelManifestURL)
    }

    /// A root file system image by name, checksum verified.
    public func image(_ name: String) async throws -> VerifiedArtifact {
        try Self.validateName(name)
        guard let manifest = try ArtifactManifest.load(imageManifestURL(name)) else {
            let known = Self.buildableImages.contains(name)
            throw SmolVMError(
                .notFound,
                known
                    ? "the image '\(name)' is not built yet. Fix: run `smolvm setup --image \(name)`"
                    : "unknown image '\(name)'. Available images: \(Self.buildableImages.joined(separator: ", "))")
        }
        return try await verify(manifest, at: imageManifestURL(name))
    }

    static func validateName(_ name: String) throws {
        let valid =
            !name.isEmpty && name.count <= 63
            && name.unicodeScalars.allSatisfy { ("a"..."z").contains($0) || ("0"..."9").contains($0) || $0 == "-" }
            && name.first != "-"
        guard valid else {
            throw SmolVMError(
                .invalidArgument,
                "invalid image name '\(name)': use lowercase letters, digits and '-'. Available images: \(buildableImages.joined(separator: ", "))"
            )
        }
    }

    /// Checks the artifact before use. The full SHA-256 is computed when the
    /// file's size, mtime or inode differ from when it was last verified.
    func verify(_ manifest: ArtifactManifest, at manifestURL: URL, force: Bool = false) async throws -> VerifiedArtifact
    {
        let url = manifestURL.deletingLastPathComponent().appendingPathComponent(manifest.file)
        guard let stamp = FileStamp.read(url.path) else {
            throw SmolVMError(.notFound, "\(url.path) is missing. Fix: run `smolvm setup` to rebuild \(manifest.name)")
        }
        if !force, manifest.verified == stamp {
            return VerifiedArtifact(manifest: manifest, url: url)
        }
        let digest = try await SHA256.file(url.path)
        guard digest == manifest.sha256 else {
            throw SmolVMError(
                .corrupted,
                "\(url.path) does not match its checksum (expected \(manifest.sha256), found \(digest)); it was changed or damaged. Fix: run `smolvm setup --force`"
            )
        }
        var updated = manifest
        updated.verified = stamp
        try? updated.save(manifestURL)
        return VerifiedArtifact(manifest: updated, url: url)
    }

    /// Moves a finished build into place: checksum, rename, then the manifest.
    ///
    /// An existing artifact file is never replaced, even by a rebuild with the
    /// same key: named sandboxes' overlays refer to their base by path, and
    /// rewriting it under them would corrupt their disks. Older artifacts are
    /// removed only when no named sandbox still uses them.
    @discardableResult
    func install(
        built file: URL, name: String, key: String, fileName: String, inputs: [String: String], manifestURL: URL
    ) async throws -> ArtifactManifest {
        let directory = manifestURL.deletingLastPathComponent()
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        var finalName = fileName
        var generation = 1
        while FileManager.default.fileExists(atPath: directory.appendingPathComponent(finalName).path) {
            generation += 1
            let base = (fileName as NSString).deletingPathExtension
            let ext = (fileName as NSString).pathExtension
            finalName = ext.isEmpty ? "\(base).\(generation)" : "\(base).\(generation).\(ext)"
        }
        let destination = directory.appendingPathComponent(finalName)
        // Base artifacts are shared read-only by every sandbox.
        chmod(file.path, 0o444)
        let digest = try await SHA256.file(file.path)
        if rename(file.path, destination.path) != 0 {
            throw SmolVMError(.system, "cannot move \(file.path) into place", underlying: Errno(rawValue: errno))
        }
        let stamp = FileStamp.read(destination.path)
        let manifest = ArtifactManifest(
            name: name, key: key, file: finalName, sha256: digest, size: stamp?.size ?? 0, created: Date(),
            inputs: inputs, verified: stamp)
        try manifest.save(manifestURL)
        removeUnusedArtifacts(in: directory, keeping: finalName)
        return manifest
    }

    /// Kernel and image files that named sandboxes boot from and that user
    /// snapshots were taken on: removing them would break those.
    func artifactsInUse() -> Set<String> {
        var paths: [String] = SnapshotStore(paths: self.paths).list().flatMap { [$0.kernel.path, $0.image.path] }
        if FileManager.default.fileExists(atPath: self.paths.home.appendingPathComponent("state.db").path),
            let records = try? StateStore(paths: self.paths).records()
        {
            paths += records.flatMap { [$0.kernel, $0.rootImage] }
        }
        return Set(paths.map { URL(fileURLWithPath: $0).standardizedFileURL.path })
    }

    private func removeUnusedArtifacts(in directory: URL, keeping current: String) {
        let inUse = artifactsInUse()
        guard let entries = try? FileManager.default.contentsOfDirectory(atPath: directory.path) else { return }
        for entry in entries where entry != current && entry != "current.json" && !entry.hasPrefix(".") {
            let url = directory.appendingPathComponent(entry).standardizedFileURL
            if !inUse.contains(url.path) { try? FileManager.default.removeItem(at: url) }
        }
        SnapshotStore(paths: paths).pruneBootSnapshots()
    }

    /// One row of `smolvm image list`.
    public struct Entry: Sendable, Codable {
        public var name: String
        public var kind: String
        public var path: String
        public var size: UInt64
        public var diskUsage: UInt64
        public var sha256: String
        public var key: String
        public var created: Date
        public var inputs: [String: String]
    }

    /// The kernel and every built image.
    public func list() throws -> [Entry] {
        var entries: [Entry] = []
        func add(_ manifestURL: URL, kind: String) throws {
            guard let manifest = try ArtifactManifest.load(manifestURL) else { return }
            let url = manifestURL.deletingLastPathComponent().appendingPathComponent(manifest.file)
            var info = stat()
            let usage = stat(url.path, &info) == 0 ? UInt64(info.st_blocks) * 512 : 0
            entries.append(
                Entry(
                    name: manifest.name, kind: kind, path: url.path, size: manifest.size, diskUsage: usage,
                    sha256: manifest.sha256, key: manifest.key, created: manifest.created, inputs: manifest.inputs))
        }
        try add(kernelManifestURL, kind: "kernel")
        let names = (try? FileManager.default.contentsOfDirectory(atPath: paths.images.path)) ?? []
        for name in names.sorted() {
            try add(imageManifestURL(name), kind: "rootfs")
        }
        return entries
    }
}

extension ImageStore {
    /// Hashes every artifact in full, whatever its stamp says.
    public func verifyAll() async -> [(name: String, error: String?)] {
        var results: [(String, String?)] = []
        var manifests: [URL] = [kernelManifestURL]
        let names = (try? FileManager.default.contentsOfDirectory(atPath: paths.images.path)) ?? []
        manifests += names.sorted().map(imageManifestURL)
        for url in manifests {
            do {
                guard let manifest = try ArtifactManifest.load(url) else { continue }
                do {
                    _ = try await verify(manifest, at: url, force: true)
                    results.append((manifest.name, nil))
                } catch {
                    results.append((manifest.name, "\(error)"))
                }
            } catch {
                results.append((url.deletingLastPathComponent().lastPathComponent, "\(error)"))
            }
        }
        return results
    }
}
