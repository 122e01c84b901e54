import Glibc
import SmolVMSystem

/// `smolvm.*` parameters the host put on the kernel command line.
struct KernelCommandLine {
    var values: [String: String] = [:]

    init(_ text: String) {
        for word in text.split(whereSeparator: { $0 == " " || $0 == "\n" }) {
            guard word.hasPrefix("smolvm.") else { continue }
            if let eq = word.firstIndex(of: "=") {
                values[String(word[word.index(word.startIndex, offsetBy: 7)..<eq])] = String(
                    word[word.index(after: eq)...])
            } else {
                values[String(word.dropFirst(7))] = ""
            }
        }
    }

    static func current() -> KernelCommandLine {
        guard let fd = try? FileDescriptor.open("/proc/cmdline", .readOnly) else { return KernelCommandLine("") }
        defer { fd.close() }
        let bytes = (try? fd.readAll(limit: 65536)) ?? []
        return KernelCommandLine(String(decoding: bytes, as: UTF8.self))
    }

    subscript(key: String) -> String? { values[key] }
}
