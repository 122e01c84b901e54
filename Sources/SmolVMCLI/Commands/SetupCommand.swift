import Foundation
import SmolVM

/// `smolvm setup`: everything a fresh Debian or Ubuntu host needs.
struct SetupCommand: CLICommand {
    static let configuration = CommandConfiguration(
        name: "setup",
        abstract: "Install host packages, build the guest kernel and the root file system images.",
        usage: "[--image NAME]... [--skip-packages] [--force] [--json]",
        discussion: """
            Run as root, setup installs the Debian packages SmolVM needs with apt-get (otherwise it
            prints the exact apt-get line and stops), builds the guest kernel from linux-source-6.1
            (about 7 minutes on 2 cores) and the images: debian (bookworm with bash, python3, curl,
            git and ca-certificates) and minimal (busybox). Artifacts live under SMOLVM_HOME, are
            keyed by what they were built from, and are rebuilt only when that changes.
            """,
        examples: ["sudo smolvm setup", "smolvm setup --image minimal --skip-packages", "smolvm setup --force"],
        options: [
            .repeating(
                "--image", valueName: "NAME", help: "Build only this image (repeatable; default: debian and minimal)."),
            .flag("--skip-packages", help: "Do not check or install host packages."),
            .flag("--force", help: "Rebuild even when the artifacts are up to date."),
            .flag("--json", help: "Print the result as JSON."),
        ])

    var options = Setup.Options()
    let json: Bool

    init(_ arguments: ParsedArguments) throws {
        if !arguments.positionals.isEmpty { throw UsageError("unexpected argument '\(arguments.positionals[0])'") }
        let images = arguments.all("--image")
        if !images.isEmpty { options.images = images }
        options.installPackages = !arguments.flag("--skip-packages")
        options.force = arguments.flag("--force")
        json = arguments.flag("--json")
    }

    func run() async throws -> Int32 {
        let start = ContinuousClock.now
        let quiet = json
        let progress = SetupProgress(
            onStep: { stage, message in
                if !quiet { FileHandle.standardError.write(Data("[\(stage)] \(message)\n".utf8)) }
            },
            onPercent: { stage, percent in
                if !quiet { FileHandle.standardError.write(Data("[\(stage)] \(percent)%\n".utf8)) }
            })
        let paths = SmolVMPaths.fromEnvironment()
        try await Setup(paths: paths, progress: progress).run(options)
        let entries = try ImageStore(paths: paths).list()
        if json {
            Output.printEnvelope(ok: true, data: ["artifacts": Output.jsonObject(entries)], error: nil)
        } else {
            let seconds = Double((ContinuousClock.now - start).components.seconds)
            FileHandle.standardError.write(Data("setup complete in \(Int(seconds)) s\n".utf8))
            ImageCommand.printTable(entries)
        }
        return 0
    }
}
