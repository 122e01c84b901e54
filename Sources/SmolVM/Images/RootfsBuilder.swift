import Foundation
import SmolVMProtocol
import SmolVMSystem

/// Builds root file system images: a directory tree with the guest agent as
/// `/sbin/smolvm-agent`, packed into ext4 by `mkfs.ext4 -d` (no loop mounts).
struct RootfsBuilder {
    let store: ImageStore
    let agent: URL
    let progress: SetupProgress

    static let recipeVersion = "1"
    /// The files SmolVM writes over every tree (`writeGuestFiles`); bumping it
    /// rebuilds images without downloading a Debian tree again.
    static let guestFilesVersion = "2"
    static let debianSuite = "bookworm"
    /// The tools an agent expects, on top of debootstrap's minbase (which has bash and coreutils).
    static let debianPackages = ["python3", "ca-certificates", "curl", "git", "procps"]

    /// The manifest input naming the protocol the image's agent speaks.
    static let protocolInput = "agentProtocol"

    func ensure(_ name: String, force: Bool) async throws -> ArtifactManifest {
        let agentDigest = try await SHA256.file(agent.path)
        let agentProtocol = "\(SmolVMProtocol.protocolVersion)"
        switch name {
        case "minimal":
            let busybox = try await HostPackages.installedVersion("busybox-static") ?? "unknown"
            let inputs = [
                "busybox": "busybox-static \(busybox)", "agentSHA256": agentDigest, "recipe": Self.recipeVersion,
                "guestFiles": Self.guestFilesVersion, "size": "128M", Self.protocolInput: agentProtocol,
            ]
            return try await build(name, inputs: inputs, size: "128M", force: force) { tree in
                try await populateMinimal(tree)
            }
        case "debian":
            let mirror = Self.debianMirror()
            let treeInputs = [
                "suite": Self.debianSuite, "variant": "minbase", "packages": Self.debianPackages.joined(separator: ","),
                "recipe": Self.recipeVersion,
            ]
            var inputs = treeInputs
            inputs["agentSHA256"] = agentDigest
            inputs[Self.protocolInput] = agentProtocol
            inputs["guestFiles"] = Self.guestFilesVersion
            inputs["size"] = "2G"
            inputs["mirror"] = mirror
            return try await build(name, inputs: inputs, size: "2G", force: force) { tree in
                try await populateDebian(tree, treeKey: Self.key(treeInputs), mirror: mirror, force: force)
            }
        default:
            throw SmolVMError(
                .invalidArgument,
                "setup cannot build an image named '\(name)'. Buildable images: \(ImageStore.buildableImages.joined(separator: ", "))"
            )
        }
    }

    static func key(_ inputs: [String: String]) -> String {
        String(
            SHA256.hex(inputs.sorted { $0.key < $1.key }.map { "\($0.key)=\($0.value)" }.joined(separator: "\n"))
                .prefix(16))
    }

    private func build(
        _ name: String, inputs: [String: String], size: String, force: Bool,
        populate: (URL) async throws -> Void
    ) async throws -> ArtifactManifest {
        let key = Self.key(inputs)
        let manifestURL = store.imageManifestURL(name)
        if !force, let current = try? ArtifactManifest.load(manifestURL), current.key == key,
            let verified = try? await store.verify(current, at: manifestURL)
        {
            progress.step(name, "up to date (\(key))")
            return verified.manifest
        }
        let workspace = store.paths.build.appendingPathComponent("image-\(name)-\(key)")
        try? FileManager.default.removeItem(at: workspace)
        try FileManager.default.createDirectory(at: workspace, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: workspace) }
        let tree = workspace.appendingPathComponent("tree")
        try await populate(tree)
        try installAgent(into: tree)
        try writeGuestFiles(tree)

