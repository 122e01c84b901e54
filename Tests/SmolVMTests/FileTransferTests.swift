import Foundation
import Testing

@testable import SmolVM

@Suite("Files in and out of a real VM", .serialized)
struct FileTransferTests {
    @Test("upload and download round trip, checked by SHA-256 on both sides")
    func roundTrip() async throws {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent(
            "smolvm-files-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: directory) }
        let source = directory.appendingPathComponent("random.bin")
        var generator = SystemRandomNumberGenerator()
        var bytes = [UInt8](repeating: 0, count: 24 << 20)
        for index in stride(from: 0, to: bytes.count, by: 8) {
            withUnsafeBytes(of: generator.next() as UInt64) { raw in
                for offset in 0..<8 { bytes[index + offset] = raw[offset] }
            }
        }
        try Data(bytes).write(to: source)
        let hostDigest = try VMTest.sha256(source.path)

        try await Sandbox.withSandbox(VMTest.configuration()) { sandbox in
            try await sandbox.upload(from: source.path, to: "/root/dir with spaces/données.bin")
            let guest = try await sandbox.run(["sha256sum", "/root/dir with spaces/données.bin"])
            #expect(String(guest.stdoutText.prefix(64)) == hostDigest)

            let back = directory.appendingPathComponent("back.bin")
            try await sandbox.download(from: "/root/dir with spaces/données.bin", to: back.path)
            #expect(try VMTest.sha256(back.path) == hostDigest)

            // Small in-memory transfers, including an empty file.
            try await sandbox.upload(Array("hello\n".utf8), to: "/tmp/small.txt")
            #expect(try await sandbox.download(from: "/tmp/small.txt") == Array("hello\n".utf8))
            try await sandbox.upload([], to: "/tmp/empty")
            #expect(try await sandbox.download(from: "/tmp/empty") == [])
        }
    }

    @Test("bad paths fail clearly and leave no partial file")
    func badPaths() async throws {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent(
            "smolvm-badpaths-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: directory) }
        try await Sandbox.withSandbox(VMTest.configuration()) { sandbox in
            let destination = directory.appendingPathComponent("never.bin")
            do {
                try await sandbox.download(from: "/no/such/file", to: destination.path)
                Issue.record("expected an error")
            } catch let error as SmolVMError {
                #expect(error.code == .notFound)
                #expect(error.message.contains("/no/such/file"))
            }
            #expect(try FileManager.default.contentsOfDirectory(atPath: directory.path).isEmpty)
            await #expect(throws: SmolVMError.self) { try await sandbox.download(from: "/tmp", to: destination.path) }
            await #expect(throws: SmolVMError.self) { try await sandbox.upload(Array("x".utf8), to: "relative/path") }
            await #expect(throws: SmolVMError.self) {
                try await sandbox.upload(from: directory.appendingPathComponent("missing").path, to: "/tmp/x")
            }
            // Writing below a regular file cannot succeed.
            try await sandbox.upload(Array("x".utf8), to: "/tmp/file")
            await #expect(throws: SmolVMError.self) { try await sandbox.upload(Array("x".utf8), to: "/tmp/file/child") }
            #expect(try await sandbox.run(["true"]).exitCode == 0)
        }
    }
}
