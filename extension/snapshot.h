/*
 * snapshot.h
 *		What the two halves of the shipper's snapshots share: snapshot.c
 *		(requests, the chunk held and placed in the stream, progress) and
 *		snapshotread.c (reading a chunk from its table).
 */
#ifndef ENGAGE_SNAPSHOT_H
#define ENGAGE_SNAPSHOT_H

#include "engage.h"

/* A chunk stops growing once its records take this many bytes. */
#define CHUNK_MAX_BYTES (32 * 1024 * 1024)
/* Rows fetched from the chunk's cursor at a time. */
#define FETCH_ROWS 256
/* One row of the chunk held: its record body and facts, in the chunk's arena. */
typedef struct ChunkRow
{
	int			body;
	int			body_len;
	int			key;			/* -1: the record has no key */
	int			key_len;
	int			topic;			/* -1: it has none (oversized) */
	int			topic_len;
	const char *no_topic_reason;
	int			keytext;		/* the key's values as text, NUL-terminated */
	uint32		hash;			/* of the key */
	bool		dropped;		/* changed in the stream meanwhile */
	bool		reread;			/* ... by an update: read it again */
} ChunkRow;

/* The chunk read and held until decoding reaches its watermark. */
typedef struct Chunk
{
	bool		held;
	char		nonce[17];		/* names its watermark */
	TransactionId xmin;			/* the snapshot S it was read with */
	TransactionId xmax;
	TransactionId *xip;			/* sorted */
	int			xcnt;
	StringInfoData arena;
	ChunkRow   *rows;
	int			nrows;
	int			maxrows;
	int		   *index;			/* open addressing by key hash: row + 1, 0 empty */
	uint32		index_mask;
	char	   *table;
	Oid			relid;
	char	  **last_key;		/* key texts of its last row; NULL: no row */
	int			nkeys;
	bool		last;			/* it reached the table's end */
	bool		is_reread;		/* it reads the keys of reread, not the next rows */
	bool		first;			/* the first chunk of a snapshot (not resumed) */
	bool		announce_start; /* at its watermark: a snapshot record "started" */
	bool		announce_done;	/* ... and one "done" after the rows */
	int			emitted;		/* next row to write at the watermark */
} Chunk;

extern void *snap_plugin;		/* the plugin's state, for its calls */
extern MemoryContext chunk_cxt; /* the chunk held */
extern Chunk chunk;
extern SnapshotRequest snap_request;	/* the snapshot being read */
extern int64 chunk_no;
extern char ***reread;			/* key texts of the rows to read again */
extern int	nreread;
extern int	reread_nkeys;

/* snapshot.c */
extern int	snapshot_xid_cmp(const void *a, const void *b);

/* snapshotread.c */
extern const char *snapshot_read_chunk(void);

#endif							/* ENGAGE_SNAPSHOT_H */