        progress.step(name, "creating the ext4 image (\(size))")
        let imageDirectory = store.paths.image(name)
        try FileManager.default.createDirectory(at: imageDirectory, withIntermediateDirectories: true)
        let partial = imageDirectory.appendingPathComponent(".rootfs-\(key).partial")
        try? FileManager.default.removeItem(at: partial)
        try await Subprocess.check(["truncate", "-s", size, partial.path])
        try await Subprocess.check([
            "mkfs.ext4", "-q", "-F", "-L", "smolvm-root", "-d", tree.path, "-E", "root_owner=0:0", partial.path,
        ])
        let manifest = try await store.install(
            built: partial, name: name, key: key, fileName: "rootfs-\(key).ext4", inputs: inputs,
            manifestURL: manifestURL)
        progress.step(name, "built \(manifest.file) (\(ByteCount(manifest.size)) virtual)")
        return manifest
    }

    private func installAgent(into tree: URL) throws {
        let destination = tree.appendingPathComponent("sbin/smolvm-agent")
        try FileManager.default.createDirectory(
            at: destination.deletingLastPathComponent(), withIntermediateDirectories: true)
        try? FileManager.default.removeItem(at: destination)
        try FileManager.default.copyItem(at: agent, to: destination)
        chmod(destination.path, 0o755)
    }

    private func writeGuestFiles(_ tree: URL) throws {
        // The hostname lives in the kernel; the file shows it, and a write to it sets it.
        let hostname = tree.appendingPathComponent("etc/hostname")
        try FileManager.default.createDirectory(
            at: hostname.deletingLastPathComponent(), withIntermediateDirectories: true)
        try? FileManager.default.removeItem(at: hostname)
        try FileManager.default.createSymbolicLink(
            atPath: hostname.path, withDestinationPath: "/proc/sys/kernel/hostname")
        let files = [
            "etc/hosts": "127.0.0.1\tlocalhost\n::1\tlocalhost\n127.0.1.1\tsmolvm\n",
            "etc/resolv.conf": "nameserver 10.0.2.3\n",
        ]
        for (path, contents) in files {
            let url = tree.appendingPathComponent(path)
            try FileManager.default.createDirectory(
                at: url.deletingLastPathComponent(), withIntermediateDirectories: true)
            try? FileManager.default.removeItem(at: url)
            try Data(contents.utf8).write(to: url)
        }
        for directory in ["proc", "sys", "dev", "tmp", "run", "root", "mnt", "var/tmp"] {
            try FileManager.default.createDirectory(
                at: tree.appendingPathComponent(directory), withIntermediateDirectories: true)
        }
        chmod(tree.appendingPathComponent("tmp").path, 0o1777)
        chmod(tree.appendingPathComponent("var/tmp").path, 0o1777)
        chmod(tree.appendingPathComponent("root").path, 0o700)
    }

    /// busybox and its applet links, plus the files a shell expects.
    private func populateMinimal(_ tree: URL) async throws {
        progress.step("minimal", "assembling a busybox tree")
        guard
            let busybox = ["/bin/busybox", "/usr/bin/busybox"].first(where: {
                FileManager.default.isExecutableFile(atPath: $0)
            })
        else {
            throw SmolVMError(.notFound, "busybox was not found. Fix: sudo apt-get install -y busybox-static")
        }
        let bin = tree.appendingPathComponent("bin")
        try FileManager.default.createDirectory(at: bin, withIntermediateDirectories: true)
        for directory in ["sbin", "usr/bin", "usr/sbin", "etc"] {
            try FileManager.default.createDirectory(
                at: tree.appendingPathComponent(directory), withIntermediateDirectories: true)
        }
        try FileManager.default.copyItem(atPath: busybox, toPath: bin.appendingPathComponent("busybox").path)
        let applets = try await Subprocess.check([busybox, "--list-full"]).outputText.split(separator: "\n")
        for applet in applets where !applet.isEmpty && !applet.hasSuffix("/busybox") {
            let link = tree.appendingPathComponent(String(applet))
            let depth = applet.split(separator: "/").count - 1
            let target = String(repeating: "../", count: depth) + "bin/busybox"
            try? FileManager.default.createSymbolicLink(atPath: link.path, withDestinationPath: target)
        }
        let etc = tree.appendingPathComponent("etc")
        try Data("root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n".utf8)
            .write(to: etc.appendingPathComponent("passwd"))
        try Data("root:x:0:\nnogroup:x:65534:\n".utf8).write(to: etc.appendingPathComponent("group"))
    }

    /// A debootstrap tree, cached by what it was built from so agent or
    /// recipe changes repack it in seconds instead of downloading it again.
    private func populateDebian(_ tree: URL, treeKey: String, mirror: String, force: Bool) async throws {
        let cached = store.paths.cache.appendingPathComponent("debootstrap-\(treeKey)")
        if force || !FileManager.default.fileExists(atPath: cached.appendingPathComponent("usr/bin/python3").path) {
            guard getuid() == 0 else {
                throw SmolVMError(
                    .hostUnsupported,
                    "building the debian image runs debootstrap, which needs root. Fix: run `sudo smolvm setup`")
            }
            guard Subprocess.which("debootstrap") != nil else {
                throw SmolVMError(.notFound, "debootstrap was not found. Fix: sudo apt-get install -y debootstrap")
            }
            let partial = store.paths.cache.appendingPathComponent(".debootstrap-\(treeKey).partial")
            try? FileManager.default.removeItem(at: partial)
            try? FileManager.default.removeItem(at: cached)
            try FileManager.default.createDirectory(at: store.paths.cache, withIntermediateDirectories: true)
            progress.step("debian", "debootstrap \(Self.debianSuite) from \(mirror) (about a minute)")
            let counter = LineCounter(expected: 260, report: { percent in progress.percent("debian", percent) })
            try await Subprocess.check(
                [
                    "debootstrap", "--variant=minbase", "--include=\(Self.debianPackages.joined(separator: ","))",
                    Self.debianSuite, partial.path, mirror,
                ], timeout: .seconds(1800),
                onOutputLine: { line in
                    if line.hasPrefix("I: ") { counter.tick() }
                })
            // Package caches only take space in every sandbox's base.
            try? FileManager.default.removeItem(at: partial.appendingPathComponent("var/cache/apt/archives"))
            try? FileManager.default.createDirectory(
                at: partial.appendingPathComponent("var/cache/apt/archives/partial"), withIntermediateDirectories: true)
            try? FileManager.default.removeItem(at: partial.appendingPathComponent("var/lib/apt/lists"))
            try? FileManager.default.createDirectory(
                at: partial.appendingPathComponent("var/lib/apt/lists/partial"), withIntermediateDirectories: true)
            guard rename(partial.path, cached.path) == 0 else {
                throw SmolVMError(.system, "cannot move the debootstrap tree into place", underlying: Errno.current)
            }
        } else {
            progress.step("debian", "reusing the cached debootstrap tree (\(treeKey))")
        }
        // Hard links make the working copy instant and take no space; the files
        // written next are removed and recreated, so the cache is never edited.
        try await Subprocess.check(["cp", "-al", cached.path, tree.path])
    }

    /// The Debian mirror: `SMOLVM_DEBIAN_MIRROR`, else the one apt uses here, else deb.debian.org.
    static func debianMirror() -> String {
        if let mirror = ProcessInfo.processInfo.environment["SMOLVM_DEBIAN_MIRROR"], !mirror.isEmpty { return mirror }
        let sources = ["/etc/apt/sources.list.d/debian.sources", "/etc/apt/sources.list"]
        for path in sources {
            guard let text = try? String(contentsOfFile: path, encoding: .utf8) else { continue }
            for line in text.split(separator: "\n") {
                let trimmed = line.trimmingCharacters(in: .whitespaces)
                if trimmed.hasPrefix("URIs:") {
                    let uri = trimmed.dropFirst(5).trimmingCharacters(in: .whitespaces).split(separator: " ").first.map(
                        String.init)
                    if let uri, !uri.contains("security") { return uri }
                }
                if trimmed.hasPrefix("deb "), !trimmed.contains("security") {
                    let parts = trimmed.split(separator: " ").filter { !$0.hasPrefix("[") }
                    if parts.count > 1 { return String(parts[1]) }
                }
            }
        }
        return "http://deb.debian.org/debian"
    }
}
