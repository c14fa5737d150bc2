/* Unit tests for core/engine/sh_audio (decode → mono → resample) and core/engine/sh_extract.
 *
 * All audio is generated in-process: libsndfile encodes sines/noise into memory (WAV, FLAC, Ogg
 * Vorbis, Ogg Opus, MP3, AIFF) and the bad inputs are made from those bytes (truncated, headers
 * patched to lie, random bytes), so each case states exactly what it feeds the decoder.
 */
/* cmocka.h needs these first; keep clang-format from sorting them after it. */
/* clang-format off */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
/* clang-format on */

#include "sh_audio.h"
#include "sh_extract.h"

#include <fcntl.h>
#include <math.h>
#include <sndfile.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#ifndef M_PI
#define M_PI 3.14159265358979323846
#endif

/* ---- encoding into memory ---------------------------------------------------------------------
 */

typedef struct membuf {
    unsigned char *p;
    sf_count_t len, pos, cap;
} membuf;

static sf_count_t mb_len(void *u)
{
    return ((membuf *)u)->len;
}
static sf_count_t mb_tell(void *u)
{
    return ((membuf *)u)->pos;
}
static sf_count_t mb_seek(sf_count_t off, int whence, void *u)
{
    membuf *m = u;
    sf_count_t base = whence == SEEK_SET ? 0 : whence == SEEK_CUR ? m->pos : m->len;
    if (base + off < 0)
        return -1;
    m->pos = base + off;
    return m->pos;
}
static sf_count_t mb_read(void *ptr, sf_count_t n, void *u)
{
    membuf *m = u;
    sf_count_t k = m->pos >= m->len ? 0 : (m->len - m->pos < n ? m->len - m->pos : n);
    memcpy(ptr, m->p + m->pos, (size_t)k);
    m->pos += k;
    return k;
}
static sf_count_t mb_write(const void *ptr, sf_count_t n, void *u)
{
    membuf *m = u;
    if (m->pos + n > m->cap) {
        sf_count_t cap = (m->pos + n) * 2 + 4096;
        m->p = realloc(m->p, (size_t)cap);
        assert_non_null(m->p);
        memset(m->p + m->cap, 0, (size_t)(cap - m->cap));
        m->cap = cap;
    }
    memcpy(m->p + m->pos, ptr, (size_t)n);
    m->pos += n;
    if (m->pos > m->len)
        m->len = m->pos;
    return n;
}

typedef float (*gen_fn)(long i, int ch, int rate);

static float gen_sine1k(long i, int ch, int rate)
{
    (void)ch;
    return 0.5f * (float)sin(2 * M_PI * 1000.0 * (double)i / rate);
}

static float gen_noise(long i, int ch, int rate)
{
    (void)rate;
    uint32_t x = (uint32_t)(i * 2654435761u) ^ (uint32_t)(ch * 40503u);
    x ^= x >> 13, x *= 0x5bd1e995u, x ^= x >> 15;
    return ((float)(x & 0xffff) / 32768.0f - 1.0f) * 0.3f;
}

/* Encodes `secs` of gen() at rate/channels in `format` into a malloc'ed buffer. */
static unsigned char *encode(int format, int rate, int channels, double secs, gen_fn gen,
                             size_t *len)
{
    SF_VIRTUAL_IO vio = {mb_len, mb_seek, mb_read, mb_write, mb_tell};
    membuf m = {0};
    SF_INFO info = {.samplerate = rate, .channels = channels, .format = format};
    assert_true(sf_format_check(&info));
    SNDFILE *sf = sf_open_virtual(&vio, SFM_WRITE, &info, &m);
    if (!sf)
        fail_msg("sf_open_virtual(write %x): %s", format, sf_strerror(NULL));
    long frames = (long)(secs * rate);
    float *buf = malloc(sizeof(float) * 1024 * (size_t)channels);
    assert_non_null(buf);
    for (long i = 0; i < frames;) {
        long n = frames - i < 1024 ? frames - i : 1024;
        for (long k = 0; k < n; k++) {
            for (int c = 0; c < channels; c++)
                buf[k * channels + c] = gen(i + k, c, rate);
        }
        assert_int_equal(sf_writef_float(sf, buf, n), n);
        i += n;
    }
    free(buf);
    assert_int_equal(sf_close(sf), 0);
    *len = (size_t)m.len;
    return m.p;
}

