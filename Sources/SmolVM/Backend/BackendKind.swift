import Foundation

/// A virtual machine monitor SmolVM can drive.
public enum BackendKind: String, Sendable, Codable, CaseIterable, CustomStringConvertible {
    case firecracker
    case qemu

    public var description: String { rawValue }
}

/// What the caller asked for: a specific backend, or `auto`.
public enum BackendPreference: String, Sendable, Codable, CaseIterable, CustomStringConvertible {
    case auto
    case firecracker
    case qemu

    public var description: String { rawValue }

    /// Parses a user-supplied name; surrounding spaces and letter case are forgiven.
    public init(parsing text: String) throws {
        let normalized = text.trimmingCharacters(in: .whitespacesAndNewlines).lowercased()
        guard let value = BackendPreference(rawValue: normalized) else {
            throw SmolVMError(
                .invalidArgument,
                "Unsupported backend '\(text)'. Supported values: \(BackendPreference.allCases.map(\.rawValue).joined(separator: ", "))"
            )
        }
        self = value
    }
}
