/// A small declarative command-line parser in the spirit of
/// swift-argument-parser: commands are types that describe themselves with a
/// `CommandConfiguration` (abstract, discussion, examples, options), parse into
/// `ParsedArguments`, and report user errors as typed errors with exit codes.

import Foundation

/// How a command describes itself.
struct CommandConfiguration: Sendable {
    var name: String
    var abstract: String
    var usage: String = ""
    var discussion: String = ""
    var examples: [String] = []
    var options: [OptionSpec] = []
    var subcommands: [any CLICommand.Type] = []
    /// The first positional argument ends option parsing (`smolvm run sh -c …`).
    var optionsEndAtFirstPositional = false
}

/// One option: `--name VALUE`, a flag, or a repeatable value.
struct OptionSpec: Sendable {
    enum Kind: Sendable { case flag, value, repeating }

    var names: [String]
    var kind: Kind
    var valueName: String = "VALUE"
    var help: String

    static func flag(_ names: String..., help: String) -> OptionSpec {
        OptionSpec(names: names, kind: .flag, help: help)
    }

    static func value(_ names: String..., valueName: String, help: String) -> OptionSpec {
        OptionSpec(names: names, kind: .value, valueName: valueName, help: help)
    }

    static func repeating(_ names: String..., valueName: String, help: String) -> OptionSpec {
        OptionSpec(names: names, kind: .repeating, valueName: valueName, help: help)
    }

    var primaryName: String { names.first! }
}

/// A command the `smolvm` tool can run.
protocol CLICommand: Sendable {
    static var configuration: CommandConfiguration { get }
    init(_ arguments: ParsedArguments) throws
    /// Runs and returns the process exit status.
    func run() async throws -> Int32
}

extension CLICommand {
    static var helpOption: OptionSpec { .flag("--help", "-h", help: "Show help for this command.") }
}

/// The result of parsing one command's arguments.
struct ParsedArguments {
    var values: [String: [String]] = [:]
    var flags: Set<String> = []
    var positionals: [String] = []
    /// `commandPath` is the words that chose this command (`smolvm image list`).
    var commandPath: [String] = []

    func flag(_ name: String) -> Bool { flags.contains(name) }
    func value(_ name: String) -> String? { values[name]?.last }
    func all(_ name: String) -> [String] { values[name] ?? [] }

    /// An integer option within `range`, or a usage error naming the option.
    func integer(_ name: String, in range: ClosedRange<Int>) throws -> Int? {
        guard let text = value(name) else { return nil }
        guard let number = Int(text), range.contains(number) else {
            throw UsageError(
                "\(name) expects a whole number from \(range.lowerBound) to \(range.upperBound), got '\(text)'")
        }
        return number
    }

    /// A positive number of seconds, fractions allowed.
    func seconds(_ name: String) throws -> Duration? {
        guard let text = value(name) else { return nil }
        guard let number = Double(text), number > 0, number.isFinite, number < 1e9 else {
            throw UsageError("\(name) expects a positive number of seconds, got '\(text)'")
        }
        return .milliseconds(Int64((number * 1000).rounded(.up)))
    }

