import Foundation
import SmolVMProtocol
import SmolVMSystem

extension AgentClient {
    /// Streams a host file into the guest: `writeFile`, `fileData`…, `fileEnd`, then waits for `ok`.
    /// The file is read in chunks on the writer queue, so its size does not matter to host memory.
    func upload(from localPath: String, to remotePath: String, mode: UInt32? = nil) async throws {
        let source: FileDescriptor
        do {
            source = try FileDescriptor.open(localPath, .readOnly)
        } catch {
            throw SmolVMError(.notFound, "cannot read \(localPath): \(error)", underlying: error)
        }
        defer { source.close() }
        let info = try source.status()
        guard (info.st_mode & S_IFMT) == S_IFREG else {
            throw SmolVMError(.invalidArgument, "\(localPath) is not a regular file")
        }
        let fileMode = mode ?? UInt32(info.st_mode & 0o7777)
        try await upload(to: remotePath, mode: fileMode) { buffer in
            try source.read(into: buffer)
        }
    }

    /// Writes `bytes` to a guest file.
    func upload(_ bytes: [UInt8], to remotePath: String, mode: UInt32 = 0o644) async throws {
        let offset = OffsetBox()
        try await upload(to: remotePath, mode: mode) { buffer in
            let count = min(buffer.count, bytes.count - offset.value)
            bytes.withUnsafeBytes { source in
                buffer.copyMemory(from: UnsafeRawBufferPointer(rebasing: source[offset.value..<offset.value + count]))
            }
            offset.value += count
            return count
        }
    }

    private func upload(
        to remotePath: String, mode: UInt32, read: @escaping @Sendable (UnsafeMutableRawBufferPointer) throws -> Int
    ) async throws {
        try Self.validateRemotePath(remotePath)
        let (id, queue) = try open()
        defer { release(id) }
        let request = FileWriteRequest(path: Array(remotePath.utf8), mode: mode)
        try await withWriter { [self] in
            try writeNow([Frame(.writeFile, id: id, payload: request.encoded())])
            var chunk = [UInt8](repeating: 0, count: FrameLimits.dataChunk)
            var batch: [Frame] = []
            while true {
                let count = try chunk.withUnsafeMutableBytes { try read($0) }
                if count == 0 { break }
                batch.append(Frame(.fileData, id: id, payload: Array(chunk[0..<count])))
                if batch.count == 16 {
                    try writeNow(batch)
                    batch.removeAll(keepingCapacity: true)
                }
            }
            batch.append(Frame(.fileEnd, id: id))
            try writeNow(batch)
        }
        guard let answer = try await queue.next() else {
            throw SmolVMError(.agentUnreachable, "the guest agent closed the connection during an upload")
        }
        try Self.throwIfError(answer)
    }

    /// Streams a guest file to `localPath`, through a temporary file renamed
    /// into place only when complete, so a failed download never leaves a
    /// partial file under the destination name.
    func download(from remotePath: String, to localPath: String) async throws {
        let temporary = localPath + ".smolvm-partial-\(UInt32.random(in: 0...UInt32.max))"
        let destination: FileDescriptor
        do {
            destination = try FileDescriptor.open(temporary, [.writeOnly, .create, .exclusive], mode: 0o644)
        } catch {
            throw SmolVMError(.invalidArgument, "cannot write \(localPath): \(error)", underlying: error)
        }
        var renamed = false
        defer {
            destination.close()
            if !renamed { unlink(temporary) }
        }
        let info = try await download(from: remotePath) { bytes in
            try destination.writeAll(bytes)
        }
        fchmod(destination.rawValue, mode_t(info.mode & 0o777))
        guard rename(temporary, localPath) == 0 else {
            throw SmolVMError(.system, "cannot move the download into \(localPath)", underlying: Errno.current)
        }
        renamed = true
    }

    /// A guest file's contents.
    func download(from remotePath: String) async throws -> [UInt8] {
        let collected = BytesBox()
        _ = try await download(from: remotePath) { collected.bytes.append(contentsOf: $0) }
        return collected.bytes
    }

    private func download(from remotePath: String, sink: ([UInt8]) throws -> Void) async throws -> FileInfo {
        try Self.validateRemotePath(remotePath)
        let (id, queue) = try open()
        defer { release(id) }
        try await send(Frame(.readFile, id: id, payload: FileReadRequest(path: Array(remotePath.utf8)).encoded()))
        guard let first = try await queue.next() else {
            throw SmolVMError(.agentUnreachable, "the guest agent closed the connection during a download")
        }
        try Self.throwIfError(first)
        guard first.kind == .fileInfo else {
            throw SmolVMError(.agentError, "the guest agent answered a read with \(first.kind)")
        }
        let info = try FileInfo(decoding: first.payload)
        var received: UInt64 = 0
        while let frame = try await queue.next() {
            switch frame.kind {
            case .fileData:
                received += UInt64(frame.payload.count)
                try sink(frame.payload)
            case .fileEnd:
                return info
            case .error:
                try Self.throwIfError(frame)
            default:
                throw SmolVMError(.agentError, "unexpected \(frame.kind) frame in a download")
            }
        }
        throw SmolVMError(.agentUnreachable, "the connection ended after \(received) bytes of \(remotePath)")
    }

    static func validateRemotePath(_ path: String) throws {
        guard path.hasPrefix("/") else {
            throw SmolVMError(.invalidArgument, "guest paths must be absolute, got '\(path)'")
        }
        guard !path.utf8.contains(0), path.utf8.count < 4096 else {
            throw SmolVMError(.invalidArgument, "invalid guest path '\(path)'")
        }
    }
}

private final class OffsetBox: @unchecked Sendable { var value = 0 }
private final class BytesBox: @unchecked Sendable { var bytes: [UInt8] = [] }