/* ---- decoding helpers -------------------------------------------------------------------------
 */

typedef struct decoded {
    float *x;
    size_t n;
    int rc; /* 0, or the error of open (open_rc) / read */
    int open_rc;
    sh_audio_info info;
    double secs;
} decoded;

/* Decodes `buf` to the end with reads of `step` samples. */
static decoded decode_mem(const void *buf, size_t len, const sh_audio_opts *o, size_t step)
{
    decoded d = {0};
    sh_audio *a = NULL;
    sh_err e = {0};
    d.open_rc = d.rc = sh_audio_open_mem(buf, len, o, &a, &e);
    if (d.rc) {
        assert_null(a);
        assert_true(e.msg[0] != '\0');
        return d;
    }
    d.info = *sh_audio_get_info(a);
    size_t cap = 1 << 16;
    d.x = malloc(cap * sizeof(float));
    long r;
    for (;;) {
        if (d.n + step > cap) {
            cap *= 2;
            d.x = realloc(d.x, cap * sizeof(float));
            assert_non_null(d.x);
        }
        r = sh_audio_read(a, d.x + d.n, step, &e);
        if (r <= 0)
            break;
        assert_true((size_t)r <= step);
        d.n += (size_t)r;
    }
    if (r < 0) {
        d.rc = (int)r;
        assert_true(e.msg[0] != '\0');
        /* Errors are sticky. */
        assert_int_equal(sh_audio_read(a, d.x, step, NULL), d.rc);
    } else {
        assert_int_equal(sh_audio_read(a, d.x, step, NULL), 0); /* and EOF stays EOF */
    }
    assert_int_equal(sh_audio_samples_out(a), d.n);
    d.secs = sh_audio_decoded_seconds(a);
    sh_audio_free(a);
    return d;
}

static sh_audio_opts opts_rate(int rate)
{
    sh_audio_opts o;
    sh_audio_opts_default(&o);
    o.rate = rate;
    return o;
}

/* Goertzel power of frequency f in x[0..n). */
static double tone_power(const float *x, size_t n, double f, int rate)
{
    double w = 2 * M_PI * f / rate, c = 2 * cos(w), s1 = 0, s2 = 0;
    for (size_t i = 0; i < n; i++) {
        double s = x[i] + c * s1 - s2;
        s2 = s1;
        s1 = s;
    }
    return s1 * s1 + s2 * s2 - c * s1 * s2;
}

static long zero_crossings(const float *x, size_t n)
{
    long z = 0;
    for (size_t i = 1; i < n; i++)
        z += (x[i - 1] < 0) != (x[i] < 0);
    return z;
}

/* The middle second of the output holds a clean 1 kHz tone: strong at 1000 Hz, weak 30 Hz away
 * (a 1 % rate error moves the tone by 10 Hz and the 1 s Goertzel window would miss it). */
static void assert_1khz(const decoded *d, int rate)
{
    assert_true(d->n >= (size_t)rate * 3 / 2);
    const float *mid = d->x + rate / 4;
    double p = tone_power(mid, (size_t)rate, 1000, rate);
    double q =
        fmax(tone_power(mid, (size_t)rate, 970, rate), tone_power(mid, (size_t)rate, 1030, rate));
    double p_off = tone_power(mid, (size_t)rate, 1010, rate);
    if (!(p > 1000 * q && p > 50 * p_off))
        fail_msg("not a 1 kHz tone: P(1000)=%g P(1010)=%g P(970|1030)=%g", p, p_off, q);
}

