/* match.c — POST /v1/match: an audio clip or a client's hashes (sh_qhash) looked up in the held
 * shards, over every fingerprint version they hold, answers merged into one ranked list.
 *
 * Why per version: during a catalogue reindex a shard holds tracks of two fingerprint versions
 * (one posting index each). An audio query is fingerprinted once per version present and each
 * version looked up in its own index, so every track stays matchable while it moves. The versions
 * a shard holds are read again after its lookups: a track that moved to a new version between
 * the read and the lookup is then found under the new one. Track numbers are unique across a
 * shard's versions and track ids across shards; a track seen twice (before and after its move)
 * is answered once, with its best confidence. */
#include "edge.h"

#include "sh_clock.h"
#include "sh_log.h"
#include "sh_qhash.h"
#include "sh_shardmap.h"
#include "sh_vec.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

const int ed_fpv[ED_FPV_N] = {2, 3, 4};

static int fpv_index(int fp_version)
{
    for (int i = 0; i < ED_FPV_N; i++)
        if (ed_fpv[i] == fp_version)
            return i;
    return -1;
}

/* ---- slots -------------------------------------------------------------------------------- */

static int recognize_config(int fp_version, long max_clip_s, sh_recognize_config *rc, sh_err *e)
{
    sh_recognize_config_default(rc);
    int r = sh_fp_config_for_version(fp_version, &rc->fp, e);
    if (r)
        return r;
    rc->fp.query = 1;
    sh_match_config_for(&rc->fp, &rc->match);
    rc->max_duration_s = (double)max_clip_s;
    return 0;
}

int ed_slots_new(ed *x, sh_err *e)
{
    pthread_mutex_init(&x->pool_lock, NULL);
    x->npool = (size_t)x->cfg.http_threads; /* from here on ed_slots_free() cleans up */
    x->lanes = x->cfg.match_threads < 1              ? 1
               : x->cfg.match_threads > ED_LANES_MAX ? ED_LANES_MAX
                                                     : (int)x->cfg.match_threads;
    x->slots = calloc(x->npool, sizeof *x->slots);
    x->pool = calloc(x->npool, sizeof *x->pool);
    if (!x->slots || !x->pool)
        return sh_err_set(e, SH_ENOMEM, "out of memory");
    int r = sh_pool_new(x->lanes - 1, &x->match_pool, e);
    if (r)
        return r;
    double per_s = 0;
    for (int v = 0; v < ED_FPV_N; v++) {
        sh_recognize_config rc;
        r = recognize_config(ed_fpv[v], x->cfg.max_clip_s, &rc, e);
        for (size_t i = 0; r == 0 && i < x->npool; i++)
            for (int l = 0; r == 0 && l < x->lanes; l++)
                r = sh_recognizer_new(&rc, &x->slots[i].r[l][v], e);
        if (r)
            return r;
        if (sh_fp_max_hashes_per_s(&rc.fp) > per_s)
            per_s = sh_fp_max_hashes_per_s(&rc.fp);
    }
    for (; x->nfree < x->npool; x->nfree++)
        x->pool[x->nfree] = &x->slots[x->nfree];
    x->max_hashes = (size_t)(per_s * (double)x->cfg.max_clip_s) + 1;
    return 0;
}

void ed_slots_free(ed *x)
{
    for (size_t i = 0; x->slots && i < x->npool; i++)
        for (int l = 0; l < ED_LANES_MAX; l++)
            for (int v = 0; v < ED_FPV_N; v++)
                sh_recognizer_free(x->slots[i].r[l][v]);
    sh_pool_free(x->match_pool);
    x->match_pool = NULL;
    free(x->slots);
    free(x->pool);
    if (x->npool)
        pthread_mutex_destroy(&x->pool_lock);
    x->slots = NULL;
    x->pool = NULL;
    x->npool = x->nfree = 0;
}

ed_slot *ed_slot_take(ed *x)
{
    pthread_mutex_lock(&x->pool_lock);
    ed_slot *s = x->nfree ? x->pool[--x->nfree] : NULL;
    pthread_mutex_unlock(&x->pool_lock);
    return s;
}

void ed_slot_give(ed *x, ed_slot *s)
{
    pthread_mutex_lock(&x->pool_lock);
    x->pool[x->nfree++] = s;
    pthread_mutex_unlock(&x->pool_lock);
}

/* ---- one lookup --------------------------------------------------------------------------- */

