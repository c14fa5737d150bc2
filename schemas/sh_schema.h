/* sh_schema.h — the event contract: audio events, dead-letter records, index-delta envelopes.
 *
 * The Avro schemas are the .avsc files in schemas/ (namespace io.soundhash.v1; see
 * schemas/README.md for the evolution rules). This module converts between C structs and
 * Confluent-framed Avro:
 *
 *     byte 0      magic 0x00
 *     bytes 1..4  schema id, big-endian (from the registry, sh_registry.h)
 *     bytes 5..   Avro binary encoding of one record, written with that schema
 *
 * so that Java/Go/Python producers and consumers using Confluent serializers interoperate.
 *
 * Encoding always writes the current schema version of the record kind. Decoding reads with the
 * WRITER's schema (looked up by the id in the frame) and maps fields into the struct by name;
 * fields the writer did not have get their documented defaults. A field without a default that the
 * writer lacks, or a field of the wrong type, is SH_ESCHEMA.
 *
 * Hostile input: decoding accepts any bytes. Before avro-c sees the body, every length, count,
 * union branch and enum index is checked against the remaining bytes and the caps below, and the
 * body must be consumed exactly. Errors: SH_EFORMAT (truncated, bad magic, bad varint, trailing
 * bytes, field value violates a cap or rule), SH_ESCHEMA (unknown id, id of another record kind,
 * incompatible writer schema), SH_ETOOBIG (a size cap from sh_schema_limits exceeded),
 * SH_ENOMEM. Never a crash, hang or allocation larger than the input plus the caps.
 * With a REST registry, decode (unknown id) and encode (first use) may also return SH_EHTTP /
 * SH_ETIMEOUT: registry trouble, not a bad message — retry rather than dead-letter.
 * Rule violations found by *_validate()/encode are SH_EINVAL (a caller's mistake); the same
 * violations found in received data are reported by decode as SH_EFORMAT. Messages name the
 * field ("track_id: 300 bytes, over the 256-byte limit").
 *
 * Ownership: every pointer field of a struct is owned by the struct: decode allocates them, and
 * sh_*_clear() frees them with free() and zeroes the struct. Callers building a struct by hand set
 * pointer fields to malloc()ed memory (or use the sh_*_set helpers, which copy) and call clear
 * when done. Encode only reads the struct. A struct must be zeroed ({0} or clear) before decode;
 * decode clears it first and leaves it zeroed on failure.
 *
 * Thread safety: all functions are reentrant; a registry may be shared (see sh_registry.h).
 */
#ifndef SH_SCHEMA_H
#define SH_SCHEMA_H

#include "sh_err.h"
#include "sh_registry.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* ---- fixed caps (part of the contract; changing one is a contract change) ------------------- */
enum {
    SH_FRAME_HEADER_LEN = 5,
    SH_EVENT_ID_LEN = 36,         /* canonical UUID text, lower-case hex */
    SH_TRACK_ID_MAX = 256,        /* bytes, at least 1, no control chars (C0, DEL, C1) */
    SH_TENANT_MAX = 128,          /* bytes, at least 1, no control chars */
    SH_PRODUCER_MAX = 128,        /* bytes, at least 1, no control chars */
    SH_CONTENT_TYPE_MAX = 127,    /* bytes, optional (empty = absent), no control chars */
    SH_URI_MAX = 4096,            /* bytes of a file:// or http(s):// URI */
    SH_META_MAX_ENTRIES = 64,     /* metadata map entries */
    SH_META_MAX_BYTES = 4096,     /* sum of key and value lengths */
    SH_META_KEY_MAX = 128,        /* bytes, at least 1, no control chars; values: no NUL */
    SH_TRACE_ID_MAX = 128,        /* bytes, optional, no control chars */
    SH_ERROR_NAME_MAX = 64,       /* "SH_EDECODE" */
    SH_REASON_MAX = 4096,         /* dead-letter reason text, no NUL */
    SH_WORKER_MAX = 128,          /* worker instance name */
    SH_TOPIC_MAX = 249,           /* Kafka's own limit on topic names */
    SH_REGION_MAX = 64,           /* replicator region name */
    SH_SCHEMA_DEPTH_MAX = 16,     /* nesting depth accepted in a writer schema */
};

