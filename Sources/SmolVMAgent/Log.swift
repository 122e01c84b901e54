import Glibc
import SmolVMSystem

/// Lines for the serial console, which the host keeps as the sandbox's log.
enum Log {
    static func info(_ message: String) {
        try? FileDescriptor.standardError.writeAll("smolvm-agent: \(message)\n")
    }
}