typedef struct cand {
    json_t *j;
    const char *id; /* the track id inside j */
    double confidence;
    int score;
    int vi;                /* the version looked up */
    sh_recognize_answer a; /* its figures (strings not kept: see j) */
    size_t part;           /* q->part index of its shard (set when gathered) */
} cand;

/* What one shard's lookups found (written by the lane that looked it up, read after every lane
 * is done). */
typedef struct part {
    cand *c;
    size_t nc, capc;
    json_t *consulted; /* the shard's entry of "shards"; NULL: not consulted */
    unsigned used;     /* versions looked up (bit vi) */
    sh_recognize_stats st[ED_FPV_N]; /* of each version's lookup */
    int rc;
    sh_err e;
} part;

/* A request's lookup state. Audio queries fill h/n per version on first need. */
typedef struct query {
    ed *x;
    ed_slot *slot;
    const void *audio; /* NULL: client hashes, version `fixed` */
    size_t audio_len;
    int fixed;
    /* Guards the per-version fields below, which any lane may fill on first need. */
    pthread_mutex_t lock;
    const sh_hash *h[ED_FPV_N]; /* in t-order, as made or sent: what an upstream is sent */
    size_t n[ED_FPV_N];
    sh_hash *sorted[ED_FPV_N]; /* h in lookup order, made on first need (owned) */
    int made[ED_FPV_N]; /* h/n are valid */
    int status; /* of the last error */
    size_t k;
    /* the shards looked up: part[i] is held shard sel[i] */
    part *part;
    size_t *sel;
    size_t nsel;
    /* after the lookups: every part's candidates */
    cand *c;
    size_t nc, capc;
} query;

/* The hashes of version index vi, fingerprinting the audio if not done yet (with lane 0's
 * recognizer: only the hashes are taken from it, never its matcher). Under q->lock. */
static int hashes_of_locked(query *q, int vi, sh_err *e)
{
    if (q->made[vi])
        return 0;
    if (!q->audio) /* client hashes come in one version only */
        return sh_err_set(e, SH_EINTERNAL, "no hashes of fp_version %d", ed_fpv[vi]);
    int rc = sh_recognize_clip_mem(q->slot->r[0][vi], q->audio, q->audio_len, e);
    if (rc) {
        q->status = rc == SH_ETOOLONG ? 413 : rc == SH_ENOMEM ? 500 : 422;
        return sh_err_wrap(e, rc, "audio");
    }
    q->h[vi] = sh_recognize_hashes(q->slot->r[0][vi], &q->n[vi]);
    q->made[vi] = 1;
    return 0;
}

static int hashes_of(query *q, int vi, sh_err *e)
{
    pthread_mutex_lock(&q->lock);
    int rc = hashes_of_locked(q, vi, e);
    pthread_mutex_unlock(&q->lock);
    return rc;
}

/* The hashes of version vi in lookup order (sh_shard_query_sort), sorted once per request for
 * every shard's lookup: given unsorted hashes each shard's lookup sorted its own copy (at 8
 * shards a third of a query's instructions). q->h stays as it was: the upstream is sent the
 * hashes in t-order, which clip_fits and the far side's checks assume. Made on first need by
 * whichever lane needs them first; *out is then read-only for every lane. */
static int sorted_of(query *q, int vi, const sh_hash **out, size_t *n, sh_err *e)
{
    pthread_mutex_lock(&q->lock);
    int rc = hashes_of_locked(q, vi, e);
    if (rc == 0 && !q->sorted[vi] && q->n[vi]) {
        q->sorted[vi] = malloc(q->n[vi] * sizeof *q->sorted[vi]);
        if (!q->sorted[vi])
            rc = sh_err_set(e, SH_ENOMEM, "out of memory");
        else {
            memcpy(q->sorted[vi], q->h[vi], q->n[vi] * sizeof *q->sorted[vi]);
            rc = sh_shard_query_sort(q->sorted[vi], q->n[vi], e);
            if (rc) {
                free(q->sorted[vi]);
                q->sorted[vi] = NULL;
            }
        }
    }
    *out = q->sorted[vi] ? q->sorted[vi] : q->h[vi];
    *n = q->n[vi];
    pthread_mutex_unlock(&q->lock);
    return rc;
}

static json_t *answer_json(const ed *x, const sh_recognize_answer *a, int shard, int fpv)
{
    json_t *meta = a->meta_json[0] ? json_loads(a->meta_json, 0, NULL) : NULL;
    return json_pack("{s:s, s:f, s:f, s:i, s:f, s:f, s:s, s:i, s:i, s:o}", "track_id", a->id,
                     "offset_s", a->offset_s, "duration_s", a->duration_s, "score", a->score,
                     "confidence", a->confidence, "scale", a->scale, "node", ed_node_name(x),
                     "shard", shard, "fp_version", fpv, "metadata", meta ? meta : json_null());
}

