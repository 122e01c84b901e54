import Glibc
import SmolVMSystem

/// The benchmark's floor: what the guest side costs with no protocol at all.
///
/// Booted with `SMOLVM_RAW=1`, the binary skips the agent and, on the same
/// virtio-serial port, writes `R\n` as soon as it runs (boot-to-init), then
/// answers line by line: `e` is echoed back (the channel's raw round trip) and
/// `x` fork-execs `/bin/true` and answers when it exits (the cost of a command
/// without the agent); `u` is followed by 64 MiB of data that is read and
/// dropped before `u` is answered (the channel's raw throughput). `smolvm
/// bench` divides SmolVM's numbers by these.
enum RawFloor {
    static let uploadFloorBytes = 64 << 20

    static func run() -> Never {
        _ = mount("sysfs", "/sys", "sysfs", 0, nil)
        let agent = Agent()
        guard let path = agent.findSerialPort(), let port = try? FileDescriptor.open(path, .readWrite) else {
            Log.info("raw mode: no serial port")
            _ = pause()
            exit(1)
        }
        try? port.writeAll("R\n")
        var buffer = [UInt8](repeating: 0, count: 4096)
        let devNull = try? FileDescriptor.open("/dev/null", .readWrite)
        let bulk = UnsafeMutableRawBufferPointer.allocate(byteCount: 256 << 10, alignment: 16)
        while true {
            let count = (try? buffer.withUnsafeMutableBytes { try port.read(into: $0) }) ?? 0
            if count <= 0 {
                usleep(10_000)
                continue
            }
            for byte in buffer[0..<count] {
                switch byte {
                case UInt8(ascii: "e"):
                    try? port.writeAll("e\n")
                case UInt8(ascii: "x"):
                    if let pid = try? Spawn.start(
                        path: "/bin/true", arguments: ["true"], environment: [],
                        fileDescriptors: [devNull, devNull, devNull],
                        options: [.forceFork])
                    {
                        _ = try? Spawn.wait(pid)
                    }
                    try? port.writeAll("x\n")
                case UInt8(ascii: "u"):
                    // Anything after `u` in this read is already part of the payload.
                    var received = count - 1 - (buffer[0..<count].firstIndex(of: UInt8(ascii: "u")) ?? 0)
                    while received < uploadFloorBytes {
                        received += (try? port.read(into: bulk)) ?? 0
                    }
                    try? port.writeAll("u\n")
                default:
                    break
                }
            }
        }
    }
}
