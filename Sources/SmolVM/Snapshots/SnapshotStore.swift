import Foundation
import SmolVMSystem

/// Snapshots on disk: `SMOLVM_HOME/snapshots/NAME/` for the ones users take,
/// `SMOLVM_HOME/boot-snapshots/KEY/` for snapshot-fast starts.
///
/// A snapshot is written into a hidden staging directory and renamed into
/// place when complete, so a crash mid-save never leaves a snapshot that
/// looks usable, and two writers of one name cannot both win.
public struct SnapshotStore: Sendable {
    public let paths: SmolVMPaths

    public init(paths: SmolVMPaths = .fromEnvironment()) { self.paths = paths }

    var root: URL { paths.home.appendingPathComponent("snapshots") }
    var bootRoot: URL { paths.home.appendingPathComponent("boot-snapshots") }

    func directory(_ name: String) -> URL { root.appendingPathComponent(name) }
    func bootDirectory(_ key: String) -> URL { bootRoot.appendingPathComponent(key) }

    /// Every user snapshot, oldest first. Damaged ones are skipped here and
    /// reported when restored or deleted by name.
    /// Removes boot snapshots that can never be used again: unreadable ones,
    /// and those whose kernel or image file is gone (rebuilt by `smolvm setup`).
    func pruneBootSnapshots() {
        guard let keys = try? FileManager.default.contentsOfDirectory(atPath: bootRoot.path) else { return }
        for key in keys where !key.hasPrefix(".") {
            let directory = bootDirectory(key)
            let usable =
                (try? SnapshotManifest.load(from: directory)).map {
                    FileManager.default.fileExists(atPath: $0.kernel.path)
                        && FileManager.default.fileExists(atPath: $0.image.path)
                } ?? false
            if !usable { try? FileManager.default.removeItem(at: directory) }
        }
    }

    public func list() -> [SnapshotManifest] {
        scan().manifests
    }

    /// Every snapshot directory: the readable ones, and the names of those
    /// whose manifest cannot be read, with why, so they are shown, not hidden.
    public func scan() -> (manifests: [SnapshotManifest], damaged: [(name: String, problem: String)]) {
        guard let names = try? FileManager.default.contentsOfDirectory(atPath: root.path) else { return ([], []) }
        var manifests: [SnapshotManifest] = []
        var damaged: [(name: String, problem: String)] = []
        for name in names.sorted() where !name.hasPrefix(".") {
            do {
                manifests.append(try SnapshotManifest.load(from: directory(name)))
            } catch {
                damaged.append((name, "\(error)"))
            }
        }
        return (manifests.sorted { ($0.created, $0.name) < ($1.created, $1.name) }, damaged)
    }

    public func manifest(named name: String) throws -> SnapshotManifest {
        try SandboxName.validate(name, what: "snapshot")
        let directory = directory(name)
        guard FileManager.default.fileExists(atPath: directory.path) else {
            throw SmolVMError(.notFound, "no snapshot named '\(name)'; `smolvm snapshot list` shows them")
        }
        do {
            return try SnapshotManifest.load(from: directory)
        } catch {
            throw SmolVMError(
                .corrupted,
                "snapshot '\(name)' is damaged or was written by another smolvm (\(error)). Fix: delete it with `smolvm snapshot delete \(name)` and take it again",
                underlying: error)
        }
    }

    /// Removes a snapshot. Sandboxes restored from it keep running: each has
    /// its own copy of the disk layer, and the memory image was read at restore.
    public func delete(named name: String) throws {
        try SandboxName.validate(name, what: "snapshot")
        let directory = directory(name)
        guard FileManager.default.fileExists(atPath: directory.path) else {
            throw SmolVMError(.notFound, "no snapshot named '\(name)'; `smolvm snapshot list` shows them")
        }
        // Out of sight first, so no restore starts from a half-deleted snapshot.
        let doomed = root.appendingPathComponent(".deleting-\(name)-\(Sandbox.makeID())")
        try FileManager.default.moveItem(at: directory, to: doomed)
        try FileManager.default.removeItem(at: doomed)
    }

    /// A fresh hidden directory to write a snapshot into.
    func makeStaging(in parent: URL) throws -> URL {
        let staging = parent.appendingPathComponent(".staging-\(Sandbox.makeID())")
        try FileManager.default.createDirectory(at: staging, withIntermediateDirectories: true)
        return staging
    }

    /// Moves a complete snapshot into place; fails if the name is taken.
    func publish(_ staging: URL, as destination: URL) throws {
        if rename(staging.path, destination.path) != 0 {
            let error = Errno.current
            try? FileManager.default.removeItem(at: staging)
            if error == .exists || error == .notEmpty {
                throw SmolVMError(
                    .invalidArgument,
                    "a snapshot named '\(destination.lastPathComponent)' already exists; pick another name or delete it first"
                )
            }
            throw SmolVMError(.system, "cannot save the snapshot as \(destination.path): \(error)")
        }
    }

    /// Staging directories left by a crashed save, older than a minute.
    func sweepStaging() {
        for parent in [root, bootRoot] {
            guard let names = try? FileManager.default.contentsOfDirectory(atPath: parent.path) else { continue }
            for name in names where name.hasPrefix(".staging-") || name.hasPrefix(".deleting-") {
                let url = parent.appendingPathComponent(name)
                let modified =
                    (try? FileManager.default.attributesOfItem(atPath: url.path)[.modificationDate] as? Date) ?? nil
                if let modified, Date().timeIntervalSince(modified) > 60 {
                    try? FileManager.default.removeItem(at: url)
                }
            }
        }
    }

    /// `SOURCE-snap-XXXX`, kept within the 63-character limit.
    static func generateName(source: String) -> String {
        let suffix = "-snap-" + String(format: "%04x", UInt16.random(in: 0...UInt16.max))
        return String(source.prefix(63 - suffix.count)) + suffix
    }
}
