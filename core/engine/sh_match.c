/* sh_match.c — see sh_match.h for the algorithm. */
#include "sh_match.h"
#include "sh_vec.h"

#include <math.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

typedef struct vote {
    uint32_t track, t_db, t_q;
} vote;

typedef struct cell {
    uint64_t key; /* track << 32 | coarse offset cell; 0 = empty (cells start at 1) */
    uint32_t count;
} cell;

typedef struct group {
    uint32_t track;
    size_t first, n; /* its votes: byt[first .. first + n) */
} group;

typedef struct cand {
    uint32_t track;
    uint32_t cell; /* coarse offset cell (row folded in, see fold) */
    uint32_t coarse;
    sh_match_result r;
} cand;

/* Offsets t_db - t_q are biased so that a query starting up to 2^30 frames before t_db = 0 stays
 * positive. */
#define OFF_BIAS ((int64_t)1 << 30)
#define MAX_REFINE 64
#define MAX_SLOPES 257
#define MAX_ROWS 31 /* coarse time-scale rows; cells * MAX_ROWS must fit 32 bits */

struct sh_matcher {
    double frame_s;
    sh_match_config mc;
    vote *v;
    size_t n, cap, dropped;
    cell *tab;
    size_t tabcap; /* power of two */
    uint32_t *hist;
    size_t histcap;
    vote *sel; /* votes of the refined candidates */
    size_t selcap;
    vote *byt; /* coarse rows: votes of the tracks with enough votes, grouped by track */
    size_t bytcap;
    struct group *grp; /* coarse rows: those tracks */
    size_t grpcap;
    uint32_t *dense; /* coarse rows: one track's (cell, row) counts */
    size_t densecap;
    uint32_t *tqs; /* fine stage: query times of one candidate's aligned votes */
    size_t tqcap;
    uint32_t *tgrp; /* dense grouping: group number + 1 of track tmin + i (0: too few votes) */
    size_t tgrpcap;
    uint32_t tmin, tspan; /* tspan 0: the groups are numbered in the hash table instead */
    uint32_t *cells; /* one row: one track's coarse cells, then its distinct cells and counts */
    size_t cellscap;
    uint32_t spread_frames; /* frames of one stretch counted by spread (0.5 s) */
    int nrows; /* coarse time-scale rows: 2 * J + 1, row j has scale (j - J) * coarse_scale_step */
    int top_score, top_landmarks; /* of the last sh_matcher_result()'s candidates */
};

void sh_match_config_default(sh_match_config *mc)
{
    mc->coarse_frames = 16;
    mc->tol_frames = 1;
    mc->max_scale = 0.03;
    mc->scale_step = 0.005;
    mc->refine = 8;
    mc->min_score = 17;
    mc->min_confidence = 0.8;
    mc->dup_score = 40;
    mc->max_votes = 1000000;
    mc->coarse_scale_step = 0.0;
    mc->min_landmarks = 4;
    mc->min_spread = 4;
}

void sh_match_config_for(const sh_fp_config *c, sh_match_config *mc)
{
    sh_match_config_default(mc);
    /* Pair hashes collide often, so a wrong track's noise floor (second-best score) is high and
     * the confidence does the work; triplet hashes rarely collide, the noise floor is ~0 and
     * similar-but-different music can align a dozen votes, so the floor on the score is higher.
     * The confidence was fitted on pair votes; with triplets the worst negative of the 1536-query
     * set against a 51 h shard reached z = 6.0 (confidence 0.65) while no right answer scoring
     * ≥ 17 was below z = 8, hence 0.8 (z ≥ 7.3). */
    if (c && c->hash_mode == SH_FP_PAIRS) {
        mc->min_score = 12;
        mc->min_confidence = 0.65;
        mc->min_landmarks = 0; /* the landmark path was measured with triplets only */
    }
    /* Speed-invariant hashes find a track at any speed within ±q_speed_tol; the drift of the
     * offset over a clip (±1 s over 10 s at 10 %) is then found by coarse rows of time-scale
     * factors 2.5 % apart (±0.2 s drift left over 10 s: inside a candidate's three cells) and the
     * fine search around the best row. */
    if (c && c->hash_mode == SH_FP_SPEED) {
        mc->max_scale = c->q_speed_tol > 0.03f ? c->q_speed_tol + 0.005 : 0.03;
        mc->coarse_scale_step = 0.025;
        /* Speed-invariant hashes are less specific (u merges frequency and time): a wrong track's
         * best alignment (the noise floor) is rarely 0 (dev negatives: 8-15), so, as for pairs,
         * the confidence does the work and the floor on the score is the pairs' 12. */
        mc->min_score = 12;
        mc->min_landmarks = 0;
    }
}

