/* sh_fp.c — see sh_fp.h for the pipeline and the hash layout. */
#include "sh_fp.h"
#include "sh_vec.h"

#include <fftw3.h>
#include <float.h>
#include <math.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

/* FFTW's planner (and plan destruction) is not thread-safe; execution with new-array execute is.
 * This mutex serialises planning only. It is the module's only static state and holds no
 * configuration. */
static pthread_mutex_t plan_lock = PTHREAD_MUTEX_INITIALIZER;

typedef struct peak {
    uint32_t frame; /* integer frame of the maximum */
    float t;        /* interpolated frame */
    float lf;       /* log2(f / fmin_hz), interpolated */
    float strength; /* ranking key: log power */
    uint32_t k;     /* bin, for deterministic tie breaks */
} peak;

/* A growable array consumed from the front (head); memory follows the live window, not the
 * stream length. */
typedef struct peakvec {
    peak *v;
    size_t head, n, cap; /* live elements are v[head..n) */
    size_t next; /* first element not yet processed by the next stage, head ≤ next ≤ n */
} peakvec;

struct sh_fp {
    sh_fp_config c;
    int nb;          /* fft_size/2 + 1 */
    int kmin, kmax;  /* peak search band, bins */
    int ring;        /* frames kept for the 2-D maximum: 2*peak_dt + 1 */
    int ppw, fanout; /* effective density for the mode */
    float floor_pow;
    float *win;         /* Hann window */
    float *in;          /* FFT input (fftwf_malloc) */
    fftwf_complex *out; /* FFT output (fftwf_malloc) */
    fftwf_plan plan;
    float *pend; /* pending samples, fft_size */
    size_t npend;
    float *pow;       /* ring * nb power spectra */
    float *fmax;      /* ring * nb frequency-max-filtered spectra */
    float *scratch;   /* 2 * nb floats for the running maximum */
    int *cand;        /* nb candidate bins of one frame */
    uint64_t nframes; /* frames computed */
    uint64_t next_c;  /* next centre frame to search for peaks */
    peakvec raw;      /* 2-D maxima; .next = first not yet ranked */
    peakvec kept;     /* peaks that survived the density cap; .next = next anchor */
    sh_hash *h;
    size_t nh, caph;
    uint64_t samples;
    int finished;
};

void sh_fp_config_default(sh_fp_config *c)
{
    memset(c, 0, sizeof *c);
    c->rate = 8000;
    c->fft_size = 512;
    c->hop = 128;
    c->fmin_hz = 150.0f;
    c->fmax_hz = 3400.0f;
    c->peak_df = 3;
    c->peak_dt = 4;
    c->floor_db = -75.0f;
    c->rank_half = 16;
    c->peaks_per_window = 5;
    c->dt_min = 2;
    c->dt_max = 48;
    c->df_max_oct = 1.0f;
    c->fanout = 4;
    c->f1_steps = 12.0f;
    c->df_steps = 48.0f;
    c->dt_step = 1.0f;
    c->query = 0;
    c->q_peaks_per_window = 5;
    c->q_fanout = 5;
    c->q_scale_tol = 0.025f;
    c->q_jitter = 0.1f;
    c->q_max_variants = 12;
    c->t_df_steps = 32.0f;
    c->t_dt_steps = 16.0f;
    c->t_ratio_steps = 16.0f;
    c->s_u_steps = 16.0f;
    c->s_f_steps = 4.0f;
    c->q_speed_tol = 0.12f;
    sh_fp_config_mode(c, SH_FP_TRIPLETS);
}

void sh_fp_config_mode(sh_fp_config *c, int mode)
{
    c->hash_mode = mode;
    /* A triplet needs three peaks to survive, so the query keeps more peaks and targets than the
     * index (a superset, see the header) to find the index's triplets in degraded audio. */
    c->q_peaks_per_window = mode == SH_FP_PAIRS ? 5 : 6;
    c->q_fanout = mode == SH_FP_PAIRS ? 5 : 6;
    /* The speed mode covers speed changes with its fc variants; q_scale_tol is left for tempo-
     * or pitch-only changes, which move u (cells of 1/16 octave), and variants are also spent on
     * fc. */
    c->q_scale_tol = mode == SH_FP_SPEED ? 0.05f : 0.025f;
    c->q_max_variants = mode == SH_FP_SPEED ? 16 : 12;
}

void sh_fp_config_query(sh_fp_config *c)
{
    sh_fp_config_default(c);
    c->query = 1;
}

int sh_fp_config_for_version(int fp_version, sh_fp_config *c, sh_err *e)
{
    if (!c)
        return sh_err_set(e, SH_EINVAL, "fp config: NULL");
    if (fp_version < 2 || fp_version > 4)
        return sh_err_set(e, SH_EUNSUPPORTED, "fp_version %d: this build makes 2, 3 and 4",
                          fp_version);
    _Static_assert(SH_FP_VERSION == 3, "a new SH_FP_VERSION: add it here");
    sh_fp_config_default(c);
    if (fp_version == 2)
        sh_fp_config_mode(c, SH_FP_PAIRS);
    else if (fp_version == 4)
        sh_fp_config_mode(c, SH_FP_SPEED);
    return 0;
}

