import Foundation
import SmolVM

/// Options shared by every command that creates a sandbox.
enum SandboxOptions {
    static let specs: [OptionSpec] = [
        .value("--image", valueName: "NAME", help: "Root file system image: debian (default) or minimal."),
        .value("--memory", valueName: "MIB", help: "Guest memory in MiB (default 512)."),
        .value("--cpus", valueName: "N", help: "Virtual CPUs (default 1)."),
        .value(
            "--backend", valueName: "NAME", help: "auto, firecracker or qemu (default: $SMOLVM_BACKEND, else auto)."),
        .flag("--cold", help: "Boot the kernel instead of starting from the boot snapshot of this configuration."),
        .value("--internet", valueName: "MODE", help: "on (NAT, the default), off (no route out) or restricted."),
        .repeating(
            "--allow", valueName: "CIDR", help: "With --internet restricted: an IPv4 range the guest may reach."),
        .repeating(
            "--publish", "-p", valueName: "[HOSTIP:]HOSTPORT:GUESTPORT",
            help: "Make a guest TCP port reachable on the host (default host address 127.0.0.1)."),
        .repeating(
            "--mount", valueName: "HOSTDIR[:GUESTDIR]",
            help: "Show a host folder in the guest (default /workspace); guest changes stay in the sandbox."),
        .flag("--writable-mounts", help: "Let guest writes to --mount folders reach the host."),
    ]

    static func configuration(_ arguments: ParsedArguments) throws -> SandboxConfiguration {
        var configuration = SandboxConfiguration()
        if let image = arguments.value("--image") { configuration.image = image }
        if let memory = try arguments.integer("--memory", in: 64...1_048_576) { configuration.memoryMiB = memory }
        if let cpus = try arguments.integer("--cpus", in: 1...SandboxConfiguration.maxCPUs) {
            configuration.cpus = cpus
        }
        configuration.startFromSnapshot = !arguments.flag("--cold")
        let allow = try arguments.all("--allow").map { try IPv4Range(parsing: $0) }
        if let internet = arguments.value("--internet") {
            configuration.internet = try InternetAccess(parsing: internet, allow: allow)
        } else if !allow.isEmpty {
            throw UsageError("--allow only applies to --internet restricted")
        }
        configuration.publish = try arguments.all("--publish").map { try PortPublication(parsing: $0) }
        let writable = arguments.flag("--writable-mounts")
        configuration.mounts = try arguments.all("--mount").map { try HostMount(parsing: $0, writable: writable) }
        if writable && configuration.mounts.isEmpty {
            throw UsageError("--writable-mounts applies to --mount folders, and none was given")
        }
        if let backend = arguments.value("--backend") {
            configuration.backend = try BackendPreference(parsing: backend)
        }
        if let timeout = ProcessInfo.processInfo.environment["SMOLVM_BOOT_TIMEOUT"] {
            guard let seconds = Double(timeout), seconds > 0, seconds < 86400 else {
                throw UsageError("SMOLVM_BOOT_TIMEOUT must be a number of seconds above 0, got '\(timeout)'")
            }
            configuration.bootTimeout = .milliseconds(Int64(seconds * 1000))
        }
        return configuration
    }

    /// `--env KEY=VALUE`, or `--env KEY` to pass the host's value through.
    static func environment(_ values: [String]) throws -> [String: String] {
        var environment: [String: String] = [:]
        for entry in values {
            if let equals = entry.firstIndex(of: "=") {
                let key = String(entry[..<equals])
                guard !key.isEmpty else { throw UsageError("--env expects KEY=VALUE, got '\(entry)'") }
                environment[key] = String(entry[entry.index(after: equals)...])
            } else {
                guard !entry.isEmpty else { throw UsageError("--env expects KEY=VALUE") }
                guard let value = ProcessInfo.processInfo.environment[entry] else {
                    throw UsageError("--env \(entry): no such variable in this environment; use --env \(entry)=VALUE")
                }
                environment[entry] = value
            }
        }
        return environment
    }
}

/// Options shared by every command that runs something (`run`, `sandbox exec`).
enum CommandOptions {
    static let specs: [OptionSpec] = [
        .repeating("--env", "-e", valueName: "KEY=VALUE", help: "Set an environment variable (KEY alone copies ours)."),
        .value("--workdir", "-w", valueName: "DIR", help: "Working directory in the guest (default /root)."),
        .value(
            "--timeout", valueName: "SECONDS", help: "Kill the command (and its children) after this long; exit 124."),
        .flag("--json", help: "Print one JSON object with the exit code and output instead of streaming."),
    ]

    /// The command from `argv` and the shared options. Our stdin is passed on
    /// when it is not a terminal; arguments keep their raw bytes.
    static func command(_ argv: [String], _ arguments: ParsedArguments) throws -> Command {
        let json = arguments.flag("--json")
        var command = Command(
            argv, environment: try SandboxOptions.environment(arguments.all("--env")),
            workingDirectory: arguments.value("--workdir"), timeout: try arguments.seconds("--timeout"),
            standardInput: isatty(0) == 0 && !json ? .stream : .none)
        if let directory = command.workingDirectory, !directory.hasPrefix("/") {
            throw UsageError("--workdir must be an absolute guest path, got '\(directory)'")
        }
        RawArguments.apply(to: &command, argumentCount: argv.count)
        return command
    }
}