int sh_matcher_configure(sh_matcher *m, const sh_match_config *mc, sh_err *e)
{
    if (!m || !mc)
        return sh_err_set(e, SH_EINVAL, "sh_matcher_configure: NULL argument");
    if (mc->coarse_frames < 1 || mc->coarse_frames > 4096 || mc->tol_frames < 0 ||
        mc->tol_frames > 64 || !(mc->max_scale >= 0.0) || mc->max_scale > 0.2 ||
        !(mc->scale_step > 0.0) || mc->max_scale / mc->scale_step > (MAX_SLOPES - 1) / 2 ||
        mc->refine < 1 || mc->refine > MAX_REFINE || mc->min_score < 1 || mc->dup_score < 1 ||
        !(mc->min_confidence >= 0.0) || mc->min_confidence > 1.0 || mc->max_votes < 1 ||
        mc->max_votes > ((size_t)1 << 30) || !(mc->coarse_scale_step >= 0.0) ||
        mc->min_landmarks < 0 || mc->min_landmarks > 1000 || mc->min_spread < 0 ||
        mc->min_spread > 1000 ||
        (mc->coarse_scale_step > 0.0 &&
         (mc->coarse_scale_step < mc->scale_step ||
          2 * (int)floor(mc->max_scale / mc->coarse_scale_step + 0.5) + 1 > MAX_ROWS)))
        return sh_err_set(e, SH_EINVAL, "sh_matcher_configure: tunable out of range");
    m->mc = *mc;
    m->nrows =
        mc->coarse_scale_step > 0.0 ? 2 * (int)floor(mc->max_scale / mc->coarse_scale_step + 0.5) + 1
                                    : 1;
    return 0;
}

int sh_matcher_new(const sh_fp_config *c, sh_matcher **out, sh_err *e)
{
    if (!c || !out)
        return sh_err_set(e, SH_EINVAL, "sh_matcher_new: NULL argument");
    *out = NULL;
    int rc = sh_fp_config_check(c, e);
    if (rc)
        return rc;
    sh_matcher *m = calloc(1, sizeof *m);
    if (!m)
        return sh_err_set(e, SH_ENOMEM, "sh_matcher_new: out of memory");
    m->frame_s = sh_fp_frame_seconds(c);
    m->spread_frames = (uint32_t)(0.5 / m->frame_s + 0.5);
    m->spread_frames = m->spread_frames ? m->spread_frames : 1;
    sh_match_config mc;
    sh_match_config_for(c, &mc);
    if ((rc = sh_matcher_configure(m, &mc, e)) != 0) {
        sh_matcher_free(m);
        return rc;
    }
    *out = m;
    return 0;
}

void sh_matcher_reset(sh_matcher *m)
{
    if (m)
        m->n = m->dropped = 0;
}

void sh_matcher_free(sh_matcher *m)
{
    if (!m)
        return;
    free(m->v);
    free(m->tab);
    free(m->hist);
    free(m->sel);
    free(m->byt);
    free(m->grp);
    free(m->dense);
    free(m->tqs);
    free(m->tgrp);
    free(m->cells);
    free(m);
}

size_t sh_matcher_votes(const sh_matcher *m)
{
    return m ? m->n + m->dropped : 0;
}

void sh_matcher_vote(sh_matcher *m, uint32_t track, uint32_t t_db, uint32_t t_query)
{
    /* refine() sizes its histogram by the scale slack over the query's time span: a query time
     * past SH_MATCH_TQ_MAX (a hostile client's t) would ask for gigabytes; such votes are not
     * counted, like votes past max_votes. */
    if (t_query > SH_MATCH_TQ_MAX) {
        m->dropped++;
        return;
    }
    /* Hot path (~150k votes per query at 1,000 h): no call while there is room. */
    if (m->n < m->cap && m->n < m->mc.max_votes) {
        m->v[m->n++] = (vote){track, t_db, t_query};
        return;
    }
    if (m->n >= m->mc.max_votes || sh_vec_reserve(&m->v, &m->cap, m->n + 1, m->mc.max_votes)) {
        m->dropped++; /* cap reached or out of memory: the query is judged on the votes kept */
        return;
    }
    m->v[m->n++] = (vote){track, t_db, t_query};
}

/* Votes a coarse candidate needs: the score path's floor, or fewer when the landmark path is on
 * (a candidate has at least as many votes as landmarks). */
static uint32_t coarse_floor(const sh_match_config *mc)
{
    if (mc->min_landmarks > 0 && mc->min_landmarks < mc->min_score)
        return (uint32_t)mc->min_landmarks;
    return (uint32_t)mc->min_score;
}

/* ---- coarse stage: counts per (track, offset cell) in an open-addressing table ------------- */

/* Time-scale factor of coarse row j. */
static double row_scale(const sh_matcher *m, int j)
{
    return (j - m->nrows / 2) * m->mc.coarse_scale_step;
}

/* The coarse cell of a vote in row j: offset t_db - (1 + s_j) t_q in cells of coarse_frames, the
 * row folded in as cell * nrows + j (so cells of one row are nrows apart), never 0 (0 marks empty
 * slots). */
