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
    public func list() throws -> [SnapshotManifest] {
        guard let names = try? FileManager.default.contentsOfDirectory(atPath: root.path) else { return [] }
        return names.filter { !$0.hasPrefix(".") }.compactMap { try? SnapshotManifest.load(from: directory($0)) }
            .sorted { ($0.created, $0.name) < ($1.created, $1.name) }
    }

    public func manifest(named name: String) throws -> SnapshotManifest {
        try SandboxName.validate(name, what: "snapshot")
        let directory = directory(name)
        guard FileManager.default.fileExists(atPath: directory.path) else {
            throw SmolVMError(.notFound, "no snapshot named '\(name)'; `smolvm snapshot list` shows them")
        }
        return try SnapshotManifest.load(from: directory)
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
