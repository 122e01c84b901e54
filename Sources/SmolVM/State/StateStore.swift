import Foundation
import SmolVMSystem

/// The sandbox state store: SQLite at `SMOLVM_HOME/state.db`.
///
/// Every read reconciles records with reality: a sandbox recorded as running
/// whose VMM is gone (or whose pid now belongs to another process) is reported
/// as `error`, never as `running`.
public final class StateStore: Sendable {
    let database: Database
    public let paths: SmolVMPaths

    /// Schema migrations, in order; `PRAGMA user_version` counts how many ran.
    static let migrations: [String] = [
        """
        CREATE TABLE sandboxes (
            name TEXT PRIMARY KEY,
            id TEXT NOT NULL UNIQUE,
            backend TEXT NOT NULL,
            image TEXT NOT NULL,
            memory_mib INTEGER NOT NULL,
            cpus INTEGER NOT NULL,
            environment TEXT NOT NULL,
            network INTEGER NOT NULL,
            status TEXT NOT NULL,
            vmm_pid INTEGER,
            vmm_start_time INTEGER,
            created REAL NOT NULL,
            runtime_dir TEXT NOT NULL,
            kernel TEXT NOT NULL,
            root_image TEXT NOT NULL,
            last_error TEXT
        )
        """,
        "CREATE INDEX sandboxes_status ON sandboxes(status)",
        // `network` stays for older readers; `internet` is what counts from here on.
        "ALTER TABLE sandboxes ADD COLUMN internet TEXT NOT NULL DEFAULT 'on'",
        "UPDATE sandboxes SET internet = 'off' WHERE network = 0",
        "ALTER TABLE sandboxes ADD COLUMN publish TEXT NOT NULL DEFAULT '[]'",
        "ALTER TABLE sandboxes ADD COLUMN mounts TEXT NOT NULL DEFAULT '[]'",
    ]

    public init(paths: SmolVMPaths) throws {
        self.paths = paths
        try paths.prepareHome()
        database = try Database(path: paths.home.appendingPathComponent("state.db").path)
        try migrate()
    }

    private func migrate() throws {
        try database.transaction {
            let version = Int(try database.execute("PRAGMA user_version").first?["user_version"]?.integer ?? 0)
            guard version <= Self.migrations.count else {
                throw SmolVMError(
                    .unsupported,
                    "the state database was written by a newer SmolVM (schema \(version), this one knows \(Self.migrations.count)); upgrade smolvm"
                )
            }
            for index in version..<Self.migrations.count {
                try database.execute(Self.migrations[index])
            }
            try database.execute("PRAGMA user_version = \(Self.migrations.count)")
        }
    }

    // MARK: Writes

    /// Inserts a new record; a taken name is a clear error.
    func insert(_ record: SandboxRecord) throws {
        try database.transaction {
            if try !database.execute("SELECT 1 FROM sandboxes WHERE name = ?", [.text(record.name)]).isEmpty {
                throw SmolVMError(
                    .invalidArgument,
                    "a sandbox named '\(record.name)' already exists; pick another name or delete it first")
            }
            try database.execute(
                """
                INSERT INTO sandboxes (name, id, backend, image, memory_mib, cpus, environment, network, status,
                    vmm_pid, vmm_start_time, created, runtime_dir, kernel, root_image, last_error, internet,
                    publish, mounts)
                VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
                """, values(record))
        }
    }

    /// Updates a record in place.
    func update(_ record: SandboxRecord) throws {
        try database.transaction {
            var parameters = Array(values(record).dropFirst())
            parameters.append(.text(record.name))
            try database.execute(
                """
                UPDATE sandboxes SET id = ?, backend = ?, image = ?, memory_mib = ?, cpus = ?, environment = ?,
                    network = ?, status = ?, vmm_pid = ?, vmm_start_time = ?, created = ?, runtime_dir = ?, kernel = ?,
                    root_image = ?, last_error = ?, internet = ?, publish = ?, mounts = ? WHERE name = ?
                """, parameters)
        }
    }

    func remove(_ name: String) throws {
        try database.transaction {
            try database.execute("DELETE FROM sandboxes WHERE name = ?", [.text(name)])
        }
    }

    // MARK: Reads (reconciled)

    /// One sandbox by name, reconciled; a clear error when there is none.
    public func record(named name: String) throws -> SandboxRecord {
        try SandboxName.validate(name)
        guard let row = try database.execute("SELECT * FROM sandboxes WHERE name = ?", [.text(name)]).first else {
            throw SmolVMError(.notFound, "no sandbox named '\(name)'; see `smolvm sandbox list --all`")
        }
        return try reconcile(try Self.record(from: row))
    }

    /// Every sandbox, reconciled, oldest first.
    public func records() throws -> [SandboxRecord] {
        try database.execute("SELECT * FROM sandboxes ORDER BY created").map {
            try reconcile(try Self.record(from: $0))
        }
    }

    /// Whether the recorded VMM is the process running under that pid now.
    public static func isVMMAlive(_ record: SandboxRecord) -> Bool {
        guard let pid = record.vmmPID, pid > 0, let start = record.vmmStartTime, start > 0 else { return false }
        return Spawn.startTime(pid) == start && !isZombie(pid)
    }