static uint32_t coarse_cell(const sh_matcher *m, const vote *v, int j)
{
    if (m->nrows == 1) /* scale 0: no rounding to do (the common case, once per vote) */
        return (uint32_t)(((int64_t)v->t_db - (int64_t)v->t_q + OFF_BIAS) / m->mc.coarse_frames) +
               1;
    const double s = row_scale(m, j);
    const int64_t off = (int64_t)v->t_db - (int64_t)v->t_q -
                        (int64_t)floor(s * (double)v->t_q + 0.5) + OFF_BIAS;
    return ((uint32_t)(off / m->mc.coarse_frames) + 1) * (uint32_t)m->nrows + (uint32_t)j;
}

/* The row of a folded cell, and its unfolded offset cell. */
static int cell_row(const sh_matcher *m, uint32_t c)
{
    return (int)(c % (uint32_t)m->nrows);
}

static uint32_t cell_off(const sh_matcher *m, uint32_t c)
{
    return c / (uint32_t)m->nrows;
}

static size_t slot_of(uint64_t key, size_t mask)
{
    uint64_t h = key * 0x9E3779B97F4A7C15ull;
    return (size_t)(h >> 32) & mask;
}

static cell *tab_find(const sh_matcher *m, uint64_t key)
{
    const size_t mask = m->tabcap - 1;
    for (size_t i = slot_of(key, mask);; i = (i + 1) & mask)
        if (m->tab[i].key == key || m->tab[i].key == 0)
            return &m->tab[i];
}

/* Inserts (track, cell, score) into the best-first list unless a neighbour cell of the same
 * track (in any row: at t_q = 0 all rows agree) is already there with a higher score (then it is
 * the same alignment). */
static void cand_insert(const sh_matcher *m, cand *cs, int *nc, int cap, uint32_t track,
                        uint32_t c, uint32_t score)
{
    const uint32_t co = cell_off(m, c);
    for (int i = 0; i < *nc; i++) {
        const uint32_t io = cell_off(m, cs[i].cell);
        if (cs[i].track == track && (io > co ? io - co : co - io) <= 2) {
            if (cs[i].coarse >= score)
                return;
            /* Replace the weaker neighbour: remove it, then insert below. */
            memmove(&cs[i], &cs[i + 1], (size_t)(*nc - i - 1) * sizeof *cs);
            (*nc)--;
            break;
        }
    }
    if (*nc == cap && cs[cap - 1].coarse >= score)
        return;
    int pos = *nc < cap ? *nc : cap - 1;
    while (pos > 0 && cs[pos - 1].coarse < score) {
        cs[pos] = cs[pos - 1];
        pos--;
    }
    cs[pos] = (cand){.track = track, .cell = c, .coarse = score};
    if (*nc < cap)
        (*nc)++;
}

/* ---- coarse stage with time-scale rows: per track, dense (cell, row) counts ----------------- */

/* A track's dense count array holds at most this many (cell, row) counters (16 MiB): 27 h of
 * offsets with 11 rows, far beyond sh_audio's 3 h duration cap; a longer track is not searched in
 * rows (its votes are ignored by the coarse stage). */
#define MAX_DENSE ((size_t)1 << 22)

/* Groups the votes of every track with at least coarse_floor votes into m->byt, each group in vote
 * order (one pass to count per track in the hash table, one to place); m->grp[0 .. *ng) describes
 * the groups and the table's count of track + 1 becomes its group number + 1. For track numbers
 * too sparse for group_dense. */
static int group_hashed(sh_matcher *m, size_t *ng)
{
    size_t need = 64;
    while (need < 2 * m->n)
        need *= 2;
    if (need > m->tabcap) {
        cell *t = realloc(m->tab, need * sizeof *t);
        if (!t)
            return SH_ENOMEM;
        m->tab = t;
    }
    m->tabcap = need;
    m->tspan = 0;
    memset(m->tab, 0, m->tabcap * sizeof *m->tab);
    for (size_t i = 0; i < m->n; i++) {
        const uint64_t key = (uint64_t)m->v[i].track + 1; /* 0 marks empty slots */
        cell *x = tab_find(m, key);
        x->key = key;
        x->count++;
    }
    size_t n = 0, total = 0;
    for (size_t i = 0; i < m->tabcap; i++)
        if (m->tab[i].key && m->tab[i].count >= coarse_floor(&m->mc))
            n++;
    if (sh_vec_reserve(&m->grp, &m->grpcap, n, SH_VEC_NOCAP))
        return SH_ENOMEM;
    n = 0;
    for (size_t i = 0; i < m->tabcap; i++) {
        cell *x = &m->tab[i];
        if (!x->key)
            continue;
        if (x->count < coarse_floor(&m->mc)) {
            x->count = 0;
            continue;
        }
        m->grp[n] = (group){.track = (uint32_t)(x->key - 1), .first = total, .n = 0};
        total += x->count;
        x->count = (uint32_t)++n; /* from now on: the group number + 1 */
    }
    if (sh_vec_reserve(&m->byt, &m->bytcap, total, SH_VEC_NOCAP))
        return SH_ENOMEM;
    for (size_t i = 0; i < m->n; i++) {
        const uint32_t g = tab_find(m, (uint64_t)m->v[i].track + 1)->count;
        if (g) {
            group *gr = &m->grp[g - 1];
            m->byt[gr->first + gr->n++] = m->v[i];
        }
    }
    *ng = n;
    return 0;
}