/* Default configurable caps (sh_schema_limits). */
#define SH_INLINE_AUDIO_DEFAULT_MAX ((size_t)900 * 1024)
#define SH_DLQ_ORIGINAL_DEFAULT_MAX ((size_t)2 * 1024 * 1024)
#define SH_DELTA_PAYLOAD_DEFAULT_MAX ((size_t)8 * 1024 * 1024)
/* Hard ceilings: limits above these are clamped. */
#define SH_INLINE_AUDIO_HARD_MAX ((size_t)16 * 1024 * 1024)
#define SH_DLQ_ORIGINAL_HARD_MAX ((size_t)32 * 1024 * 1024)
#define SH_DELTA_PAYLOAD_HARD_MAX ((size_t)64 * 1024 * 1024)

/* Configurable size caps; pass NULL anywhere for the defaults. */
typedef struct sh_schema_limits {
    size_t inline_audio_max;  /* bytes of inline audio [900 KiB] */
    size_t dlq_original_max;  /* bytes of the original message in a dead letter [2 MiB] */
    size_t delta_payload_max; /* bytes of an index-delta payload [8 MiB] */
} sh_schema_limits;

/* Fills the defaults. */
void sh_schema_limits_default(sh_schema_limits *lim);

/* ---- audio event (io.soundhash.v1.AudioEvent, current version 3) ---------------------------- */
typedef enum sh_event_op {
    SH_OP_UPSERT = 0,  /* new or replaced audio for track_id: fingerprint it */
    SH_OP_REINDEX = 1, /* re-fingerprint existing audio (e.g. new fp_version) */
    SH_OP_DELETE = 2,  /* erase track_id everywhere; source must be SH_SRC_NONE */
} sh_event_op;

typedef enum sh_source_kind {
    SH_SRC_NONE = 0,   /* delete events (and reindex events that re-use stored audio) */
    SH_SRC_FILE = 1,   /* uri = "file:///abs/path" under the media root */
    SH_SRC_URL = 2,    /* uri = "http://..." or "https://..." */
    SH_SRC_INLINE = 3, /* data/data_len: the audio bytes themselves (short clips) */
} sh_source_kind;

typedef struct sh_audio_source {
    sh_source_kind kind;
    char *uri;        /* owned; SH_SRC_FILE / SH_SRC_URL, else NULL */
    uint8_t *data;    /* owned; SH_SRC_INLINE, else NULL */
    size_t data_len;
} sh_audio_source;

typedef struct sh_meta_kv {
    char *key;   /* owned */
    char *value; /* owned */
} sh_meta_kv;

/* Free-form string metadata (title, artist, ...). Keys are unique. */
typedef struct sh_meta {
    size_t n;
    sh_meta_kv kv[SH_META_MAX_ENTRIES];
} sh_meta;

typedef struct sh_audio_event {
    char event_id[SH_EVENT_ID_LEN + 1]; /* UUID (sh_event_id_new), unique per event */
    sh_event_op op;
    char track_id[SH_TRACK_ID_MAX + 1];
    char tenant[SH_TENANT_MAX + 1];
    sh_audio_source source;
    bool has_sha256;
    uint8_t sha256[32];        /* of the audio bytes, when has_sha256 */
    int64_t size_bytes;        /* of the audio, -1 when unknown */
    char content_type[SH_CONTENT_TYPE_MAX + 1]; /* e.g. "audio/ogg"; "" when unknown */
    sh_meta meta;
    int64_t submitted_at_ms;   /* Unix epoch milliseconds (timestamp-millis) */
    char producer[SH_PRODUCER_MAX + 1]; /* e.g. "soundhash-ingest/0.1.0" */
    int32_t fp_version;        /* requested fingerprint version; 0 = the worker's current */
    /* version 2 fields (defaults apply when reading version 1 records): */
    int32_t priority;          /* default 0; higher is more urgent; reindex jobs use < 0 */
    char trace_id[SH_TRACE_ID_MAX + 1]; /* default "" (absent); correlation id for logs */
    /* version 3 field (default 0 when reading version 1 and 2 records): */
    int64_t base_version;      /* REINDEX: the stored track version the reindex job read; the
                                  worker re-fingerprints only while the track still has exactly
                                  this version (0 = unknown: nothing is written). >= 0; ignored
                                  for UPSERT and DELETE. */
} sh_audio_event;

