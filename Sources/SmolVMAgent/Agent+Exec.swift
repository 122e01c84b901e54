import CSmolVMShims
import Glibc
import SmolVMProtocol
import SmolVMSystem

/// A command the agent started and has not finished reporting.
struct RunningProcess {
    /// Input the command has not read yet, beyond which the agent stops reading requests.
    static let maxPendingStdin = 8 << 20
    /// How long output may keep flowing after the command exits, from
    /// background children that inherited its pipes, before the agent reports the exit.
    static let drainGraceMilliseconds: UInt64 = 250

    var key: RequestKey
    var connection: Connection
    var processGroup: pid_t
    var stdout: FileDescriptor?
    var stderr: FileDescriptor?
    var stdin: FileDescriptor?
    var pendingStdin: [UInt8] = []
    var stdinCloseRequested = false
    var deadline: UInt64?
    var status: ExitStatus?
    var exitedAt: UInt64?
    var timedOut = false
    /// The pseudo-terminal's master side, for commands started with `.terminal`.
    var terminal: FileDescriptor?
    /// The host that started it is gone: nothing is reported, it is only reaped.
    var detached = false

    var nextDeadline: UInt64? {
        if let exitedAt { return exitedAt + Self.drainGraceMilliseconds }
        return deadline
    }
}

extension Agent {
    static let defaultPath = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

    func startCommand(_ frame: Frame, key: RequestKey, connection: Connection) {
        let request: ExecRequest
        do {
            request = try ExecRequest(decoding: frame.payload)
        } catch {
            reply(
                error: RemoteError(code: .badRequest, message: "bad exec request: \(error)"), id: key.id, on: connection
            )
            return
        }
        if processes.values.contains(where: { $0.key == key }) {
            reply(
                error: RemoteError(code: .busy, message: "request id \(key.id) is already running"), id: key.id,
                on: connection)
            return
        }
        let environment = mergedEnvironment(request)
        let workingDirectory = request.workingDirectory.isEmpty ? Array("/root".utf8) : request.workingDirectory
        var info = stat()
        let statResult = (workingDirectory + [0]).withUnsafeBufferPointer { buffer in
            buffer.withMemoryRebound(to: CChar.self) { stat($0.baseAddress!, &info) }
        }
        if statResult != 0 || (info.st_mode & S_IFMT) != S_IFDIR {
            let path = String(decoding: workingDirectory, as: UTF8.self)
            let problem = statResult != 0 ? "does not exist in the sandbox" : "is not a directory"
            reply(
                error: RemoteError(code: .notFound, errno: ENOENT, message: "working directory \(path) \(problem)"),
                id: key.id, on: connection)
            return
        }
        let executable: [UInt8]
        switch resolveExecutable(request.argv[0], environment: environment) {
        case .success(let path):
            executable = path
        case .failure(let error):
            reply(error: error, id: key.id, on: connection)
            return
        }

        if request.options.contains(.terminal) {
            startTerminalCommand(
                request, executable: executable, environment: environment, workingDirectory: workingDirectory, key: key,
                connection: connection)
            return
        }
        var opened: [FileDescriptor] = []
        func closeAll() { for fd in opened { fd.close() } }
        let stdoutPipe: (read: FileDescriptor, write: FileDescriptor)
        let stderrPipe: (read: FileDescriptor, write: FileDescriptor)
        var stdinPipe: (read: FileDescriptor, write: FileDescriptor)?
        let devNull: FileDescriptor?
        do {
            stdoutPipe = try FileDescriptor.pipe()
            opened += [stdoutPipe.read, stdoutPipe.write]
            stderrPipe = try FileDescriptor.pipe()
            opened += [stderrPipe.read, stderrPipe.write]
            if request.options.contains(.stdin) {
                stdinPipe = try FileDescriptor.pipe()
                opened += [stdinPipe!.read, stdinPipe!.write]
                devNull = nil
            } else {
                devNull = try FileDescriptor.open("/dev/null", .readOnly)
                opened.append(devNull!)
            }
        } catch {
            closeAll()
            reply(
                error: RemoteError(code: .system, errno: (error as? Errno)?.rawValue ?? 0, message: "pipe: \(error)"),
                id: key.id, on: connection)
            return
        }
        let pid: pid_t
        do {
            pid = try Spawn.start(
                path: executable, arguments: request.argv, environment: environment,
                fileDescriptors: [stdinPipe?.read ?? devNull, stdoutPipe.write, stderrPipe.write],
                workingDirectory: workingDirectory, options: [.processGroup])
        } catch {
            closeAll()
            let errno = (error as? Errno) ?? Errno(rawValue: EIO)
            let name = String(decoding: request.argv[0], as: UTF8.self)
            let code: RemoteError.Code =
                errno == .noEntry
                ? .notFound : [EACCES, ENOEXEC, EISDIR, ENOTDIR].contains(errno.rawValue) ? .notExecutable : .system
            reply(
                error: RemoteError(code: code, errno: errno.rawValue, message: "cannot run \(name): \(errno)"),
                id: key.id, on: connection)
            return
        }
        stdoutPipe.write.close()
        stderrPipe.write.close()
        stdinPipe?.read.close()
        devNull?.close()
        try? stdoutPipe.read.setNonBlocking()
        try? stderrPipe.read.setNonBlocking()
        try? stdinPipe?.write.setNonBlocking()

        var process = RunningProcess(
            key: key, connection: connection, processGroup: pid,
            stdout: stdoutPipe.read, stderr: stderrPipe.read, stdin: stdinPipe?.write)
        if request.timeoutMilliseconds > 0 {
            process.deadline = monotonicMilliseconds() + request.timeoutMilliseconds
        }
        processes[pid] = process
        outputs[stdoutPipe.read.rawValue] = (pid, .stdout)
        outputs[stderrPipe.read.rawValue] = (pid, .stderr)
        var started = ByteWriter()
        started.u32(UInt32(pid))
        _ = connection.send(Frame(.started, id: key.id, payload: started.bytes))
    }