/* Track numbers spanning at most 4 per vote plus this many values are grouped in a direct array
 * (a shard numbers its tracks from 1; at 1,000 h ~2.2k per shard against ~19k votes). */
#define DENSE_SPAN_SLACK 65536u

/* group_hashed()'s groups by a counting sort over track numbers: two sequential passes over the
 * votes and a small counter array instead of a hash table probed twice per vote (at 1,000 h a
 * query casts ~150k votes, mostly random collisions: their grouping was half the ranking).
 * Groups in ascending track order. Returns 1 (nothing done) when the track numbers are too
 * sparse for it. */
static int group_dense(sh_matcher *m, size_t *ng)
{
    uint32_t lo = UINT32_MAX, hi = 0;
    for (size_t i = 0; i < m->n; i++) {
        lo = m->v[i].track < lo ? m->v[i].track : lo;
        hi = m->v[i].track > hi ? m->v[i].track : hi;
    }
    const size_t span = (size_t)(hi - lo) + 1;
    if (span > 4 * m->n + DENSE_SPAN_SLACK)
        return 1;
    if (sh_vec_reserve(&m->tgrp, &m->tgrpcap, span, SH_VEC_NOCAP))
        return SH_ENOMEM;
    uint32_t *cnt = m->tgrp;
    memset(cnt, 0, span * sizeof *cnt);
    for (size_t i = 0; i < m->n; i++)
        cnt[m->v[i].track - lo]++;
    const uint32_t floor_votes = coarse_floor(&m->mc);
    size_t n = 0, total = 0;
    for (size_t t = 0; t < span; t++)
        n += cnt[t] >= floor_votes;
    if (sh_vec_reserve(&m->grp, &m->grpcap, n, SH_VEC_NOCAP))
        return SH_ENOMEM;
    n = 0;
    for (size_t t = 0; t < span; t++) {
        if (cnt[t] < floor_votes) {
            cnt[t] = 0;
            continue;
        }
        m->grp[n] = (group){.track = lo + (uint32_t)t, .first = total, .n = 0};
        total += cnt[t];
        cnt[t] = (uint32_t)++n; /* from now on: the group number + 1 */
    }
    if (sh_vec_reserve(&m->byt, &m->bytcap, total, SH_VEC_NOCAP))
        return SH_ENOMEM;
    for (size_t i = 0; i < m->n; i++) {
        const uint32_t g = cnt[m->v[i].track - lo];
        if (g) {
            group *gr = &m->grp[g - 1];
            m->byt[gr->first + gr->n++] = m->v[i];
        }
    }
    m->tmin = lo;
    m->tspan = (uint32_t)span;
    *ng = n;
    return 0;
}

static int group_by_track(sh_matcher *m, size_t *ng)
{
    const int rc = group_dense(m, ng);
    return rc == 1 ? group_hashed(m, ng) : rc;
}

/* The group of `track` (NULL: fewer than coarse_floor votes), after group_by_track(). */
static const group *group_of(const sh_matcher *m, uint32_t track)
{
    uint32_t g = 0;
    if (m->tspan)
        g = track >= m->tmin && track - m->tmin < m->tspan ? m->tgrp[track - m->tmin] : 0;
    else
        g = tab_find(m, (uint64_t)track + 1)->count;
    return g ? &m->grp[g - 1] : NULL;
}

static void sort_u32(uint32_t *x, uint32_t *tmp, size_t n);

/* One row, a track with many votes: counts per cell in a dense array over its cells' range. */
static int track_cells_dense(sh_matcher *m, const group *g, const uint32_t *c, cand *cs, int *nc)
{
    uint32_t cmin = UINT32_MAX, cmax = 0;
    for (size_t i = 0; i < g->n; i++) {
        cmin = c[i] < cmin ? c[i] : cmin;
        cmax = c[i] > cmax ? c[i] : cmax;
    }
    cmin -= 1; /* room for the neighbours of the extreme cells (cells start at 1) */
    cmax += 1;
    const size_t ncell = (size_t)(cmax - cmin) + 1;
    if (ncell > MAX_DENSE || ncell > 4 * g->n) /* spread out: sorting is cheaper */
        return 1;
    if (sh_vec_reserve(&m->dense, &m->densecap, ncell, SH_VEC_NOCAP))
        return SH_ENOMEM;
    uint32_t *d = m->dense;
    memset(d, 0, ncell * sizeof *d);
    for (size_t i = 0; i < g->n; i++)
        d[c[i] - cmin]++;
    for (size_t x = 1; x + 1 < ncell; x++) {
        if (!d[x])
            continue;
        const uint32_t s = d[x - 1] + d[x] + d[x + 1];
        if (s >= coarse_floor(&m->mc))
            cand_insert(m, cs, nc, m->mc.refine, g->track, cmin + (uint32_t)x, s);
    }
    return 0;
}

