/*
 * pg_engage.c
 *		Entry point of the pg_engage extension library.
 */
#include "postgres.h"

#include "fmgr.h"

PG_MODULE_MAGIC;

void		_PG_init(void);

/* Library load: nothing to set up until the shipper is configured. */
void
_PG_init(void)
{
}
