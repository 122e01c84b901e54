import Foundation
import Testing

@testable import SmolVM

/// Commands in a real VM: exit codes, signals, stream separation, exact bytes.
@Suite("Exec in a real VM", .serialized)
struct ExecTests {
    @Test("exit codes and signals are reported exactly")
    func exitCodesAndSignals() async throws {
        try await Sandbox.withSandbox(VMTest.configuration()) { sandbox in
            for code: Int32 in [0, 1, 7, 42, 255] {
                let result = try await sandbox.run(.shell("exit \(code)"))
                #expect(result.status == .exited(code))
            }
            let killed = try await sandbox.run(.shell("kill -9 $$"))
            #expect(killed.status == .signaled(9))
            #expect(killed.exitCode == 137)
            let terminated = try await sandbox.run(.shell("kill -TERM $$"))
            #expect(terminated.status == .signaled(15))
        }
    }

    @Test("stdout and stderr stay separate and in order")
    func streamsSeparated() async throws {
        try await Sandbox.withSandbox(VMTest.configuration()) { sandbox in
            let result = try await sandbox.run(
                .shell("for i in 1 2 3 4 5; do echo out$i; echo err$i >&2; done; exit 3"))
            #expect(result.stdoutText == "out1\nout2\nout3\nout4\nout5\n")
            #expect(result.stderrText == "err1\nerr2\nerr3\nerr4\nerr5\n")
            #expect(result.exitCode == 3)
        }
    }

    @Test("binary and non-UTF-8 output is byte-exact, and a character split across chunks survives")
    func binaryOutput() async throws {
        try await Sandbox.withSandbox(VMTest.configuration()) { sandbox in
            // Every byte value, twice.
            let all = try await sandbox.run(
                .shell(
                    "i=0; while [ $i -lt 256 ]; do printf \"\\\\$(printf %o $i)\"; i=$((i+1)); done; printf '\\377\\376\\000'"
                ))
            var expected = (0...255).map { UInt8($0) }
            expected += [0xff, 0xfe, 0x00]
            #expect(all.stdout == expected)

            // 65535 ASCII bytes then "é" (2 bytes) and "€" (3 bytes): the
            // multibyte characters straddle the agent's 64 KiB chunk boundary.
            let split = try await sandbox.run(
                .shell("head -c 65535 /dev/zero | tr '\\0' a; printf '\\303\\251\\342\\202\\254'"))
            #expect(split.stdout.count == 65535 + 5)
            #expect(split.stdout.suffix(5) == [0xc3, 0xa9, 0xe2, 0x82, 0xac])
            #expect(split.stdoutText.hasSuffix("é€"))
            #expect(split.stdoutText.count == 65535 + 2)

            // Invalid UTF-8 stays as bytes; the text view replaces it instead of failing.
            let invalid = try await sandbox.run(.shell("printf 'ok\\200\\377end'"))
            #expect(invalid.stdout == Array("ok".utf8) + [0x80, 0xff] + Array("end".utf8))
            #expect(invalid.stdoutText == "ok\u{FFFD}\u{FFFD}end")
        }
    }

    @Test("environment values reach execve untouched")
    func environmentValues() async throws {
        let values = [
            "EQUALS": "a=b=c", "QUOTES": "it's \"quoted\"", "SUBST": "$(echo pwned) `id` ${HOME}",
            "NEWLINES": "line1\nline2\n", "EMPTY": "", "SPACES": "  padded  ", "UNICODE": "héllo wörld ✓",
        ]
        try await Sandbox.withSandbox(VMTest.configuration()) { sandbox in
            // cat's own /proc/self/environ is exactly the environment execve gave it.
            let result = try await sandbox.run(Command(["cat", "/proc/self/environ"], environment: values))
            #expect(result.exitCode == 0)
            let entries = result.stdout.split(separator: 0, omittingEmptySubsequences: true).map { Array($0) }
            for (key, value) in values {
                #expect(entries.contains(Array("\(key)=\(value)".utf8)), "value of \(key)")
            }
            #expect(entries.contains(Array("PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin".utf8)))
            // Arguments too: no shell re-parses them.
            let argv = try await sandbox.run(Command(["printf", "%s|", "$(id)", "a b", "*", "'\"", ""]))
            #expect(argv.stdoutText == "$(id)|a b|*|'\"||")
        }
    }