/* One row: counts one track's votes per coarse cell and offers every cell whose three-cell sum
 * reaches the floor as a candidate, in ascending cell order: most tracks of a big index hold a
 * handful of random votes (sorted, then run-length), a few many (a dense array of their cells). */
static int track_cells(sh_matcher *m, const group *g, cand *cs, int *nc)
{
    if (sh_vec_reserve(&m->cells, &m->cellscap, 2 * g->n, SH_VEC_NOCAP))
        return SH_ENOMEM;
    uint32_t *c = m->cells, *k = m->cells + g->n;
    const vote *v = m->byt + g->first;
    for (size_t i = 0; i < g->n; i++)
        c[i] = coarse_cell(m, &v[i], 0);
    if (g->n > 32) {
        const int rc = track_cells_dense(m, g, c, cs, nc);
        if (rc != 1)
            return rc;
    }
    sort_u32(c, k, g->n);
    size_t nd = 0; /* distinct cells c[0..nd), their counts k[0..nd) */
    for (size_t i = 0; i < g->n; i++) {
        if (nd && c[nd - 1] == c[i]) {
            k[nd - 1]++;
            continue;
        }
        c[nd] = c[i];
        k[nd++] = 1;
    }
    for (size_t j = 0; j < nd; j++) {
        const uint32_t s = k[j] + (j > 0 && c[j - 1] + 1 == c[j] ? k[j - 1] : 0) +
                           (j + 1 < nd && c[j] + 1 == c[j + 1] ? k[j + 1] : 0);
        if (s >= coarse_floor(&m->mc))
            cand_insert(m, cs, nc, m->mc.refine, g->track, c[j], s);
    }
    return 0;
}

/* Counts one track's votes in every row and offers its best cells as candidates. */
static int track_rows(sh_matcher *m, const group *g, cand *cs, int *nc)
{
    const vote *v = m->byt + g->first;
    const uint32_t R = (uint32_t)m->nrows;
    uint32_t cmin = UINT32_MAX, cmax = 0;
    for (size_t i = 0; i < g->n; i++)
        for (int j = 0; j < m->nrows; j += m->nrows - 1) { /* the extreme rows bound the rest */
            const uint32_t c = coarse_cell(m, &v[i], j) / R;
            cmin = c < cmin ? c : cmin;
            cmax = c > cmax ? c : cmax;
            if (m->nrows == 1)
                break;
        }
    cmin -= 1; /* room for the neighbours of the extreme cells (cells start at 1) */
    cmax += 1;
    const size_t ncell = (size_t)(cmax - cmin) + 1;
    if (ncell * R > MAX_DENSE)
        return 0;
    if (sh_vec_reserve(&m->dense, &m->densecap, ncell * R, SH_VEC_NOCAP))
        return SH_ENOMEM;
    uint32_t *d = m->dense;
    memset(d, 0, ncell * R * sizeof *d);
    for (size_t i = 0; i < g->n; i++)
        for (int j = 0; j < m->nrows; j++)
            d[(size_t)(coarse_cell(m, &v[i], j) / R - cmin) * R + (size_t)j]++;
    for (size_t c = 1; c + 1 < ncell; c++)
        for (uint32_t j = 0; j < R; j++) {
            const uint32_t *x = d + c * R + j;
            if (!*x)
                continue;
            const uint32_t sc = x[0] + x[-(ptrdiff_t)R] + x[R];
            if (sc >= coarse_floor(&m->mc))
                cand_insert(m, cs, nc, m->mc.refine, g->track, (uint32_t)(cmin + c) * R + j, sc);
        }
    return 0;
}

/* Every track with enough votes offers its best cells: in rows (time-scale factors) or, with one
 * row, per cell. */
static int coarse_candidates(sh_matcher *m, cand *cs, int *nc)
{
    *nc = 0;
    size_t ng = 0;
    int rc = group_by_track(m, &ng);
    for (size_t i = 0; !rc && i < ng; i++)
        rc = m->nrows > 1 ? track_rows(m, &m->grp[i], cs, nc) : track_cells(m, &m->grp[i], cs, nc);
    return rc;
}

/* ---- fine stage: offset histogram per time-scale factor -------------------------------------- */

/* Copies every vote of every candidate (its track, coarse cells cell-1..cell+1) into one buffer,
 * from its track's group (in vote order); candidate i owns sel[first[i] .. first[i] + cs[i].coarse).
 * The coarse score is exactly that vote count, so the slices are sized before the pass. */
