/* items.h — (ingest-internal) a batch of events to publish, built and checked in full before the
 * first one is sent: `soundhash ingest publish` resolves every FILE/URL argument or manifest row
 * into an item (checksum and size of local files, inline bytes), then validates every event, and
 * only then produces. Errors name the item ("'a.ogg': ..." or "manifest line 7: ...").
 */
#ifndef INGEST_ITEMS_H
#define INGEST_ITEMS_H

#include "manifest.h"
#include "sh_err.h"
#include "sh_ingest.h"
#include "sh_media.h"
#include "sh_opt.h"
#include "sh_schema.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct ingest_item {
    char *label;          /* owned: how the user named it, for messages */
    char *track_id;       /* owned */
    char *tenant;         /* owned; NULL: batch default */
    sh_source_kind kind;  /* FILE, URL, INLINE or NONE (deletes) */
    char *uri;            /* owned; FILE/URL */
    uint8_t *data;        /* owned; INLINE */
    size_t data_len;
    bool has_sha256;
    uint8_t sha256[32];
    int64_t size_bytes;   /* -1 unknown */
    const char *content_type; /* static string or "" */
    char **meta;          /* owned key/value pairs (manifest rows) */
    size_t n_meta;
} ingest_item;

/* Settings shared by the whole batch. */
typedef struct ingest_batch_opts {
    sh_event_op op;
    const char *tenant;         /* default tenant */
    const sh_strlist *meta;     /* key, value, key, value... (sh_opt_meta_pairs of --meta) applied
                                 * to every event (rows may override) */
    sh_media *media;            /* NULL when no --media-root */
    bool inline_audio;          /* embed the bytes of local files */
    sh_schema_limits lim;
    int32_t priority;
} ingest_batch_opts;

typedef struct ingest_batch {
    ingest_item *v;
    size_t n, cap;
    size_t bad;            /* items that failed resolution or validation */
} ingest_batch;

/* Adds an item for a command-line FILE or URL. Local paths are relative to the working
 * directory; `track_id` NULL derives it from the file name without extension. A failure is
 * printed to stderr (naming the item), counted in b->bad and returns 0; only SH_ENOMEM is fatal. */
int ingest_batch_add_ref(ingest_batch *b, const ingest_batch_opts *o, const char *ref,
                         const char *track_id);

/* Adds the rows of a parsed manifest; local paths in it are relative to the media root. Same
 * error handling as ingest_batch_add_ref. */
int ingest_batch_add_manifest(ingest_batch *b, const ingest_batch_opts *o,
                              const ingest_manifest *m);

/* Adds a delete event for `track_id`. Same error handling. */
int ingest_batch_add_delete(ingest_batch *b, const char *track_id);

/* Builds the event of item `i` into `ev` (zeroed or cleared before); the caller clears it.
 * Returns 0 or the sh_event_* setter errors. */
int ingest_item_event(const ingest_item *it, const ingest_batch_opts *o, sh_audio_event *ev,
                      sh_err *e);

/* Validates every event of the batch (sh_event_validate) and refuses duplicate track ids (naming
 * every item that repeats one); prints each problem as one line, adds them to b->bad (which may
 * already count resolution failures). Returns b->bad == 0 ? 0 : SH_EINVAL. */
int ingest_batch_validate(ingest_batch *b, const ingest_batch_opts *o);

void ingest_batch_free(ingest_batch *b);

/* Outcome of publishing a batch. */
typedef struct ingest_publish_stats {
    size_t ok, failed;
} ingest_publish_stats;

/* Publishes every event of a validated batch through `p`, printing one JSON line per delivered
 * event on stdout ({"track_id","event_id","topic","partition","offset"}) and one line per failed
 * event on stderr; a progress bar on stderr when it is a terminal and the batch is large. Waits
 * for every delivery report (at most `flush_timeout_ms` after the last enqueue). Returns 0 when
 * all were delivered, else SH_EKAFKA (or the enqueue error) with a summary in `e`. */
int ingest_batch_publish(const ingest_batch *b, const ingest_batch_opts *o, sh_ingest *p,
                         int flush_timeout_ms, ingest_publish_stats *st, sh_err *e);

/* Writes `s` as a JSON string (quoted, escaped) to `out` (a FILE *). */
void ingest_json_string(void *out, const char *s);

#endif
