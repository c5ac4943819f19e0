#ifndef CPOSTGRESQL_H
#define CPOSTGRESQL_H
// libpq from Debian's libpq-dev, whose headers live in /usr/include/postgresql.
#include <postgresql/libpq-fe.h>
#endif