/* Looks version vi up in one shard (its read lock held) on `lane`, adding the answers to p. */
static int lookup(query *q, part *p, int lane, ed_shard *sh, int vi, sh_err *e)
{
    sh_recognize_answer a[SH_RECOGNIZE_TOP_MAX];
    size_t na = 0, n = 0;
    const sh_hash *h = NULL;
    int rc = sorted_of(q, vi, &h, &n, e);
    if (rc == 0)
        rc = sh_recognize_shard_fp(q->slot->r[lane][vi], sh->s, ed_fpv[vi], h, n, q->k, a, &na,
                                   &p->st[vi], e);
    p->used |= rc == 0 ? 1u << vi : 0u;
    if (rc == 0 && sh_vec_reserve(&p->c, &p->capc, p->nc + na, SH_VEC_NOCAP))
        rc = sh_err_set(e, SH_ENOMEM, "out of memory");
    for (size_t i = 0; rc == 0 && i < na; i++) {
        json_t *j = answer_json(q->x, &a[i], sh->n, ed_fpv[vi]);
        if (!j)
            return sh_err_set(e, SH_ENOMEM, "out of memory");
        p->c[p->nc++] = (cand){j, json_string_value(json_object_get(j, "track_id")),
                               a[i].confidence, a[i].score, vi, a[i], 0};
    }
    return rc;
}

/* The supported versions shard s holds, as a bit mask of version indexes. */
static int versions_mask(sh_shard *s, unsigned *mask, sh_err *e)
{
    int v[SH_SHARD_FP_VERSIONS_MAX];
    size_t n = 0;
    int rc = sh_shard_fp_versions(s, v, SH_SHARD_FP_VERSIONS_MAX, &n, e);
    *mask = 0;
    for (size_t i = 0; rc == 0 && i < n; i++)
        if (fpv_index(v[i]) >= 0)
            *mask |= 1u << fpv_index(v[i]);
    return rc;
}

/* Every version the shard holds, read again after each round of lookups until no new one shows:
 * at most ED_FPV_N rounds do work. */
static int lookup_all_versions(query *q, part *p, int lane, ed_shard *sh, sh_err *e)
{
    unsigned done = 0, have = 0;
    for (int round = 0; round <= ED_FPV_N; round++) {
        int rc = versions_mask(sh->s, &have, e);
        if (rc)
            return rc;
        unsigned fresh = have & ~done;
        if (!fresh)
            return 0;
        for (int vi = 0; vi < ED_FPV_N; vi++)
            if ((fresh >> vi & 1u) && (rc = lookup(q, p, lane, sh, vi, e)) != 0)
                return rc;
        done |= fresh;
    }
    return 0;
}

static json_t *consulted_json(const ed_shard *sh)
{
    return json_pack("{s:i, s:I, s:I}", "shard", sh->n, "epoch",
                     (json_int_t)atomic_load(&sh->epoch), "position",
                     (json_int_t)atomic_load(&sh->position));
}

/* One shard, under its read lock. A shard waiting for a bootstrap still answers from what it
 * holds (its position says how old that is); only a shard never loaded is left out. */
static int lookup_shard(query *q, part *p, int lane, ed_shard *sh, sh_err *e)
{
    pthread_rwlock_rdlock(&sh->lock);
    int rc = 0;
    if (sh->s && atomic_load(&sh->position) >= 0) {
        rc = q->audio ? lookup_all_versions(q, p, lane, sh, e)
                      : lookup(q, p, lane, sh, fpv_index(q->fixed), e);
        if (rc == 0 && !(p->consulted = consulted_json(sh)))
            rc = sh_err_set(e, SH_ENOMEM, "out of memory");
    }
    pthread_rwlock_unlock(&sh->lock);
    return rc;
}

/* sh_pool item i: the i-th selected shard, on `lane`. */
static void shard_item(void *ud, size_t i, int lane)
{
    query *q = ud;
    part *p = &q->part[i];
    p->rc = lookup_shard(q, p, lane, &q->x->held[q->sel[i]], &p->e);
}

static int selected(const ed *x, const unsigned char *want, const ed_shard *sh)
{
    return !want || (sh->n < x->nshards && want[sh->n]);
}