    /// A command on a new pseudo-terminal: the session leader with the terminal
    /// as its controlling tty, output and input both through the master side.
    private func startTerminalCommand(
        _ request: ExecRequest, executable: [UInt8], environment: [[UInt8]], workingDirectory: [UInt8], key: RequestKey,
        connection: Connection
    ) {
        var master: Int32 = -1
        var slave: Int32 = -1
        let result = smolvm_openpty(&master, &slave, UInt16(request.terminalRows), UInt16(request.terminalColumns))
        guard result == 0 else {
            reply(
                error: RemoteError(code: .system, errno: result, message: "openpty: \(Errno(rawValue: result))"),
                id: key.id, on: connection)
            return
        }
        let masterFD = FileDescriptor(rawValue: master)
        let slaveFD = FileDescriptor(rawValue: slave)
        var environment = environment
        if !environment.contains(where: { $0.starts(with: Array("TERM=".utf8)) }) {
            environment.append(Array("TERM=xterm-256color".utf8))
        }
        let pid: pid_t
        do {
            pid = try Spawn.start(
                path: executable, arguments: request.argv, environment: environment,
                fileDescriptors: [slaveFD, slaveFD, slaveFD], workingDirectory: workingDirectory,
                options: [.newSession, .controllingTerminal])
        } catch {
            masterFD.close()
            slaveFD.close()
            let errno = (error as? Errno) ?? Errno(rawValue: EIO)
            let name = String(decoding: request.argv[0], as: UTF8.self)
            reply(
                error: RemoteError(code: .system, errno: errno.rawValue, message: "cannot run \(name): \(errno)"),
                id: key.id, on: connection)
            return
        }
        slaveFD.close()
        let input = FileDescriptor(rawValue: dup(master))
        try? masterFD.setNonBlocking()
        var process = RunningProcess(
            key: key, connection: connection, processGroup: pid, stdout: masterFD, stderr: nil, stdin: input)
        process.terminal = masterFD
        if request.timeoutMilliseconds > 0 {
            process.deadline = monotonicMilliseconds() + request.timeoutMilliseconds
        }
        processes[pid] = process
        outputs[master] = (pid, .stdout)
        var started = ByteWriter()
        started.u32(UInt32(pid))
        _ = connection.send(Frame(.started, id: key.id, payload: started.bytes))
    }

    func resizeTerminal(_ key: RequestKey, _ payload: [UInt8]) {
        guard let size = try? TerminalSize(decoding: payload), let pid = process(for: key),
            let terminal = processes[pid]?.terminal
        else { return }
        _ = smolvm_set_window_size(terminal.rawValue, UInt16(size.rows), UInt16(size.columns))
    }

