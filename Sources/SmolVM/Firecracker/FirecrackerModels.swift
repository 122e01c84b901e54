import Foundation

// Request bodies of the Firecracker REST API, named after the definitions in
// firecracker.yaml (Swagger 2.0). Field names are the spec's, through
// CodingKeys; optional fields are left out of the JSON when nil, so a body
// carries only what SmolVM sets.

/// `#/definitions/MachineConfiguration`, for `PUT /machine-config`.
struct MachineConfiguration: Codable, Equatable, Sendable {
    var vcpuCount: Int
    var memSizeMib: Int
    var smt: Bool?
    var trackDirtyPages: Bool?

    enum CodingKeys: String, CodingKey {
        case vcpuCount = "vcpu_count"
        case memSizeMib = "mem_size_mib"
        case smt
        case trackDirtyPages = "track_dirty_pages"
    }
}

/// `#/definitions/BootSource`, for `PUT /boot-source`.
struct BootSource: Codable, Equatable, Sendable {
    var kernelImagePath: String
    var bootArgs: String?
    var initrdPath: String?

    enum CodingKeys: String, CodingKey {
        case kernelImagePath = "kernel_image_path"
        case bootArgs = "boot_args"
        case initrdPath = "initrd_path"
    }
}

/// `#/definitions/Drive`, for `PUT /drives/{drive_id}` (a virtio-block drive).
struct Drive: Codable, Equatable, Sendable {
    enum CacheType: String, Codable, Sendable {
        case unsafe = "Unsafe"
        case writeback = "Writeback"
    }
    enum IOEngine: String, Codable, Sendable {
        case sync = "Sync"
        case async = "Async"
    }

    var driveID: String
    var isRootDevice: Bool
    var isReadOnly: Bool
    var pathOnHost: String
    var cacheType: CacheType?
    var ioEngine: IOEngine?

    enum CodingKeys: String, CodingKey {
        case driveID = "drive_id"
        case isRootDevice = "is_root_device"
        case isReadOnly = "is_read_only"
        case pathOnHost = "path_on_host"
        case cacheType = "cache_type"
        case ioEngine = "io_engine"
    }
}

/// `#/definitions/Vsock`, for `PUT /vsock`.
struct Vsock: Codable, Equatable, Sendable {
    var guestCID: Int
    var udsPath: String

    enum CodingKeys: String, CodingKey {
        case guestCID = "guest_cid"
        case udsPath = "uds_path"
    }
}

/// `#/definitions/NetworkInterface`, for `PUT /network-interfaces/{iface_id}`.
struct NetworkInterface: Codable, Equatable, Sendable {
    var ifaceID: String
    var hostDevName: String
    var guestMAC: String?

    enum CodingKeys: String, CodingKey {
        case ifaceID = "iface_id"
        case hostDevName = "host_dev_name"
        case guestMAC = "guest_mac"
    }
}

/// `#/definitions/InstanceActionInfo`, for `PUT /actions`.
struct InstanceActionInfo: Codable, Equatable, Sendable {
    enum ActionType: String, Codable, Sendable {
        case flushMetrics = "FlushMetrics"
        case instanceStart = "InstanceStart"
        case sendCtrlAltDel = "SendCtrlAltDel"
    }

    var actionType: ActionType

    enum CodingKeys: String, CodingKey {
        case actionType = "action_type"
    }
}

/// `#/definitions/Vm`, for `PATCH /vm`.
struct Vm: Codable, Equatable, Sendable {
    enum State: String, Codable, Sendable {
        case paused = "Paused"
        case resumed = "Resumed"
    }
    var state: State
}

/// `#/definitions/Logger`, for `PUT /logger`.
struct FirecrackerLogger: Codable, Equatable, Sendable {
    enum Level: String, Codable, Sendable {
        case error = "Error"
        case warning = "Warning"
        case info = "Info"
        case debug = "Debug"
        case trace = "Trace"
        case off = "Off"
    }

    var logPath: String
    var level: Level?
    var showLevel: Bool?
    var showLogOrigin: Bool?

    enum CodingKeys: String, CodingKey {
        case logPath = "log_path"
        case level
        case showLevel = "show_level"
        case showLogOrigin = "show_log_origin"
    }
}

/// `#/definitions/Metrics`, for `PUT /metrics`.
struct FirecrackerMetrics: Codable, Equatable, Sendable {
    var metricsPath: String

    enum CodingKeys: String, CodingKey {
        case metricsPath = "metrics_path"
    }
}

/// `#/definitions/SnapshotCreateParams`, for `PUT /snapshot/create`.
struct SnapshotCreateParams: Codable, Equatable, Sendable {
    enum SnapshotType: String, Codable, Sendable {
        case full = "Full"
        case diff = "Diff"
    }

    var memFilePath: String
    var snapshotPath: String
    var snapshotType: SnapshotType?

    enum CodingKeys: String, CodingKey {
        case memFilePath = "mem_file_path"
        case snapshotPath = "snapshot_path"
        case snapshotType = "snapshot_type"
    }
}

/// `#/definitions/MemoryBackend`, inside `SnapshotLoadParams`.
struct MemoryBackend: Codable, Equatable, Sendable {
    enum BackendType: String, Codable, Sendable {
        case file = "File"
        case uffd = "Uffd"
    }

    var backendType: BackendType
    var backendPath: String

    enum CodingKeys: String, CodingKey {
        case backendType = "backend_type"
        case backendPath = "backend_path"
    }
}

/// `#/definitions/VsockOverride`, inside `SnapshotLoadParams`.
struct VsockOverride: Codable, Equatable, Sendable {
    var udsPath: String

    enum CodingKeys: String, CodingKey {
        case udsPath = "uds_path"
    }
}

/// `#/definitions/SnapshotLoadParams`, for `PUT /snapshot/load`.
struct SnapshotLoadParams: Codable, Equatable, Sendable {
    var snapshotPath: String
    var memBackend: MemoryBackend?
    var resumeVM: Bool?
    var vsockOverride: VsockOverride?

    enum CodingKeys: String, CodingKey {
        case snapshotPath = "snapshot_path"
        case memBackend = "mem_backend"
        case resumeVM = "resume_vm"
        case vsockOverride = "vsock_override"
    }
}

/// `#/definitions/FirecrackerVersion`, the answer to `GET /version`.
struct FirecrackerVersion: Codable, Equatable, Sendable {
    var firecrackerVersion: String

    enum CodingKeys: String, CodingKey {
        case firecrackerVersion = "firecracker_version"
    }
}

/// `#/definitions/InstanceInfo`, the answer to `GET /`.
struct InstanceInfo: Codable, Equatable, Sendable {
    var appName: String
    var id: String
    var state: String
    var vmmVersion: String

    enum CodingKeys: String, CodingKey {
        case appName = "app_name"
        case id
        case state
        case vmmVersion = "vmm_version"
    }
}

/// `#/definitions/Error`: what Firecracker answers on a failed call.
struct FirecrackerFault: Codable, Equatable, Sendable {
    var faultMessage: String?

    enum CodingKeys: String, CodingKey {
        case faultMessage = "fault_message"
    }
}
