// swift-tools-version: 6.0
import PackageDescription

let package = Package(
    name: "SmolVM",
    platforms: [.macOS(.v15)],
    products: [
        .library(name: "SmolVM", targets: ["SmolVM"]),
        .library(name: "SmolVMProtocol", targets: ["SmolVMProtocol"]),
        .executable(name: "smolvm", targets: ["SmolVMCLI"]),
        .executable(name: "smolvm-agent", targets: ["SmolVMAgent"]),
    ],
    targets: [
        // The wire protocol shared by host and guest. Imports nothing but the standard library.
        .target(name: "SmolVMProtocol"),
        // C shims for the few calls Swift cannot make directly (fork/exec with a parent-death signal).
        .target(name: "CSmolVMShims"),
        // SQLite from Debian's libsqlite3-dev, for the sandbox state store.
        .systemLibrary(name: "CSQLite", pkgConfig: "sqlite3", providers: [.apt(["libsqlite3-dev"])]),
        // Typed wrappers over the syscalls both sides use. Imports Glibc, never Foundation.
        .target(name: "SmolVMSystem", dependencies: ["CSmolVMShims"]),
        // The guest agent: PID 1 of every sandbox, linked as a static executable.
        .executableTarget(
            name: "SmolVMAgent",
            dependencies: ["SmolVMProtocol", "SmolVMSystem"],
            linkerSettings: [.unsafeFlags(["-static-executable"], .when(platforms: [.linux]))]
        ),
        // The host library: sandboxes, backends, images, host checks.
        .target(name: "SmolVM", dependencies: ["SmolVMProtocol", "SmolVMSystem", "CSQLite"]),
        // The `smolvm` command-line tool, a thin layer over the library.
        .executableTarget(name: "SmolVMCLI", dependencies: ["SmolVM"]),
        .testTarget(name: "SmolVMProtocolTests", dependencies: ["SmolVMProtocol"]),
        .testTarget(name: "SmolVMTests", dependencies: ["SmolVM", "SmolVMSystem", "CSmolVMShims"]),
        // A stand-in `firecracker` for tests: serves the REST API, checks every request
        // against firecracker.yaml, and boots the described guest under QEMU.
        .executableTarget(
            name: "FirecrackerStub", dependencies: ["SmolVMSystem"], path: "Tests/FirecrackerStub",
            exclude: ["firecracker.yaml"]),
    ]
)