static int select_votes(sh_matcher *m, const cand *cs, int nc, size_t *first)
{
    size_t total = 0;
    for (int i = 0; i < nc; i++) {
        first[i] = total;
        total += cs[i].coarse;
    }
    if (total > m->selcap) {
        vote *s = realloc(m->sel, total * sizeof *s);
        if (!s)
            return SH_ENOMEM;
        m->sel = s;
        m->selcap = total;
    }
    const uint32_t R = (uint32_t)m->nrows;
    for (int i = 0; i < nc; i++) {
        const group *g = group_of(m, cs[i].track);
        size_t fill = first[i];
        for (size_t j = 0; g && j < g->n && fill < first[i] + cs[i].coarse; j++) {
            const vote *v = &m->byt[g->first + j];
            const uint32_t c = coarse_cell(m, v, cell_row(m, cs[i].cell));
            if (c + R >= cs[i].cell && c <= cs[i].cell + R)
                m->sel[fill++] = *v;
        }
    }
    return 0;
}

static int cmp_u32(const void *a, const void *b)
{
    const uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
    return x < y ? -1 : x > y;
}

/* Sorts x[0..n) ascending (tmp: n scratch entries). Most tracks of a big index hold a handful of
 * (random) votes: insertion sort; more than 64: an LSD radix sort a byte at a time, skipping bytes every
 * value shares. */
static void sort_u32(uint32_t *x, uint32_t *tmp, size_t n)
{
    if (n > 64) {
        size_t cnt[4][256] = {{0}};
        for (size_t i = 0; i < n; i++)
            for (int b = 0; b < 4; b++)
                cnt[b][(x[i] >> (8 * b)) & 255]++;
        uint32_t *src = x, *dst = tmp;
        for (int b = 0; b < 4; b++) {
            if (cnt[b][(x[0] >> (8 * b)) & 255] == n)
                continue;
            size_t sum = 0;
            for (int d = 0; d < 256; d++) {
                const size_t c = cnt[b][d];
                cnt[b][d] = sum;
                sum += c;
            }
            for (size_t i = 0; i < n; i++)
                dst[cnt[b][(src[i] >> (8 * b)) & 255]++] = src[i];
            uint32_t *t = src;
            src = dst;
            dst = t;
        }
        if (src != x)
            memcpy(x, src, n * sizeof *x);
        return;
    }
    for (size_t i = 1; i < n; i++) {
        const uint32_t y = x[i];
        size_t j = i;
        for (; j > 0 && x[j - 1] > y; j--)
            x[j] = x[j - 1];
        x[j] = y;
    }
}

/* Distinct values of t[0 .. n) (sorted in place); *blocks: distinct values of t / block. */
static int count_frames(uint32_t *t, size_t n, uint32_t block, int *blocks)
{
    qsort(t, n, sizeof *t, cmp_u32);
    int d = 0, b = 0;
    for (size_t i = 0; i < n; i++) {
        d += i == 0 || t[i] != t[i - 1];
        b += i == 0 || t[i] / block != t[i - 1] / block;
    }
    *blocks = b;
    return d;
}

