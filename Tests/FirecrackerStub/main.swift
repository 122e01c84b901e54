// A stand-in for the `firecracker` binary, for tests on hosts where
// Firecracker cannot run. It serves the REST API on `--api-sock`, checks
// every request against firecracker.yaml (paths, methods, body schemas,
// pre-boot-only and post-boot-only calls, snapshot rules), answers like
// Firecracker (204, or 400 with a `fault_message`), and on InstanceStart
// boots the described guest under QEMU, serving the hybrid vsock socket by
// forwarding each `CONNECT` to the agent's virtio-serial port.
import Foundation
import SmolVMSystem

let arguments = CommandLine.arguments
if arguments.contains("--version") {
    print("Firecracker v1.7.0 (smolvm test stub)")
    exit(0)
}
guard let socketIndex = arguments.firstIndex(of: "--api-sock"), socketIndex + 1 < arguments.count else {
    stubLog("usage: FirecrackerStub --api-sock PATH")
    exit(2)
}
signal(SIGPIPE, SIG_IGN)
let specPath =
    ProcessInfo.processInfo.environment["FIRECRACKER_STUB_SPEC"]
    ?? URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent("firecracker.yaml").path
guard let specText = try? String(contentsOfFile: specPath, encoding: .utf8) else {
    stubLog("cannot read the API spec at \(specPath)")
    exit(2)
}
let server = StubServer(spec: FirecrackerSpec(yaml: specText))
do {
    try server.serve(socketPath: arguments[socketIndex + 1])
} catch {
    stubLog("\(error)")
    exit(1)
}