    /// The default environment, then the request's entries, later keys replacing earlier ones.
    private func mergedEnvironment(_ request: ExecRequest) -> [[UInt8]] {
        var entries: [[UInt8]] = []
        if !request.options.contains(.clearEnvironment) {
            entries = [
                "PATH=\(Agent.defaultPath)", "HOME=/root", "USER=root", "LOGNAME=root", "SHELL=/bin/sh",
                "LANG=C.UTF-8",
            ].map { Array($0.utf8) }
        }
        for entry in request.environment {
            let name = entry.prefix(while: { $0 != UInt8(ascii: "=") })
            entries.removeAll { $0.prefix(while: { $0 != UInt8(ascii: "=") }) == name }
            entries.append(entry)
        }
        return entries
    }

    /// `execve` needs a path: a bare name is looked up in the command's own `PATH`.
    /// A missing program is `notFound` (a shell's 127); one that exists but
    /// cannot run is `notExecutable` (126).
    private func resolveExecutable(_ name: [UInt8], environment: [[UInt8]]) -> Result<[UInt8], RemoteError> {
        let display = String(decoding: name, as: UTF8.self)
        if name.contains(UInt8(ascii: "/")) {
            var info = stat()
            let found = (name + [0]).withUnsafeBufferPointer { buffer in
                buffer.withMemoryRebound(to: CChar.self) { stat($0.baseAddress!, &info) == 0 }
            }
            guard found else {
                return .failure(
                    RemoteError(
                        code: .notFound, errno: ENOENT, message: "executable not found in the sandbox: \(display)"))
            }
            if (info.st_mode & S_IFMT) == S_IFDIR {
                return .failure(
                    RemoteError(
                        code: .notExecutable, errno: EISDIR, message: "cannot run \(display): it is a directory"))
            }
            let executable = (name + [0]).withUnsafeBufferPointer { buffer in
                buffer.withMemoryRebound(to: CChar.self) { access($0.baseAddress!, X_OK) == 0 }
            }
            if !executable {
                return .failure(
                    RemoteError(
                        code: .notExecutable, errno: EACCES, message: "cannot run \(display): permission denied"))
            }
            return .success(name)
        }
        let pathEntry = environment.last { $0.starts(with: Array("PATH=".utf8)) }
        let searchPath = pathEntry.map { Array($0.dropFirst(5)) } ?? Array(Agent.defaultPath.utf8)
        for directory in searchPath.split(separator: UInt8(ascii: ":"), omittingEmptySubsequences: true) {
            let candidate = Array(directory) + [UInt8(ascii: "/")] + name
            let usable = (candidate + [0]).withUnsafeBufferPointer { buffer in
                buffer.withMemoryRebound(to: CChar.self) { pointer -> Bool in
                    var info = stat()
                    return access(pointer.baseAddress!, X_OK) == 0 && stat(pointer.baseAddress!, &info) == 0
                        && (info.st_mode & S_IFMT) == S_IFREG
                }
            }
            if usable { return .success(candidate) }
        }
        return .failure(
            RemoteError(code: .notFound, errno: ENOENT, message: "executable not found in the sandbox: \(display)"))
    }

    func process(for key: RequestKey) -> pid_t? {
        processes.first(where: { $0.value.key == key && !$0.value.detached })?.key
    }

    func writeStdin(_ key: RequestKey, _ bytes: [UInt8]) {
        guard let pid = process(for: key), processes[pid]?.stdin != nil else { return }
        processes[pid]!.pendingStdin.append(contentsOf: bytes)
        flushStdin(pid)
    }

    func closeStdin(_ key: RequestKey) {
        guard let pid = process(for: key) else { return }
        if processes[pid]!.terminal != nil {
            // A terminal has no end of input; the line discipline turns ^D into one.
            processes[pid]!.pendingStdin.append(4)
            flushStdin(pid)
            return
        }
        processes[pid]!.stdinCloseRequested = true
        flushStdin(pid)
    }

