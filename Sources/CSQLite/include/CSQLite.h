#ifndef CSQLITE_H
#define CSQLITE_H
#include <sqlite3.h>

// SQLITE_TRANSIENT is a function-pointer cast macro that Swift cannot import.
static inline int csqlite_bind_text(sqlite3_stmt *statement, int index, const char *text, int length) {
    return sqlite3_bind_text(statement, index, text, length, SQLITE_TRANSIENT);
}
static inline int csqlite_bind_blob(sqlite3_stmt *statement, int index, const void *bytes, int length) {
    return sqlite3_bind_blob(statement, index, bytes, length, SQLITE_TRANSIENT);
}
// Binds exactly `length` bytes as UTF-8 text (copied), so bodies are stored byte-exact.
static inline int csqlite_bind_text64(sqlite3_stmt *statement, int index, const char *text, sqlite3_uint64 length) {
    return sqlite3_bind_text64(statement, index, text, length, SQLITE_TRANSIENT, SQLITE_UTF8);
}
// Extended result codes are macros built with | and <<, which Swift does not import.
enum {
    CSQLITE_IOERR_READ = SQLITE_IOERR_READ,
    CSQLITE_IOERR_SHORT_READ = SQLITE_IOERR_SHORT_READ,
    CSQLITE_IOERR_WRITE = SQLITE_IOERR_WRITE,
    CSQLITE_IOERR_FSYNC = SQLITE_IOERR_FSYNC,
    CSQLITE_IOERR_DIR_FSYNC = SQLITE_IOERR_DIR_FSYNC,
    CSQLITE_IOERR_TRUNCATE = SQLITE_IOERR_TRUNCATE,
    CSQLITE_IOERR_FSTAT = SQLITE_IOERR_FSTAT,
    CSQLITE_IOERR_LOCK = SQLITE_IOERR_LOCK,
    CSQLITE_IOERR_SHMOPEN = SQLITE_IOERR_SHMOPEN,
    CSQLITE_IOERR_SHMSIZE = SQLITE_IOERR_SHMSIZE,
    CSQLITE_IOERR_SHMMAP = SQLITE_IOERR_SHMMAP,
    CSQLITE_IOERR_DELETE = SQLITE_IOERR_DELETE,
    CSQLITE_READONLY_DBMOVED = SQLITE_READONLY_DBMOVED,
    CSQLITE_READONLY_CANTINIT = SQLITE_READONLY_CANTINIT,
    CSQLITE_READONLY_RECOVERY = SQLITE_READONLY_RECOVERY,
    CSQLITE_CANTOPEN_ISDIR = SQLITE_CANTOPEN_ISDIR,
};
// sqlite3_db_config is variadic, which Swift cannot call: the connection will not checkpoint
// the WAL into the database file when it closes (SQLITE_DBCONFIG_NO_CKPT_ON_CLOSE).
int csqlite_disable_checkpoint_on_close(sqlite3 *db);
#endif
