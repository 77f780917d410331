/*
 * pg_engage.c
 *		Entry point of the pg_engage library: settings, shared memory and
 *		the shipper's launcher when the library is preloaded.
 */
#include "engage.h"

#include "access/xact.h"
#include "access/xlog.h"
#include "fmgr.h"
#include "miscadmin.h"
#include "storage/ipc.h"

PG_MODULE_MAGIC;

void		_PG_init(void);

static shmem_request_hook_type prev_shmem_request_hook = NULL;

/* Requests the shared memory of the shipper's status. */
static void
engage_shmem_request(void)
{
	if (prev_shmem_request_hook)
		prev_shmem_request_hook();
	engage_status_request();
}

/*
 * After a commit that wrote a commit record (its WAL flushed, under
 * synchronous_commit), wakes the shipper instead of letting it wait for its
 * next poll.  Runs in every backend, since the library is preloaded.
 */
static void
wake_shipper_on_commit(XactEvent event, void *arg)
{
	static XLogRecPtr last_commit_end = InvalidXLogRecPtr;

	if (event != XACT_EVENT_COMMIT || XactLastCommitEnd == last_commit_end)
		return;
	last_commit_end = XactLastCommitEnd;
	if (engage_wake_on_commit)
		engage_status_wake_shipper();
}

/*
 * Library load.  The settings always exist; the shipper needs the library in
 * shared_preload_libraries, and only then is it started.
 */
void
_PG_init(void)
{
	if (IsBinaryUpgrade)
		return;
	engage_define_settings();
	if (!process_shared_preload_libraries_in_progress)
		return;
	prev_shmem_request_hook = shmem_request_hook;
	shmem_request_hook = engage_shmem_request;
	engage_status_startup();
	engage_register_launcher();
	RegisterXactCallback(wake_shipper_on_commit, NULL);
}