/* Validates every rule and cap of an event (also done by encode and decode). Returns 0,
 * SH_EINVAL (a rule: empty/over-long/control-char track id, bad event id, wrong URI scheme,
 * source on a delete, ...), SH_ETOOBIG (inline audio over lim->inline_audio_max, metadata over
 * its caps). The message names the field. */
int sh_event_validate(const sh_audio_event *ev, const sh_schema_limits *lim, sh_err *e);

/* Encodes `ev` as a framed record with the registry's current AudioEvent schema. On success
 * *out is a malloc()ed buffer of *len bytes owned by the caller (free()). Returns 0,
 * sh_event_validate's errors, registry errors (SH_EHTTP, SH_ETIMEOUT, SH_ESCHEMA), SH_EAVRO,
 * SH_ENOMEM. On failure *out is NULL. */
int sh_event_encode(const sh_audio_event *ev, sh_registry *reg, const sh_schema_limits *lim,
                    uint8_t **out, size_t *len, sh_err *e);

/* Decodes a framed AudioEvent of any known version into `out` (see the module comment for
 * errors and ownership). The decoded event also passes sh_event_validate. */
int sh_event_decode(const uint8_t *buf, size_t len, sh_registry *reg,
                    const sh_schema_limits *lim, sh_audio_event *out, sh_err *e);

/* Frees the owned fields and zeroes the event. Accepts NULL. */
void sh_event_clear(sh_audio_event *ev);

/* Copying setters for the owned fields (replace any previous value). Return 0, SH_EINVAL,
 * SH_ETOOBIG, SH_ENOMEM. sh_event_set_string copies `value` into one of the fixed-size fields by
 * name ("track_id", "tenant", "content_type", "producer", "trace_id", "event_id"). */
int sh_event_set_string(sh_audio_event *ev, const char *field, const char *value, sh_err *e);
int sh_event_set_uri(sh_audio_event *ev, sh_source_kind kind, const char *uri, sh_err *e);
int sh_event_set_inline(sh_audio_event *ev, const uint8_t *data, size_t len, sh_err *e);
/* Adds or replaces metadata key → value. */
int sh_meta_set(sh_meta *m, const char *key, const char *value, sh_err *e);
/* Value for key, or NULL. Owned by the map. */
const char *sh_meta_get(const sh_meta *m, const char *key);

/* Writes a fresh UUIDv7 (time-ordered, 74 random bits from getrandom) as 36 lower-case chars
 * plus NUL into `out`. Returns 0 or SH_EIO (getrandom failed). */
int sh_event_id_new(char out[SH_EVENT_ID_LEN + 1], sh_err *e);

/* Replaces, in place, bytes of a NUL-terminated string that are not well-formed UTF-8, and
 * control characters other than tab and newline, with '?', so that arbitrary text (library error
 * messages, file names) can go into a string field. Returns how many bytes were replaced. */
size_t sh_text_sanitize(char *s);

/* Checks a track id of `len` bytes against the contract: 1..SH_TRACK_ID_MAX bytes, valid UTF-8, no
 * NUL and no control characters (< 0x20, 0x7f, U+0080..U+009F). Returns 0 or SH_EINVAL with the
 * reason ("empty track id", "track id is 300 bytes, over the 256-byte limit", ...). For producers
 * that check ids before building events (manifests, id lists); validate/decode apply it too. */
int sh_track_id_check(const char *id, size_t len, sh_err *e);

/* Op names as in the schema ("UPSERT", ...); NULL for invalid values. */
const char *sh_event_op_name(sh_event_op op);