/* Fingerprints the audio with every version a selected shard holds (before any lookup, outside
 * the shards' locks), or with SH_FP_VERSION when none holds any: bad audio is always refused. */
static int prefetch(query *q, const unsigned char *want, sh_err *e)
{
    unsigned all = 0;
    for (size_t i = 0; i < q->x->nheld; i++) {
        ed_shard *sh = &q->x->held[i];
        if (!selected(q->x, want, sh))
            continue;
        unsigned m = 0;
        pthread_rwlock_rdlock(&sh->lock);
        int rc = sh->s && atomic_load(&sh->position) >= 0 ? versions_mask(sh->s, &m, e) : 0;
        pthread_rwlock_unlock(&sh->lock);
        if (rc)
            return rc;
        all |= m;
    }
    if (!all)
        all = 1u << fpv_index(SH_FP_VERSION);
    for (int vi = 0; vi < ED_FPV_N; vi++) {
        int rc = (all >> vi & 1u) ? hashes_of(q, vi, e) : 0;
        if (rc)
            return rc;
    }
    return 0;
}

static int cand_by_id(const void *a, const void *b)
{
    const cand *p = a, *q = b;
    int c = strcmp(p->id, q->id);
    if (c)
        return c;
    if (p->confidence != q->confidence)
        return p->confidence < q->confidence ? 1 : -1;
    return (p->score < q->score) - (p->score > q->score);
}

static int cand_best_first(const void *a, const void *b)
{
    const cand *p = a, *q = b;
    if (p->confidence != q->confidence)
        return p->confidence < q->confidence ? 1 : -1;
    if (p->score != q->score)
        return (p->score < q->score) - (p->score > q->score);
    return strcmp(p->id, q->id); /* deterministic */
}

/* One answer per track id (its best), best first, at most k, into a new array. */
static json_t *merge(query *q)
{
    if (q->nc) /* qsort(NULL, 0) is undefined */
        qsort(q->c, q->nc, sizeof *q->c, cand_by_id);
    size_t m = 0;
    for (size_t i = 0; i < q->nc; i++) {
        if (m && !strcmp(q->c[m - 1].id, q->c[i].id)) {
            json_decref(q->c[i].j);
            continue;
        }
        q->c[m++] = q->c[i];
    }
    q->nc = m;
    if (q->nc)
        qsort(q->c, q->nc, sizeof *q->c, cand_best_first);
    json_t *a = json_array();
    for (size_t i = 0; a && i < q->nc && i < q->k; i++)
        json_array_append(a, q->c[i].j);
    return a;
}

static void query_free(query *q)
{
    for (size_t i = 0; i < q->nc; i++)
        json_decref(q->c[i].j);
    free(q->c);
    for (size_t i = 0; q->part && i < q->nsel; i++) {
        for (size_t j = 0; j < q->part[i].nc; j++)
            json_decref(q->part[i].c[j].j);
        free(q->part[i].c);
        json_decref(q->part[i].consulted);
    }
    free(q->part);
    free(q->sel);
    for (int vi = 0; vi < ED_FPV_N; vi++)
        free(q->sorted[vi]);
    pthread_mutex_destroy(&q->lock);
}

void ed_match_free(ed_match *m)
{
    if (!m)
        return;
    json_decref(m->answers);
    json_decref(m->shards);
    json_decref(m->missing);
    json_decref(m->fp_versions);
    const int status = m->status;
    memset(m, 0, sizeof *m);
    m->status = status;
}

/* Missing = selected shard numbers this node does not hold. */
static json_t *missing_json(const ed *x, const unsigned char *want)
{
    json_t *a = json_array();
    for (int s = 0; a && want && s < x->nshards; s++) {
        if (!want[s])
            continue;
        int held = 0;
        for (size_t i = 0; i < x->nheld && !held; i++)
            held = x->held[i].n == s;
        if (!held)
            json_array_append_new(a, json_integer(s));
    }
    return a;
}

/* Looks the selected shards up on the request's lanes, then gathers the parts in shard order
 * (the same answer, "shards" list and first error whatever the lanes): the candidates into q->c,
 * the consulted shards into `consulted`, the versions used into *used. */
