/* sh_recognize.c — clip → fingerprint → lookup → ranked answer (see sh_recognize.h). */
#include "sh_recognize.h"

#include "sh_clock.h"
#include "sh_extract.h"
#include "sh_vec.h"

#include <stdlib.h>
#include <string.h>

/* Room for one track record's strings (see sh_shard_info). */
#define SH_RECOGNIZE_INFO_CAP (SH_SHARD_ID_MAX + SH_SHARD_TENANT_MAX + SH_SHARD_META_MAX + 3)

struct sh_recognizer {
    sh_recognize_config c;
    sh_audio_opts ao;
    sh_fp *fp;
    sh_matcher *m;
    char *info;  /* one track record being read */
    char *strs;  /* the answers' strings, back to back */
    size_t nstrs, capstrs;
};

void sh_recognize_config_default(sh_recognize_config *c)
{
    memset(c, 0, sizeof *c);
    sh_fp_config_query(&c->fp);
    sh_match_config_for(&c->fp, &c->match);
    c->max_duration_s = 600;
}

int sh_recognizer_new(const sh_recognize_config *c, sh_recognizer **out, sh_err *e)
{
    if (!out)
        return sh_err_set(e, SH_EINVAL, "recognizer: NULL argument");
    *out = NULL;
    sh_recognizer *r = calloc(1, sizeof *r);
    if (!r)
        return sh_err_set(e, SH_ENOMEM, "recognizer: out of memory");
    if (c)
        r->c = *c;
    else
        sh_recognize_config_default(&r->c);
    sh_audio_opts_default(&r->ao);
    r->ao.rate = r->c.fp.rate;
    r->ao.max_duration_s = r->c.max_duration_s;
    int rc = sh_fp_new(&r->c.fp, &r->fp, e);
    if (!rc)
        rc = sh_matcher_new(&r->c.fp, &r->m, e);
    if (!rc)
        rc = sh_matcher_configure(r->m, &r->c.match, e);
    if (!rc && !(r->info = malloc(SH_RECOGNIZE_INFO_CAP)))
        rc = sh_err_set(e, SH_ENOMEM, "recognizer: out of memory");
    if (rc) {
        sh_recognizer_free(r);
        return rc;
    }
    *out = r;
    return 0;
}

void sh_recognizer_free(sh_recognizer *r)
{
    if (!r)
        return;
    sh_fp_free(r->fp);
    sh_matcher_free(r->m);
    free(r->info);
    free(r->strs);
    free(r);
}

int sh_recognize_clip_file(sh_recognizer *r, const char *path, sh_err *e)
{
    int rc = sh_extract_file(path, &r->ao, r->fp, NULL, e);
    if (rc)
        sh_fp_reset(r->fp); /* a partial result must not be looked up */
    return rc;
}

int sh_recognize_clip_mem(sh_recognizer *r, const void *buf, size_t len, sh_err *e)
{
    int rc = sh_extract_mem(buf, len, &r->ao, r->fp, NULL, e);
    if (rc)
        sh_fp_reset(r->fp);
    return rc;
}

int sh_recognize_clip_pcm(sh_recognizer *r, const float *x, size_t n, sh_err *e)
{
    sh_fp_reset(r->fp);
    int rc = sh_fp_feed(r->fp, x, n, e);
    if (!rc)
        rc = sh_fp_finish(r->fp, e);
    if (rc)
        sh_fp_reset(r->fp);
    return rc;
}

const sh_hash *sh_recognize_hashes(const sh_recognizer *r, size_t *n)
{
    return sh_fp_hashes(r->fp, n);
}

/* Copies `s` to the answers' strings; its offset there in *off. */
static int strs_add(sh_recognizer *r, const char *s, size_t *off)
{
    size_t len = strlen(s) + 1;
    if (sh_vec_reserve(&r->strs, &r->capstrs, r->nstrs + len, SH_VEC_NOCAP))
        return SH_ENOMEM;
    memcpy(r->strs + r->nstrs, s, len);
    *off = r->nstrs;
    r->nstrs += len;
    return 0;
}

/* Ranks the votes cast into out[0..*nout), reading each answer's record from the shard `s` (NULL
 * for an in-memory index). */
static int rank(sh_recognizer *r, sh_shard *s, size_t k, sh_recognize_answer *out, size_t *nout,
                sh_err *e)
{
    sh_match_result res[SH_RECOGNIZE_TOP_MAX];
    size_t nr = 0;
    int rc = sh_matcher_result(r->m, res, k, &nr);
    if (rc)
        return sh_err_set(e, rc, "ranking failed (%s)", sh_strerror(rc));
    size_t offs[SH_RECOGNIZE_TOP_MAX][3], n = 0;
    r->nstrs = 0;
    for (size_t i = 0; i < nr; i++) {
        sh_shard_info info = {.id = "", .tenant = "", .meta_json = ""};
        if (s && sh_shard_info_by_track(s, res[i].track, &info, r->info, SH_RECOGNIZE_INFO_CAP,
                                        NULL))
            continue; /* deleted since the lookup */
        if (strs_add(r, info.id, &offs[n][0]) || strs_add(r, info.tenant, &offs[n][1]) ||
            strs_add(r, info.meta_json, &offs[n][2]))
            return sh_err_set(e, SH_ENOMEM, "ranking failed (%s)", sh_strerror(SH_ENOMEM));
        out[n++] = (sh_recognize_answer){
            .track = res[i].track,
            .offset_s = res[i].offset_s,
            .duration_s = res[i].duration_s,
            .score = res[i].score,
            .landmarks = res[i].landmarks,
            .spread = res[i].spread,
            .confidence = res[i].confidence,
            .scale = res[i].scale,
            .noise = res[i].noise,
            .noise_landmarks = res[i].noise_landmarks,
        };
    }
    /* Only now that the strings stopped moving. */
    for (size_t i = 0; i < n; i++) {
        out[i].id = r->strs + offs[i][0];
        out[i].tenant = r->strs + offs[i][1];
        out[i].meta_json = r->strs + offs[i][2];
    }
    *nout = n;
    return 0;
}