/* ---- tests ------------------------------------------------------------------------------------
 */

static void test_formats(void **state)
{
    (void)state;
    static const struct {
        int format, rate;
        const char *name;
        double tol_s; /* lossy codecs add encoder delay/padding */
    } f[] = {
        {SF_FORMAT_WAV | SF_FORMAT_PCM_16, 44100, "WAV", 0},
        {SF_FORMAT_FLAC | SF_FORMAT_PCM_16, 44100, "FLAC", 0},
        {SF_FORMAT_OGG | SF_FORMAT_VORBIS, 44100, "OGG/VORBIS", 0},
        {SF_FORMAT_OGG | SF_FORMAT_OPUS, 48000, "OGG/OPUS", 0.03},
        {SF_FORMAT_MPEG | SF_FORMAT_MPEG_LAYER_III, 44100, "MPEG/MP3", 0.06},
        {SF_FORMAT_AIFF | SF_FORMAT_PCM_24, 44100, "AIFF", 0},
    };
    sh_audio_opts o = opts_rate(8000);
    for (size_t i = 0; i < sizeof f / sizeof f[0]; i++) {
        size_t len;
        unsigned char *buf = encode(f[i].format, f[i].rate, 2, 2.0, gen_sine1k, &len);
        decoded d = decode_mem(buf, len, &o, 4096);
        if (d.rc)
            fail_msg("%s: %s", f[i].name, sh_err_name(d.rc));
        assert_string_equal(d.info.format, f[i].name);
        assert_int_equal(d.info.src_rate, f[i].rate);
        assert_int_equal(d.info.channels, 2);
        assert_int_equal(d.info.input_bytes, len);
        if (fabs(d.secs - 2.0) > f[i].tol_s + 1e-9)
            fail_msg("%s: decoded %.4f s, want 2 s", f[i].name, d.secs);
        assert_true(fabs((double)d.n - d.secs * 8000) <= 16); /* output matches the decoded span */
        assert_1khz(&d, 8000);
        free(d.x);
        free(buf);
    }
}

static void test_rates_channels(void **state)
{
    (void)state;
    static const int rates[] = {8000,  11025, 16000, 22050, 32000,
                                44100, 48000, 88200, 96000, 192000};
    static const int chans[] = {1, 2, 6};
    sh_audio_opts o = opts_rate(8000);
    for (size_t r = 0; r < sizeof rates / sizeof rates[0]; r++) {
        for (size_t c = 0; c < sizeof chans / sizeof chans[0]; c++) {
            size_t len;
            unsigned char *buf =
                encode(SF_FORMAT_WAV | SF_FORMAT_FLOAT, rates[r], chans[c], 2.0, gen_sine1k, &len);
            decoded d = decode_mem(buf, len, &o, 1000);
            assert_int_equal(d.rc, 0);
            assert_int_equal(d.info.src_rate, rates[r]);
            assert_int_equal(d.info.channels, chans[c]);
            /* 2 s at 8 kHz: the resampler keeps the length to within its filter delay ... */
            if (labs((long)d.n - 16000) > 8)
                fail_msg("%d Hz x%d: %zu samples, want 16000", rates[r], chans[c], d.n);
            /* ... and the frequency: 1 kHz = 2000 zero crossings per second. */
            long z = zero_crossings(d.x + 100, d.n - 200);
            if (labs(z - 3950) > 3)
                fail_msg("%d Hz x%d: %ld zero crossings, want ~3950", rates[r], chans[c], z);
            assert_1khz(&d, 8000);
            free(d.x);
            free(buf);
        }
    }
    /* Other analysis rates: 44.1 kHz → 16 kHz and 11025 Hz. */
    static const int outs[] = {16000, 11025};
    for (size_t i = 0; i < 2; i++) {
        size_t len;
        unsigned char *buf =
            encode(SF_FORMAT_FLAC | SF_FORMAT_PCM_16, 44100, 2, 2.0, gen_sine1k, &len);
        o = opts_rate(outs[i]);
        decoded d = decode_mem(buf, len, &o, 4096);
        assert_int_equal(d.rc, 0);
        assert_true(labs((long)d.n - 2 * outs[i]) <= 8);
        assert_1khz(&d, outs[i]);
        free(d.x);
        free(buf);
    }
}

