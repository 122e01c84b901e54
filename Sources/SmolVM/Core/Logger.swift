import Foundation

/// The library's logging seam, after swift-log: the library never prints; it
/// hands messages to the logger its caller passed.
public struct Logger: Sendable {
    public enum Level: Int, Sendable, Comparable, CaseIterable {
        case trace, debug, info, notice, warning, error

        public static func < (a: Level, b: Level) -> Bool { a.rawValue < b.rawValue }
    }

    public typealias Handler = @Sendable (Level, String) -> Void

    public var label: String
    public var level: Level
    private let handler: Handler

    public init(label: String, level: Level = .info, handler: @escaping Handler) {
        self.label = label
        self.level = level
        self.handler = handler
    }

    /// Drops everything.
    public static let disabled = Logger(label: "smolvm", level: .error) { _, _ in }

    /// Writes `LEVEL label: message` lines to standard error.
    public static func standardError(label: String = "smolvm", level: Level = .info) -> Logger {
        Logger(label: label, level: level) { level, message in
            FileHandle.standardError.write(Data("\(level) \(label): \(message)\n".utf8))
        }
    }

    public func log(_ level: Level, _ message: @autoclosure () -> String) {
        guard level >= self.level else { return }
        handler(level, message())
    }

    public func trace(_ message: @autoclosure () -> String) { log(.trace, message()) }
    public func debug(_ message: @autoclosure () -> String) { log(.debug, message()) }
    public func info(_ message: @autoclosure () -> String) { log(.info, message()) }
    public func notice(_ message: @autoclosure () -> String) { log(.notice, message()) }
    public func warning(_ message: @autoclosure () -> String) { log(.warning, message()) }
    public func error(_ message: @autoclosure () -> String) { log(.error, message()) }
}
