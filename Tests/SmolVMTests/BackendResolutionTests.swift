import Foundation
import Testing

@testable import SmolVM

/// A host described in a test: no real /dev/kvm, /proc/cpuinfo or PATH is read.
struct FakeHost {
    var os = "linux"
    var architecture = "x86_64"
    var environment: [String: String] = ["HOME": "/nonexistent-home"]
    var files: Set<String> = []
    var openable: Set<String> = []
    var texts: [String: String] = [:]
    var binaries: [String: String] = [:]
    var probes: [String: ProbeResult] = [:]
    var hangingProbes: Set<String> = []

    static let vmxCPU = "processor\t: 0\nflags\t\t: fpu vme de pse tsc msr pae mce cx8 apic vmx sse sse2\n"
    static let plainCPU = "processor\t: 0\nflags\t\t: fpu vme de pse tsc msr pae mce cx8 apic sse sse2\n"

    /// A Linux host with usable KVM, QEMU installed and Firecracker on PATH.
    static var kvmHost: FakeHost {
        var host = FakeHost()
        host.files = ["/dev/kvm", "/usr/bin/qemu-system-x86_64"]
        host.openable = ["/dev/kvm"]
        host.texts["/proc/cpuinfo"] = vmxCPU
        host.binaries = ["qemu-system-x86_64": "/usr/bin/qemu-system-x86_64", "qemu-img": "/usr/bin/qemu-img"]
        return host
    }

    var facts: HostFacts {
        let files = files
        let openable = openable
        let texts = texts
        let binaries = binaries
        let probes = probes
        let hanging = hangingProbes
        return HostFacts(
            operatingSystem: os, architecture: architecture, environment: environment,
            fileExists: { files.contains($0) }, canOpenReadWrite: { openable.contains($0) },
            readText: { texts[$0] }, which: { binaries[$0] },
            probe: { arguments, timeout in
                if hanging.contains(arguments[0]) {
                    try? await Task.sleep(for: timeout)
                    return nil
                }
                return probes[arguments[0]]
            },
            freeBytes: { _ in 50 << 30 }, isWritableDirectory: { _ in true })
    }
}

@Suite("Accelerator detection")
struct AcceleratorDetectionTests {
    @Test("no /dev/kvm")
    func missing() throws {
        var host = FakeHost.kvmHost
        host.files.remove("/dev/kvm")
        #expect(KVMState.detect(host.facts) == .missing)
        #expect(try AcceleratorChoice.resolve(host.facts).accelerator == .tcg)
    }

    @Test("/dev/kvm present but not openable names the kvm group")
    func notAccessible() {
        var host = FakeHost.kvmHost
        host.openable = []
        let state = KVMState.detect(host.facts)
        #expect(state == .notAccessible)
        #expect(state.fix?.contains("kvm group") == true)
    }

    @Test("PVM-backed KVM is not hardware virtualization")
    func pvm() throws {
        var host = FakeHost.kvmHost
        host.files.insert("/sys/module/kvm_pvm")
        guard case .noHardwareVirtualization(let reason) = KVMState.detect(host.facts) else {
            Issue.record("expected noHardwareVirtualization")
            return
        }
        #expect(reason.contains("PVM"))
        #expect(try AcceleratorChoice.resolve(host.facts).accelerator == .tcg)
    }

    @Test("a CPU without vmx or svm is not hardware virtualization")
    func noVMX() {
        var host = FakeHost.kvmHost
        host.texts["/proc/cpuinfo"] = FakeHost.plainCPU
        #expect(KVMState.detect(host.facts) == .noHardwareVirtualization(reason: "the CPU reports neither vmx nor svm"))
    }

    @Test("usable KVM is chosen")
    func usable() throws {
        #expect(KVMState.detect(FakeHost.kvmHost.facts) == .usable)
        #expect(try AcceleratorChoice.resolve(FakeHost.kvmHost.facts).accelerator == .kvm)
    }

    @Test("SMOLVM_ACCEL overrides, and an override that cannot work fails clearly")
    func override() throws {
        var host = FakeHost.kvmHost
        host.environment["SMOLVM_ACCEL"] = " TCG "
        let choice = try AcceleratorChoice.resolve(host.facts)
        #expect(choice.accelerator == .tcg)
        #expect(choice.overridden)

        host.environment["SMOLVM_ACCEL"] = "warp"
        #expect(throws: SmolVMError.self) { try AcceleratorChoice.resolve(host.facts) }

        host.environment["SMOLVM_ACCEL"] = "hvf"
        #expect(throws: SmolVMError.self) { try AcceleratorChoice.resolve(host.facts) }

        host.environment["SMOLVM_ACCEL"] = "kvm"
        host.files.remove("/dev/kvm")
        do {
            _ = try AcceleratorChoice.resolve(host.facts)
            Issue.record("expected an error")
        } catch let error as SmolVMError {
            #expect(error.message.contains("/dev/kvm does not exist"))
        }
    }

