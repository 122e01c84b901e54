import Foundation
import SmolVM

/// This process's arguments as the bytes `execve` gave it.
///
/// Swift's `CommandLine.arguments` repairs invalid UTF-8 with U+FFFD; the
/// command a user runs in a sandbox must reach the guest byte for byte, so the
/// pieces that travel there are read again from `CommandLine.unsafeArgv`.
enum RawArguments {
    static var all: [[UInt8]] {
        (0..<Int(CommandLine.argc)).map { index in
            guard let pointer = CommandLine.unsafeArgv[index] else { return [] }
            return Array(UnsafeBufferPointer(start: pointer, count: strlen(pointer))).map { UInt8(bitPattern: $0) }
        }
    }

    /// The last `count` arguments: a command given after the options.
    static func trailing(_ count: Int) -> [[UInt8]] {
        Array(all.suffix(count))
    }

    /// `--env`/`-e` values before `--`, raw, in order.
    static func environmentValues() -> [[UInt8]] {
        var values: [[UInt8]] = []
        let arguments = all
        var index = 1
        while index < arguments.count {
            let argument = arguments[index]
            if argument == Array("--".utf8) { break }
            if argument == Array("--env".utf8) || argument == Array("-e".utf8) {
                if index + 1 < arguments.count { values.append(arguments[index + 1]) }
                index += 2
                continue
            }
            if argument.starts(with: Array("--env=".utf8)) { values.append(Array(argument.dropFirst(6))) }
            index += 1
        }
        return values
    }

    /// Moves `--env` entries that are not valid UTF-8 out of `command.environment`
    /// into its raw entries, and takes the command's argv from the raw arguments.
    static func apply(to command: inout Command, argumentCount: Int) {
        let raw = trailing(argumentCount)
        // Only when they are the same words the parser saw, decoded the same lossy way.
        if raw.map({ String(decoding: $0, as: UTF8.self) }) == command.arguments {
            command.rawArguments = raw
        }
        for entry in environmentValues() where String(validating: entry, as: UTF8.self) == nil {
            let name = String(decoding: entry.prefix { $0 != UInt8(ascii: "=") }, as: UTF8.self)
            command.environment.removeValue(forKey: name)
            command.rawEnvironment.append(entry)
        }
    }
}
