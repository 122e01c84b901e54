import Foundation

/// A host TAP device for one sandbox's network interface
/// (`PUT /network-interfaces/eth0`), on a /30 of its own.
///
/// Created with iproute2 (`ip tuntap add`), which needs `CAP_NET_ADMIN`.
/// SmolVM configures the link and addresses; routing the guest further
/// (NAT with iptables or nftables) is left to the host's administrator.
struct TapDevice: Sendable {
    var name: String
    var hostAddress: String
    var guestAddress: String
    var guestMAC: String

    /// Names are at most 15 bytes (`IFNAMSIZ - 1`).
    static func name(for id: String) -> String { "smolvm" + String(id.prefix(9)) }

    static func create(for id: String) async throws -> TapDevice {
        let name = name(for: id)
        // A /30 from 172.16.0.0/12 picked by the id: host .1, guest .2.
        let hash = id.utf8.reduce(UInt32(2_166_136_261)) { ($0 ^ UInt32($1)) &* 16_777_619 }
        let block = hash % (1 << 18)
        let base = (172 << 24) | (16 << 16) | (block << 2)
        func dotted(_ value: UInt32) -> String {
            "\(value >> 24).\((value >> 16) & 255).\((value >> 8) & 255).\(value & 255)"
        }
        let tap = TapDevice(
            name: name, hostAddress: dotted(base + 1), guestAddress: dotted(base + 2),
            guestMAC: String(format: "06:00:%02x:%02x:%02x:%02x", block >> 16 & 255, block >> 8 & 255, block & 255, 2))
        guard let ip = Subprocess.which("ip") else {
            throw SmolVMError(
                .notFound,
                "networking needs a TAP device, and the ip tool was not found. Fix: sudo apt-get install -y iproute2, or create the sandbox without networking"
            )
        }
        do {
            try await Subprocess.check([ip, "tuntap", "add", "dev", name, "mode", "tap"])
            try await Subprocess.check([ip, "addr", "add", "\(tap.hostAddress)/30", "dev", name])
            try await Subprocess.check([ip, "link", "set", name, "up"])
        } catch {
            tap.remove()
            throw SmolVMError(
                .hostUnsupported,
                "cannot create the TAP device \(name) for the sandbox's network (\(error)). Fix: run smolvm as root or with CAP_NET_ADMIN, or create the sandbox without networking",
                underlying: error)
        }
        return tap
    }

    func remove() {
        // Synchronous: it runs while a sandbox is being torn down.
        Subprocess.runQuietly(["ip", "link", "del", name])
    }
}