int sh_fp_config_check(const sh_fp_config *c, sh_err *e)
{
    if (!c)
        return sh_err_set(e, SH_EINVAL, "fp config: NULL");
    if (c->rate < 4000 || c->rate > 192000)
        return sh_err_set(e, SH_EINVAL, "fp config: rate %d outside 4000..192000", c->rate);
    if (c->fft_size < 64 || c->fft_size > 8192 || (c->fft_size & (c->fft_size - 1)))
        return sh_err_set(e, SH_EINVAL, "fp config: fft_size %d not a power of two 64..8192",
                          c->fft_size);
    if (c->hop < 1 || c->hop > c->fft_size)
        return sh_err_set(e, SH_EINVAL, "fp config: hop %d outside 1..fft_size", c->hop);
    if (!(c->fmin_hz > 0.0f) || !(c->fmax_hz > c->fmin_hz) || c->fmax_hz > c->rate / 2.0f)
        return sh_err_set(e, SH_EINVAL, "fp config: band %g..%g Hz invalid", (double)c->fmin_hz,
                          (double)c->fmax_hz);
    if (c->peak_df < 1 || c->peak_df > 64 || c->peak_dt < 0 || c->peak_dt > 63)
        return sh_err_set(e, SH_EINVAL, "fp config: peak neighbourhood out of range");
    if (c->rank_half < 0 || c->rank_half > 1024)
        return sh_err_set(e, SH_EINVAL, "fp config: rank_half out of range");
    if (c->peaks_per_window < 1 || c->q_peaks_per_window < 1 || c->fanout < 1 || c->q_fanout < 1 ||
        c->peaks_per_window > 1000 || c->q_peaks_per_window > 1000 || c->fanout > 64 ||
        c->q_fanout > 64)
        return sh_err_set(e, SH_EINVAL, "fp config: density/fanout out of range");
    if (c->dt_min < 1 || c->dt_max < c->dt_min || c->dt_max > 4096)
        return sh_err_set(e, SH_EINVAL, "fp config: target zone dt out of range");
    if (!(c->df_max_oct > 0.0f) || !(c->f1_steps > 0.0f) || !(c->df_steps > 0.0f) ||
        !(c->dt_step > 0.0f))
        return sh_err_set(e, SH_EINVAL, "fp config: quantisation steps must be > 0");
    /* Every field value must fit its bits, or hashes would alias silently. */
    if (log2f(c->fmax_hz / c->fmin_hz) * c->f1_steps >= (float)(1u << SH_FP_F1_BITS) ||
        c->df_max_oct * c->df_steps + 2.0f >= (float)SH_FP_DF_BIAS ||
        (c->dt_max + 1.0f) * (1.0f + c->q_scale_tol) / c->dt_step + 2.0f >=
            (float)(1u << SH_FP_DT_BITS))
        return sh_err_set(e, SH_EINVAL, "fp config: quantised values overflow the hash fields");
    if (c->hash_mode != SH_FP_PAIRS && c->hash_mode != SH_FP_TRIPLETS &&
        c->hash_mode != SH_FP_SPEED)
        return sh_err_set(e, SH_EINVAL, "fp config: hash_mode %d is not 0, 1 or 2", c->hash_mode);
    if (c->hash_mode == SH_FP_SPEED &&
        (!(c->t_df_steps > 0.0f) || !(c->t_ratio_steps > 0.0f) || !(c->s_u_steps > 0.0f) ||
         !(c->s_f_steps > 0.0f) || !(c->q_speed_tol >= 0.0f) || c->q_speed_tol > 0.3f ||
         c->df_max_oct * c->t_df_steps + 2.0f >= (float)SH_FP_T_DF_BIAS ||
         (log2f(c->fmax_hz / c->fmin_hz) + log2f((c->dt_max + 2.0f) * 1.5f)) * c->s_u_steps +
                 1.0f >=
             (float)(1u << SH_FP_S_U_BITS) ||
         (log2f(c->fmax_hz / c->fmin_hz) + 0.5f) * c->s_f_steps + 1.0f >=
             (float)(1u << SH_FP_S_F_BITS) ||
         c->t_ratio_steps + 1.0f >= (float)(1u << SH_FP_T_R_BITS)))
        return sh_err_set(e, SH_EINVAL, "fp config: speed-triplet cells overflow the hash fields");
    if (c->hash_mode == SH_FP_TRIPLETS &&
        (!(c->t_df_steps > 0.0f) || !(c->t_dt_steps > 0.0f) || !(c->t_ratio_steps > 0.0f) ||
         c->df_max_oct * c->t_df_steps + 2.0f >= (float)SH_FP_T_DF_BIAS ||
         log2f((c->dt_max + 2.0f) * (1.0f + c->q_scale_tol)) * c->t_dt_steps + 1.0f >=
             (float)(1u << SH_FP_T_DT_BITS) ||
         c->t_ratio_steps + 1.0f >= (float)(1u << SH_FP_T_R_BITS)))
        return sh_err_set(e, SH_EINVAL, "fp config: triplet cells overflow the hash fields");
    if (!(c->q_scale_tol >= 0.0f) || c->q_scale_tol > 0.2f || !(c->q_jitter >= 0.0f) ||
        c->q_jitter > 2.0f || c->q_max_variants < 1 || c->q_max_variants > 64)
        return sh_err_set(e, SH_EINVAL, "fp config: query tolerances out of range");
    return 0;
}