/* ---- dead letter (io.soundhash.v1.DeadLetter, version 1) ------------------------------------ */
typedef struct sh_dlq_record {
    uint8_t *original;      /* owned: the original message value, byte for byte */
    size_t original_len;    /* <= lim->dlq_original_max */
    int32_t schema_id;      /* schema id from the original frame, -1 when it had none */
    char track_id[SH_TRACK_ID_MAX + 1]; /* "" when the original could not be decoded */
    char event_id[SH_EVENT_ID_LEN + 1]; /* "" when the original could not be decoded */
    int32_t error_code;     /* SH_E* value (negative) */
    char error_name[SH_ERROR_NAME_MAX + 1]; /* sh_err_name(error_code) */
    char *reason;           /* owned: human text, <= SH_REASON_MAX bytes, may be NULL (= "") */
    char worker[SH_WORKER_MAX + 1];   /* worker instance that gave up */
    int32_t attempts;       /* >= 1 */
    int64_t failed_at_ms;   /* Unix epoch milliseconds */
    char source_topic[SH_TOPIC_MAX + 1];
    int32_t source_partition;
    int64_t source_offset;
} sh_dlq_record;

int sh_dlq_validate(const sh_dlq_record *r, const sh_schema_limits *lim, sh_err *e);
int sh_dlq_encode(const sh_dlq_record *r, sh_registry *reg, const sh_schema_limits *lim,
                  uint8_t **out, size_t *len, sh_err *e);
int sh_dlq_decode(const uint8_t *buf, size_t len, sh_registry *reg, const sh_schema_limits *lim,
                  sh_dlq_record *out, sh_err *e);
void sh_dlq_clear(sh_dlq_record *r);

/* ---- index-delta envelope (io.soundhash.v1.IndexDelta, version 1) --------------------------- */
typedef enum sh_delta_codec {
    SH_CODEC_NONE = 0,
    SH_CODEC_ZSTD = 1,
} sh_delta_codec;

/* One batch of committed index changes of one shard, as the replicator writes it (see
 * schemas/README.md, "Index-delta payload and snapshots"): sequence = commit_lsn = the last
 * change-log seq the delta covers, prev_sequence = the previous delta's sequence of this shard
 * (the epoch's start seq for the first). A consumer at position S applies the ops with seq > S
 * of a delta whose prev_sequence <= S and then holds `sequence`; prev_sequence > S is a gap
 * (SH_EGAP: bootstrap from a snapshot). The epoch changes when the shard's history is restarted
 * (shard count changed, a region took over); a consumer on an older epoch needs a snapshot. */
typedef struct sh_delta_envelope {
    int32_t shard;           /* >= 0 */
    int64_t epoch;           /* >= 0 */
    int64_t sequence;        /* > prev_sequence */
    int64_t prev_sequence;   /* >= 0 */
    int32_t count;           /* number of changes in the payload, >= 0 */
    int32_t fp_version;      /* fingerprint version of every hash in the payload */
    sh_delta_codec codec;
    int64_t raw_size;        /* payload size after decompression (bounds the decompressor) */
    uint8_t *payload;        /* owned; <= lim->delta_payload_max */
    size_t payload_len;
    int64_t commit_lsn;      /* the last change-log seq of the delta (= sequence); the Avro doc's
                                "PostgreSQL LSN" predates the change log and is kept so the
                                registered schema text does not change */
    int64_t created_at_ms;   /* when the replicator built it (lag = now - created_at) */
    char region[SH_REGION_MAX + 1]; /* producing region, e.g. "us-east"; may be "" */
} sh_delta_envelope;

int sh_delta_validate(const sh_delta_envelope *d, const sh_schema_limits *lim, sh_err *e);
int sh_delta_encode(const sh_delta_envelope *d, sh_registry *reg, const sh_schema_limits *lim,
                    uint8_t **out, size_t *len, sh_err *e);
int sh_delta_decode(const uint8_t *buf, size_t len, sh_registry *reg,
                    const sh_schema_limits *lim, sh_delta_envelope *out, sh_err *e);
void sh_delta_clear(sh_delta_envelope *d);

/* ---- framing helpers ----------------------------------------------------------------------- */
/* Reads the schema id of a Confluent frame without decoding it. Returns 0, or SH_EFORMAT (shorter
 * than 5 bytes, magic not 0). */
int sh_frame_schema_id(const uint8_t *buf, size_t len, int32_t *id, sh_err *e);

#endif