static int lookup_selected(query *q, const unsigned char *want, json_t *consulted,
                           unsigned *used, sh_err *e)
{
    q->sel = malloc((q->x->nheld ? q->x->nheld : 1) * sizeof *q->sel);
    q->part = calloc(q->x->nheld ? q->x->nheld : 1, sizeof *q->part);
    if (!q->sel || !q->part)
        return sh_err_set(e, SH_ENOMEM, "out of memory");
    for (size_t i = 0; i < q->x->nheld; i++)
        if (selected(q->x, want, &q->x->held[i]))
            q->sel[q->nsel++] = i;
    sh_pool_run(q->x->match_pool, q->nsel, q->x->lanes, shard_item, q);
    for (size_t i = 0; i < q->nsel; i++) {
        part *p = &q->part[i];
        if (p->rc) {
            *e = p->e;
            return p->rc;
        }
        *used |= p->used;
        if (sh_vec_reserve(&q->c, &q->capc, q->nc + p->nc, SH_VEC_NOCAP))
            return sh_err_set(e, SH_ENOMEM, "out of memory");
        for (size_t j = 0; j < p->nc; j++) {
            q->c[q->nc] = p->c[j];
            q->c[q->nc++].part = i;
        }
        p->nc = 0; /* now q->c's */
        if (p->consulted && json_array_append(consulted, p->consulted) != 0)
            return sh_err_set(e, SH_ENOMEM, "out of memory");
    }
    return 0;
}

/* Every version's answers judged against the other shards' lookups of that version
 * (sh_recognize_judge: one shard's candidates are a thin sample of the noise floor; README,
 * "Recognition at scale"); answers that fall below the threshold are dropped, the others' JSON
 * confidence updated. After lookup_selected. */
static int judge(query *q, sh_err *e)
{
    const size_t nc = q->nc ? q->nc : 1, np = q->nsel ? q->nsel : 1;
    sh_recognize_answer *a = malloc(nc * sizeof *a);
    size_t *from = malloc(nc * sizeof *from), *idx = malloc(nc * sizeof *idx);
    size_t *lookup_of = malloc(np * sizeof *lookup_of); /* part -> its index among vi's lookups */
    sh_recognize_stats *st = malloc(np * sizeof *st);
    int rc = !a || !from || !idx || !lookup_of || !st ? sh_err_set(e, SH_ENOMEM, "out of memory")
                                                      : 0;
    for (int vi = 0; rc == 0 && vi < ED_FPV_N; vi++) {
        size_t nst = 0, na = 0;
        for (size_t i = 0; i < q->nsel; i++)
            if (q->part[i].used >> vi & 1u) {
                lookup_of[i] = nst;
                st[nst++] = q->part[i].st[vi];
            }
        for (size_t i = 0; nst > 1 && i < q->nc; i++)
            if (q->c[i].vi == vi) {
                from[na] = lookup_of[q->c[i].part];
                idx[na] = i;
                a[na++] = q->c[i].a;
            }
        if (na == 0)
            continue;
        sh_recognize_config rcfg;
        if ((rc = recognize_config(ed_fpv[vi], q->x->cfg.max_clip_s, &rcfg, e)) != 0)
            break;
        sh_recognize_judge(&rcfg, a, na, from, st, nst);
        for (size_t i = 0; rc == 0 && i < na; i++) {
            cand *c = &q->c[idx[i]];
            c->a.confidence = a[i].confidence;
            if (!sh_recognize_is_answer(&rcfg, &a[i]))
                c->confidence = -1; /* dropped below */
            else if (a[i].confidence != c->confidence) {
                c->confidence = a[i].confidence;
                if (json_object_set_new(c->j, "confidence", json_real(a[i].confidence)))
                    rc = sh_err_set(e, SH_ENOMEM, "out of memory");
            }
        }
    }
    size_t m = 0;
    for (size_t i = 0; i < q->nc; i++) {
        if (q->c[i].confidence < 0) {
            json_decref(q->c[i].j);
            continue;
        }
        q->c[m++] = q->c[i];
    }
    q->nc = m;
    free(a);
    free(from);
    free(idx);
    free(lookup_of);
    free(st);
    return rc;
}