double sh_fp_frame_seconds(const sh_fp_config *c)
{
    return (double)c->hop / (double)c->rate;
}

double sh_fp_max_hashes_per_s(const sh_fp_config *c)
{
    const double fps = (double)c->rate / c->hop;
    const int ppw = c->query ? c->q_peaks_per_window : c->peaks_per_window;
    const int fan = c->query ? c->q_fanout : c->fanout;
    const int var = c->query ? c->q_max_variants : 1;
    /* Triplet mode: every pair of an anchor's targets, C(fan, 2) hashes per anchor. */
    const int per = c->hash_mode != SH_FP_PAIRS ? (fan > 1 ? fan * (fan - 1) / 2 : 1) : fan;
    /* A kept peak is among the ppw strongest of the window centred on it, so any window of
     * rank_half+1 frames holds at most ppw kept peaks... conservatively 2*ppw per full window. */
    const double peaks_per_s = 2.0 * ppw * fps / (2.0 * c->rank_half + 1.0);
    const double cap_2d = fps; /* at most one 2-D maximum per frame and (2*peak_df+1) bins */
    const double bins = (double)c->fft_size * (c->fmax_hz - c->fmin_hz) / c->rate;
    const double p = fmin(peaks_per_s, cap_2d * (bins / (2.0 * c->peak_df + 1.0) + 1.0));
    return p * per * var;
}

/* ---- growable arrays ------------------------------------------------------------------------ */

static int pv_push(peakvec *pv, const peak *p)
{
    if (pv->n == pv->cap) {
        if (pv->head > 0 && pv->head >= pv->cap / 2) {
            /* Slide live elements to the front instead of growing. */
            memmove(pv->v, pv->v + pv->head, (pv->n - pv->head) * sizeof *pv->v);
            pv->n -= pv->head;
            pv->next -= pv->head;
            pv->head = 0;
        } else {
            int rc = sh_vec_reserve(&pv->v, &pv->cap, pv->n + 1, SH_VEC_NOCAP);
            if (rc)
                return rc;
        }
    }
    pv->v[pv->n++] = *p;
    return 0;
}

static int push_hash(sh_fp *fp, uint32_t hash, uint32_t t)
{
    int rc = sh_vec_reserve(&fp->h, &fp->caph, fp->nh + 1, SH_VEC_NOCAP);
    if (rc)
        return rc;
    fp->h[fp->nh].hash = hash;
    fp->h[fp->nh].t = t;
    fp->nh++;
    return 0;
}

/* ---- lifecycle ------------------------------------------------------------------------------ */

int sh_fp_new(const sh_fp_config *c, sh_fp **out, sh_err *e)
{
    if (!out)
        return sh_err_set(e, SH_EINVAL, "sh_fp_new: out is NULL");
    *out = NULL;
    int rc = sh_fp_config_check(c, e);
    if (rc)
        return rc;
    sh_fp *fp = calloc(1, sizeof *fp);
    if (!fp)
        return sh_err_set(e, SH_ENOMEM, "sh_fp_new: out of memory");
    fp->c = *c;
    const int n = c->fft_size;
    fp->nb = n / 2 + 1;
    const double binhz = (double)c->rate / n;
    fp->kmin = (int)ceil(c->fmin_hz / binhz);
    fp->kmax = (int)floor(c->fmax_hz / binhz);
    /* Never DC or Nyquist, and the ±peak_df neighbourhood stays inside the spectrum. */
    if (fp->kmin < c->peak_df + 1)
        fp->kmin = c->peak_df + 1;
    if (fp->kmax > fp->nb - 2 - c->peak_df)
        fp->kmax = fp->nb - 2 - c->peak_df;
    if (fp->kmax < fp->kmin) {
        sh_fp_free(fp);
        return sh_err_set(e, SH_EINVAL, "sh_fp_new: band narrower than the peak neighbourhood");
    }
    fp->ring = 2 * c->peak_dt + 1;
    fp->ppw = c->query ? c->q_peaks_per_window : c->peaks_per_window;
    fp->fanout = c->query ? c->q_fanout : c->fanout;
    /* Full-scale sine through a Hann window peaks at |X| = N/4. */
    fp->floor_pow = (float)((n / 4.0) * (n / 4.0) * pow(10.0, c->floor_db / 10.0));
    fp->win = malloc((size_t)n * sizeof *fp->win);
    fp->pend = malloc((size_t)n * sizeof *fp->pend);
    fp->pow = calloc((size_t)fp->ring * fp->nb, sizeof *fp->pow);
    fp->fmax = calloc((size_t)fp->ring * fp->nb, sizeof *fp->fmax);
    fp->scratch = malloc(2 * (size_t)fp->nb * sizeof *fp->scratch);
    fp->cand = malloc((size_t)fp->nb * sizeof *fp->cand);
    fp->in = fftwf_malloc((size_t)n * sizeof *fp->in);
    fp->out = fftwf_malloc((size_t)fp->nb * sizeof *fp->out);
    if (!fp->win || !fp->pend || !fp->pow || !fp->fmax || !fp->scratch || !fp->cand || !fp->in ||
        !fp->out) {
        sh_fp_free(fp);
        return sh_err_set(e, SH_ENOMEM, "sh_fp_new: out of memory");
    }
    for (int i = 0; i < n; i++)
        fp->win[i] = (float)(0.5 - 0.5 * cos(2.0 * M_PI * i / n));
    /* FFTW_ESTIMATE: the plan (hence float rounding, hence hashes) does not depend on timing. */
    pthread_mutex_lock(&plan_lock);
    fp->plan = fftwf_plan_dft_r2c_1d(n, fp->in, fp->out, FFTW_ESTIMATE);
    pthread_mutex_unlock(&plan_lock);
    if (!fp->plan) {
        sh_fp_free(fp);
        return sh_err_set(e, SH_ENOMEM, "sh_fp_new: FFTW planning failed");
    }
    *out = fp;
    return 0;
}