/* Lookup in a shard (s) or an in-memory index (mi), then ranking. */
static int recognize(sh_recognizer *r, sh_shard *s, int fpv, const sh_memindex *mi,
                     const sh_hash *h, size_t n, size_t k, sh_recognize_answer *out, size_t *nout,
                     sh_recognize_stats *st, sh_err *e)
{
    if (nout)
        *nout = 0;
    if (!r || (!s && !mi) || (!h && n) || !out || !nout || k < 1 || k > SH_RECOGNIZE_TOP_MAX)
        return sh_err_set(e, SH_EINVAL, "recognize: NULL argument or k not in 1..%d",
                          SH_RECOGNIZE_TOP_MAX);
    sh_recognize_stats got = {.hashes = n};
    sh_matcher_reset(r->m);
    const double t0 = sh_clock_mono_ms();
    int rc = 0;
    if (s)
        rc = fpv > 0 ? sh_shard_lookup_fp(s, fpv, h, n, r->m, &got.postings, e)
                     : sh_shard_lookup(s, h, n, r->m, &got.postings, e);
    else
        got.postings = sh_memindex_query(mi, h, n, r->m);
    const double t1 = sh_clock_mono_ms();
    got.votes = sh_matcher_votes(r->m);
    if (!rc)
        rc = rank(r, s, k, out, nout, e);
    sh_matcher_top(r->m, &got.top_score, &got.top_landmarks);
    got.lookup_ms = t1 - t0;
    got.rank_ms = sh_clock_mono_ms() - t1;
    if (st)
        *st = got;
    return rc;
}

int sh_recognize_shard(sh_recognizer *r, sh_shard *s, const sh_hash *h, size_t n, size_t k,
                       sh_recognize_answer *out, size_t *nout, sh_recognize_stats *st, sh_err *e)
{
    if (!s)
        return sh_err_set(e, SH_EINVAL, "recognize: NULL shard");
    return recognize(r, s, 0, NULL, h, n, k, out, nout, st, e);
}

int sh_recognize_shard_fp(sh_recognizer *r, sh_shard *s, int fp_version, const sh_hash *h,
                          size_t n, size_t k, sh_recognize_answer *out, size_t *nout,
                          sh_recognize_stats *st, sh_err *e)
{
    if (!s || fp_version < 1)
        return sh_err_set(e, SH_EINVAL, "recognize: NULL shard or fp_version < 1");
    return recognize(r, s, fp_version, NULL, h, n, k, out, nout, st, e);
}

int sh_recognize_memindex(sh_recognizer *r, const sh_memindex *mi, const sh_hash *h, size_t n,
                          size_t k, sh_recognize_answer *out, size_t *nout,
                          sh_recognize_stats *st, sh_err *e)
{
    if (!mi)
        return sh_err_set(e, SH_EINVAL, "recognize: NULL index");
    return recognize(r, NULL, 0, mi, h, n, k, out, nout, st, e);
}

void sh_recognize_judge(const sh_recognize_config *c, sh_recognize_answer *a, size_t na,
                        const size_t *from, const sh_recognize_stats *st, size_t nst)
{
    sh_recognize_config def;
    if (!c) {
        sh_recognize_config_default(&def);
        c = &def;
    }
    enum { OTHERS_MAX = 256 };
    int os[OTHERS_MAX], ol[OTHERS_MAX];
    for (size_t i = 0; i < na; i++) {
        size_t no = 0;
        for (size_t t = 0; t < nst && no < OTHERS_MAX; t++)
            if (t != from[i]) {
                os[no] = st[t].top_score;
                ol[no++] = st[t].top_landmarks;
            }
        const sh_match_result r = {.score = a[i].score,
                                   .landmarks = a[i].landmarks,
                                   .spread = a[i].spread,
                                   .confidence = a[i].confidence,
                                   .noise = a[i].noise,
                                   .noise_landmarks = a[i].noise_landmarks};
        const double p = sh_match_confidence_against(&c->match, &r, os, ol, no);
        a[i].confidence = p < a[i].confidence ? p : a[i].confidence;
    }
}

int sh_recognize_is_answer(const sh_recognize_config *c, const sh_recognize_answer *a)
{
    sh_recognize_config def;
    if (!c) {
        sh_recognize_config_default(&def);
        c = &def;
    }
    return a->confidence >= c->match.min_confidence &&
           (a->confidence > 0.0 || c->match.min_confidence == 0.0);
}
