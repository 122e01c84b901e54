import CSmolVMShims
import Glibc
import SmolVMProtocol
import SmolVMSystem

extension Agent {
    /// Makes a guest restored from a snapshot its own machine. Failures are
    /// reported to the host: a sandbox sharing another's random state must not
    /// look healthy.
    func applyIdentity(_ frame: Frame, connection: Connection) {
        let update: IdentityUpdate
        do {
            update = try IdentityUpdate(decoding: frame.payload)
        } catch {
            reply(
                error: RemoteError(code: .badRequest, message: "identity: \(error)"), id: frame.requestID,
                on: connection)
            return
        }
        var failures: [String] = []
        // The clock first: everything after it, logs included, should carry the right time.
        let seconds = Int64(update.realtimeNanoseconds / 1_000_000_000)
        let nanoseconds = Int64(update.realtimeNanoseconds % 1_000_000_000)
        if update.realtimeNanoseconds > 0, case let result = smolvm_set_realtime(seconds, nanoseconds), result != 0 {
            failures.append("clock: \(Errno(rawValue: result))")
        }
        if !update.seed.isEmpty {
            let result = update.seed.withUnsafeBufferPointer {
                smolvm_add_entropy($0.baseAddress, Int32($0.count))
            }
            if result != 0 { failures.append("random seed: \(Errno(rawValue: result))") }
        }
        if !setHostname(update.hostname) {
            failures.append("hostname: \(Errno.current)")
        }
        if update.macAddress.count == 6, access("/sys/class/net/eth0", F_OK) == 0 {
            var wentDown: Int32 = 0
            let result = update.macAddress.withUnsafeBufferPointer {
                smolvm_set_mac_address("eth0", $0.baseAddress, &wentDown)
            }
            if result != 0 {
                failures.append("MAC address: \(Errno(rawValue: result))")
            }
            if wentDown != 0 {
                let commandLine = KernelCommandLine.current()
                if let address = commandLine["ip"] {
                    configureNetwork(address: address, gateway: commandLine["gw"], dns: commandLine["dns"])
                }
            }
        }
        if failures.isEmpty {
            _ = connection.send(Frame(.ok, id: frame.requestID))
        } else {
            reply(
                error: RemoteError(code: .system, message: "identity: " + failures.joined(separator: "; ")),
                id: frame.requestID, on: connection)
        }
    }
}