static int refine(sh_matcher *m, cand *cd, const vote *sv, size_t nv)
{
    const int W = m->mc.coarse_frames, tol = m->mc.tol_frames;
    uint32_t tq_max = 0;
    for (size_t i = 0; i < nv; i++)
        tq_max = sv[i].t_q > tq_max ? sv[i].t_q : tq_max;
    /* Fine scales: all of ±max_scale with one row; with rows, around the candidate's row as far
     * as rows can tie (a row gathers all votes of an alignment whose drift over the clip stays
     * within its three cells, ~2 W / tq_max: ±5 % on 10 s, ±10 % on 5 s). */
    const double sc = row_scale(m, cell_row(m, cd->cell));
    double hr = m->mc.max_scale;
    if (m->nrows > 1) {
        hr = 2.0 * W / (tq_max + 1.0);
        hr = hr < m->mc.coarse_scale_step ? m->mc.coarse_scale_step : hr;
        hr = hr > 2.0 * m->mc.max_scale ? 2.0 * m->mc.max_scale : hr;
    }
    const int ns = 2 * (int)floor(hr / m->mc.scale_step + 1e-9) + 1;
    /* Offsets t_db - t_q - round(sc t_q) of this candidate lie in cells [cell-1, cell+1]. */
    const int64_t lo = ((int64_t)cell_off(m, cd->cell) - 2) * W - OFF_BIAS;
    const int64_t slack = (int64_t)ceil(hr * tq_max) + 2;
    const int64_t base = lo - slack;
    const size_t span = (size_t)(3 * W + 2 * slack + 2);
    if (span * (size_t)ns > m->histcap) {
        uint32_t *h = realloc(m->hist, span * (size_t)ns * sizeof *h);
        if (!h)
            return SH_ENOMEM;
        m->hist = h;
        m->histcap = span * (size_t)ns;
    }
    memset(m->hist, 0, span * (size_t)ns * sizeof *m->hist);
    const double smax = m->mc.max_scale + 1e-9;
    for (size_t i = 0; i < nv; i++) {
        const double raw = (double)((int64_t)sv[i].t_db - (int64_t)sv[i].t_q - base);
        for (int j = 0; j < ns; j++) {
            const double s = sc + (j - ns / 2) * m->mc.scale_step;
            if (s < -smax || s > smax)
                continue;
            const int64_t idx = (int64_t)floor(raw - s * sv[i].t_q + 0.5);
            if (idx >= 0 && (size_t)idx < span)
                m->hist[(size_t)j * span + (size_t)idx]++;
        }
    }
    uint32_t best = 0;
    int best_j = ns / 2;
    int64_t best_idx = 0;
    for (int j = 0; j < ns; j++) {
        const uint32_t *h = m->hist + (size_t)j * span;
        const double sj = fabs(sc + (j - ns / 2) * m->mc.scale_step);
        const double sb = fabs(sc + (best_j - ns / 2) * m->mc.scale_step);
        uint32_t run = 0;
        for (size_t x = 0; x < span; x++) {
            run += h[x];
            if (x >= (size_t)(2 * tol + 1))
                run -= h[x - (size_t)(2 * tol + 1)];
            /* On ties the scale closest to 1 wins: most queries are not time-scaled. */
            if (run > best || (run == best && run > 0 && sj < sb - 1e-12)) {
                best = run;
                best_j = j;
                best_idx = (int64_t)x - tol;
            }
        }
    }
    const double s = sc + (best_j - ns / 2) * m->mc.scale_step;
    const double off = (double)(best_idx + base);
    /* Matched span: first to last query time among the aligned votes; landmarks: the distinct
     * query frames among them (one anchor peak's triplets and query variants vote together, so
     * votes overstate the independent evidence; see count_frames). */
    uint32_t t0 = UINT32_MAX, t1 = 0;
    size_t na = 0;
    if (sh_vec_reserve(&m->tqs, &m->tqcap, nv, SH_VEC_NOCAP))
        return SH_ENOMEM;
    for (size_t i = 0; i < nv; i++) {
        const double o = (double)((int64_t)sv[i].t_db - (int64_t)sv[i].t_q) - s * sv[i].t_q;
        if (fabs(o - off) <= tol + 0.5) {
            t0 = sv[i].t_q < t0 ? sv[i].t_q : t0;
            t1 = sv[i].t_q > t1 ? sv[i].t_q : t1;
            m->tqs[na++] = sv[i].t_q;
        }
    }
    cd->r.landmarks = count_frames(m->tqs, na, m->spread_frames, &cd->r.spread);
    cd->r.track = cd->track;
    cd->r.score = (int)best;
    cd->r.offset_s = off * m->frame_s;
    cd->r.duration_s = t1 >= t0 && best ? (t1 - t0 + 1) * m->frame_s : 0.0;
    cd->r.scale = 1.0 + s;
    return 0;
}

/* P(the answer is right), the larger of two calibrated paths:
 *  - votes: a logistic function of z = score - 1.5 * noise, where noise is the best score of
 *    another track, fitted on the dev query sets (bench/eval_accuracy --dump, 1920 queries of which
 *    240 not indexed): 1 / (1 + exp(-0.58 (z - 4.9))), for scores >= min_score. Random alignments
 *    of unrelated audio reach scores of ~20 against this corpus, but then other tracks score
 *    nearly as much; a true match stands out from its own query's noise floor.
 *  - landmarks: one anchor peak's triplets (and their query variants) vote together, so a burst
 *    of votes from a few frames of similar music looks like strong evidence; a clip buried in
 *    noise keeps few votes per anchor but spread over many frames. With landmarks = distinct
 *    query frames among the aligned votes and noise_lm the best other track's landmarks,
 *    zl = landmarks - 1.5 * noise_lm gives 1 / (1 + exp(-(zl - 2.6))) (0.8 at zl = 4) when the
 *    candidate has >= min_landmarks landmarks in >= min_spread half-second stretches of the clip.
 *    On the dev sets no never-indexed clip had zl > 2 with spread >= 4 (README, issue 13). */
#define BURST_LANDMARKS 7

static double confidence(const sh_match_config *mc, const sh_match_result *r, int noise,
                         int noise_lm)
{
    double p = 0.0;
    /* A burst (votes from fewer than BURST_LANDMARKS frames inside fewer than min_spread
     * stretches) is what similar music produces: a never-indexed noisy 10 s clip scored 17 votes
     * from 6 frames within 1.4 s (dev); such a candidate is judged by landmarks alone. */
    const int burst = mc->min_landmarks > 0 && r->spread < mc->min_spread &&
                      r->landmarks < BURST_LANDMARKS;
    if (r->score >= mc->min_score && !burst) {
        const double z = (double)r->score - 1.5 * noise;
        p = 1.0 / (1.0 + exp(-0.58 * (z - 4.9)));
    }
    if (mc->min_landmarks > 0 && r->landmarks >= mc->min_landmarks &&
        r->spread >= mc->min_spread) {
        const double zl = (double)r->landmarks - 1.5 * noise_lm;
        const double pl = 1.0 / (1.0 + exp(-(zl - 2.6)));
        p = pl > p ? pl : p;
    }
    return p;
}

