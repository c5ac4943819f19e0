// A private PostgreSQL server for tests: initdb into a temporary directory, listening only on a
// Unix socket there, never a system server. One is shared by a test process (each test takes a
// database of its own); a test that restarts or stops the server starts one for itself.
import Foundation
import Synchronization

public final class PostgreSQLServer: Sendable {
    /// The role every test connects as (trust over the private socket).
    public static let user = "listener"
    /// A role that must give a password (scram-sha-256), for the tests of where passwords come from.
    public static let passwordUser = "listener_pw"
    public static let password = "test-only-pg-password"

    public let directory: String
    public let socketDirectory: String
    public let port = 5432
    private let dataDirectory: String
    private let binaries: String
    private let owner: String?
    private let temporary: TemporaryDirectory
    private let databases = Atomic<Int>(0)
    private let running = Atomic<Bool>(false)

    /// The server shared by the tests of this process, started on first use and stopped at exit.
    public static func shared() throws -> PostgreSQLServer {
        try sharedServer.withLock { server in
            if let server { return server }
            let started = try PostgreSQLServer()
            server = started
            atexit { try? PostgreSQLServer.sharedServer.withLock { $0 }?.stop() }
            return started
        }
    }
    private static let sharedServer = Mutex<PostgreSQLServer?>(nil)

    /// Makes and starts a server of its own; stopped when the value goes away.
    public init() throws {
        temporary = try TemporaryDirectory()
        directory = temporary.path
        socketDirectory = directory
        dataDirectory = directory + "/data"
        binaries = try Self.findBinaries()
        // initdb and postgres refuse to run as root: run them as the postgres user then.
        owner = geteuid() == 0 ? "postgres" : nil
        if let owner { try Self.run("/bin/chown", [owner, directory], as: nil) }
        try Self.run(
            binaries + "/initdb",
            ["-D", dataDirectory, "-U", Self.user, "--auth=trust", "-E", "UTF8", "--locale=C", "--no-sync", "--no-instructions"],
            as: owner)
        // The password role first: its line must come before the catch-all trust.
        let hba = "local all \(Self.passwordUser) scram-sha-256\nlocal all all trust\n"
        try hba.write(toFile: dataDirectory + "/pg_hba.conf", atomically: false, encoding: .utf8)
        let settings = """
            listen_addresses = ''
            unix_socket_directories = '\(socketDirectory)'
            port = \(port)
            max_connections = 200
            fsync = off
            full_page_writes = off
            shared_buffers = 32MB
            log_min_messages = warning
            logging_collector = off

            """
        let handle = try FileHandle(forWritingTo: URL(fileURLWithPath: dataDirectory + "/postgresql.conf"))
        try handle.seekToEnd()
        try handle.write(contentsOf: Data(settings.utf8))
        try handle.close()
        if let owner { try Self.run("/bin/chown", ["-R", owner, directory], as: nil) }
        try start()
        try psql("postgres", "CREATE ROLE \(Self.passwordUser) LOGIN SUPERUSER PASSWORD '\(Self.password)'")
    }

    deinit { try? stop() }

    public func start() throws {
        try Self.run(binaries + "/pg_ctl", ["-D", dataDirectory, "-l", directory + "/server.log", "-w", "-t", "60", "start"], as: owner)
        running.store(true, ordering: .sequentiallyConsistent)
    }

    /// `fast` ends sessions and stops cleanly; `immediate` is a crash of the server.
    public func stop(mode: String = "fast") throws {
        guard running.exchange(false, ordering: .sequentiallyConsistent) else { return }
        try Self.run(binaries + "/pg_ctl", ["-D", dataDirectory, "-w", "-t", "60", "-m", mode, "stop"], as: owner)
    }

    public func restart(mode: String = "fast") throws {
        try stop(mode: mode)
        try start()
    }