static int run(query *q, const unsigned char *want, ed_match *out, sh_err *e)
{
    memset(out, 0, sizeof *out);
    out->status = 500;
    q->status = 500;
    pthread_mutex_init(&q->lock, NULL);
    if (q->k < 1 || q->k > SH_RECOGNIZE_TOP_MAX) {
        out->status = 400;
        query_free(q);
        return sh_err_set(e, SH_EINVAL, "top: 1..%d", SH_RECOGNIZE_TOP_MAX);
    }
    int rc = q->audio ? prefetch(q, want, e) : 0;
    json_t *consulted = json_array();
    if (rc == 0 && !consulted)
        rc = sh_err_set(e, SH_ENOMEM, "out of memory");
    unsigned used = 0;
    if (rc == 0)
        rc = lookup_selected(q, want, consulted, &used, e);
    if (rc == 0)
        rc = judge(q, e);
    if (rc) {
        out->status = q->status;
        json_decref(consulted);
        query_free(q);
        return rc;
    }
    out->answers = merge(q);
    out->shards = consulted;
    out->missing = missing_json(q->x, want);
    out->fp_versions = json_array();
    for (int vi = 0; vi < ED_FPV_N; vi++) {
        /* Client hashes name their version even when no shard could be consulted. */
        if ((used >> vi & 1u) || (!q->audio && ed_fpv[vi] == q->fixed))
            json_array_append_new(out->fp_versions, json_integer(ed_fpv[vi]));
        if (q->made[vi] && ((used >> vi & 1u) || !used))
            out->hashes += q->n[vi];
        if (q->made[vi] && q->n[vi]) /* every fingerprint made, for an upstream */
            out->sent[out->nsent++] = (ed_up_query){ed_fpv[vi], q->h[vi], q->n[vi]};
    }
    query_free(q);
    if (!out->answers || !out->missing || !out->fp_versions) {
        ed_match_free(out);
        return sh_err_set(e, SH_ENOMEM, "out of memory");
    }
    out->status = 200;
    return 0;
}

int ed_match_hashes(ed *x, ed_slot *slot, int fp_version, const sh_hash *h, size_t n, size_t k,
                    const unsigned char *want, ed_match *out, sh_err *e)
{
    int vi = fpv_index(fp_version);
    if (vi < 0) {
        memset(out, 0, sizeof *out);
        out->status = 422;
        char list[ED_FPV_N * 12] = "";
        for (int i = 0, len = 0; i < ED_FPV_N && len < (int)sizeof list; i++)
            len += snprintf(list + len, sizeof list - (size_t)len, "%s%d", i ? ", " : "", ed_fpv[i]);
        return sh_err_set(e, SH_EUNSUPPORTED, "fp_version %d: this node compares %s", fp_version,
                          list);
    }
    query q = {.x = x, .slot = slot, .fixed = fp_version, .k = k};
    q.h[vi] = h;
    q.n[vi] = n;
    q.made[vi] = 1;
    return run(&q, want, out, e);
}

int ed_match_audio(ed *x, ed_slot *slot, const void *buf, size_t len, size_t k,
                   const unsigned char *want, ed_match *out, sh_err *e)
{
    static const char none[1];
    query q = {.x = x, .slot = slot, .audio = buf ? buf : none, .audio_len = len, .k = k};
    return run(&q, want, out, e);
}

/* Adds v to the ascending set u[0..*n) (cap entries; past it v is dropped). */
static void set_add(int *u, size_t *n, size_t cap, int v)
{
    size_t i = 0;
    while (i < *n && u[i] < v)
        i++;
    if ((i < *n && u[i] == v) || *n == cap)
        return;
    memmove(u + i + 1, u + i, (*n - i) * sizeof *u);
    u[i] = v;
    (*n)++;
}

json_t *ed_held_fp_versions(ed *x)
{
    int u[4 * SH_SHARD_FP_VERSIONS_MAX];
    size_t nu = 0;
    for (size_t i = 0; i < x->nheld; i++) {
        ed_shard *sh = &x->held[i];
        int v[SH_SHARD_FP_VERSIONS_MAX];
        size_t n = 0;
        pthread_rwlock_rdlock(&sh->lock);
        if (!sh->s || sh_shard_fp_versions(sh->s, v, SH_SHARD_FP_VERSIONS_MAX, &n, NULL) != 0)
            n = 0;
        pthread_rwlock_unlock(&sh->lock);
        for (size_t j = 0; j < n; j++)
            set_add(u, &nu, sizeof u / sizeof *u, v[j]);
    }
    json_t *a = json_array();
    for (size_t i = 0; a && i < nu; i++)
        json_array_append_new(a, json_integer(u[i]));
    return a;
}

/* ---- the handler -------------------------------------------------------------------------- */

enum body_kind { BODY_AUDIO, BODY_JSON, BODY_BINARY };