static float gen_lr_opposite(long i, int ch, int rate)
{
    float s = gen_sine1k(i, 0, rate);
    return ch ? -s : s;
}

static float gen_left_only(long i, int ch, int rate)
{
    return ch ? 0.0f : gen_noise(i, 0, rate);
}

static float gen_nonfinite(long i, int ch, int rate)
{
    (void)ch, (void)rate;
    static const float v[] = {0.25f, NAN, INFINITY, -INFINITY, 1e30f, -1e30f, -0.5f, 3.0f};
    return v[i % 8];
}

/* At the analysis rate nothing is resampled: the output is exactly the channel mean. */
static void test_downmix_passthrough(void **state)
{
    (void)state;
    sh_audio_opts o = opts_rate(8000);
    size_t len;
    unsigned char *buf =
        encode(SF_FORMAT_WAV | SF_FORMAT_FLOAT, 8000, 2, 1.0, gen_lr_opposite, &len);
    decoded d = decode_mem(buf, len, &o, 777);
    assert_int_equal(d.rc, 0);
    assert_int_equal(d.n, 8000);
    for (size_t i = 0; i < d.n; i++)
        assert_true(d.x[i] == 0.0f); /* out of phase cancels */
    free(d.x);
    free(buf);

    buf = encode(SF_FORMAT_WAV | SF_FORMAT_FLOAT, 8000, 2, 1.0, gen_left_only, &len);
    d = decode_mem(buf, len, &o, 4096);
    assert_int_equal(d.rc, 0);
    assert_int_equal(d.n, 8000);
    for (size_t i = 0; i < d.n; i++)
        assert_true(d.x[i] == gen_noise((long)i, 0, 8000) * 0.5f);
    free(d.x);
    free(buf);

    /* Float WAVs may carry NaN/Inf/huge values: they come out finite and bounded. */
    buf = encode(SF_FORMAT_WAV | SF_FORMAT_FLOAT, 8000, 1, 0.5, gen_nonfinite, &len);
    d = decode_mem(buf, len, &o, 4096);
    assert_int_equal(d.rc, 0);
    assert_int_equal(d.n, 4000);
    for (size_t i = 0; i < d.n; i++)
        assert_true(isfinite(d.x[i]) && fabsf(d.x[i]) <= 16.0f);
    assert_true(d.x[0] == 0.25f && d.x[1] == 0.0f && d.x[7] == 3.0f && d.x[4] == 16.0f);
    free(d.x);
    free(buf);

    /* The same through the stereo and the any-channel-count downmix loops (both channels, or all
     * three, carry the value: the mean is the value, or NaN/Inf). */
    for (int ch = 2; ch <= 3; ch++) {
        buf = encode(SF_FORMAT_WAV | SF_FORMAT_FLOAT, 8000, ch, 0.5, gen_nonfinite, &len);
        d = decode_mem(buf, len, &o, 4096);
        assert_int_equal(d.rc, 0);
        assert_int_equal(d.n, 4000);
        for (size_t i = 0; i < d.n; i++)
            assert_true(isfinite(d.x[i]) && fabsf(d.x[i]) <= 16.0f);
        assert_true(d.x[0] == 0.25f && d.x[1] == 0.0f && d.x[2] == 0.0f && d.x[3] == 0.0f);
        assert_true(d.x[4] == 16.0f && d.x[5] == -16.0f && d.x[6] == -0.5f && d.x[7] == 3.0f);
        free(d.x);
        free(buf);
    }
}