void sh_fp_reset(sh_fp *fp)
{
    if (!fp)
        return;
    fp->npend = 0;
    fp->nframes = 0;
    fp->next_c = 0;
    fp->raw.head = fp->raw.n = fp->raw.next = 0;
    fp->kept.head = fp->kept.n = fp->kept.next = 0;
    fp->nh = 0;
    fp->samples = 0;
    fp->finished = 0;
}

void sh_fp_free(sh_fp *fp)
{
    if (!fp)
        return;
    if (fp->plan) {
        pthread_mutex_lock(&plan_lock);
        fftwf_destroy_plan(fp->plan);
        pthread_mutex_unlock(&plan_lock);
    }
    fftwf_free(fp->in);
    fftwf_free(fp->out);
    free(fp->win);
    free(fp->pend);
    free(fp->pow);
    free(fp->fmax);
    free(fp->scratch);
    free(fp->cand);
    free(fp->raw.v);
    free(fp->kept.v);
    free(fp->h);
    free(fp);
}

const sh_hash *sh_fp_hashes(const sh_fp *fp, size_t *n)
{
    *n = fp ? fp->nh : 0;
    return fp ? fp->h : NULL;
}

uint64_t sh_fp_samples(const sh_fp *fp)
{
    return fp ? fp->samples : 0;
}

/* ---- spectra -------------------------------------------------------------------------------- */

static float *pow_at(const sh_fp *fp, uint64_t t)
{
    return fp->pow + (size_t)(t % (uint64_t)fp->ring) * (size_t)fp->nb;
}

static float *fmax_at(const sh_fp *fp, uint64_t t)
{
    return fp->fmax + (size_t)(t % (uint64_t)fp->ring) * (size_t)fp->nb;
}

/* Windowed FFT of the pending samples into the ring slot of frame fp->nframes. */
static void compute_frame(sh_fp *fp)
{
    const int n = fp->c.fft_size;
    for (int i = 0; i < n; i++)
        fp->in[i] = fp->pend[i] * fp->win[i];
    fftwf_execute_dft_r2c(fp->plan, fp->in, fp->out);
    float *p = pow_at(fp, fp->nframes);
    /* Only the band plus the neighbourhoods the 2-D maximum and the interpolation use. */
    const int margin = fp->c.peak_df;
    const int lo = fp->kmin - margin - 1 < 0 ? 0 : fp->kmin - margin - 1;
    const int hi = fp->kmax + margin + 1 >= fp->nb ? fp->nb - 1 : fp->kmax + margin + 1;
    for (int k = lo; k <= hi; k++)
        p[k] = fp->out[k][0] * fp->out[k][0] + fp->out[k][1] * fp->out[k][1];
    /* Running maximum over ±peak_df bins (van Herk / Gil-Werman: three comparisons per bin
     * whatever the width): g = prefix maxima and h = suffix maxima within blocks of w bins. */
    float *m = fmax_at(fp, fp->nframes);
    const int df = fp->c.peak_df, w = 2 * df + 1;
    const int a0 = fp->kmin - df, nw = fp->kmax + df - a0 + 1; /* bins a0 .. a0+nw-1 */
    float *g = fp->scratch, *h = fp->scratch + nw;
    const float *x = p + a0;
    for (int b = 0; b < nw; b += w) {
        const int e = b + w < nw ? b + w : nw;
        g[b] = x[b];
        for (int i = b + 1; i < e; i++)
            g[i] = x[i] > g[i - 1] ? x[i] : g[i - 1];
        h[e - 1] = x[e - 1];
        for (int i = e - 2; i >= b; i--)
            h[i] = x[i] > h[i + 1] ? x[i] : h[i + 1];
    }
    for (int k = fp->kmin; k <= fp->kmax; k++) {
        const int i = k - df - a0; /* window [i, i + w - 1] */
        m[k] = h[i] > g[i + w - 1] ? h[i] : g[i + w - 1];
    }
    fp->nframes++;
}

/* Parabolic vertex offset of (a, b, c) around b, in [-0.5, 0.5]; inputs are log powers. */
static float vertex(float a, float b, float c)
{
    const float d = a - 2.0f * b + c;
    if (!(d < 0.0f))
        return 0.0f;
    float x = 0.5f * (a - c) / d;
    return x < -0.5f ? -0.5f : x > 0.5f ? 0.5f : x;
}

static float lg(float x)
{
    return logf(x + 1e-30f);
}

