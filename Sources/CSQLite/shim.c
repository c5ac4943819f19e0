#include "CSQLite.h"

static int record_wal_frames(void *frames, sqlite3 *db, const char *name, int count) {
    (void)db;
    (void)name;
    *(int *)frames = count;
    return SQLITE_OK;
}

void csqlite_record_wal_frames(sqlite3 *db, int *frames) {
    sqlite3_wal_hook(db, record_wal_frames, frames);
}
