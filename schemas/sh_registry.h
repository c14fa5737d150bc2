/* sh_registry.h — where Avro schema ids come from.
 *
 * Every framed record (see sh_schema.h) starts with a 4-byte schema id. A registry maps our three
 * record kinds to the id of the schema we WRITE with, and maps any id found in a frame back to the
 * writer's schema so that decoding can resolve it by field name.
 *
 * Two implementations behind one handle:
 *   - embedded: the .avsc files of schemas/ compiled in (sh_schema_json.c), with fixed ids:
 *         1001  io.soundhash.v1.AudioEvent   version 1   (schemas/audio_event.v1.avsc)
 *         1002  io.soundhash.v1.AudioEvent   version 2   (schemas/audio_event.v2.avsc)
 *         1003  io.soundhash.v1.AudioEvent   version 3   (schemas/audio_event.v3.avsc, current)
 *         2001  io.soundhash.v1.DeadLetter   version 1   (schemas/dead_letter.v1.avsc, current)
 *         3001  io.soundhash.v1.IndexDelta   version 1   (schemas/index_delta.v1.avsc, current)
 *     Ids are never reused: a new version gets the next number in its block.
 *   - rest: a Confluent Schema Registry (SOUNDHASH_SCHEMA_REGISTRY_URL). The current schema of a
 *     kind is registered on first use with POST /subjects/<subject>/versions, where <subject> is the
 *     record's full name (Confluent's RecordNameStrategy: one record type is published to several
 *     topics, e.g. live and reindex events). Ids seen in frames are looked up with
 *     GET /schemas/ids/<id>. Both directions are cached for the life of the handle; unknown ids are
 *     cached as unknown too (so hostile frames cannot make us hammer the registry), up to
 *     SH_REGISTRY_CACHE_MAX entries. HTTP has connect/total timeouts and a response-size cap.
 *     Error classes, so that consumers know whom to blame:
 *       SH_EHTTP, SH_ETIMEOUT  the registry is down, slow, failing (5xx) or answers garbage (not
 *                              JSON, over the size cap, fields missing): transient, not cached,
 *                              retry later; nothing is encoded.
 *       SH_ESCHEMA             a definitive answer: the id does not exist (404), or names a schema
 *                              that is not Avro / not one of our records: the MESSAGE is bad.
 * All producers and consumers of one deployment must use the same mode: embedded ids are
 * meaningless to a real registry.
 *
 * Thread safety: a registry handle may be shared by threads; its caches are guarded by a mutex.
 * Entries returned by lookups stay valid until sh_registry_free().
 */
#ifndef SH_REGISTRY_H
#define SH_REGISTRY_H

#include "sh_err.h"

#include <avro.h>
#include <stdint.h>

/* The record kinds of the contract. */
typedef enum sh_schema_kind {
    SH_KIND_AUDIO_EVENT = 0, /* io.soundhash.v1.AudioEvent */
    SH_KIND_DEAD_LETTER = 1, /* io.soundhash.v1.DeadLetter */
    SH_KIND_INDEX_DELTA = 2, /* io.soundhash.v1.IndexDelta */
    SH_KIND_COUNT
} sh_schema_kind;

enum {
    SH_SCHEMA_ID_AUDIO_EVENT_V1 = 1001,
    SH_SCHEMA_ID_AUDIO_EVENT_V2 = 1002,
    SH_SCHEMA_ID_AUDIO_EVENT_V3 = 1003,
    SH_SCHEMA_ID_DEAD_LETTER_V1 = 2001,
    SH_SCHEMA_ID_INDEX_DELTA_V1 = 3001,
    SH_REGISTRY_CACHE_MAX = 256,            /* ids remembered by a rest registry */
    SH_REGISTRY_RESPONSE_MAX = 1024 * 1024, /* bytes accepted in one registry response */
};

typedef struct sh_registry sh_registry;

/* One known schema. Owned by the registry; valid until sh_registry_free(). */
typedef struct sh_reg_schema {
    int32_t id;
    sh_schema_kind kind;
    int version;                /* our version number (1, 2, ...), 0 when not one of ours */
    avro_schema_t schema;       /* parsed writer schema */
    avro_value_iface_t *iface;  /* generic class for `schema` */
} sh_reg_schema;

/* Settings of a rest registry. Zero values mean the defaults in brackets. */
typedef struct sh_registry_config {
    const char *url;        /* e.g. "http://127.0.0.1:8081"; NULL or "" = embedded registry */
    long connect_timeout_ms; /* [2000] */
    long timeout_ms;        /* total per request [5000] */
    const char *userinfo;   /* "user:password" for HTTP basic auth, or NULL (a secret: take it
                               from the environment, SOUNDHASH_SCHEMA_REGISTRY_USERINFO) */
} sh_registry_config;

/* Embedded registry (fixed ids above). Returns 0, or SH_ENOMEM / SH_EAVRO (an embedded schema
 * failed to parse: a build defect). *out is set only on success; free with sh_registry_free(). */
int sh_registry_new_embedded(sh_registry **out, sh_err *e);

/* cfg->url set → rest registry (no network traffic until first use), else embedded.
 * Returns 0, SH_EINVAL (url not http:// or https://), SH_ENOMEM. */
int sh_registry_new(const sh_registry_config *cfg, sh_registry **out, sh_err *e);

/* Like sh_registry_new() with url = getenv("SOUNDHASH_SCHEMA_REGISTRY_URL"), userinfo =
 * getenv("SOUNDHASH_SCHEMA_REGISTRY_USERINFO") and both timeouts from
 * SOUNDHASH_SCHEMA_REGISTRY_TIMEOUT_MS (optional, 1..600000; else SH_EINVAL). */
int sh_registry_new_from_env(sh_registry **out, sh_err *e);

/* Frees the registry and every cached schema. Accepts NULL. */
void sh_registry_free(sh_registry *reg);

/* 1 when the registry talks to a Schema Registry over HTTP, 0 when embedded. */
int sh_registry_is_rest(const sh_registry *reg);

/* The schema we write records of `kind` with (the current version). For a rest registry the
 * first call registers it (POST) and caches the id. Returns 0, SH_EINVAL (bad kind), SH_EHTTP
 * (unreachable, HTTP error status such as 409 incompatible, garbage response), SH_ETIMEOUT,
 * SH_ESCHEMA (the returned id already names another record). */
int sh_registry_writer(sh_registry *reg, sh_schema_kind kind, const sh_reg_schema **out,
                       sh_err *e);

/* The schema with id `id` (from a frame). Returns 0, SH_ESCHEMA (unknown id, a schema that is
 * not one of our record kinds, unparseable schema, cache full), SH_EHTTP or SH_ETIMEOUT (registry
 * trouble, see above: retry). */
int sh_registry_lookup(sh_registry *reg, int32_t id, const sh_reg_schema **out, sh_err *e);

/* The embedded JSON text of one of our schema files by id (1001, 1002, ...), or NULL. Exposed so
 * tests can check it is identical to the files in schemas/. */
const char *sh_registry_embedded_json(int32_t id);

/* The .avsc file name (relative to schemas/) of an embedded id, or NULL. */
const char *sh_registry_embedded_file(int32_t id);

#endif
