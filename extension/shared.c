/*
 * shared.c
 *		The rules pg_engage shares with engage_decoder, compiled into this
 *		library from their one source (see plugin/engage_handoff.h): the
 *		plugin is not preloaded and never linked to pg_engage.
 */
#include "../plugin/topicname.c"
#include "../plugin/tablelist.c"
#include "../plugin/emitauth.c"
#include "../plugin/schemadesc.c"
