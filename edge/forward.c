/* forward.c — completing a local answer through --upstream (upstream.h): when to ask, which shards,
 * and what the answer then says ("upstream", "complete", the answers' "node", the upstream's
 * consulted shards joining "shards"). The match path calls ed_forward() once per request, after
 * its own shards answered.
 */
#include "edge.h"

#include <stdlib.h>
#include <string.h>

/* Marks the shards of a consulted list {"shard": N, ...} in seen[0..nshards). */
static void mark_consulted(const json_t *consulted, int nshards, unsigned char *seen)
{
    size_t i;
    const json_t *s;
    json_array_foreach(consulted, i, s) {
        json_int_t n = json_integer_value(json_object_get(s, "shard"));
        if (n >= 0 && n < nshards)
            seen[n] = 1;
    }
}

/* The shards wanted and not consulted into ask[]; their count. */
static size_t missing(const unsigned char *want, const unsigned char *seen, int nshards,
                      unsigned char *ask)
{
    size_t n = 0;
    for (int i = 0; i < nshards; i++)
        n += (ask[i] = want[i] && !seen[i]);
    return n;
}

/* 1 when the best answer (first of merged) is one of the upstream's. */
static int best_is_remote(const json_t *merged, const json_t *remote)
{
    const json_t *best = json_array_get(merged, 0);
    size_t i;
    const json_t *c;
    json_array_foreach(remote, i, c) {
        if (c == best)
            return 1;
    }
    return 0;
}

static json_t *upstream_json(const ed *x, const ed_up_answer *a)
{
    json_t *o = json_pack("{s:s, s:s, s:f, s:s}", "url", ed_upstream_url(x->up), "status",
                          ed_up_status_name(a->status), "elapsed_ms", a->elapsed_ms, "node",
                          a->node);
    if (o && a->status != ED_UP_OK && a->status != ED_UP_NOT_NEEDED)
        json_object_set_new(o, "error", json_string(a->error));
    return o;
}

int ed_forward(ed *x, const unsigned char *want_in, const ed_up_query *q, size_t nq, size_t k,
               json_t **cands, json_t *consulted, json_t *answer, sh_err *e)
{
    const size_t ns = (size_t)x->nshards;
    unsigned char *m = calloc(3, ns ? ns : 1), *want = m, *seen = m + ns, *ask = m + 2 * ns;
    ed_up_answer a;
    int rc = m ? ed_up_answer_init(&a) : SH_ENOMEM;
    if (rc) {
        free(m);
        return sh_err_set(e, SH_ENOMEM, "out of memory");
    }
    if (want_in)
        memcpy(want, want_in, ns);
    else
        memset(want, 1, ns);
    mark_consulted(consulted, x->nshards, seen);
    size_t nmiss = missing(want, seen, x->nshards, ask);
    /* Asked: the upstream exists, shards are missing, the local shards gave fewer than K answers
     * (K = 1: no match — a cache miss), and the request is not itself a forwarded one (it would
     * carry shards=: never forwarded twice, so no loops). */
    if (x->up && nmiss && json_array_size(*cands) < k && !want_in && nq)
        rc = ed_upstream_match(x->up, q, nq, ask, k, &a, e);
    json_t *merged = rc == 0 ? ed_up_merge(*cands, a.candidates, k) : NULL;
    if (rc == 0 && !merged)
        rc = sh_err_set(e, SH_ENOMEM, "out of memory");
    if (rc == 0) {
        sh_series *src = !json_array_size(merged) ? x->m.ans_none
                         : best_is_remote(merged, a.candidates) ? x->m.ans_upstream
                                                                : x->m.ans_local;
        sh_series_add(src, 1);
        json_array_extend(consulted, a.shards);
        mark_consulted(a.shards, x->nshards, seen);
        json_decref(*cands);
        *cands = merged;
        json_object_set_new(answer, "complete",
                            json_boolean(missing(want, seen, x->nshards, ask) == 0));
        if (x->up)
            json_object_set_new(answer, "upstream", upstream_json(x, &a));
    }
    ed_up_answer_clear(&a);
    free(m);
    return rc;
}