    @Test("a timeout kills the command and its background children")
    func timeoutKillsGroup() async throws {
        try await Sandbox.withSandbox(VMTest.configuration()) { sandbox in
            let command = Command.shell("sleep 300 & echo $! > /tmp/bg; sleep 300", timeout: .seconds(2))
            await #expect(throws: SmolVMError.self) {
                _ = try await sandbox.run(command)
            }
            do {
                _ = try await sandbox.run(command)
            } catch let error as SmolVMError {
                #expect(error.code == .timeout)
            }
            let background = try await sandbox.run(.shell("cat /tmp/bg"))
            let pid = background.stdoutText.trimmingCharacters(in: .whitespacesAndNewlines)
            #expect(!pid.isEmpty)
            let alive = try await sandbox.run(.shell("kill -0 \(pid) 2>/dev/null && echo alive || echo gone"))
            #expect(alive.stdoutText == "gone\n")
            // The sandbox is still usable afterwards.
            #expect(try await sandbox.run(["true"]).exitCode == 0)
        }
    }

    @Test("standard input reaches the command")
    func standardInput() async throws {
        try await Sandbox.withSandbox(VMTest.configuration()) { sandbox in
            var payload = [UInt8]()
            for index in 0..<300_000 { payload.append(UInt8(truncatingIfNeeded: index &* 31)) }
            let result = try await sandbox.run(
                Command(
                    ["sh", "-c", "cat > /tmp/in; wc -c < /tmp/in; md5sum < /tmp/in"], standardInput: .bytes(payload)))
            let lines = result.stdoutText.split(separator: "\n")
            #expect(lines.first.map { $0.trimmingCharacters(in: .whitespaces) } == "300000")

            let streamed = try await sandbox.exec(Command(["cat"], standardInput: .stream))
            try await streamed.write(Array("first\n".utf8))
            try await streamed.write(Array("second\n".utf8))
            try await streamed.closeInput()
            let output = try await streamed.result()
            #expect(output.stdoutText == "first\nsecond\n")
        }
    }

    @Test("many commands run at once over one channel")
    func concurrentCommands() async throws {
        try await Sandbox.withSandbox(VMTest.configuration()) { sandbox in
            let results = try await withThrowingTaskGroup(of: (Int, ExecResult).self) { group in
                for index in 0..<12 {
                    group.addTask {
                        (
                            index,
                            try await sandbox.run(
                                .shell(
                                    "sleep 0.$((\(index) % 3)); echo start\(index); echo err\(index) >&2; exit \(index)"
                                ))
                        )
                    }
                }
                var collected: [Int: ExecResult] = [:]
                for try await (index, result) in group { collected[index] = result }
                return collected
            }
            #expect(results.count == 12)
            for (index, result) in results {
                #expect(result.stdoutText == "start\(index)\n")
                #expect(result.stderrText == "err\(index)\n")
                #expect(result.exitCode == Int32(index))
            }
        }
    }

    @Test("missing programs, bad directories and bad arguments are clear errors")
    func badCommands() async throws {
        try await Sandbox.withSandbox(VMTest.configuration()) { sandbox in
            do {
                _ = try await sandbox.run(["no-such-program"])
                Issue.record("expected an error")
            } catch let error as SmolVMError {
                #expect(error.code == .commandNotFound)
                #expect(error.message.contains("no-such-program"))
            }
            do {
                _ = try await sandbox.run(Command(["pwd"], workingDirectory: "/does/not/exist"))
                Issue.record("expected an error")
            } catch let error as SmolVMError {
                #expect(error.message.contains("/does/not/exist"))
            }
            let pwd = try await sandbox.run(Command(["pwd"], workingDirectory: "/tmp"))
            #expect(pwd.stdoutText == "/tmp\n")
            await #expect(throws: SmolVMError.self) { _ = try await sandbox.run(Command([])) }
            await #expect(throws: SmolVMError.self) { _ = try await sandbox.run(Command(["echo", "nul\u{0}byte"])) }
            await #expect(throws: SmolVMError.self) {
                _ = try await sandbox.run(Command(["true"], environment: ["BAD=NAME": "x"]))
            }
            // The sandbox survives all of that.
            #expect(try await sandbox.run(["true"]).exitCode == 0)
        }
    }
}
