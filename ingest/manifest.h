/* manifest.h — (ingest-internal) parser of `soundhash ingest publish --manifest F`.
 *
 * Two formats, told apart by the first non-blank line:
 *   JSON lines: one object per line, keys "track_id" (string, required), "uri" (string,
 *     required), "tenant" (string, optional), "metadata" (object of string values, optional);
 *     any other key is an error.
 *   CSV (RFC 4180 quoting, one record per line): a header naming the columns — track_id and uri
 *     required, tenant and metadata optional, in any order — then one row per event. The
 *     metadata column holds a JSON object of string values (or is empty).
 * Blank lines are skipped; CRLF line ends and a UTF-8 BOM are accepted.
 *
 * Every malformed line is reported ("line N: reason"), not just the first, so a user fixes the
 * whole file in one go; the caller then publishes nothing. Caps: a line <= INGEST_LINE_MAX bytes,
 * <= INGEST_ROWS_MAX rows, field sizes per sh_schema.h (track id 1..256 bytes without control
 * characters, tenant <= 128, uri <= 4096, <= 64 metadata entries, <= 4096 metadata bytes).
 * The input is hostile: any bytes parse or fail cleanly.
 */
#ifndef INGEST_MANIFEST_H
#define INGEST_MANIFEST_H

#include "sh_err.h"
#include "sh_opt.h"

#include <stddef.h>

enum {
    INGEST_LINE_MAX = 64 * 1024,
    INGEST_ROWS_MAX = 1000000,
    INGEST_ERRORS_MAX = 100, /* messages kept; the count of bad lines is always exact */
};

typedef struct ingest_row {
    size_t line;      /* 1-based line number in the manifest */
    char *track_id;   /* owned, never NULL */
    char *uri;        /* owned, never NULL */
    char *tenant;     /* owned; NULL: the command's --tenant */
    char **meta;      /* owned: n_meta key/value pairs, meta[2i] key, meta[2i+1] value */
    size_t n_meta;
} ingest_row;

typedef struct ingest_manifest {
    ingest_row *rows;
    size_t n, cap;
    size_t bad_lines;  /* lines that failed */
    sh_strlist errors; /* "line N: reason", at most INGEST_ERRORS_MAX */
} ingest_manifest;

/* Parses `len` bytes. `out` must be zeroed. Returns 0 when every line is good; SH_EFORMAT when
 * some are not (out->errors says which; out->rows holds only the good ones); SH_ETOOBIG (more
 * than INGEST_ROWS_MAX rows); SH_ENOMEM. Free `out` with ingest_manifest_free in all cases. */
int ingest_manifest_parse(const char *buf, size_t len, ingest_manifest *out, sh_err *e);

void ingest_manifest_free(ingest_manifest *m);

#endif