/* Finds the 2-D maxima of centre frame c given frames up to `last`, appends them to raw.
 * (c, k) is a peak when it is the maximum of its ±peak_dt × ±peak_df neighbourhood; ties go to the
 * earlier frame / lower bin, so exactly one of equal neighbours wins. */
static int detect(sh_fp *fp, uint64_t c, uint64_t last)
{
    const uint64_t dt = (uint64_t)fp->c.peak_dt;
    const uint64_t t0 = c >= dt ? c - dt : 0;
    const uint64_t t1 = c + dt <= last ? c + dt : last;
    const float *p = pow_at(fp, c);
    const float *cm = fmax_at(fp, c);
    /* Row pointers once per centre: the ring index costs a division. */
    const float *before[64], *after[64];
    int nb = 0, na = 0;
    for (uint64_t t = t0; t < c; t++)
        before[nb++] = fmax_at(fp, t);
    for (uint64_t t = c + 1; t <= t1; t++)
        after[na++] = fmax_at(fp, t);
    const float *prev = c > 0 && c + 1 <= last ? pow_at(fp, c - 1) : NULL;
    const float *next = prev ? pow_at(fp, c + 1) : NULL;
    const double binhz = (double)fp->c.rate / fp->c.fft_size;
    /* Candidates first (a tight loop over the band), then the full test on the few. */
    int *cand = fp->cand, ncand = 0;
    for (int k = fp->kmin; k <= fp->kmax; k++) {
        cand[ncand] = k;
        ncand += p[k] >= cm[k] && p[k] >= fp->floor_pow;
    }
    for (int ci = 0; ci < ncand; ci++) {
        const int k = cand[ci];
        const float v = p[k];
        int win = 1;
        for (int j = 1; j <= fp->c.peak_df && win; j++)
            win = p[k - j] < v; /* a lower bin with the same value wins the tie */
        for (int i = 0; i < nb && win; i++)
            win = before[i][k] < v; /* an earlier frame wins ties */
        for (int i = 0; i < na && win; i++)
            win = after[i][k] <= v;
        if (!win)
            continue;
        const float lb = lg(v);
        const float fk = (float)k + vertex(lg(p[k - 1]), lb, lg(p[k + 1]));
        const float tk = (float)c + (prev ? vertex(lg(prev[k]), lb, lg(next[k])) : 0.0f);
        peak pk = {.frame = (uint32_t)c,
                   .t = tk,
                   .lf = log2f((float)(fk * binhz) / fp->c.fmin_hz),
                   .strength = lb,
                   .k = (uint32_t)k};
        if (pv_push(&fp->raw, &pk))
            return SH_ENOMEM;
    }
    return 0;
}

/* Strict total order for ranking: stronger first, then earlier, then lower bin. */
static int stronger(const peak *a, const peak *b)
{
    if (a->strength != b->strength)
        return a->strength > b->strength;
    if (a->frame != b->frame)
        return a->frame < b->frame;
    return a->k < b->k;
}

/* Decides raw peaks with frame ≤ upto (all raw peaks with frame ≤ upto + rank_half are known). */
static int decide(sh_fp *fp, uint64_t upto, int all)
{
    const uint64_t future = fp->next_c; /* peaks found later have frame ≥ this */
    peakvec *r = &fp->raw;
    const uint32_t H = (uint32_t)fp->c.rank_half;
    while (fp->raw.next < r->n && (all || r->v[fp->raw.next].frame <= upto)) {
        const peak *p = &r->v[fp->raw.next];
        int above = 0;
        for (size_t j = fp->raw.next; j-- > r->head && p->frame - r->v[j].frame <= H;)
            above += stronger(&r->v[j], p);
        for (size_t j = fp->raw.next + 1; j < r->n && r->v[j].frame - p->frame <= H; j++)
            above += stronger(&r->v[j], p);
        if (above < fp->ppw && pv_push(&fp->kept, p))
            return SH_ENOMEM;
        fp->raw.next++;
    }
    /* Drop raw peaks that can no longer be in the window of an undecided or future peak. */
    const uint64_t lowest = fp->raw.next < r->n ? r->v[fp->raw.next].frame : future;
    while (r->head < fp->raw.next && (uint64_t)r->v[r->head].frame + H < lowest)
        r->head++;
    return 0;
}

/* Narrows [*lo, *hi] to at most maxn cells around centre cell c. */
static void narrow(int *lo, int *hi, int c, int maxn)
{
    while (*hi - *lo + 1 > maxn) {
        if (*hi - c >= c - *lo)
            (*hi)--;
        else
            (*lo)++;
    }
}

static int floor_i(float x)
{
    return (int)floorf(x);
}