    @Test("macOS uses HVF")
    func macOS() throws {
        var host = FakeHost()
        host.os = "macos"
        host.architecture = "aarch64"
        #expect(try AcceleratorChoice.resolve(host.facts).accelerator == .hvf)
    }

    @Test("this machine's detection is consistent with its /dev/kvm")
    func realHost() throws {
        let state = KVMState.detect(.current)
        let choice = try AcceleratorChoice.resolve(.current)
        if ProcessInfo.processInfo.environment["SMOLVM_ACCEL"] == nil {
            #expect((choice.accelerator == .kvm) == state.isUsable)
        }
    }
}

@Suite("Backend resolution")
struct BackendResolutionTests {
    @Test("names are parsed forgiving case and spaces, and unknown names list the accepted values")
    func parsing() throws {
        #expect(try BackendPreference(parsing: " QEMU ") == .qemu)
        #expect(try BackendPreference(parsing: "Firecracker\n") == .firecracker)
        #expect(try BackendPreference(parsing: "auto") == .auto)
        do {
            _ = try BackendPreference(parsing: "bogus")
            Issue.record("expected an error")
        } catch let error as SmolVMError {
            #expect(error.message == "Unsupported backend 'bogus'. Supported values: auto, firecracker, qemu")
        }
        #expect(throws: SmolVMError.self) { try BackendPreference(parsing: "") }
    }

    @Test("the argument beats the environment, which beats the default")
    func precedence() throws {
        var host = FakeHost.kvmHost
        host.environment["SMOLVM_BACKEND"] = "qemu"
        let fromEnvironment = try BackendResolution.resolve(explicit: nil, host: host.facts)
        #expect(fromEnvironment.backend == .qemu)
        #expect(fromEnvironment.source == .environment)

        let fromArgument = try BackendResolution.resolve(explicit: .qemu, host: host.facts)
        #expect(fromArgument.source == .argument)

        host.environment["SMOLVM_BACKEND"] = "bogus"
        #expect(throws: SmolVMError.self) { try BackendResolution.resolve(explicit: nil, host: host.facts) }
        // An explicit argument wins even over a broken environment value.
        #expect(try BackendResolution.resolve(explicit: .qemu, host: host.facts).backend == .qemu)

        host.environment.removeValue(forKey: "SMOLVM_BACKEND")
        let byDefault = try BackendResolution.resolve(explicit: nil, host: host.facts)
        #expect(byDefault.source == .platformDefault)
        #expect(byDefault.requested == .auto)
    }

    @Test("auto falls back to QEMU and says why")
    func autoFallback() throws {
        var host = FakeHost.kvmHost
        host.files.insert("/sys/module/kvm_pvm")
        let resolution = try BackendResolution.resolve(explicit: nil, host: host.facts)
        #expect(resolution.backend == .qemu)
        #expect(resolution.reason.contains("Firecracker is not usable"))
        #expect(resolution.reason.contains("PVM"))
        #expect(resolution.reason.contains("tcg"))
    }

    @Test("an explicitly named backend never falls back")
    func explicitNeverFallsBack() throws {
        for variant in ["missing", "notAccessible", "pvm", "noBinary"] {
            var host = FakeHost.kvmHost
            switch variant {
            case "missing": host.files.remove("/dev/kvm")
            case "notAccessible": host.openable = []
            case "pvm": host.files.insert("/sys/module/kvm_pvm")
            default: break
            }
            do {
                _ = try BackendResolution.resolve(explicit: .firecracker, host: host.facts)
                Issue.record("\(variant): expected Firecracker to be refused")
            } catch let error as SmolVMError {
                #expect(error.code == .hostUnsupported, "\(variant)")
                #expect(error.message.contains("Firecracker cannot run on this host"), "\(variant)")
            }
        }
        var noQEMU = FakeHost.kvmHost
        noQEMU.binaries = [:]
        do {
            _ = try BackendResolution.resolve(explicit: .qemu, host: noQEMU.facts)
            Issue.record("expected QEMU to be refused")
        } catch let error as SmolVMError {
            #expect(error.message.contains("apt-get install"))
        }
    }

    @Test("with nothing usable, the error lists what each backend lacks")
    func nothingUsable() {
        var host = FakeHost()
        host.files = []
        do {
            _ = try BackendResolution.resolve(explicit: nil, host: host.facts)
            Issue.record("expected an error")
        } catch let error as SmolVMError {
            #expect(error.message.contains("firecracker:"))
            #expect(error.message.contains("qemu:"))
        } catch {
            Issue.record("unexpected \(error)")
        }
    }
}

@Suite("Doctor")
struct DoctorTests {
    func paths() -> SmolVMPaths { SmolVMPaths(home: URL(fileURLWithPath: "/tmp/smolvm-doctor-\(UUID().uuidString)")) }

