import Foundation

/// Where SmolVM keeps its files: `SMOLVM_HOME`, default `~/.smolvm`.
///
/// ```
/// kernels/        built guest kernels (vmlinux-KEY) and current.json
/// images/NAME/    root file systems (rootfs-KEY.ext4) and current.json
/// cache/          slow intermediate artifacts (debootstrap trees)
/// build/          scratch space for builds in progress
/// run/ID/         one ephemeral sandbox: sockets, overlay, console log, lock
/// sandboxes/ID/   one named sandbox, kept across stops until deleted
/// state.db        the named sandboxes (SQLite)
/// ```
public struct SmolVMPaths: Sendable, Equatable {
    public let home: URL

    public init(home: URL) { self.home = home.standardizedFileURL }

    /// `SMOLVM_HOME` from `environment`, else `~/.smolvm`.
    public static func fromEnvironment(_ environment: [String: String] = ProcessInfo.processInfo.environment)
        -> SmolVMPaths
    {
        if let value = environment["SMOLVM_HOME"], !value.isEmpty {
            let url = URL(
                fileURLWithPath: value, relativeTo: URL(fileURLWithPath: FileManager.default.currentDirectoryPath))
            return SmolVMPaths(home: url.absoluteURL)
        }
        let home =
            environment["HOME"].map { URL(fileURLWithPath: $0) } ?? FileManager.default.homeDirectoryForCurrentUser
        return SmolVMPaths(home: home.appendingPathComponent(".smolvm"))
    }

    public var kernels: URL { home.appendingPathComponent("kernels") }
    public var images: URL { home.appendingPathComponent("images") }
    public var cache: URL { home.appendingPathComponent("cache") }
    public var build: URL { home.appendingPathComponent("build") }
    public var run: URL { home.appendingPathComponent("run") }
    /// Named sandboxes' files (overlay, sockets, logs), one directory per sandbox id.
    public var sandboxes: URL { home.appendingPathComponent("sandboxes") }

    public func image(_ name: String) -> URL { images.appendingPathComponent(name) }
    public func runtime(_ id: String) -> URL { run.appendingPathComponent(id) }

    /// Makes sure `home` is a directory this process can write, creating it if
    /// needed; otherwise a clear error naming the path and the fix.
    public func prepareHome() throws {
        var isDirectory: ObjCBool = false
        if FileManager.default.fileExists(atPath: home.path, isDirectory: &isDirectory) {
            guard isDirectory.boolValue else {
                throw SmolVMError(
                    .invalidArgument,
                    "SMOLVM_HOME (\(home.path)) is a file, not a directory. Fix: point SMOLVM_HOME at a directory")
            }
        } else {
            do {
                try FileManager.default.createDirectory(at: home, withIntermediateDirectories: true)
            } catch {
                throw SmolVMError(
                    .invalidArgument,
                    "cannot create SMOLVM_HOME (\(home.path)): \((error as NSError).localizedDescription). Fix: point SMOLVM_HOME at a writable directory"
                )
            }
        }
        guard access(home.path, W_OK | X_OK) == 0 else {
            throw SmolVMError(
                .invalidArgument,
                "SMOLVM_HOME (\(home.path)) is not writable (\(String(cString: strerror(errno)))). Fix: point SMOLVM_HOME at a writable directory or fix its permissions"
            )
        }
    }
}