/* The output must not depend on how the caller sizes its reads (hashes must be reproducible). */
static void test_chunking_invariance(void **state)
{
    (void)state;
    sh_audio_opts o = opts_rate(8000);
    size_t len;
    unsigned char *buf = encode(SF_FORMAT_FLAC | SF_FORMAT_PCM_16, 44100, 2, 1.5, gen_noise, &len);
    decoded a = decode_mem(buf, len, &o, 4096);
    decoded b = decode_mem(buf, len, &o, 1);
    decoded c = decode_mem(buf, len, &o, 333);
    assert_int_equal(a.rc, 0);
    assert_int_equal(a.n, b.n);
    assert_int_equal(a.n, c.n);
    assert_memory_equal(a.x, b.x, a.n * sizeof(float));
    assert_memory_equal(a.x, c.x, a.n * sizeof(float));
    free(a.x), free(b.x), free(c.x), free(buf);
}

static void test_duration_cap(void **state)
{
    (void)state;
    size_t len;
    unsigned char *buf = encode(SF_FORMAT_FLAC | SF_FORMAT_PCM_16, 8000, 1, 10.0, gen_noise, &len);
    sh_audio_opts o = opts_rate(8000);
    o.max_duration_s = 5;
    decoded d = decode_mem(buf, len, &o, 4096); /* the header says 10 s: refused at open */
    assert_int_equal(d.open_rc, SH_ETOOLONG);
    o.max_duration_s = 10.5;
    d = decode_mem(buf, len, &o, 4096);
    assert_int_equal(d.rc, 0);
    free(d.x);
    /* Header lies: zero STREAMINFO total_samples ("unknown"), so only decoding can tell. */
    assert_memory_equal(buf, "fLaC", 4);
    buf[21] &= 0xf0;
    memset(buf + 22, 0, 4);
    o.max_duration_s = 5;
    d = decode_mem(buf, len, &o, 4096);
    assert_int_equal(d.open_rc, 0);
    assert_int_equal(d.info.frames, -1);
    assert_int_equal(d.rc, SH_ETOOLONG);
    assert_true(d.secs <= 5.0);
    free(d.x);
    o.max_duration_s = 11;
    d = decode_mem(buf, len, &o, 4096);
    assert_int_equal(d.rc, 0);
    assert_true(fabs(d.secs - 10.0) < 1e-9);
    free(d.x);
    free(buf);
}

/* Writes `len` bytes of `p` into a 32-bit little-endian field at `off`. */
static void put_le32(unsigned char *p, size_t off, uint32_t v)
{
    for (int i = 0; i < 4; i++)
        p[off + (size_t)i] = (unsigned char)(v >> (8 * i));
}

static size_t find(const unsigned char *p, size_t len, const char *tag)
{
    for (size_t i = 0; i + 4 <= len; i++) {
        if (!memcmp(p + i, tag, 4))
            return i;
    }
    fail_msg("tag %s not found", tag);
    return 0;
}

static int decode_rc(const void *buf, size_t len)
{
    sh_audio_opts o = opts_rate(8000);
    decoded d = decode_mem(buf, len, &o, 4096);
    free(d.x);
    return d.rc;
}