/* Emits the hash(es) of one anchor/target pair. */
static int emit_pair(sh_fp *fp, const peak *a, const peak *b)
{
    const sh_fp_config *c = &fp->c;
    /* Interpolation can put an edge peak a fraction of a bin outside the band: clamp. */
    const float xf = (a->lf > 0.0f ? a->lf : 0.0f) * c->f1_steps;
    const float xd = (b->lf - a->lf) * c->df_steps;
    const float xt = (b->t - a->t) / c->dt_step;
    const int cf = floor_i(xf), cd = floor_i(xd), ct = floor_i(xt);
    int f0 = cf, f1 = cf, d0 = cd, d1 = cd, t0 = ct, t1 = ct;
    if (c->query) {
        const float sl = log2f(1.0f + c->q_scale_tol) * c->f1_steps;
        f0 = floor_i(xf - sl);
        f1 = floor_i(xf + sl);
        d0 = floor_i(xd - c->q_jitter);
        d1 = floor_i(xd + c->q_jitter);
        t0 = floor_i(xt * (1.0f - c->q_scale_tol) - c->q_jitter);
        t1 = floor_i(xt * (1.0f + c->q_scale_tol) + c->q_jitter);
        const int cap = c->q_max_variants;
        const int nfd = (f1 - f0 + 1) * (d1 - d0 + 1);
        narrow(&t0, &t1, ct, cap / nfd > 0 ? cap / nfd : 1);
        const int nft = (f1 - f0 + 1) * (t1 - t0 + 1);
        narrow(&d0, &d1, cd, cap / nft > 0 ? cap / nft : 1);
        const int ndt = (d1 - d0 + 1) * (t1 - t0 + 1);
        narrow(&f0, &f1, cf, cap / ndt > 0 ? cap / ndt : 1);
    }
    /* Config checks keep centre cells in range; variants at the edges are clipped. */
    const int fmaxv = (1 << SH_FP_F1_BITS) - 1, tmaxv = (1 << SH_FP_DT_BITS) - 1;
    d0 = d0 < -SH_FP_DF_BIAS ? -SH_FP_DF_BIAS : d0;
    d1 = d1 > SH_FP_DF_BIAS - 1 ? SH_FP_DF_BIAS - 1 : d1;
    for (int f = f0 < 0 ? 0 : f0; f <= (f1 > fmaxv ? fmaxv : f1); f++)
        for (int d = d0; d <= d1; d++)
            for (int t = t0 < 0 ? 0 : t0; t <= (t1 > tmaxv ? tmaxv : t1); t++) {
                const uint32_t h =
                    sh_fp_hash_pack((uint32_t)f, (uint32_t)(d + SH_FP_DF_BIAS), (uint32_t)t);
                if (push_hash(fp, h, a->frame))
                    return SH_ENOMEM;
            }
    return 0;
}

/* Cell range [*lo, *hi] of the values x0..x1 (x0 ≤ x1), clipped to 0..maxv. */
static void cells(float x0, float x1, int maxv, int *lo, int *hi)
{
    *lo = floor_i(x0);
    *hi = floor_i(x1);
    *lo = *lo < 0 ? 0 : *lo > maxv ? maxv : *lo;
    *hi = *hi < *lo ? *lo : *hi > maxv ? maxv : *hi;
}

/* Emits the hash(es) of one triplet: anchor a, targets b then c (b->frame ≤ c->frame). */
static int emit_triplet(sh_fp *fp, const peak *a, const peak *b, const peak *c3)
{
    const sh_fp_config *c = &fp->c;
    const int q = c->query;
    const float tol = q ? c->q_scale_tol : 0.0f, j = q ? c->q_jitter : 0.0f;
    /* Dimensions: 0 f1, 1 df(b), 2 df(c), 3 log dt(c), 4 time ratio dt(b)/dt(c). */
    int lo[5], hi[5], ce[5];
    const float xf = (a->lf > 0.0f ? a->lf : 0.0f) * c->f1_steps;
    const float sl = log2f(1.0f + tol) * c->f1_steps;
    cells(xf - sl, xf + sl, (1 << SH_FP_F1_BITS) - 1, &lo[0], &hi[0]);
    ce[0] = floor_i(xf);
    const float dmax = (float)((1 << SH_FP_T_DF_BITS) - 1);
    const float xb = (b->lf - a->lf) * c->t_df_steps + SH_FP_T_DF_BIAS;
    const float xc = (c3->lf - a->lf) * c->t_df_steps + SH_FP_T_DF_BIAS;
    cells(xb - j, xb + j, (int)dmax, &lo[1], &hi[1]);
    cells(xc - j, xc + j, (int)dmax, &lo[2], &hi[2]);
    ce[1] = floor_i(xb);
    ce[2] = floor_i(xc);
    /* Times are interpolated frames; q_jitter is also the time noise covered, in frames. */
    float tb = b->t - a->t, tc = c3->t - a->t;
    tb = tb < 0.0f ? 0.0f : tb;
    tc = tc < 1.0f ? 1.0f : tc;
    const float lt = log2f(tc) * c->t_dt_steps;
    const float lt0 = log2f(fmaxf(1.0f, (tc - j) * (1.0f - tol))) * c->t_dt_steps;
    const float lt1 = log2f((tc + j) * (1.0f + tol)) * c->t_dt_steps;
    cells(lt0, lt1, (1 << SH_FP_T_DT_BITS) - 1, &lo[3], &hi[3]);
    ce[3] = floor_i(lt);
    /* The ratio is invariant to a time scale; only noise moves it. */
    const float r = fminf(tb / tc, 1.0f) * c->t_ratio_steps;
    const float r0 = fmaxf(0.0f, tb - j) / (tc + j) * c->t_ratio_steps;
    const float r1 = fminf(1.0f, (tb + j) / fmaxf(1.0f, tc - j)) * c->t_ratio_steps;
    cells(fminf(r0, r), fmaxf(r1, r), (1 << SH_FP_T_R_BITS) - 1, &lo[4], &hi[4]);
    ce[4] = floor_i(r);
    if (q) {
        /* Too many variants: narrow the widest dimension around its centre cell. */
        for (;;) {
            int prod = 1, wi = 0;
            for (int d = 0; d < 5; d++) {
                prod *= hi[d] - lo[d] + 1;
                if (hi[d] - lo[d] > hi[wi] - lo[wi])
                    wi = d;
            }
            if (prod <= c->q_max_variants)
                break;
            narrow(&lo[wi], &hi[wi], ce[wi], hi[wi] - lo[wi]);
        }
    } else {
        for (int d = 0; d < 5; d++)
            hi[d] = lo[d];
    }
    for (int v0 = lo[0]; v0 <= hi[0]; v0++)
        for (int v1 = lo[1]; v1 <= hi[1]; v1++)
            for (int v2 = lo[2]; v2 <= hi[2]; v2++)
                for (int v3 = lo[3]; v3 <= hi[3]; v3++)
                    for (int v4 = lo[4]; v4 <= hi[4]; v4++) {
                        const uint32_t h =
                            sh_fp_hash_pack3((uint32_t)v0, (uint32_t)v1, (uint32_t)v2,
                                             (uint32_t)v3, (uint32_t)v4);
                        if (push_hash(fp, h, a->frame))
                            return SH_ENOMEM;
                    }
    return 0;
}