/* The media type of Content-Type (parameters and case ignored). */
static enum body_kind body_kind(const sh_http_req *req)
{
    const char *ct = sh_http_req_header(req, "Content-Type");
    if (!ct)
        return BODY_AUDIO;
    while (*ct == ' ' || *ct == '\t')
        ct++;
    size_t n = strcspn(ct, ";");
    while (n && (ct[n - 1] == ' ' || ct[n - 1] == '\t'))
        n--;
    if (n == strlen("application/json") && !strncasecmp(ct, "application/json", n))
        return BODY_JSON;
    if (n == strlen(SH_QHASH_CONTENT_TYPE) && !strncasecmp(ct, SH_QHASH_CONTENT_TYPE, n))
        return BODY_BINARY;
    return BODY_AUDIO;
}

int ed_parse_shards(const char *s, int nshards, unsigned char *want, sh_err *e)
{
    memset(want, 0, (size_t)nshards);
    const char *p = s;
    for (;;) {
        if (*p < '0' || *p > '9')
            return sh_err_set(e, SH_EFORMAT, "shards: want a comma list of shard numbers");
        unsigned long v = 0;
        while (*p >= '0' && *p <= '9' && v < SH_SHARDS_MAX)
            v = v * 10 + (unsigned long)(*p++ - '0');
        if (v >= (unsigned long)nshards || (*p >= '0' && *p <= '9'))
            return sh_err_set(e, SH_EFORMAT, "shards: no shard %s%lu (there are %d)",
                              *p >= '0' && *p <= '9' ? "above " : "", v, nshards);
        want[v] = 1;
        if (*p != ',')
            break;
        p++;
    }
    if (*p)
        return sh_err_set(e, SH_EFORMAT, "shards: want a comma list of shard numbers");
    return 0;
}

static int refuse(ed *x, sh_http_resp *resp, int status, const char *msg)
{
    if (status < 500)
        sh_series_add(x->m.bad_requests, 1);
    return ed_json_error(resp, status, msg);
}

/* 422 for a version this build cannot compare: names the versions the node holds. */
static int refuse_version(ed *x, sh_http_resp *resp, int fp_version)
{
    sh_series_add(x->m.bad_requests, 1);
    json_t *held = ed_held_fp_versions(x);
    json_t *can = json_array();
    for (int i = 0; can && i < ED_FPV_N; i++)
        json_array_append_new(can, json_integer(ed_fpv[i]));
    char *h = held ? json_dumps(held, JSON_COMPACT) : NULL;
    char msg[256];
    snprintf(msg, sizeof msg, "fp_version %d: not one this node compares; its shards hold %s",
             fp_version, h ? h : "[]");
    free(h);
    return ed_json_answer(resp, 422, json_pack("{s:s, s:o, s:o}", "error", msg, "fp_versions",
                                               held ? held : json_array(), "supported",
                                               can ? can : json_array()));
}

/* The answer, completed through --upstream when this node lacks shards (forward.c). */
static int answer(ed *x, const unsigned char *want, sh_http_resp *resp, ed_match *m, size_t k,
                  double t0)
{
    sh_err e = {0};
    json_t *o = json_pack("{s:n, s:s, s:O, s:O, s:O, s:I}", "match", "node", ed_node_name(x),
                          "shards", m->shards, "missing", m->missing, "fp_versions",
                          m->fp_versions, "hashes", (json_int_t)m->hashes);
    int rc = o ? ed_forward(x, want, m->sent, m->nsent, k, &m->answers, m->shards, o, &e)
               : sh_err_set(&e, SH_ENOMEM, "out of memory");
    if (rc) {
        json_decref(o);
        ed_match_free(m);
        SH_WARN("match_failed", "code=%s msg=\"%s\"", sh_err_name(rc), sh_err_text(&e));
        return ed_json_error(resp, 500, "lookup failed");
    }
    json_t *best = json_array_size(m->answers) ? json_incref(json_array_get(m->answers, 0))
                                               : json_null();
    sh_series_add(json_is_null(best) ? x->m.no_matches : x->m.matches, 1);
    const double ms = sh_clock_mono_ms() - t0;
    sh_series_observe(x->m.match_hist, ms / 1000.0);
    json_object_set_new(o, "match", best);
    json_object_set_new(o, "elapsed_ms", json_real(ms));
    if (k > 1)
        json_object_set(o, "candidates", m->answers);
    ed_match_free(m);
    return ed_json_answer(resp, 200, o);
}

static int failed(ed *x, sh_http_resp *resp, const ed_match *m, const sh_err *e)
{
    if (m->status >= 500) {
        SH_WARN("match_failed", "code=%s msg=\"%s\"", sh_err_name(e->code), sh_err_text(e));
        return ed_json_error(resp, 500, "lookup failed");
    }
    return refuse(x, resp, m->status, sh_err_text(e));
}