static void test_truncated(void **state)
{
    (void)state;
    static const struct {
        int format, rate;
    } f[] = {
        {SF_FORMAT_WAV | SF_FORMAT_PCM_16, 44100},  {SF_FORMAT_AIFF | SF_FORMAT_PCM_16, 44100},
        {SF_FORMAT_FLAC | SF_FORMAT_PCM_16, 44100}, {SF_FORMAT_OGG | SF_FORMAT_VORBIS, 44100},
        {SF_FORMAT_OGG | SF_FORMAT_OPUS, 48000},
    };
    static const double keep[] = {0.02, 0.5, 0.9, 0.99};
    for (size_t i = 0; i < sizeof f / sizeof f[0]; i++) {
        size_t len;
        unsigned char *buf = encode(f[i].format, f[i].rate, 2, 3.0, gen_noise, &len);
        assert_int_equal(decode_rc(buf, len), 0);
        for (size_t k = 0; k < sizeof keep / sizeof keep[0]; k++) {
            int rc = decode_rc(buf, (size_t)(len * keep[k]));
            if (rc != SH_EDECODE)
                fail_msg("format %x cut to %.0f%%: %s, want SH_EDECODE", f[i].format, keep[k] * 100,
                         sh_err_name(rc));
        }
        free(buf);
    }
    /* MP3: a cut inside a frame is refused (tail frame walk); a cut exactly on a frame boundary is
     * indistinguishable from a shorter file and decodes as one — never longer, never a crash. */
    size_t len;
    unsigned char *buf =
        encode(SF_FORMAT_MPEG | SF_FORMAT_MPEG_LAYER_III, 44100, 2, 3.0, gen_noise, &len);
    assert_int_equal(decode_rc(buf, len), 0);
    const size_t cuts[] = {len - 1, len * 9 / 10 + 1, len / 2 + 3, len / 50 + 5};
    for (size_t k = 0; k < sizeof cuts / sizeof cuts[0]; k++) {
        int rc = decode_rc(buf, cuts[k]);
        if (rc != SH_EDECODE)
            fail_msg("MP3 cut to %zu of %zu bytes: %s, want SH_EDECODE", cuts[k], len,
                     sh_err_name(rc));
    }
    sh_audio_opts o = opts_rate(8000);
    for (size_t k = 0; k < sizeof keep / sizeof keep[0]; k++) {
        decoded d = decode_mem(buf, (size_t)(len * keep[k]), &o, 4096);
        assert_true(d.rc == 0 || d.rc == SH_EDECODE || d.rc == SH_ETOOSHORT);
        assert_true(d.secs <= 3.0 * keep[k] + 0.1);
        free(d.x);
    }
    /* A trailing ID3v1 tag after the last frame is not a cut. */
    unsigned char *tagged = malloc(len + 128);
    memcpy(tagged, buf, len);
    memset(tagged + len, ' ', 128);
    memcpy(tagged + len, "TAG", 3);
    assert_int_equal(decode_rc(tagged, len + 128), 0);
    free(tagged);
    free(buf);
}

static void test_lying_headers(void **state)
{
    (void)state;
    size_t len;
    unsigned char *wav = encode(SF_FORMAT_WAV | SF_FORMAT_PCM_16, 44100, 2, 1.0, gen_noise, &len);
    unsigned char *w = malloc(len);
    size_t data = find(wav, len, "data");
    static const struct {
        size_t off;
        uint32_t value;
        int want;
    } cases[] = {
        {0, 100000000, SH_EDECODE},  /* data chunk claims 100 MB */
        {0, 0xFFFFFFFF, 0},          /* streaming placeholders (ffmpeg, libsndfile): decode */
        {0, 0x7FFFF000, 0},          /* ... sox writing to a pipe */
        {0, 0x7FFFFFFF, 0},          /* ... arecord */
        {0, 0x7EFFFFFF, SH_EDECODE}, /* just under the placeholders: a lie */
        {0, 0, SH_ETOOSHORT},        /* data chunk claims nothing */
        {4, 0xFFFFFFF0, 0},          /* RIFF size is ignored by everyone */
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        memcpy(w, wav, len);
        put_le32(w, cases[i].off ? cases[i].off : data + 4, cases[i].value);
        int rc = decode_rc(w, len);
        if (rc != cases[i].want)
            fail_msg("case %zu: %s, want %s", i, sh_err_name(rc), sh_err_name(cases[i].want));
    }
    /* fmt chunk: absurd rates and channel counts. */
    size_t fmt = find(wav, len, "fmt ");
    static const struct {
        size_t off;
        uint32_t v;
        int bytes;
    } fmts[] = {
        {12, 1, 4},           {12, 7999, 4}, {12, 192001, 4},
        {12, 4000000000u, 4}, {10, 0, 2},    {10, 60000, 2},
    };
    for (size_t i = 0; i < sizeof fmts / sizeof fmts[0]; i++) {
        memcpy(w, wav, len);
        for (int b = 0; b < fmts[i].bytes; b++)
            w[fmt + fmts[i].off + (size_t)b] = (unsigned char)(fmts[i].v >> (8 * b));
        int rc = decode_rc(w, len);
        if (rc != SH_EUNSUPPORTED && rc != SH_EDECODE)
            fail_msg("fmt case %zu: %s", i, sh_err_name(rc));
    }
    free(w);
    free(wav);
    /* A well-formed file with more channels than we accept. */
    unsigned char *many = encode(SF_FORMAT_WAV | SF_FORMAT_PCM_16, 8000, 65, 0.1, gen_noise, &len);
    assert_int_equal(decode_rc(many, len), SH_EUNSUPPORTED);
    free(many);
}

