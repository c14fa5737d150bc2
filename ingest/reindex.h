/* reindex.h — (ingest-internal) `soundhash ingest reindex`, see reindex.c. */
#ifndef INGEST_REINDEX_H
#define INGEST_REINDEX_H

/* Runs the subcommand; argv[0] is "reindex". Returns the exit code (0, 1 runtime, 2 usage). */
int ingest_cmd_reindex(int argc, char **argv);

#endif
