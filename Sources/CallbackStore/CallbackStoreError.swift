/// Why a callback store could not do what was asked, whatever the backend.
/// Messages never contain callback bodies.
public enum CallbackStoreError: Error, Sendable, Hashable, CustomStringConvertible {
    /// The database file could not be opened or created.
    case openFailed(path: String, message: String)
    /// The file is an SQLite database that some other program owns.
    case notACallbackDatabase(path: String)
    /// A read-only open found no schema: the service has not created the database yet.
    case notInitialized(path: String)
    /// The database was written by a newer version of this program.
    case schemaTooNew(path: String, found: Int32, supported: Int32)
    /// No space left, or the file size limit (RLIMIT_FSIZE) was reached.
    case full(message: String)
    /// The disk or file system failed a read or write.
    case ioError(message: String)
    /// The file, its directory or the file system is not writable.
    case readOnly(message: String)
    /// Another connection held a lock longer than the busy timeout.
    case busy(message: String)
    /// The file is damaged, or a row holds data this program did not write.
    case corrupt(message: String)
    /// The database server cannot be reached or is not taking writes (down, restarting, failing
    /// over); the store reconnects by itself.
    case unavailable(message: String)
    /// The store or the writer was closed.
    case closed
    /// Any other failure of the backend, in its own words.
    case backend(message: String)

    public var description: String {
        switch self {
        case .openFailed(let path, let message):
            "cannot open the callback database at \(path): \(message); check that its directory exists and is writable by the service user"
        case .notACallbackDatabase(let path):
            "\(path) is an SQLite database of another program; point storage.path at a new file"
        case .notInitialized(let path):
            "\(path) holds no callbacks yet; start the service once to create the database"
        case .schemaTooNew(let path, let found, let supported):
            "\(path) has schema version \(found) but this program knows versions up to \(supported); upgrade thingspace-listener"
        case .full(let message):
            "the callback database cannot grow (\(message)); free disk space or raise the file size limit, storing resumes by itself"
        case .ioError(let message):
            "I/O error on the callback database (\(message)); check the disk (dmesg), storing resumes by itself when it works again"
        case .readOnly(let message):
            "the callback database is read-only (\(message)); check the file's permissions and that its file system is mounted read-write"
        case .busy(let message):
            "the callback database stayed locked (\(message)); end any long sqlite3 session that writes to it"
        case .corrupt(let message):
            "the callback database is damaged (\(message)); restore it from a backup or move it aside"
        case .unavailable(let message):
            "the callback database is unavailable (\(message)); storing resumes by itself once it answers again"
        case .closed:
            "the callback store is closed"
        case .backend(let message):
            "the callback store failed: \(message)"
        }
    }
}
