/* upstream.h — the edge's client of an upstream node (`soundhash edge --upstream URL`) and the
 * merge of its answers with the local ones.
 *
 * An edge that does not hold every shard answers from its own shards; when they give fewer than
 * the K answers asked for (K = 1: no match, a cache miss), it asks the upstream — a secondary
 * region or a wider edge — for the shards it lacks: POST {URL}/v1/match?top=K&shards=LIST with
 * the clip's HASHES in the binary form (sh_qhash.h, one fingerprint per fp_version computed),
 * never the audio. The upstream answers from those shards only and, because the request carries
 * `shards=`, never forwards it again (no loops); X-SoundHash-Origin carries this process's
 * random id so that a node asked by itself refuses (508).
 *
 * The upstream is never trusted blindly: its answer must be a 200 with a JSON body of at most
 * ED_UP_RESPONSE_MAX bytes, and every field taken from it is type- and range-checked and copied
 * into new objects (a candidate of a shard not asked for, a confidence outside [0, 1], a node
 * name over SH_REGION_MAX bytes, ... make the whole answer an error). A failed, slow or malformed
 * upstream costs the caller at most --upstream-timeout-ms and is reported as status error or
 * timeout; the caller then answers from its own shards.
 *
 * Threads: ed_upstream_match() may be called from any number of threads at once; the client keeps
 * a small pool of libcurl easy handles (their connections stay open between requests) and
 * creates a temporary one when all are busy. curl_global_init() is the caller's (main()'s).
 */
#ifndef ED_UPSTREAM_H
#define ED_UPSTREAM_H

#include "sh_err.h"
#include "sh_fp.h"
#include "sh_metrics.h"
#include "sh_schema.h"

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>

enum {
    ED_UP_RESPONSE_MAX = 4 << 20, /* bytes of one upstream answer (100 answers with metadata) */
    ED_UP_HANDLES_MAX = 64,       /* easy handles kept */
    ED_UP_ORIGIN_LEN = 32,        /* hex characters of a process id (X-SoundHash-Origin) */
};

/* The outcome of one exchange, as the answers' "upstream.status" and the metrics name it. */
typedef enum ed_up_status {
    ED_UP_NOT_NEEDED = 0, /* not asked: the local shards sufficed, or the request was forwarded */
    ED_UP_OK,             /* a valid answer */
    ED_UP_ERROR,          /* unreachable, a non-200 status, a malformed or oversized answer */
    ED_UP_TIMEOUT,        /* no whole answer within the timeout */
} ed_up_status;

/* "not_needed", "ok", "error", "timeout". */
const char *ed_up_status_name(ed_up_status s);

typedef struct ed_up_config {
    const char *url;    /* base URL, http:// or https:// (copied; trailing '/' ignored) */
    const char *token;  /* bearer token sent to the upstream, or NULL (copied) */
    const char *origin; /* this process's id (ED_UP_ORIGIN_LEN hex; copied) */
    long timeout_ms;    /* one whole exchange, connection included (1..600000) */
    size_t handles;     /* easy handles kept for keep-alive (1..ED_UP_HANDLES_MAX) */
    int nshards;        /* partitions of the topic (shard numbers are checked against it) */
} ed_up_config;

typedef struct ed_upstream ed_upstream;

/* Creates a client and registers its metrics in `reg` (not owned; must outlive the client):
 * soundhash_edge_upstream_requests_total{result="ok|error|timeout"} and the
 * soundhash_edge_upstream_seconds histogram. No connection is made here. Errors: SH_EUSAGE (the
 * URL is not http(s), a value out of range), SH_EEXIST (metrics already registered), SH_ENOMEM. */
int ed_upstream_new(const ed_up_config *c, sh_metrics *reg, ed_upstream **out, sh_err *e);

/* Frees the client and closes its connections; accepts NULL. No call may be running. */
void ed_upstream_free(ed_upstream *u);

/* The base URL as configured (without trailing '/'); owned by the client. */
const char *ed_upstream_url(const ed_upstream *u);

/* One fingerprint of the clip: QUERY-mode hashes of fp_version (borrowed for the call). */
typedef struct ed_up_query {
    int fp_version;
    const sh_hash *h;
    size_t n;
} ed_up_query;

/* An upstream's answer, validated. `candidates` holds at most K objects {"track_id", "offset_s",
 * "duration_s", "score", "confidence", "scale", "shard", "metadata", "node"}, best first, at most
 * one per track id; `shards` the upstream's consulted shards {"shard", "epoch", "position",
 * "node"}, only shards that were asked for. Both are owned by the answer (empty arrays unless
 * status is ED_UP_OK); free with ed_up_answer_clear(). */
typedef struct ed_up_answer {
    ed_up_status status;
    double elapsed_ms;              /* the exchange, wall clock (monotonic) */
    char node[SH_REGION_MAX + 1];   /* the upstream's "node"; "" when unknown */
    json_t *candidates;
    json_t *shards;
    char error[256];                /* why, when status is error or timeout */
} ed_up_answer;

/* Zeroes `a` (status not_needed, empty arrays). Errors: SH_ENOMEM. */
int ed_up_answer_init(ed_up_answer *a);
/* Releases the arrays; `a` may then be initialised again. Accepts a zeroed answer. */
void ed_up_answer_clear(ed_up_answer *a);

/* Asks the upstream for the K ≤ SH_RECOGNIZE_TOP_MAX best answers of the query in the shards
 * marked in ask[0..nshards) (at least one), sending q[0..nq) (1 ≤ nq, each n ≥ 1). `a` must be
 * initialised; it receives the outcome, which is never a failure of the caller: unreachable,
 * slow, non-200, oversized or malformed answers are status error or timeout with a reason, and
 * counted in the metrics. Returns 0, or SH_EINVAL (bad arguments) / SH_ENOMEM (nothing was sent). */
int ed_upstream_match(ed_upstream *u, const ed_up_query *q, size_t nq,
                      const unsigned char *ask, size_t k, ed_up_answer *a, sh_err *e);

/* The last exchange for /v1/shards: {"url", "status" (of the last exchange, "not_needed" before
 * any), "elapsed_ms", "node", "at_ms" (wall clock; 0 before any), "requests", "connections"
 * (opened so far: fewer than requests when keep-alive works)}. New reference or NULL (out of
 * memory). Thread-safe. */
json_t *ed_upstream_state_json(const ed_upstream *u);

/* Parses an upstream's 200 body (hostile input: `len` bytes, no NUL needed) into `a`'s node,
 * candidates and shards, keeping at most k candidates and only shards marked in ask[0..nshards).
 * Does not touch status or elapsed_ms. Errors: SH_EFORMAT (not JSON, a field missing, of the wrong
 * type or out of range, a shard not asked for, a duplicate shard), SH_ENOMEM; `a`'s arrays are
 * then left empty. */
int ed_up_parse(const char *body, size_t len, const unsigned char *ask, int nshards, size_t k,
                ed_up_answer *a, sh_err *e);

/* Merges two candidate arrays (each best first, each element an object with "track_id" and
 * "confidence" and "score") into a new array of at most k: best confidence first (ties: higher
 * score, then the local side), one per track id (its best). Elements are shared (incref'd), not
 * copied. Returns NULL when out of memory. */
json_t *ed_up_merge(json_t *local, json_t *remote, size_t k);

#endif
