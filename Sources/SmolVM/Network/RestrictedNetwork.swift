import Foundation

/// `--internet restricted`: the guest's card is a host TAP device, and an
/// nftables table of the sandbox's own lets through only the allowed IPv4
/// ranges (NAT behind the host's address), so nothing the guest does can widen it.
///
/// Host side, per sandbox: the TAP device (`ip tuntap add`), the table
/// `inet smolvm_<id>` (`nft -f`), and IPv4 forwarding switched on (the
/// kernel forwards nothing otherwise; the table drops every other forwarded
/// packet of the sandbox). Needs root or `CAP_NET_ADMIN`, `ip` and `nft`.
struct RestrictedNetwork: Sendable {
    let tap: TapDevice
    let allow: [IPv4Range]
    /// The host's resolver, given to the guest; it answers only when an allowed range holds it.
    let resolver: String?

    static func tableName(for id: String) -> String { "smolvm_" + String(id.prefix(12)) }

    /// Fails, naming what is missing and how to get it, before anything is created.
    static func checkHost() throws -> (ip: String, nft: String) {
        guard geteuid() == 0 else {
            throw SmolVMError(
                .hostUnsupported,
                "--internet restricted filters the guest's traffic on the host with a TAP device and nftables, which needs root (or CAP_NET_ADMIN). Fix: run smolvm as root, or use --internet off or on"
            )
        }
        guard let ip = Subprocess.which("ip") else {
            throw SmolVMError(
                .hostUnsupported,
                "--internet restricted needs the ip tool. Fix: sudo apt-get install -y iproute2")
        }
        guard let nft = Subprocess.which("nft") else {
            throw SmolVMError(
                .hostUnsupported,
                "--internet restricted needs nftables to enforce the allowed ranges. Fix: sudo apt-get install -y nftables (or run smolvm setup)"
            )
        }
        guard FileManager.default.fileExists(atPath: "/dev/net/tun") else {
            throw SmolVMError(
                .hostUnsupported,
                "--internet restricted needs /dev/net/tun for the guest's TAP device. Fix: sudo modprobe tun")
        }
        return (ip, nft)
    }

    /// Creates the TAP device and the filter for sandbox `id`. Anything made
    /// before a failure is removed again.
    static func create(for id: String, allow: [IPv4Range], directory: URL) async throws -> RestrictedNetwork {
        let tools = try checkHost()
        remove(for: id)
        let tap = try await TapDevice.create(for: id)
        let network = RestrictedNetwork(tap: tap, allow: allow, resolver: hostResolver())
        do {
            let rules = directory.appendingPathComponent("nftables.conf")
            try Data(network.ruleset(table: tableName(for: id)).utf8).write(to: rules)
            try await Subprocess.check([tools.nft, "-f", rules.path])
            try await enableForwarding()
        } catch {
            remove(for: id)
            throw SmolVMError(
                .hostUnsupported,
                "cannot set up the restricted network for the sandbox (\(error)). Fix: check that nftables works here (nft list tables), or use --internet off or on",
                underlying: error)
        }
        return network
    }

    /// Removes sandbox `id`'s table and TAP device if they exist. Synchronous
    /// and best effort: it runs while sandboxes are torn down, and after crashes.
    static func remove(for id: String) {
        Subprocess.runQuietly(["nft", "delete", "table", "inet", tableName(for: id)])
        Subprocess.runQuietly(["ip", "link", "del", TapDevice.name(for: id)])
    }

    /// Whether sandbox `id` has a TAP device on this host (a leftover to clean up, or in use).
    static func exists(for id: String) -> Bool {
        FileManager.default.fileExists(atPath: "/sys/class/net/\(TapDevice.name(for: id))")
    }

    /// The table: forwarded traffic from the TAP device may reach only the
    /// allowed ranges (replies come back through connection tracking); the
    /// host itself is closed to the guest; what leaves is masqueraded.
    func ruleset(table: String) -> String {
        let allowed = allow.map(\.description).joined(separator: ", ")
        return """
            table inet \(table) {
                chain forward {
                    type filter hook forward priority -10; policy accept;
                    iifname "\(tap.name)" ip daddr { \(allowed) } accept
                    iifname "\(tap.name)" drop
                    oifname "\(tap.name)" ct state established,related accept
                    oifname "\(tap.name)" drop
                }
                chain input {
                    type filter hook input priority -10; policy accept;
                    iifname "\(tap.name)" ct state established,related accept
                    iifname "\(tap.name)" drop
                }
                chain postrouting {
                    type nat hook postrouting priority 100; policy accept;
                    ip saddr \(tap.guestAddress) oifname != "\(tap.name)" masquerade
                }
            }

            """
    }

    /// Kernel parameters the agent reads to configure the guest's card.
    var kernelArguments: [String] {
        var arguments = ["smolvm.ip=\(tap.guestAddress)/30", "smolvm.gw=\(tap.hostAddress)"]
        if let resolver { arguments.append("smolvm.dns=\(resolver)") }
        return arguments
    }

    /// The first IPv4 nameserver the host uses; loopback resolvers cannot serve the guest.
    static func hostResolver() -> String? {
        guard let text = try? String(contentsOfFile: "/etc/resolv.conf", encoding: .utf8) else { return nil }
        for line in text.split(separator: "\n") {
            let words = line.split(separator: " ", omittingEmptySubsequences: true)
            guard words.count >= 2, words[0] == "nameserver", let address = IPv4Range.parseAddress(String(words[1]))
            else { continue }
            if address >> 24 != 127 { return String(words[1]) }
        }
        return nil
    }

    /// Writes `1` to `/proc/sys/net/ipv4/ip_forward` unless it is already on.
    private static func enableForwarding() async throws {
        let path = "/proc/sys/net/ipv4/ip_forward"
        if (try? String(contentsOfFile: path, encoding: .utf8))?.hasPrefix("1") == true { return }
        try Data("1\n".utf8).write(to: URL(fileURLWithPath: path))
    }
}