/* Narrows the widest of nd dimensions around its centre cell until at most maxv variants. */
static void narrow_all(int *lo, int *hi, const int *ce, int nd, int maxv)
{
    for (;;) {
        int prod = 1, wi = 0;
        for (int d = 0; d < nd; d++) {
            prod *= hi[d] - lo[d] + 1;
            if (hi[d] - lo[d] > hi[wi] - lo[wi])
                wi = d;
        }
        if (prod <= maxv)
            return;
        narrow(&lo[wi], &hi[wi], ce[wi], hi[wi] - lo[wi]);
    }
}

/* Emits the hash(es) of one speed-invariant triplet (SH_FP_SPEED; layout in sh_fp.h). */
static int emit_speed(sh_fp *fp, const peak *a, const peak *b, const peak *c3)
{
    const sh_fp_config *c = &fp->c;
    const int q = c->query;
    const float tol = q ? c->q_scale_tol : 0.0f, j = q ? c->q_jitter : 0.0f;
    const float stol = q ? c->q_speed_tol : 0.0f;
    /* Dimensions: 0 u, 1 coarse fa, 2 df(b), 3 df(c), 4 time ratio dt(b)/dt(c). */
    int lo[5], hi[5], ce[5];
    const float lf = a->lf > 0.0f ? a->lf : 0.0f;
    float tb = b->t - a->t, tc = c3->t - a->t;
    tb = tb < 0.0f ? 0.0f : tb;
    tc = tc < 1.0f ? 1.0f : tc;
    /* u: invariant to speed; a tempo- or pitch-only change by ±tol and ±j frames of time noise
     * move it. */
    const float xu = (lf + log2f(tc)) * c->s_u_steps;
    const float su = log2f(1.0f + tol) * c->s_u_steps;
    const float ju = log2f(tc / fmaxf(1.0f, tc - j)) * c->s_u_steps;
    cells(xu - su - ju, xu + su + ju, (1 << SH_FP_S_U_BITS) - 1, &lo[0], &hi[0]);
    ce[0] = floor_i(xu);
    const float xf = lf * c->s_f_steps, sf = log2f(1.0f + stol) * c->s_f_steps;
    cells(xf - sf, xf + sf, (1 << SH_FP_S_F_BITS) - 1, &lo[1], &hi[1]);
    ce[1] = floor_i(xf);
    const float dmax = (float)((1 << SH_FP_T_DF_BITS) - 1);
    const float xb = (b->lf - a->lf) * c->t_df_steps + SH_FP_T_DF_BIAS;
    const float xc = (c3->lf - a->lf) * c->t_df_steps + SH_FP_T_DF_BIAS;
    cells(xb - j, xb + j, (int)dmax, &lo[2], &hi[2]);
    cells(xc - j, xc + j, (int)dmax, &lo[3], &hi[3]);
    ce[2] = floor_i(xb);
    ce[3] = floor_i(xc);
    const float r = fminf(tb / tc, 1.0f) * c->t_ratio_steps;
    const float r0 = fmaxf(0.0f, tb - j) / (tc + j) * c->t_ratio_steps;
    const float r1 = fminf(1.0f, (tb + j) / fmaxf(1.0f, tc - j)) * c->t_ratio_steps;
    cells(fminf(r0, r), fmaxf(r1, r), (1 << SH_FP_T_R_BITS) - 1, &lo[4], &hi[4]);
    ce[4] = floor_i(r);
    if (q) {
        narrow_all(lo, hi, ce, 5, c->q_max_variants);
    } else {
        for (int d = 0; d < 5; d++)
            lo[d] = hi[d] = ce[d] < lo[d] ? lo[d] : ce[d] > hi[d] ? hi[d] : ce[d];
    }
    for (int v0 = lo[0]; v0 <= hi[0]; v0++)
        for (int v1 = lo[1]; v1 <= hi[1]; v1++)
            for (int v2 = lo[2]; v2 <= hi[2]; v2++)
                for (int v3 = lo[3]; v3 <= hi[3]; v3++)
                    for (int v4 = lo[4]; v4 <= hi[4]; v4++) {
                        const uint32_t h = sh_fp_hash_pack_speed((uint32_t)v0, (uint32_t)v1,
                                                                 (uint32_t)v2, (uint32_t)v3,
                                                                 (uint32_t)v4);
                        if (push_hash(fp, h, a->frame))
                            return SH_ENOMEM;
                    }
    return 0;
}