/* A query's hash times (frames from the clip's start; q is in t-order) must lie within
 * --max-clip-s, like decoded audio: far times would only cost the matcher memory. */
static int clip_fits(const ed *x, const sh_qhash *q, sh_err *e)
{
    sh_fp_config c;
    if (!q->n || sh_fp_config_for_version(q->fp_version, &c, e))
        return 1;
    const double last_s = (double)q->h[q->n - 1].t * sh_fp_frame_seconds(&c);
    if (last_s <= (double)x->cfg.max_clip_s + 1.0)
        return 1;
    sh_err_set(e, SH_EINVAL, "hash times span %.0f s, past the %ld s a clip may last (--max-clip-s)",
               last_s, x->cfg.max_clip_s);
    return 0;
}

/* Client hashes: parsed (capped at max_hashes), version checked, looked up. */
static int match_hashes(ed *x, ed_slot *slot, const sh_http_req *req, int binary, size_t k,
                        const unsigned char *want, double t0, sh_http_resp *resp)
{
    sh_qhash q;
    sh_err e = {0};
    int rc = sh_qhash_parse(req->body, req->body_len, binary, x->max_hashes, &q, &e);
    if (rc)
        return refuse(x, resp, rc == SH_ETOOBIG ? 413 : rc == SH_ENOMEM ? 503 : 400,
                      sh_err_text(&e));
    if (fpv_index(q.fp_version) < 0) {
        rc = refuse_version(x, resp, q.fp_version);
        sh_qhash_free(&q);
        return rc;
    }
    if (!clip_fits(x, &q, &e)) {
        sh_qhash_free(&q);
        return refuse(x, resp, 422, sh_err_text(&e));
    }
    ed_match m;
    rc = ed_match_hashes(x, slot, q.fp_version, q.h, q.n, k, want, &m, &e);
    rc = rc ? failed(x, resp, &m, &e) : answer(x, want, resp, &m, k, t0); /* m.sent: q's */
    sh_qhash_free(&q);
    return rc;
}

static int match_audio(ed *x, ed_slot *slot, const sh_http_req *req, size_t k,
                       const unsigned char *want, double t0, sh_http_resp *resp)
{
    ed_match m;
    sh_err e = {0};
    int rc = ed_match_audio(x, slot, req->body, req->body_len, k, want, &m, &e);
    return rc ? failed(x, resp, &m, &e) : answer(x, want, resp, &m, k, t0);
}

int ed_on_match(const sh_http_req *req, sh_http_resp *resp, void *ud)
{
    ed *x = ud;
    const double t0 = sh_clock_mono_ms();
    if (!ed_authorised(x, req))
        return ed_json_error(resp, 401, "missing or wrong bearer token");
    if (!atomic_load(&x->opened))
        return ed_json_error(resp, 503, "starting");
    const char *origin = sh_http_req_header(req, "X-SoundHash-Origin");
    if (origin && x->origin[0] && !strcmp(origin, x->origin))
        return ed_json_error(resp, 508, "this node is its own --upstream");
    const enum body_kind kind = body_kind(req);
    sh_series_add(kind == BODY_JSON     ? x->m.req_json
                  : kind == BODY_BINARY ? x->m.req_binary
                                        : x->m.req_audio,
                  1);
    long k = 1;
    const char *top = sh_http_req_query(req, "top");
    if (top && (sh_parse_long(top, &k) || k < 1 || k > SH_RECOGNIZE_TOP_MAX))
        return refuse(x, resp, 400, "top: 1..100");
    unsigned char want[SH_SHARDS_MAX];
    const char *shards = sh_http_req_query(req, "shards");
    sh_err e = {0};
    if (shards && ed_parse_shards(shards, x->nshards, want, &e))
        return refuse(x, resp, 400, sh_err_text(&e));
    if (req->body_len == 0)
        return refuse(x, resp, 400,
                      kind == BODY_AUDIO ? "empty body: send the audio clip as the request body"
                                         : "empty body: send the clip's hashes");
    ed_slot *slot = ed_slot_take(x);
    if (!slot)
        return ed_json_error(resp, 503, "busy: retry");
    const unsigned char *w = shards ? want : NULL;
    int rc = kind == BODY_AUDIO
                 ? match_audio(x, slot, req, (size_t)k, w, t0, resp)
                 : match_hashes(x, slot, req, kind == BODY_BINARY, (size_t)k, w, t0, resp);
    ed_slot_give(x, slot);
    return rc;
}