static void test_garbage(void **state)
{
    (void)state;
    assert_int_equal(decode_rc("", 0), SH_EDECODE);
    unsigned char junk[8192];
    uint32_t x = 12345;
    for (size_t i = 0; i < sizeof junk; i++) {
        x = x * 1103515245u + 12345u;
        junk[i] = (unsigned char)(x >> 16);
    }
    assert_int_equal(decode_rc(junk, sizeof junk), SH_EDECODE);
    /* Plausible magic followed by junk. */
    static const char *magic[] = {"RIFF", "fLaC", "OggS", "FORM", "ID3\x03"};
    for (size_t i = 0; i < sizeof magic / sizeof magic[0]; i++) {
        memcpy(junk, magic[i], 4);
        int rc = decode_rc(junk, sizeof junk);
        assert_true(rc < 0);
    }
    /* Zero-length audio in a valid container. */
    size_t len;
    unsigned char *empty = encode(SF_FORMAT_WAV | SF_FORMAT_PCM_16, 44100, 1, 0.0, gen_noise, &len);
    assert_int_equal(decode_rc(empty, len), SH_ETOOSHORT);
    free(empty);
    /* libsndfile writes nothing at all for a FLAC without frames: that is an empty input. */
    empty = encode(SF_FORMAT_FLAC | SF_FORMAT_PCM_16, 44100, 1, 0.0, gen_noise, &len);
    assert_int_equal(decode_rc(empty, len), SH_EDECODE);
    free(empty);
    /* Over the size cap. */
    unsigned char *wav = encode(SF_FORMAT_WAV | SF_FORMAT_PCM_16, 8000, 1, 1.0, gen_noise, &len);
    sh_audio_opts o = opts_rate(8000);
    o.max_bytes = len - 1;
    sh_audio *a = NULL;
    assert_int_equal(sh_audio_open_mem(wav, len, &o, &a, NULL), SH_ETOOBIG);
    assert_null(a);
    free(wav);
}

