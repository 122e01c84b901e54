import Glibc
import SmolVMProtocol
import SmolVMSystem

/// A file being written from `fileData` frames.
struct Upload {
    /// nil once a write failed: later chunks are dropped and `fileEnd` reports the error.
    var fd: FileDescriptor?
    var path: [UInt8]
    var failure: RemoteError?
}

extension Agent {
    func beginUpload(_ frame: Frame, key: RequestKey, connection: Connection) {
        let request: FileWriteRequest
        do {
            request = try FileWriteRequest(decoding: frame.payload)
        } catch {
            uploads[key] = Upload(
                fd: nil, path: [], failure: RemoteError(code: .badRequest, message: "bad write request: \(error)"))
            return
        }
        if request.createParents { makeParents(of: request.path) }
        do {
            let fd = try FileDescriptor.open(
                bytes: request.path, [.writeOnly, .create, .truncate], mode: mode_t(request.mode))
            uploads[key] = Upload(fd: fd, path: request.path)
        } catch {
            let errno = (error as? Errno) ?? Errno(rawValue: EIO)
            uploads[key] = Upload(fd: nil, path: request.path, failure: fileError(errno, request.path, "open"))
        }
    }

    func continueUpload(_ key: RequestKey, _ bytes: [UInt8]) {
        guard let upload = uploads[key], let fd = upload.fd else { return }
        do {
            try fd.writeAll(bytes)
        } catch {
            fd.close()
            let errno = (error as? Errno) ?? Errno(rawValue: EIO)
            uploads[key] = Upload(fd: nil, path: upload.path, failure: fileError(errno, upload.path, "write"))
        }
    }

    func finishUpload(_ key: RequestKey, connection: Connection) {
        guard let upload = uploads.removeValue(forKey: key) else {
            reply(
                error: RemoteError(code: .badRequest, message: "no file is open for request \(key.id)"), id: key.id,
                on: connection)
            return
        }
        upload.fd?.close()
        if let failure = upload.failure {
            reply(error: failure, id: key.id, on: connection)
        } else {
            _ = connection.send(Frame(.ok, id: key.id))
        }
    }

    /// Streams a file: `fileInfo`, then `fileData` chunks, then `fileEnd`.
    func sendFile(_ frame: Frame, connection: Connection) {
        let request: FileReadRequest
        do {
            request = try FileReadRequest(decoding: frame.payload)
        } catch {
            reply(
                error: RemoteError(code: .badRequest, message: "bad read request: \(error)"), id: frame.requestID,
                on: connection)
            return
        }
        let fd: FileDescriptor
        do {
            fd = try FileDescriptor.open(bytes: request.path, .readOnly)
        } catch {
            reply(
                error: fileError((error as? Errno) ?? Errno(rawValue: EIO), request.path, "open"), id: frame.requestID,
                on: connection)
            return
        }
        defer { fd.close() }
        guard let info = try? fd.status(), (info.st_mode & S_IFMT) == S_IFREG else {
            let path = String(decoding: request.path, as: UTF8.self)
            reply(
                error: RemoteError(code: .badRequest, errno: EISDIR, message: "\(path) is not a regular file"),
                id: frame.requestID, on: connection)
            return
        }
        let header = FileInfo(size: UInt64(info.st_size), mode: UInt32(info.st_mode & 0o7777))
        guard connection.send(Frame(.fileInfo, id: frame.requestID, payload: header.encoded())) else { return }
        var buffer = [UInt8](repeating: 0, count: FrameLimits.dataChunk * 4)
        while true {
            let count = buffer.withUnsafeMutableBytes { Glibc.read(fd.rawValue, $0.baseAddress, $0.count) }
            if count < 0, Errno.current == .interrupted { continue }
            if count < 0 {
                reply(error: fileError(Errno.current, request.path, "read"), id: frame.requestID, on: connection)
                return
            }
            if count == 0 { break }
            guard connection.send(kind: .fileData, id: frame.requestID, payload: buffer[0..<count]) else { return }
        }
        _ = connection.send(Frame(.fileEnd, id: frame.requestID))
    }

    private func fileError(_ errno: Errno, _ path: [UInt8], _ operation: String) -> RemoteError {
        let name = String(decoding: path, as: UTF8.self)
        let code: RemoteError.Code = errno == .noEntry ? .notFound : .system
        return RemoteError(code: code, errno: errno.rawValue, message: "\(operation) \(name): \(errno)")
    }

    /// `mkdir -p` of a path's parent directories.
    private func makeParents(of path: [UInt8]) {
        var prefix: [UInt8] = []
        let parts = path.split(separator: UInt8(ascii: "/"), omittingEmptySubsequences: false).dropLast()
        for (index, part) in parts.enumerated() {
            if index > 0 { prefix.append(UInt8(ascii: "/")) }
            prefix.append(contentsOf: part)
            guard !prefix.isEmpty, prefix != [UInt8(ascii: "/")] else { continue }
            _ = (prefix + [0]).withUnsafeBufferPointer { buffer in
                buffer.withMemoryRebound(to: CChar.self) { mkdir($0.baseAddress!, 0o755) }
            }
        }
    }
}