    func flushStdin(_ pid: pid_t) {
        guard var process = processes[pid], let stdin = process.stdin else { return }
        while !process.pendingStdin.isEmpty {
            let written = process.pendingStdin.withUnsafeBytes { Glibc.write(stdin.rawValue, $0.baseAddress, $0.count) }
            if written > 0 {
                process.pendingStdin.removeFirst(written)
                continue
            }
            if written < 0, Errno.current == .interrupted { continue }
            if written < 0, Errno.current == .wouldBlock { break }
            // The command closed its input (EPIPE): what is left can never be delivered.
            process.pendingStdin.removeAll()
            process.stdinCloseRequested = true
        }
        if process.pendingStdin.isEmpty, process.stdinCloseRequested {
            stdin.close()
            process.stdin = nil
        }
        processes[pid] = process
    }

    func signalCommand(_ key: RequestKey, _ payload: [UInt8]) {
        var reader = ByteReader(payload)
        guard let pid = process(for: key), let signal = try? reader.u32("signal"), signal > 0, signal < 65 else {
            return
        }
        Spawn.signalGroup(processes[pid]!.processGroup, Int32(signal))
    }

    func readOutput(_ fd: Int32) {
        guard let (pid, kind) = outputs[fd] else { return }
        let count = Glibc.read(fd, readBuffer.baseAddress, FrameLimits.dataChunk)
        if count < 0, Errno.current == .wouldBlock || Errno.current == .interrupted { return }
        guard count > 0 else {
            closeOutput(fd)
            finishIfDone(pid)
            return
        }
        guard let process = processes[pid] else { return }
        if !process.detached {
            let payload = UnsafeRawBufferPointer(rebasing: readBuffer[0..<count])
            if !process.connection.send(kind: kind, id: process.key.id, bytes: payload) {
                disconnect(process.connection)
            }
        }
    }

    private func closeOutput(_ fd: Int32) {
        guard let (pid, kind) = outputs.removeValue(forKey: fd) else { return }
        FileDescriptor(rawValue: fd).close()
        if kind == .stdout { processes[pid]?.stdout = nil } else { processes[pid]?.stderr = nil }
        if processes[pid]?.terminal?.rawValue == fd { processes[pid]?.terminal = nil }
    }

    /// Reaps every exited child: commands get their status recorded; anything else
    /// is an orphan re-parented to init, reaped so it does not stay a zombie.
    func reapChildren() {
        while let (pid, termination) = Spawn.reapAny() {
            guard processes[pid] != nil else { continue }
            switch termination {
            case .exited(let code): processes[pid]!.status = .exited(code)
            case .signaled(let signal):
                processes[pid]!.status = processes[pid]!.timedOut ? .timedOut : .signaled(signal)
            }
            processes[pid]!.exitedAt = monotonicMilliseconds()
            // Output already in the pipes is still wanted: read what is there now.
            for fd in [processes[pid]!.stdout, processes[pid]!.stderr].compactMap({ $0 }) {
                drainAvailable(fd.rawValue)
            }
            finishIfDone(pid)
        }
    }

    private func drainAvailable(_ fd: Int32) {
        for _ in 0..<1024 {
            guard outputs[fd] != nil else { return }
            let before = outputs.count
            readOutput(fd)
            let events = (try? Poll.wait([(FileDescriptor(rawValue: fd), .readable)], timeoutMilliseconds: 0)) ?? []
            if outputs.count != before || events.first?.contains(.readable) != true { return }
        }
    }

    func checkDeadlines() {
        let now = monotonicMilliseconds()
        for (pid, process) in processes {
            if let exitedAt = process.exitedAt {
                if now >= exitedAt + RunningProcess.drainGraceMilliseconds {
                    // Background children still hold the pipes: report the exit anyway.
                    if let fd = process.stdout?.rawValue { closeOutput(fd) }
                    if let fd = process.stderr?.rawValue { closeOutput(fd) }
                    finishIfDone(pid)
                }
            } else if let deadline = process.deadline, now >= deadline, !process.timedOut {
                processes[pid]!.timedOut = true
                // The whole group, so background children die with the command.
                Spawn.signalGroup(process.processGroup, SIGKILL)
            }
        }
    }

    private func finishIfDone(_ pid: pid_t) {
        guard let process = processes[pid], let status = process.status,
            process.stdout == nil, process.stderr == nil
        else { return }
        if process.timedOut {
            Spawn.signalGroup(process.processGroup, SIGKILL)
        }
        process.stdin?.close()
        processes.removeValue(forKey: pid)
        if !process.detached {
            let final: ExitStatus = process.timedOut ? .timedOut : status
            _ = process.connection.send(Frame(.exit, id: process.key.id, payload: final.encoded()))
        }
    }
}
