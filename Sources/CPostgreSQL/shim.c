// libpq needs no wrappers: every call the store makes imports into Swift as it is.
#include "CPostgreSQL.h"
