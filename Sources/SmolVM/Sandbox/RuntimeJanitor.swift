import Foundation

/// Removes what crashed runs left behind.
///
/// Every live sandbox holds a `flock` on `run/ID/lock`; the kernel drops it
/// when the owner dies, however it dies (its QEMU dies with it through the
/// parent-death signal). A runtime directory whose lock nobody holds is
/// debris: its sockets, overlay and logs are removed.
struct RuntimeJanitor {
    let paths: SmolVMPaths
    let logger: Logger

    /// Runtime directories no live process owns.
    func staleDirectories() -> [URL] {
        guard let entries = try? FileManager.default.contentsOfDirectory(atPath: paths.run.path) else { return [] }
        return entries.sorted().compactMap { entry in
            let directory = paths.run.appendingPathComponent(entry)
            let lockPath = directory.appendingPathComponent("lock").path
            guard FileManager.default.fileExists(atPath: lockPath) else {
                // A directory without a lock is older than a minute only when a create crashed mid-way.
                let attributes = try? FileManager.default.attributesOfItem(atPath: directory.path)
                let modified = attributes?[.modificationDate] as? Date ?? Date()
                return Date().timeIntervalSince(modified) > 60 ? directory : nil
            }
            return FileLock.isHeld(lockPath) ? nil : directory
        }
    }

    @discardableResult
    func sweep() -> [URL] {
        let stale = staleDirectories()
        for directory in stale {
            logger.info("removing leftovers of a crashed sandbox: \(directory.path)")
            let id = directory.lastPathComponent
            if RestrictedNetwork.exists(for: id) { RestrictedNetwork.remove(for: id) }
            try? FileManager.default.removeItem(at: directory)
        }
        return stale
    }
}
