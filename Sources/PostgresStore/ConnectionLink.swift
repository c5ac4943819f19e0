// One connection that a part keeps behind a lock (`Mutex<ConnectionLink>`), opened again on the
// next use after it broke; once closed, every use throws `.closed`. For the ledger and the
// coordinator, which make short statements now and then.
import CallbackStore
import Synchronization

struct ConnectionLink {
    var connection: PostgreSQLConnection?
    var closed = false
}

extension Mutex where Value == ConnectionLink {
    /// Runs `body` on the connection, one use at a time, connecting first (with `connect`) when
    /// there is none or it broke; a lost connection is dropped, so the next use reconnects.
    func use<Result: Sendable>(
        connecting connect: () throws(CallbackStoreError) -> PostgreSQLConnection,
        _ body: (PostgreSQLConnection) throws(PostgreSQLError) -> Result
    ) throws(CallbackStoreError) -> Result {
        try withLock { link throws(CallbackStoreError) -> Result in
            guard !link.closed else { throw .closed }
            let connection: PostgreSQLConnection
            if let existing = link.connection, existing.isUsable {
                connection = existing
            } else {
                link.connection?.close()
                link.connection = nil
                connection = try connect()
                link.connection = connection
            }
            do throws(PostgreSQLError) {
                return try body(connection)
            } catch {
                if error.connectionLost || !connection.isUsable {
                    connection.close()
                    link.connection = nil
                }
                throw error.storeError
            }
        }
    }

    /// Closes the connection; later uses throw `.closed`.
    func close() {
        withLock { link in
            link.closed = true
            link.connection?.close()
            link.connection = nil
        }
    }
}
