/// The one error type the SmolVM library throws.
///
/// Every error carries a `code` a program can switch on, a `message` a person
/// can act on (what went wrong and how to fix it), and the underlying cause
/// when there is one.
public struct SmolVMError: Error, Sendable, CustomStringConvertible {
    public enum Code: String, Sendable, Codable {
        /// A value the caller passed is not acceptable (a bad name, path, size…).
        case invalidArgument
        /// The operation does not exist on this backend or platform.
        case unsupported
        /// Something the operation needs is not installed or not built.
        case notFound
        /// The host cannot run the requested backend or accelerator.
        case hostUnsupported
        /// The sandbox is not in a state that allows the operation.
        case invalidState
        /// The virtual machine failed to start or died.
        case bootFailed
        /// The guest agent did not answer in time.
        case agentUnreachable
        /// The guest agent broke the protocol or reported a failure.
        case agentError
        /// The command did not finish before its timeout.
        case timeout
        /// The executable does not exist in the sandbox.
        case commandNotFound
        /// The executable exists but cannot be run (a directory, no permission, not a program).
        case commandNotExecutable
        /// A checksum or manifest does not match.
        case corrupted
        /// A host system call or tool failed.
        case system
        /// Someone else holds the resource.
        case busy
    }

    public let code: Code
    public let message: String
    public let underlying: (any Error)?

    public init(_ code: Code, _ message: String, underlying: (any Error)? = nil) {
        self.code = code
        self.message = message
        self.underlying = underlying
    }

    public var description: String {
        guard let underlying else { return message }
        let cause = "\(underlying)"
        if message.contains(cause) { return message }
        return "\(message) (\(cause))"
    }

    static func unsupported(_ operation: String, backend: String) -> SmolVMError {
        SmolVMError(.unsupported, "\(operation) is not supported by the \(backend) backend")
    }
}