    /// A VMM started for this record whose pid never made it into the record:
    /// the pid in QEMU's `-pidfile`, if that process's command line names this
    /// sandbox's runtime directory.
    static func unrecordedVMM(_ record: SandboxRecord) -> Int32? {
        let pidFile = URL(fileURLWithPath: record.runtimeDirectory).appendingPathComponent("qemu.pid").path
        guard let text = try? String(contentsOfFile: pidFile, encoding: .utf8),
            let pid = Int32(text.trimmingCharacters(in: .whitespacesAndNewlines)), pid > 0,
            let commandLine = FileManager.default.contents(atPath: "/proc/\(pid)/cmdline")
        else { return nil }
        let arguments = String(decoding: commandLine, as: UTF8.self)
        return arguments.contains(record.runtimeDirectory) && !isZombie(pid) ? pid : nil
    }

    /// True once the process has fully exited and only its exit status is
    /// left. A killed multi-threaded process shows its leader as a zombie while
    /// the other threads still tear down, holding its sockets and files; it
    /// counts as exited only when no other thread is left.
    static func isZombie(_ pid: Int32) -> Bool {
        guard let stat = try? String(contentsOfFile: "/proc/\(pid)/stat", encoding: .utf8),
            let close = stat.lastIndex(of: ")")
        else { return false }
        guard stat[stat.index(after: close)...].hasPrefix(" Z") else { return false }
        let threads = (try? FileManager.default.contentsOfDirectory(atPath: "/proc/\(pid)/task"))?.count ?? 0
        return threads <= 1
    }

    private func reconcile(_ record: SandboxRecord) throws -> SandboxRecord {
        var record = record
        switch record.status {
        case .running where !Self.isVMMAlive(record), .paused where !Self.isVMMAlive(record):
            record.status = .error
            record.lastError = "the VMM (pid \(record.vmmPID.map(String.init) ?? "?")) exited without being stopped"
            record.vmmPID = nil
            record.vmmStartTime = nil
            try update(record)
        case .starting:
            // A create or start whose process died: its lock is free.
            let lockPath = URL(fileURLWithPath: record.runtimeDirectory).appendingPathComponent("lifecycle.lock").path
            if !FileLock.isHeld(lockPath) {
                if Self.isVMMAlive(record), let pid = record.vmmPID {
                    Spawn.signal(pid, SIGKILL)
                } else if let pid = Self.unrecordedVMM(record) {
                    // Died between spawning the VMM and recording its pid: QEMU's pidfile names it.
                    Spawn.signal(pid, SIGKILL)
                }
                record.status = .error
                record.lastError = "the smolvm that was starting it exited before it was ready"
                record.vmmPID = nil
                record.vmmStartTime = nil
                try update(record)
            }
        default:
            break
        }
        return record
    }

    // MARK: Encoding

    private func values(_ record: SandboxRecord) -> [Database.Value] {
        func json(_ value: some Encodable) -> String {
            (try? JSONEncoder().encode(value)).map { String(decoding: $0, as: UTF8.self) } ?? "null"
        }
        let environment = json(record.environment)
        return [
            .text(record.name), .text(record.id), .text(record.backend), .text(record.image),
            .integer(Int64(record.memoryMiB)), .integer(Int64(record.cpus)), .text(environment),
            .integer(record.internet == .off ? 0 : 1), .text(record.status.rawValue),
            record.vmmPID.map { .integer(Int64($0)) } ?? .null,
            record.vmmStartTime.map { .integer(Int64($0)) } ?? .null,
            .real(record.created.timeIntervalSince1970), .text(record.runtimeDirectory), .text(record.kernel),
            .text(record.rootImage), record.lastError.map { .text($0) } ?? .null,
            .text(record.internet.description), .text(json(record.publish)), .text(json(record.mounts)),
        ]
    }

    static func record(from row: Database.Row) throws -> SandboxRecord {
        func text(_ key: String) throws -> String {
            guard let value = row[key]?.string else {
                throw SmolVMError(.corrupted, "the state database has a record without \(key)")
            }
            return value
        }
        let environmentJSON = row["environment"]?.string ?? "{}"
        let environment = (try? JSONDecoder().decode([String: String].self, from: Data(environmentJSON.utf8))) ?? [:]
        // A record this smolvm cannot read back fails loudly: booting it with
        // the wrong network or without its folders would be worse.
        func decode<T: Decodable>(_ type: T.Type, _ key: String) throws -> T {
            do {
                return try JSONDecoder().decode(type, from: Data((row[key]?.string ?? "[]").utf8))
            } catch {
                throw SmolVMError(.corrupted, "the state database has an unreadable \(key) value", underlying: error)
            }
        }
        return SandboxRecord(
            name: try text("name"), id: try text("id"), backend: try text("backend"), image: try text("image"),
            memoryMiB: Int(row["memory_mib"]?.integer ?? 0), cpus: Int(row["cpus"]?.integer ?? 1),
            environment: environment, internet: try InternetAccess(stored: row["internet"]?.string ?? "on"),
            publish: try decode([PortPublication].self, "publish"), mounts: try decode([HostMount].self, "mounts"),
            status: SandboxRecord.Status(rawValue: try text("status")) ?? .error,
            vmmPID: row["vmm_pid"]?.integer.map { Int32($0) },
            vmmStartTime: row["vmm_start_time"]?.integer.map { UInt64($0) },
            created: Date(timeIntervalSince1970: row["created"]?.real ?? 0), runtimeDirectory: try text("runtime_dir"),
            kernel: try text("kernel"), rootImage: try text("root_image"), lastError: row["last_error"]?.string)
    }
}