    static func parse(_ arguments: [String], for configuration: CommandConfiguration) throws -> ParsedArguments {
        var parsed = ParsedArguments()
        let options = configuration.options + [CLICommandHelp.helpSpec]
        var index = 0
        var onlyPositionals = false
        while index < arguments.count {
            let argument = arguments[index]
            index += 1
            if onlyPositionals {
                parsed.positionals.append(argument)
                continue
            }
            if argument == "--" {
                onlyPositionals = true
                continue
            }
            guard argument.hasPrefix("-"), argument != "-" else {
                parsed.positionals.append(argument)
                if configuration.optionsEndAtFirstPositional { onlyPositionals = true }
                continue
            }
            var name = argument
            var inlineValue: String?
            if argument.hasPrefix("--"), let equals = argument.firstIndex(of: "=") {
                name = String(argument[..<equals])
                inlineValue = String(argument[argument.index(after: equals)...])
            }
            guard let spec = options.first(where: { $0.names.contains(name) }) else {
                let known = options.flatMap(\.names).filter { $0.hasPrefix("--") }
                let suggestion = known.min { editDistance($0, name) < editDistance($1, name) }
                let hint = suggestion.map { editDistance($0, name) <= 3 ? " (did you mean \($0)?)" : "" } ?? ""
                throw UsageError("unknown option '\(name)'\(hint)")
            }
            switch spec.kind {
            case .flag:
                if inlineValue != nil { throw UsageError("\(spec.primaryName) does not take a value") }
                parsed.flags.insert(spec.primaryName)
            case .value, .repeating:
                let value: String
                if let inlineValue {
                    value = inlineValue
                } else {
                    guard index < arguments.count else {
                        throw UsageError("\(spec.primaryName) expects a value (\(spec.valueName))")
                    }
                    value = arguments[index]
                    index += 1
                }
                if spec.kind == .value, parsed.values[spec.primaryName] != nil {
                    throw UsageError("\(spec.primaryName) was given more than once")
                }
                parsed.values[spec.primaryName, default: []].append(value)
            }
        }
        return parsed
    }
}

/// A mistake in how the tool was called. Printed as one line, exit status 2
/// (125 for `run`, which reserves lower codes for the command's own status).
struct UsageError: Error, CustomStringConvertible {
    var message: String
    init(_ message: String) { self.message = message }
    var description: String { message }
}

/// Asks for help text to be printed instead of running.
struct HelpRequest: Error {
    var configuration: CommandConfiguration
    var commandPath: [String]
}

enum CLICommandHelp {
    static let helpSpec = OptionSpec.flag("--help", "-h", help: "Show help for this command.")

    static func render(_ configuration: CommandConfiguration, commandPath: [String]) -> String {
        var text = "OVERVIEW: \(configuration.abstract)\n\n"
        let path = commandPath.joined(separator: " ")
        text += "USAGE: \(path)\(configuration.usage.isEmpty ? "" : " " + configuration.usage)\n"
        if !configuration.discussion.isEmpty {
            text += "\n" + configuration.discussion + "\n"
        }
        if !configuration.subcommands.isEmpty {
            text += "\nSUBCOMMANDS:\n"
            let width = configuration.subcommands.map { $0.configuration.name.count }.max() ?? 0
            for sub in configuration.subcommands {
                let name = sub.configuration.name
                text +=
                    "  \(name.padding(toLength: width + 2, withPad: " ", startingAt: 0))\(sub.configuration.abstract)\n"
            }
            text += "\n  See '\(path) SUBCOMMAND --help' for details.\n"
        }
        let options = configuration.options + [helpSpec]
        text += "\nOPTIONS:\n"
        let labels = options.map { spec -> String in
            let names = spec.names.joined(separator: ", ")
            switch spec.kind {
            case .flag: return names
            case .value: return "\(names) \(spec.valueName)"
            case .repeating: return "\(names) \(spec.valueName)..."
            }
        }
        let width = min(30, labels.map(\.count).max() ?? 0)
        for (label, spec) in zip(labels, options) {
            if label.count > width {
                text += "  \(label)\n  \(String(repeating: " ", count: width + 2))\(spec.help)\n"
            } else {
                text += "  \(label.padding(toLength: width + 2, withPad: " ", startingAt: 0))\(spec.help)\n"
            }
        }
        if !configuration.examples.isEmpty {
            text += "\nEXAMPLES:\n"
            for example in configuration.examples { text += "  \(example)\n" }
        }
        return text
    }
}

/// Levenshtein distance, for "did you mean" hints.
func editDistance(_ a: String, _ b: String) -> Int {
    let a = Array(a)
    let b = Array(b)
    if a.isEmpty { return b.count }
    if b.isEmpty { return a.count }
    var previous = Array(0...b.count)
    for i in 1...a.count {
        var current = [i] + Array(repeating: 0, count: b.count)
        for j in 1...b.count {
            current[j] = min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (a[i - 1] == b[j - 1] ? 0 : 1))
        }
        previous = current
    }
    return previous[b.count]
}