    /// A new, empty database, and the conninfo string that reaches it.
    public func makeDatabase(prefix: String = "test") throws -> String {
        let name = "\(prefix)_\(getpid())_\(databases.add(1, ordering: .relaxed).newValue)"
        try psql("postgres", "CREATE DATABASE \(name)")
        return url(database: name)
    }

    public func url(database: String, user: String = PostgreSQLServer.user) -> String {
        "host=\(socketDirectory) port=\(port) user=\(user) dbname=\(database)"
    }

    /// Runs SQL through psql and returns what it printed (unaligned, tuples only).
    @discardableResult
    public func psql(_ database: String, _ sql: String) throws -> String {
        try Self.run(
            binaries + "/psql",
            [
                "-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-h", socketDirectory, "-p", "\(port)", "-U", Self.user, "-d", database,
                "-c", sql,
            ],
            as: nil)
    }

    /// The server's log so far (for a failing test's message).
    public var log: String { (try? String(contentsOfFile: directory + "/server.log", encoding: .utf8)) ?? "" }

    public struct CommandFailed: Error, CustomStringConvertible {
        public var command: String
        public var output: String
        public var description: String { "\(command) failed: \(output)" }
    }

    /// `POSTGRESQL_BIN`, else the newest /usr/lib/postgresql/N/bin (Debian's layout), else PATH's.
    static func findBinaries() throws -> String {
        if let configured = ProcessInfo.processInfo.environment["POSTGRESQL_BIN"], !configured.isEmpty { return configured }
        let root = "/usr/lib/postgresql"
        let versions = ((try? FileManager.default.contentsOfDirectory(atPath: root)) ?? []).compactMap(Int.init).sorted()
        if let newest = versions.last, FileManager.default.isExecutableFile(atPath: "\(root)/\(newest)/bin/initdb") {
            return "\(root)/\(newest)/bin"
        }
        for directory in (ProcessInfo.processInfo.environment["PATH"] ?? "").split(separator: ":")
        where FileManager.default.isExecutableFile(atPath: "\(directory)/initdb") {
            return String(directory)
        }
        throw CommandFailed(
            command: "initdb", output: "PostgreSQL's server programs are not installed (make test installs Debian's postgresql)")
    }

    /// Runs a program to its end, its output to a file. posix_spawn and waitpid, not Process: the
    /// server that pg_ctl leaves running inherits what Process watches for the child's exit.
    @discardableResult
    static func run(_ executable: String, _ arguments: [String], as user: String?) throws -> String {
        let argv = (user.map { ["/usr/sbin/runuser", "-u", $0, "--"] } ?? []) + [executable] + arguments
        let outputPath = FileManager.default.temporaryDirectory.appendingPathComponent("pg-\(UUID().uuidString).out").path
        defer { try? FileManager.default.removeItem(atPath: outputPath) }
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0)
        posix_spawn_file_actions_addopen(&actions, 1, outputPath, O_WRONLY | O_CREAT | O_TRUNC, 0o644)
        posix_spawn_file_actions_adddup2(&actions, 1, 2)
        var pid: pid_t = 0
        let cArguments = argv.map { strdup($0) } + [nil]
        defer { for argument in cArguments { free(argument) } }
        let spawned = posix_spawn(&pid, argv[0], &actions, nil, cArguments, environ)
        guard spawned == 0 else { throw CommandFailed(command: argv[0], output: String(cString: strerror(spawned))) }
        var status: Int32 = 0
        while waitpid(pid, &status, 0) == -1 && errno == EINTR {}
        let text = ((try? String(contentsOfFile: outputPath, encoding: .utf8)) ?? "").trimmingCharacters(in: .whitespacesAndNewlines)
        // Exited normally with 0 (WIFEXITED and WEXITSTATUS, which Swift does not import).
        guard status & 0x7f == 0, (status >> 8) & 0xff == 0 else {
            throw CommandFailed(command: ([executable] + arguments.prefix(3)).joined(separator: " "), output: text)
        }
        return text
    }
}