/* Hashes kept anchors (pairs or triplets) whose whole target zone is decided (frame + dt_max ≤
 * upto, or all). */
static int pair(sh_fp *fp, uint64_t upto, int all)
{
    peakvec *kv = &fp->kept;
    const float dfmax = fp->c.df_max_oct;
    const uint32_t dmin = (uint32_t)fp->c.dt_min, dmax = (uint32_t)fp->c.dt_max;
    while (fp->kept.next < kv->n && (all || kv->v[fp->kept.next].frame + dmax <= upto)) {
        const peak *a = &kv->v[fp->kept.next];
        int used = 0;
        const peak *tg[64];
        for (size_t j = fp->kept.next + 1; j < kv->n && used < fp->fanout; j++) {
            const peak *b = &kv->v[j];
            const uint32_t d = b->frame - a->frame;
            if (d > dmax)
                break;
            if (d < dmin || fabsf(b->lf - a->lf) > dfmax)
                continue;
            if (fp->c.hash_mode == SH_FP_PAIRS && emit_pair(fp, a, b))
                return SH_ENOMEM;
            tg[used++] = b; /* fanout ≤ 64 (config check) */
        }
        /* Triplets: every two targets, in time order (kept peaks are sorted by frame). */
        for (int x = 0; fp->c.hash_mode != SH_FP_PAIRS && x < used; x++)
            for (int y = x + 1; y < used; y++)
                if ((fp->c.hash_mode == SH_FP_SPEED ? emit_speed : emit_triplet)(fp, a, tg[x],
                                                                                  tg[y]))
                    return SH_ENOMEM;
        fp->kept.next++;
    }
    /* Kept peaks before the next anchor are no longer needed (targets lie after anchors). */
    kv->head = fp->kept.next;
    return 0;
}

/* Runs the stages for every centre frame whose look-ahead is complete. */
static int advance(sh_fp *fp, int final)
{
    const uint64_t dt = (uint64_t)fp->c.peak_dt;
    if (fp->nframes == 0)
        return 0;
    const uint64_t last = fp->nframes - 1;
    while (fp->next_c <= last && (final || fp->next_c + dt <= last)) {
        if (detect(fp, fp->next_c, last))
            return SH_ENOMEM;
        fp->next_c++;
    }
    /* Raw peaks are known for frames < next_c. */
    const uint64_t H = (uint64_t)fp->c.rank_half;
    const uint64_t known = fp->next_c; /* frames [0, known) searched */
    if (final || known > H) {
        const uint64_t upto = final ? UINT64_MAX : known - 1 - H;
        if (decide(fp, upto, final))
            return SH_ENOMEM;
        /* Kept peaks are final for frames ≤ upto. */
        if (pair(fp, upto, final))
            return SH_ENOMEM;
    }
    return 0;
}

int sh_fp_feed(sh_fp *fp, const float *x, size_t n, sh_err *e)
{
    if (!fp || (!x && n))
        return sh_err_set(e, SH_EINVAL, "sh_fp_feed: NULL argument");
    if (fp->finished)
        return sh_err_set(e, SH_EINVAL, "sh_fp_feed: stream already finished (reset first)");
    const size_t N = (size_t)fp->c.fft_size, hop = (size_t)fp->c.hop;
    fp->samples += n;
    while (n > 0) {
        size_t take = N - fp->npend;
        if (take > n)
            take = n;
        /* NaN/Inf would poison a whole frame; absurd magnitudes would overflow the power.
         * Selects, not branches, so the loop is vectorised (omp simd: -fopenmp-simd). */
        float *dst = fp->pend + fp->npend;
#pragma omp simd
        for (size_t i = 0; i < take; i++) {
            float v = fabsf(x[i]) <= FLT_MAX ? x[i] : 0.0f;
            v = v > 1e4f ? 1e4f : v;
            dst[i] = v < -1e4f ? -1e4f : v;
        }
        fp->npend += take;
        x += take;
        n -= take;
        if (fp->npend == N) {
            compute_frame(fp);
            memmove(fp->pend, fp->pend + hop, (N - hop) * sizeof *fp->pend);
            fp->npend = N - hop;
            if (advance(fp, 0))
                return sh_err_set(e, SH_ENOMEM, "sh_fp_feed: out of memory");
        }
    }
    return 0;
}

int sh_fp_finish(sh_fp *fp, sh_err *e)
{
    if (!fp)
        return sh_err_set(e, SH_EINVAL, "sh_fp_finish: NULL");
    if (fp->finished)
        return sh_err_set(e, SH_EINVAL, "sh_fp_finish: already finished");
    fp->finished = 1;
    if (advance(fp, 1))
        return sh_err_set(e, SH_ENOMEM, "sh_fp_finish: out of memory");
    return 0;
}