/* The noise floor of candidate i: the best other track (its score and, separately, its
 * landmarks; the score only among candidates ≥ min_score), except near-equal strong candidates, which are the same audio indexed twice
 * (duplicates in a catalogue), not noise. */
/* Near-equal strong scores: the same audio indexed twice (duplicates in a catalogue), not noise. */
static bool is_duplicate(const sh_match_config *mc, int s, int o)
{
    return s >= mc->dup_score && o >= mc->dup_score && 5 * o >= 4 * s && 5 * s >= 4 * o;
}

static int noise_floor(const sh_match_config *mc, const cand *cs, int nu, int i, int *noise_lm)
{
    const int s = cs[i].r.score;
    int noise = 0;
    *noise_lm = 0;
    for (int j = 0; j < nu; j++) {
        const int o = cs[j].r.score;
        if (j == i || is_duplicate(mc, s, o))
            continue;
        /* The votes path keeps its calibration: candidates below min_score were never in it. */
        if (o >= mc->min_score)
            noise = o > noise ? o : noise;
        *noise_lm = cs[j].r.landmarks > *noise_lm ? cs[j].r.landmarks : *noise_lm;
    }
    return noise;
}

static int by_score(const void *a, const void *b)
{
    const cand *x = a, *y = b;
    if (x->r.score != y->r.score)
        return x->r.score < y->r.score ? 1 : -1;
    return x->track < y->track ? -1 : x->track > y->track;
}

int sh_matcher_result(sh_matcher *m, sh_match_result *out, size_t k, size_t *n)
{
    if (!m || !n || (!out && k))
        return SH_EINVAL;
    *n = 0;
    m->top_score = m->top_landmarks = 0;
    if (m->n == 0 || k == 0)
        return 0;
    cand cs[MAX_REFINE];
    int nc = 0;
    int rc = coarse_candidates(m, cs, &nc);
    if (rc)
        return rc;
    size_t first[MAX_REFINE];
    if ((rc = select_votes(m, cs, nc, first)))
        return rc;
    for (int i = 0; i < nc; i++) {
        if ((rc = refine(m, &cs[i], m->sel + first[i], cs[i].coarse)))
            return rc;
    }
    qsort(cs, (size_t)nc, sizeof *cs, by_score);
    /* One result per track: the best alignment. */
    int nu = 0;
    for (int i = 0; i < nc; i++) {
        int dup = 0;
        for (int j = 0; j < nu; j++)
            dup |= cs[j].track == cs[i].track;
        if (!dup)
            cs[nu++] = cs[i];
    }
    m->top_score = m->top_landmarks = 0;
    for (int i = 0; i < nu; i++) {
        m->top_score = cs[i].r.score > m->top_score ? cs[i].r.score : m->top_score;
        m->top_landmarks =
            cs[i].r.landmarks > m->top_landmarks ? cs[i].r.landmarks : m->top_landmarks;
    }
    for (int i = 0; i < nu && *n < k; i++) {
        int noise_lm = 0;
        const int noise = noise_floor(&m->mc, cs, nu, i, &noise_lm);
        cs[i].r.noise = noise;
        cs[i].r.noise_landmarks = noise_lm;
        cs[i].r.confidence = confidence(&m->mc, &cs[i].r, noise, noise_lm);
        if (cs[i].r.confidence >= m->mc.min_confidence &&
            (cs[i].r.confidence > 0.0 || m->mc.min_confidence == 0.0))
            out[(*n)++] = cs[i].r;
    }
    return 0;
}

void sh_matcher_top(const sh_matcher *m, int *score, int *landmarks)
{
    *score = m ? m->top_score : 0;
    *landmarks = m ? m->top_landmarks : 0;
}

double sh_match_confidence_against(const sh_match_config *mc, const sh_match_result *r,
                                   const int *other_score, const int *other_landmarks, size_t n)
{
    int noise = r->noise, noise_lm = r->noise_landmarks;
    for (size_t i = 0; i < n; i++) {
        if (is_duplicate(mc, r->score, other_score[i]))
            continue; /* that lookup's best is the same audio indexed twice */
        if (other_score[i] >= mc->min_score && other_score[i] > noise)
            noise = other_score[i];
        noise_lm = other_landmarks[i] > noise_lm ? other_landmarks[i] : noise_lm;
    }
    return confidence(mc, r, noise, noise_lm);
}