static void test_files_and_opts(void **state)
{
    (void)state;
    char dir[] = "/tmp/sh-test-audio.XXXXXX", path[128], fifo[128];
    assert_non_null(mkdtemp(dir));
    snprintf(path, sizeof path, "%s/a.flac", dir);
    snprintf(fifo, sizeof fifo, "%s/fifo", dir);
    size_t len;
    unsigned char *buf = encode(SF_FORMAT_FLAC | SF_FORMAT_PCM_16, 22050, 1, 1.0, gen_sine1k, &len);
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    assert_int_equal(fwrite(buf, 1, len, f), len);
    fclose(f);
    sh_audio *a = NULL;
    sh_err e = {0};
    assert_int_equal(sh_audio_open_file(path, NULL, &a, &e), 0);
    assert_int_equal(sh_audio_get_info(a)->src_rate, 22050);
    assert_int_equal(sh_audio_get_info(a)->frames, 22050);
    sh_audio_free(a);
    assert_int_equal(sh_audio_open_file("/nonexistent/x.wav", NULL, &a, &e), SH_ENOTFOUND);
    assert_int_equal(sh_audio_open_file(dir, NULL, &a, &e), SH_EIO);
    assert_int_equal(mkfifo(fifo, 0600), 0);
    assert_int_equal(sh_audio_open_file(fifo, NULL, &a, &e),
                     SH_EIO); /* no writer: must not block */
    sh_audio_opts o = opts_rate(8000);
    o.max_bytes = len - 1;
    assert_int_equal(sh_audio_open_file(path, &o, &a, &e), SH_ETOOBIG);
    assert_null(a);
    /* open_fd takes the descriptor in every case. */
    int fd = open(path, O_RDONLY);
    assert_true(fd >= 0);
    assert_int_equal(sh_audio_open_fd(fd, &o, &a, &e), SH_ETOOBIG);
    assert_int_equal(fcntl(fd, F_GETFD), -1);
    /* Bad options. */
    o = opts_rate(0);
    assert_int_equal(sh_audio_open_mem(buf, len, &o, &a, &e), SH_EINVAL);
    o = opts_rate(8000);
    o.max_duration_s = NAN;
    assert_int_equal(sh_audio_open_mem(buf, len, &o, &a, &e), SH_EINVAL);
    o = opts_rate(8000);
    o.max_bytes = 0;
    assert_int_equal(sh_audio_open_mem(buf, len, &o, &a, &e), SH_EINVAL);
    sh_audio_free(NULL);
    free(buf);
    unlink(path), unlink(fifo), rmdir(dir);
}

/* sh_extract: decode + fingerprint streams chunks; same hashes from memory and from a file. */
static void test_extract(void **state)
{
    (void)state;
    sh_fp_config c;
    sh_fp_config_default(&c);
    sh_fp *fp = NULL;
    assert_int_equal(sh_fp_new(&c, &fp, NULL), 0);
    sh_audio_opts o = opts_rate(c.rate);
    size_t len;
    unsigned char *buf = encode(SF_FORMAT_FLAC | SF_FORMAT_PCM_16, 44100, 2, 4.0, gen_noise, &len);
    sh_extract_result r;
    assert_int_equal(sh_extract_mem(buf, len, &o, fp, &r, NULL), 0);
    size_t n1, n2;
    const sh_hash *h = sh_fp_hashes(fp, &n1);
    assert_true(n1 > 0);
    sh_hash *copy = malloc(n1 * sizeof *copy);
    memcpy(copy, h, n1 * sizeof *copy);
    assert_true(fabs(r.duration_s - 4.0) < 1e-9);
    assert_string_equal(r.info.format, "FLAC");
    assert_int_equal(sh_fp_samples(fp), 4 * c.rate);
    /* Again into the same extractor (it is reset): identical hashes. */
    assert_int_equal(sh_extract_mem(buf, len, &o, fp, &r, NULL), 0);
    h = sh_fp_hashes(fp, &n2);
    assert_int_equal(n1, n2);
    assert_memory_equal(copy, h, n1 * sizeof *copy);
    /* A broken input reports the decoder's error. */
    sh_err e = {0};
    assert_int_equal(sh_extract_mem(buf, len / 2, &o, fp, &r, &e), SH_EDECODE);
    assert_int_equal(sh_extract_file("/nonexistent.wav", &o, fp, &r, &e), SH_ENOTFOUND);
    free(copy);
    free(buf);
    sh_fp_free(fp);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_formats),
        cmocka_unit_test(test_rates_channels),
        cmocka_unit_test(test_downmix_passthrough),
        cmocka_unit_test(test_chunking_invariance),
        cmocka_unit_test(test_duration_cap),
        cmocka_unit_test(test_truncated),
        cmocka_unit_test(test_lying_headers),
        cmocka_unit_test(test_garbage),
        cmocka_unit_test(test_files_and_opts),
        cmocka_unit_test(test_extract),
    };
    return cmocka_run_group_tests_name("audio", tests, NULL, NULL);
}