    @Test("reports every check, resolves auto, and fails on missing artifacts")
    func report() async throws {
        var host = FakeHost.kvmHost
        host.files.insert("/sys/module/kvm_pvm")
        host.probes["/usr/bin/qemu-system-x86_64"] = ProbeResult(
            status: 0, output: "QEMU emulator version 7.2.22 (Debian)\n")
        host.probes["/usr/bin/qemu-img"] = ProbeResult(status: 0, output: "qemu-img version 7.2.22\n")
        let report = try await Doctor.run(explicit: nil, host: host.facts, paths: paths())
        let names = report.checks.map(\.name)
        for expected in [
            "platform", "kvm", "accelerator", "qemu", "qemu-img", "firecracker", "kernel", "image debian",
            "image minimal", "home", "stale runtime files", "backend",
        ] {
            #expect(names.contains(expected), "\(expected)")
        }
        #expect(report.resolved == "qemu")
        #expect(report.accelerator == "tcg")
        #expect(report.requested == "auto")
        #expect(report.source == "default")
        #expect(report.checks.first { $0.name == "kernel" }?.status == .fail)
        #expect(report.exitStatus(strict: false) == 1)
    }

    @Test("old versions and hanging binaries fail without hanging doctor")
    func versions() async throws {
        var host = FakeHost.kvmHost
        host.probes["/usr/bin/qemu-system-x86_64"] = ProbeResult(status: 0, output: "QEMU emulator version 5.0.0\n")
        host.hangingProbes = ["/usr/bin/qemu-img"]
        host.binaries["firecracker"] = "/usr/local/bin/firecracker"
        host.probes["/usr/local/bin/firecracker"] = ProbeResult(
            status: 0, output: "Firecracker v1.7.0\n\nSupported snapshot data format versions: v1.0.0\n")
        let report = try await Doctor.run(explicit: nil, host: host.facts, paths: paths())
        let qemu = try #require(report.checks.first { $0.name == "qemu" })
        #expect(qemu.status == .fail)
        #expect(qemu.detail.contains("older than"))
        let qemuImg = try #require(report.checks.first { $0.name == "qemu-img" })
        #expect(qemuImg.status == .fail)
        #expect(qemuImg.detail.contains("did not answer"))
        let firecracker = try #require(report.checks.first { $0.name == "firecracker" })
        #expect(firecracker.status == .ok)
        #expect(firecracker.detail.contains("1.7.0"))
    }

    @Test("a bad SMOLVM_BACKEND fails at once")
    func badEnvironment() async {
        var host = FakeHost.kvmHost
        host.environment["SMOLVM_BACKEND"] = "bogus"
        await #expect(throws: SmolVMError.self) {
            _ = try await Doctor.run(explicit: nil, host: host.facts, paths: paths())
        }
    }

    @Test("version parsing")
    func versionParsing() {
        #expect(Version.first(in: "QEMU emulator version 7.2.22 (Debian 1:7.2+dfsg-7)") == Version(7, 2, 22))
        #expect(Version.first(in: "Firecracker v1.10.1") == Version(1, 10, 1))
        #expect(Version.first(in: "no version here") == nil)
        #expect(Version(1, 10, 0) > Version(1, 9, 9))
        #expect(Version(6, 2, 0) < Version(7, 2, 22))
    }

    @Test("smolvm doctor --json on this machine has the documented shape")
    func endToEnd() async throws {
        let result = try await VMTest.cli(["doctor", "--json"])
        let object = try #require(try JSONSerialization.jsonObject(with: Data(result.stdout)) as? [String: Any])
        #expect(object.keys.sorted() == ["data", "error", "ok"])
        let data = try #require(object["data"] as? [String: Any])
        for key in ["requested", "source", "resolved", "reason", "accelerator", "checks", "summary"] {
            #expect(data[key] != nil, "\(key)")
        }
        let checks = try #require(data["checks"] as? [[String: Any]])
        #expect(!checks.isEmpty)
        for check in checks {
            #expect(Set(check.keys) == ["name", "status", "detail", "fix"])
            #expect(["ok", "warn", "fail"].contains(check["status"] as? String ?? ""))
        }
        let summary = try #require(data["summary"] as? [String: Int])
        #expect(summary["ok"]! + summary["warn"]! + summary["fail"]! == checks.count)
        // On a host without hardware virtualization, auto resolves to QEMU with TCG and says why.
        if !KVMState.detect(.current).isUsable {
            #expect(data["resolved"] as? String == "qemu")
            #expect(data["accelerator"] as? String == "tcg")
            #expect((data["reason"] as? String ?? "").contains("/dev/kvm"))
        }
        #expect(result.status == ((object["ok"] as? Bool) == true ? 0 : 1))

        let bogus = try await VMTest.cli(["doctor"], environment: ["SMOLVM_BACKEND": "bogus"])
        #expect(bogus.status != 0)
        #expect(
            String(decoding: bogus.stderr, as: UTF8.self).contains(
                "Unsupported backend 'bogus'. Supported values: auto, firecracker, qemu"))
    }
}
