/* Unit tests for schemas/: the audio event, dead-letter and index-delta codecs (embedded
 * registry). Hostile records are built with avro-c directly (bypassing our validation) so each
 * test states exactly which rule the bytes break. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "sh_schema.h"
#include "sh_schema_int.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static sh_registry *REG; /* test fixture, created in main */

/* ---- builders ------------------------------------------------------------------------------- */

static void make_event(sh_audio_event *ev)
{
    memset(ev, 0, sizeof *ev);
    assert_int_equal(sh_event_id_new(ev->event_id, NULL), 0);
    ev->op = SH_OP_UPSERT;
    assert_int_equal(sh_event_set_string(ev, "track_id", "trk-0001", NULL), 0);
    assert_int_equal(sh_event_set_string(ev, "tenant", "acme", NULL), 0);
    assert_int_equal(sh_event_set_string(ev, "producer", "test/1", NULL), 0);
    assert_int_equal(sh_event_set_string(ev, "content_type", "audio/ogg", NULL), 0);
    assert_int_equal(sh_event_set_uri(ev, SH_SRC_FILE, "file:///media/a/b.ogg", NULL), 0);
    ev->has_sha256 = true;
    for (int i = 0; i < 32; i++)
        ev->sha256[i] = (uint8_t)(i * 7 + 1);
    ev->size_bytes = 123456;
    ev->submitted_at_ms = 1700000000123;
    ev->fp_version = 3;
    ev->priority = -5;
    ev->base_version = 1699999999000;
    assert_int_equal(sh_event_set_string(ev, "trace_id", "trace-xyz", NULL), 0);
    assert_int_equal(sh_meta_set(&ev->meta, "title", "Blue in Green", NULL), 0);
    assert_int_equal(sh_meta_set(&ev->meta, "artist", "Miles Davis", NULL), 0);
}

static void assert_events_equal(const sh_audio_event *a, const sh_audio_event *b)
{
    assert_string_equal(a->event_id, b->event_id);
    assert_int_equal(a->op, b->op);
    assert_string_equal(a->track_id, b->track_id);
    assert_string_equal(a->tenant, b->tenant);
    assert_int_equal(a->source.kind, b->source.kind);
    if (a->source.uri || b->source.uri)
        assert_string_equal(a->source.uri, b->source.uri);
    assert_int_equal(a->source.data_len, b->source.data_len);
    if (a->source.data_len)
        assert_memory_equal(a->source.data, b->source.data, a->source.data_len);
    assert_int_equal(a->has_sha256, b->has_sha256);
    assert_memory_equal(a->sha256, b->sha256, 32);
    assert_int_equal(a->size_bytes, b->size_bytes);
    assert_string_equal(a->content_type, b->content_type);
    assert_int_equal(a->meta.n, b->meta.n);
    for (size_t i = 0; i < a->meta.n; i++) {
        const char *v = sh_meta_get(&b->meta, a->meta.kv[i].key);
        assert_non_null(v);
        assert_string_equal(v, a->meta.kv[i].value);
    }
    assert_int_equal(a->submitted_at_ms, b->submitted_at_ms);
    assert_string_equal(a->producer, b->producer);
    assert_int_equal(a->fp_version, b->fp_version);
    assert_int_equal(a->priority, b->priority);
    assert_string_equal(a->trace_id, b->trace_id);
    assert_int_equal(a->base_version, b->base_version);
}

static void round_trip(const sh_audio_event *ev)
{
    uint8_t *buf;
    size_t len;
    sh_err e = {0};
    int rc = sh_event_encode(ev, REG, NULL, &buf, &len, &e);
    if (rc)
        fail_msg("encode: %s", e.msg);
    assert_true(len > SH_FRAME_HEADER_LEN);
    assert_int_equal(buf[0], 0);
    int32_t id;
    assert_int_equal(sh_frame_schema_id(buf, len, &id, NULL), 0);
    assert_int_equal(id, SH_SCHEMA_ID_AUDIO_EVENT_V3);
    sh_audio_event back = {0};
    rc = sh_event_decode(buf, len, REG, NULL, &back, &e);
    if (rc)
        fail_msg("decode: %s", e.msg);
    assert_events_equal(ev, &back);
    sh_event_clear(&back);
    free(buf);
}

/* Encodes `obj` with a custom fill of the current AudioEvent schema (no validation). */
static uint8_t *raw_frame(sh_fill_fn fill, const void *obj, sh_schema_kind kind, size_t *len)
{
    uint8_t *buf;
    sh_err e = {0};
    if (sh_frame_encode(REG, kind, fill, obj, &buf, len, &e))
        fail_msg("raw encode: %s", e.msg);
    return buf;
}

/* Fills every field of an AudioEvent from a struct without checking any rule. */
static int fill_raw_event(avro_value_t *rec, const void *obj, sh_err *e)
{
    const sh_audio_event *ev = obj;
    avro_value_t map, src;
    int rc;
    if ((rc = sh_av_set_str(rec, "event_id", ev->event_id, e)) ||
        (rc = sh_av_set_enum(rec, "op", sh_event_op_name(ev->op), e)) ||
        (rc = sh_av_set_str(rec, "track_id", ev->track_id, e)) ||
        (rc = sh_av_set_str(rec, "tenant", ev->tenant, e)) ||
        (rc = sh_av_set_null(rec, "sha256", e)) ||
        (rc = sh_av_set_long(rec, "size_bytes", ev->size_bytes, e)) ||
        (rc = sh_av_set_null(rec, "content_type", e)) ||
        (rc = sh_av_field_map(rec, "metadata", &map, e)) ||
        (rc = sh_av_set_long(rec, "submitted_at", ev->submitted_at_ms, e)) ||
        (rc = sh_av_set_str(rec, "producer", ev->producer, e)) ||
        (rc = sh_av_set_int(rec, "fp_version", ev->fp_version, e)) ||
        (rc = sh_av_set_int(rec, "priority", 0, e)) || (rc = sh_av_set_null(rec, "trace_id", e)))
        return rc;
    if (ev->source.kind == SH_SRC_INLINE) {
        if ((rc = sh_av_set_record(rec, "source", "InlineSource", &src, e)) ||
            (rc = sh_av_set_bytes(&src, "data", ev->source.data, ev->source.data_len, e)))
            return rc;
    } else if (ev->source.kind == SH_SRC_URL) {
        if ((rc = sh_av_set_record(rec, "source", "UrlSource", &src, e)) ||
            (rc = sh_av_set_str(&src, "url", ev->source.uri, e)))
            return rc;
    } else if ((rc = sh_av_set_null(rec, "source", e))) {
        return rc;
    }
    for (size_t i = 0; i < ev->meta.n; i++)
        if ((rc = sh_av_map_put(&map, ev->meta.kv[i].key, ev->meta.kv[i].value, e)))
            return rc;
    return 0;
}

/* Decodes a raw frame built from `ev` and expects `code`. */
static void expect_decode_error(const sh_audio_event *ev, int code)
{
    size_t len;
    uint8_t *buf = raw_frame(fill_raw_event, ev, SH_KIND_AUDIO_EVENT, &len);
    sh_audio_event back = {0};
    sh_err e = {0};
    int rc = sh_event_decode(buf, len, REG, NULL, &back, &e);
    if (rc != code)
        fail_msg("expected %s, got %s: %s", sh_err_name(code), sh_err_name(rc), e.msg);
    if (rc) { /* a failed decode leaves the output empty */
        assert_int_equal(back.meta.n, 0);
        assert_null(back.source.uri);
        assert_null(back.source.data);
    }
    sh_event_clear(&back);
    free(buf);
}

/* ---- round trips ------------------------------------------------------------------------------ */

static void test_event_round_trip_file(void **state)
{
    (void)state;
    sh_audio_event ev;
    make_event(&ev);
    round_trip(&ev);
    sh_event_clear(&ev);
}

static void test_event_round_trip_url_unicode_empty_meta(void **state)
{
    (void)state;
    sh_audio_event ev;
    make_event(&ev);
    for (size_t i = 0; i < ev.meta.n; i++) {
        free(ev.meta.kv[i].key);
        free(ev.meta.kv[i].value);
    }
    ev.meta.n = 0;
    assert_int_equal(sh_event_set_uri(&ev, SH_SRC_URL, "https://cdn.example.com/a%20b.flac?x=1",
                                      NULL), 0);
    assert_int_equal(sh_event_set_string(&ev, "track_id", "Sigur Rós – Svefn-g-englar 日本 🎵",
                                         NULL), 0);
    ev.content_type[0] = '\0';
    ev.trace_id[0] = '\0';
    ev.has_sha256 = false;
    memset(ev.sha256, 0, 32);
    ev.size_bytes = -1;
    ev.op = SH_OP_REINDEX;
    round_trip(&ev);
    sh_event_clear(&ev);
}

static void test_event_round_trip_inline_max_and_delete(void **state)
{
    (void)state;
    sh_audio_event ev;
    make_event(&ev);
    size_t n = SH_INLINE_AUDIO_DEFAULT_MAX;
    uint8_t *clip = malloc(n);
    assert_non_null(clip);
    for (size_t i = 0; i < n; i++)
        clip[i] = (uint8_t)(i * 31 + (i >> 9));
    assert_int_equal(sh_event_set_inline(&ev, clip, n, NULL), 0);
    ev.size_bytes = (int64_t)n;
    round_trip(&ev);

    /* Delete: no source; track id at its maximum length. */
    char tid[SH_TRACK_ID_MAX + 1];
    memset(tid, 'x', SH_TRACK_ID_MAX);
    tid[SH_TRACK_ID_MAX] = '\0';
    assert_int_equal(sh_event_set_string(&ev, "track_id", tid, NULL), 0);
    ev.op = SH_OP_DELETE;
    free(ev.source.data);
    memset(&ev.source, 0, sizeof ev.source);
    round_trip(&ev);
    free(clip);
    sh_event_clear(&ev);
}

static void test_event_round_trip_meta_full(void **state)
{
    (void)state;
    sh_audio_event ev;
    make_event(&ev);
    char key[16], val[64];
    /* 64 entries; keys+values exactly 4096 bytes. */
    for (int i = 0; ev.meta.n < SH_META_MAX_ENTRIES; i++) {
        snprintf(key, sizeof key, "k%03d", i);
        memset(val, 'v', sizeof val);
        val[60 - 4] = '\0'; /* 4 + 56 = 60 bytes per entry... */
        assert_int_equal(sh_meta_set(&ev.meta, key, val, NULL), 0);
    }
    /* ...replacing the two initial entries' values brings the sum to the cap. */
    size_t total = 0;
    for (size_t i = 0; i < ev.meta.n; i++)
        total += strlen(ev.meta.kv[i].key) + strlen(ev.meta.kv[i].value);
    assert_true(total <= SH_META_MAX_BYTES);
    char *fill = calloc(1, SH_META_MAX_BYTES + 1);
    size_t room = SH_META_MAX_BYTES - total + strlen(sh_meta_get(&ev.meta, "title"));
    memset(fill, 'z', room);
    assert_int_equal(sh_meta_set(&ev.meta, "title", fill, NULL), 0);
    assert_int_equal(sh_event_validate(&ev, NULL, NULL), 0);
    round_trip(&ev);
    /* One byte more is over the cap. */
    fill[room] = 'z';
    assert_int_equal(sh_meta_set(&ev.meta, "title", fill, NULL), 0);
    sh_err e = {0};
    assert_int_equal(sh_event_validate(&ev, NULL, &e), SH_ETOOBIG);
    assert_non_null(strstr(e.msg, "metadata"));
    free(fill);
    sh_event_clear(&ev);
}

/* ---- rules on encode ------------------------------------------------------------------------- */

static void expect_invalid(sh_audio_event *ev, int code, const char *needle)
{
    uint8_t *buf = (uint8_t *)"x";
    size_t len = 7;
    sh_err e = {0};
    int rc = sh_event_encode(ev, REG, NULL, &buf, &len, &e);
    if (rc != code)
        fail_msg("expected %s, got %s (%s)", sh_err_name(code), sh_err_name(rc), e.msg);
    assert_null(buf);
    assert_int_equal(len, 0);
    if (!strstr(e.msg, needle))
        fail_msg("message '%s' lacks '%s'", e.msg, needle);
}

static void test_event_rules(void **state)
{
    (void)state;
    sh_audio_event ev;
    make_event(&ev);
    sh_err e = {0};

    ev.track_id[0] = '\0';
    expect_invalid(&ev, SH_EINVAL, "track_id is empty");
    strcpy(ev.track_id, "a\tb");
    expect_invalid(&ev, SH_EINVAL, "track_id contains control character");
    strcpy(ev.track_id, "nel\xc2\x85"); /* U+0085, a C1 control */
    expect_invalid(&ev, SH_EINVAL, "track_id contains control character 0x85 at byte 3");
    strcpy(ev.tenant, "\xc2\x9b" "1m");  /* U+009B CSI */
    strcpy(ev.track_id, "ok");
    expect_invalid(&ev, SH_EINVAL, "tenant contains control character 0x9b");
    strcpy(ev.tenant, "acme");
    strcpy(ev.track_id, "bad\xff");
    expect_invalid(&ev, SH_EINVAL, "track_id is not valid UTF-8");
    memset(ev.track_id, 'a', sizeof ev.track_id); /* not terminated: 257 bytes */
    expect_invalid(&ev, SH_EINVAL, "track_id");
    char long_id[300];
    memset(long_id, 'a', 257);
    long_id[257] = '\0';
    assert_int_equal(sh_event_set_string(&ev, "track_id", long_id, &e), SH_EINVAL);
    assert_int_equal(sh_event_set_string(&ev, "track_id", "ok", NULL), 0);

    ev.tenant[0] = '\0';
    expect_invalid(&ev, SH_EINVAL, "tenant is empty");
    strcpy(ev.tenant, "acme");
    ev.producer[0] = '\0';
    expect_invalid(&ev, SH_EINVAL, "producer is empty");
    strcpy(ev.producer, "p");

    strcpy(ev.event_id, "not-a-uuid");
    expect_invalid(&ev, SH_EINVAL, "event_id");
    strcpy(ev.event_id, "0190C6A2-7B1C-7ABC-8DEF-0123456789AB");
    expect_invalid(&ev, SH_EINVAL, "event_id");
    strcpy(ev.event_id, "0190c6a2-7b1c-7abc-8def-0123456789ab");

    ev.op = (sh_event_op)7;
    expect_invalid(&ev, SH_EINVAL, "invalid op");
    ev.op = SH_OP_DELETE;
    expect_invalid(&ev, SH_EINVAL, "DELETE event carries no source");
    ev.op = SH_OP_UPSERT;

    assert_int_equal(sh_event_set_uri(&ev, SH_SRC_FILE, "ftp://x/y", &e), SH_EINVAL);
    assert_int_equal(sh_event_set_uri(&ev, SH_SRC_FILE, "file://relative/x", &e), SH_EINVAL);
    assert_int_equal(sh_event_set_uri(&ev, SH_SRC_FILE, "file:///media/../etc/passwd", &e),
                     SH_EINVAL);
    assert_non_null(strstr(e.msg, ".."));
    assert_int_equal(sh_event_set_uri(&ev, SH_SRC_FILE, "file:///media/a..b/x..", NULL), 0);
    assert_int_equal(sh_event_set_uri(&ev, SH_SRC_URL, "gopher://x", &e), SH_EINVAL);
    assert_int_equal(sh_event_set_uri(&ev, SH_SRC_URL, "http://", &e), SH_EINVAL);
    assert_int_equal(sh_event_set_uri(&ev, SH_SRC_URL, "http://a b", &e), SH_EINVAL);
    char *huge = malloc(SH_URI_MAX + 2);
    memcpy(huge, "http://", 7);
    memset(huge + 7, 'h', SH_URI_MAX + 1 - 7);
    huge[SH_URI_MAX + 1] = '\0';
    assert_int_equal(sh_event_set_uri(&ev, SH_SRC_URL, huge, &e), SH_EINVAL);
    free(huge);

    free(ev.source.uri);
    memset(&ev.source, 0, sizeof ev.source);
    expect_invalid(&ev, SH_EINVAL, "needs a source");

    /* Inline audio over the default cap, and under a configured smaller cap. */
    size_t n = SH_INLINE_AUDIO_DEFAULT_MAX + 1;
    uint8_t *clip = calloc(1, n);
    assert_int_equal(sh_event_set_inline(&ev, clip, n, NULL), 0);
    ev.size_bytes = -1;
    expect_invalid(&ev, SH_ETOOBIG, "inline audio");
    sh_schema_limits lim = {.inline_audio_max = n};
    uint8_t *buf;
    size_t len;
    assert_int_equal(sh_event_encode(&ev, REG, &lim, &buf, &len, NULL), 0);
    sh_audio_event back = {0};
    assert_int_equal(sh_event_decode(buf, len, REG, NULL, &back, &e), SH_ETOOBIG);
    assert_int_equal(sh_event_decode(buf, len, REG, &lim, &back, &e), 0);
    sh_event_clear(&back);
    free(buf);
    assert_int_equal(sh_event_set_inline(&ev, clip, 10, NULL), 0);
    ev.size_bytes = 5;
    expect_invalid(&ev, SH_EINVAL, "size_bytes");
    free(clip);

    ev.size_bytes = -2;
    expect_invalid(&ev, SH_EINVAL, "size_bytes");
    ev.size_bytes = -1;
    ev.fp_version = -1;
    expect_invalid(&ev, SH_EINVAL, "fp_version");
    ev.fp_version = 0;
    ev.submitted_at_ms = -1;
    expect_invalid(&ev, SH_EINVAL, "submitted_at");
    sh_event_clear(&ev);
}

static void test_meta_rules(void **state)
{
    (void)state;
    sh_meta m = {0};
    sh_err e = {0};
    char key[32];
    for (int i = 0; i < SH_META_MAX_ENTRIES; i++) {
        snprintf(key, sizeof key, "k%d", i);
        assert_int_equal(sh_meta_set(&m, key, "v", NULL), 0);
    }
    assert_int_equal(sh_meta_set(&m, "one-more", "v", &e), SH_ETOOBIG);
    assert_int_equal(sh_meta_set(&m, "k3", "replaced", NULL), 0); /* replacing still works */
    assert_string_equal(sh_meta_get(&m, "k3"), "replaced");
    assert_int_equal(m.n, SH_META_MAX_ENTRIES);
    assert_int_equal(sh_meta_set(&m, "", "v", &e), SH_EINVAL);
    assert_int_equal(sh_meta_set(&m, "a\nb", "v", &e), SH_EINVAL);
    char big[SH_META_KEY_MAX + 2];
    memset(big, 'k', sizeof big - 1);
    big[sizeof big - 1] = '\0';
    assert_int_equal(sh_meta_set(&m, big, "v", &e), SH_EINVAL);
    assert_null(sh_meta_get(&m, "absent"));

    /* A duplicate key smuggled into the struct by hand is caught by validation. */
    sh_audio_event ev;
    make_event(&ev);
    free(ev.meta.kv[1].key);
    ev.meta.kv[1].key = strdup("title");
    expect_invalid(&ev, SH_EINVAL, "appears twice");
    sh_event_clear(&ev);
    for (size_t i = 0; i < m.n; i++) {
        free(m.kv[i].key);
        free(m.kv[i].value);
    }
}

/* ---- rules on decode (data written by someone else) ----------------------------------------- */

static void test_decode_rejects_rule_breakers(void **state)
{
    (void)state;
    sh_audio_event ev;
    make_event(&ev);
    free(ev.source.uri);
    memset(&ev.source, 0, sizeof ev.source);
    ev.op = SH_OP_DELETE;
    expect_decode_error(&ev, 0); /* the baseline decodes */

    char saved[SH_TRACK_ID_MAX + 1];
    strcpy(saved, ev.track_id);
    ev.track_id[0] = '\0';
    expect_decode_error(&ev, SH_EFORMAT);
    strcpy(ev.track_id, "ctl\x01");
    expect_decode_error(&ev, SH_EFORMAT);
    strcpy(ev.track_id, saved);
    strcpy(ev.event_id, "nope");
    expect_decode_error(&ev, SH_EFORMAT);
    assert_int_equal(sh_event_id_new(ev.event_id, NULL), 0);

    /* 256 bytes is the longest track id accepted. */
    sh_audio_event over = ev;
    memset(&over.meta, 0, sizeof over.meta);
    memset(over.track_id, 'a', SH_TRACK_ID_MAX);
    over.track_id[SH_TRACK_ID_MAX] = '\0';
    expect_decode_error(&over, 0);

    /* Inline source on a delete, over-cap inline. */
    uint8_t one = 1;
    ev.source = (sh_audio_source){.kind = SH_SRC_INLINE, .data = &one, .data_len = 1};
    expect_decode_error(&ev, SH_EFORMAT);
    ev.op = SH_OP_UPSERT;
    ev.size_bytes = -1;
    expect_decode_error(&ev, 0);
    size_t n = SH_INLINE_AUDIO_DEFAULT_MAX + 1;
    uint8_t *clip = calloc(1, n);
    ev.source.data = clip;
    ev.source.data_len = n;
    expect_decode_error(&ev, SH_ETOOBIG);
    free(clip);
    ev.source = (sh_audio_source){.kind = SH_SRC_URL, .uri = (char *)"ftp://no"};
    expect_decode_error(&ev, SH_EFORMAT);
    memset(&ev.source, 0, sizeof ev.source);
    sh_event_clear(&ev);
}

/* A string field longer than its C array: encoded by hand. */
static int fill_long_track(avro_value_t *rec, const void *obj, sh_err *e)
{
    const sh_audio_event *ev = obj;
    int rc = fill_raw_event(rec, obj, e);
    if (rc)
        return rc;
    char tid[SH_TRACK_ID_MAX + 2];
    memset(tid, 'q', SH_TRACK_ID_MAX + 1);
    tid[SH_TRACK_ID_MAX + 1] = '\0';
    (void)ev;
    return sh_av_set_str(rec, "track_id", tid, e);
}

/* 65 metadata entries and an over-size metadata value. */
static int fill_meta_flood(avro_value_t *rec, const void *obj, sh_err *e)
{
    int rc = fill_raw_event(rec, obj, e);
    avro_value_t map;
    if (rc || (rc = sh_av_field_map(rec, "metadata", &map, e)))
        return rc;
    char key[16];
    for (int i = 0; i < SH_META_MAX_ENTRIES + 1 && !rc; i++) {
        snprintf(key, sizeof key, "k%d", i);
        rc = sh_av_map_put(&map, key, "v", e);
    }
    return rc;
}

static int fill_meta_fat(avro_value_t *rec, const void *obj, sh_err *e)
{
    int rc = fill_raw_event(rec, obj, e);
    avro_value_t map;
    if (rc || (rc = sh_av_field_map(rec, "metadata", &map, e)))
        return rc;
    char *v = malloc(SH_META_MAX_BYTES + 1);
    memset(v, 'v', SH_META_MAX_BYTES);
    v[SH_META_MAX_BYTES] = '\0';
    rc = sh_av_map_put(&map, "k", v, e);
    free(v);
    return rc;
}

static void decode_custom(sh_fill_fn fill, int code, const char *needle)
{
    sh_audio_event ev;
    make_event(&ev);
    free(ev.source.uri);
    memset(&ev.source, 0, sizeof ev.source);
    ev.op = SH_OP_DELETE;
    ev.meta.n = 0;
    size_t len;
    uint8_t *buf = raw_frame(fill, &ev, SH_KIND_AUDIO_EVENT, &len);
    sh_audio_event back = {0};
    sh_err e = {0};
    int rc = sh_event_decode(buf, len, REG, NULL, &back, &e);
    if (rc != code || !strstr(e.msg, needle))
        fail_msg("expected %s '%s', got %s: %s", sh_err_name(code), needle, sh_err_name(rc), e.msg);
    free(buf);
    free(ev.meta.kv[0].key);
    free(ev.meta.kv[0].value);
    free(ev.meta.kv[1].key);
    free(ev.meta.kv[1].value);
}

static void test_decode_caps(void **state)
{
    (void)state;
    decode_custom(fill_long_track, SH_EFORMAT, "track_id");
    decode_custom(fill_meta_flood, SH_ETOOBIG, "map with more than 64");
    decode_custom(fill_meta_fat, SH_ETOOBIG, "metadata");
}

/* ---- framing --------------------------------------------------------------------------------- */

static uint8_t *valid_frame(size_t *len)
{
    sh_audio_event ev;
    make_event(&ev);
    uint8_t *buf;
    assert_int_equal(sh_event_encode(&ev, REG, NULL, &buf, len, NULL), 0);
    sh_event_clear(&ev);
    return buf;
}

static void test_frame_errors(void **state)
{
    (void)state;
    size_t len;
    uint8_t *buf = valid_frame(&len);
    sh_audio_event back = {0};
    sh_err e = {0};

    /* Every proper prefix is rejected as malformed. */
    for (size_t n = 0; n < len; n++) {
        uint8_t *cut = malloc(n ? n : 1);
        memcpy(cut, buf, n);
        int rc = sh_event_decode(cut, n, REG, NULL, &back, &e);
        if (rc != SH_EFORMAT)
            fail_msg("prefix %zu: %s %s", n, sh_err_name(rc), e.msg);
        free(cut);
    }
    assert_int_equal(sh_event_decode(NULL, 0, REG, NULL, &back, &e), SH_EFORMAT);

    /* Trailing garbage. */
    uint8_t *more = malloc(len + 1);
    memcpy(more, buf, len);
    more[len] = 0;
    assert_int_equal(sh_event_decode(more, len + 1, REG, NULL, &back, &e), SH_EFORMAT);
    assert_non_null(strstr(e.msg, "trailing"));
    free(more);

    /* Wrong magic, unknown id, the id of another record kind. */
    buf[0] = 1;
    assert_int_equal(sh_event_decode(buf, len, REG, NULL, &back, &e), SH_EFORMAT);
    assert_non_null(strstr(e.msg, "magic"));
    buf[0] = 0;
    buf[4] ^= 0x40;
    assert_int_equal(sh_event_decode(buf, len, REG, NULL, &back, &e), SH_ESCHEMA);
    assert_non_null(strstr(e.msg, "unknown schema id"));
    uint32_t dlq = SH_SCHEMA_ID_DEAD_LETTER_V1;
    buf[1] = (uint8_t)(dlq >> 24), buf[2] = (uint8_t)(dlq >> 16), buf[3] = (uint8_t)(dlq >> 8);
    buf[4] = (uint8_t)dlq;
    assert_int_equal(sh_event_decode(buf, len, REG, NULL, &back, &e), SH_ESCHEMA);
    assert_non_null(strstr(e.msg, "DeadLetter"));
    free(buf);

    /* A string length claiming 2^62 bytes; a negative length; an 11-byte varint. */
    const uint8_t huge[] = {0, 0, 0, 0x03, 0xea, 0xfe, 0xff, 0xff, 0xff, 0xff,
                            0xff, 0xff, 0xff, 0x7f, 'a'};
    assert_int_equal(sh_event_decode(huge, sizeof huge, REG, NULL, &back, &e), SH_EFORMAT);
    const uint8_t neg[] = {0, 0, 0, 0x03, 0xea, 0x01, 'a'};
    assert_int_equal(sh_event_decode(neg, sizeof neg, REG, NULL, &back, &e), SH_EFORMAT);
    assert_non_null(strstr(e.msg, "negative"));
    const uint8_t vlong[] = {0, 0, 0, 0x03, 0xea, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
                             0xff, 0xff, 0xff, 0xff, 0x01};
    assert_int_equal(sh_event_decode(vlong, sizeof vlong, REG, NULL, &back, &e), SH_EFORMAT);
    assert_non_null(strstr(e.msg, "varint"));
    assert_int_equal(back.meta.n, 0);
}

/* A version 1 record (no priority, no trace_id) decodes with the current code: defaults. */
static int fill_v1(avro_value_t *rec, const sh_audio_event *ev, sh_err *e)
{
    avro_value_t map, src;
    int rc;
    if ((rc = sh_av_set_str(rec, "event_id", ev->event_id, e)) ||
        (rc = sh_av_set_enum(rec, "op", "REINDEX", e)) ||
        (rc = sh_av_set_str(rec, "track_id", ev->track_id, e)) ||
        (rc = sh_av_set_str(rec, "tenant", ev->tenant, e)) ||
        (rc = sh_av_set_record(rec, "source", "FileSource", &src, e)) ||
        (rc = sh_av_set_str(&src, "uri", ev->source.uri, e)) ||
        (rc = sh_av_set_fixed(rec, "sha256", ev->sha256, 32, e)) ||
        (rc = sh_av_set_long(rec, "size_bytes", ev->size_bytes, e)) ||
        (rc = sh_av_set_str(rec, "content_type", ev->content_type, e)) ||
        (rc = sh_av_field_map(rec, "metadata", &map, e)) ||
        (rc = sh_av_map_put(&map, "title", "Blue in Green", e)) ||
        (rc = sh_av_set_long(rec, "submitted_at", ev->submitted_at_ms, e)) ||
        (rc = sh_av_set_str(rec, "producer", ev->producer, e)) ||
        (rc = sh_av_set_int(rec, "fp_version", ev->fp_version, e)))
        return rc;
    return 0;
}

static void test_evolution_v1_decodes_with_defaults(void **state)
{
    (void)state;
    const sh_reg_schema *v1;
    assert_int_equal(sh_registry_lookup(REG, SH_SCHEMA_ID_AUDIO_EVENT_V1, &v1, NULL), 0);
    assert_int_equal(v1->version, 1);
    assert_int_equal(avro_schema_record_field_get_index(v1->schema, "priority"), -1);
    sh_audio_event ev;
    make_event(&ev);
    avro_value_t rec;
    assert_int_equal(avro_generic_value_new(v1->iface, &rec), 0);
    assert_int_equal(fill_v1(&rec, &ev, NULL), 0);
    size_t size;
    assert_int_equal(avro_value_sizeof(&rec, &size), 0);
    uint8_t *buf = malloc(size + 5);
    buf[0] = 0, buf[1] = 0, buf[2] = 0, buf[3] = 0x03, buf[4] = 0xe9; /* 1001 */
    avro_writer_t w = avro_writer_memory((const char *)buf + 5, (int64_t)size);
    assert_int_equal(avro_value_write(w, &rec), 0);
    avro_writer_free(w);
    avro_value_decref(&rec);

    sh_audio_event back;
    memset(&back, 0x5a, sizeof back); /* decode must not trust the old contents... */
    memset(&back.meta, 0, sizeof back.meta);
    memset(&back.source, 0, sizeof back.source); /* ...except owned pointers */
    sh_err e = {0};
    int rc = sh_event_decode(buf, size + 5, REG, NULL, &back, &e);
    if (rc)
        fail_msg("decode v1: %s", e.msg);
    assert_int_equal(back.op, SH_OP_REINDEX);
    assert_int_equal(back.priority, 0);     /* v2 default */
    assert_string_equal(back.trace_id, ""); /* v2 default null */
    assert_int_equal(back.base_version, 0); /* v3 default */
    assert_string_equal(back.track_id, ev.track_id);
    assert_string_equal(back.source.uri, ev.source.uri);
    assert_string_equal(sh_meta_get(&back.meta, "title"), "Blue in Green");
    assert_int_equal(back.fp_version, 3);
    sh_event_clear(&back);
    free(buf);
    sh_event_clear(&ev);
}

/* A version 2 record (priority and trace_id, no base_version) decodes with the current code: its
 * own fields kept, base_version defaults to 0. */
static void test_evolution_v2_decodes_with_defaults(void **state)
{
    (void)state;
    const sh_reg_schema *v2;
    assert_int_equal(sh_registry_lookup(REG, SH_SCHEMA_ID_AUDIO_EVENT_V2, &v2, NULL), 0);
    assert_int_equal(v2->version, 2);
    assert_int_equal(avro_schema_record_field_get_index(v2->schema, "base_version"), -1);
    sh_audio_event ev;
    make_event(&ev);
    avro_value_t rec;
    assert_int_equal(avro_generic_value_new(v2->iface, &rec), 0);
    assert_int_equal(fill_v1(&rec, &ev, NULL), 0);
    assert_int_equal(sh_av_set_int(&rec, "priority", -7, NULL), 0);
    assert_int_equal(sh_av_set_opt_str(&rec, "trace_id", "t-v2", NULL), 0);
    size_t size;
    assert_int_equal(avro_value_sizeof(&rec, &size), 0);
    uint8_t *buf = malloc(size + 5);
    buf[0] = 0, buf[1] = 0, buf[2] = 0, buf[3] = 0x03, buf[4] = 0xea; /* 1002 */
    avro_writer_t w = avro_writer_memory((const char *)buf + 5, (int64_t)size);
    assert_int_equal(avro_value_write(w, &rec), 0);
    avro_writer_free(w);
    avro_value_decref(&rec);

    sh_audio_event back;
    memset(&back, 0x5a, sizeof back); /* decode must not trust the old contents... */
    memset(&back.meta, 0, sizeof back.meta);
    memset(&back.source, 0, sizeof back.source); /* ...except owned pointers */
    sh_err e = {0};
    int rc = sh_event_decode(buf, size + 5, REG, NULL, &back, &e);
    if (rc)
        fail_msg("decode v2: %s", e.msg);
    assert_int_equal(back.op, SH_OP_REINDEX);
    assert_int_equal(back.priority, -7);
    assert_string_equal(back.trace_id, "t-v2");
    assert_int_equal(back.base_version, 0); /* v3 default */
    assert_string_equal(back.source.uri, ev.source.uri);
    sh_event_clear(&back);
    free(buf);
    sh_event_clear(&ev);
}

/* base_version is a stored version: never negative (encode refuses, decode reports EFORMAT). */
static void test_base_version_negative(void **state)
{
    (void)state;
    sh_audio_event ev;
    make_event(&ev);
    ev.op = SH_OP_REINDEX;
    ev.base_version = -1;
    sh_err e = {0};
    assert_int_equal(sh_event_validate(&ev, NULL, &e), SH_EINVAL);
    assert_non_null(strstr(e.msg, "base_version"));
    uint8_t *buf = NULL;
    size_t len = 0;
    assert_int_equal(sh_event_encode(&ev, REG, NULL, &buf, &len, NULL), SH_EINVAL);
    assert_null(buf);
    ev.base_version = 42;
    assert_int_equal(sh_event_encode(&ev, REG, NULL, &buf, &len, NULL), 0);
    sh_audio_event back = {0};
    assert_int_equal(sh_event_decode(buf, len, REG, NULL, &back, NULL), 0);
    assert_int_equal(back.base_version, 42);
    sh_event_clear(&back);
    free(buf);
    sh_event_clear(&ev);
}

/* ---- dead letters and deltas ----------------------------------------------------------------- */

static void make_dlq(sh_dlq_record *r, const uint8_t *orig, size_t n)
{
    memset(r, 0, sizeof *r);
    r->original = malloc(n ? n : 1);
    memcpy(r->original, orig, n);
    r->original_len = n;
    r->schema_id = -1;
    strcpy(r->track_id, "trk-9");
    r->error_code = SH_EDECODE;
    strcpy(r->error_name, sh_err_name(SH_EDECODE));
    r->reason = strdup("libsndfile: Format not recognised — «fichier» corrompu");
    strcpy(r->worker, "worker-1/4242");
    r->attempts = 3;
    r->failed_at_ms = 1700000000999;
    strcpy(r->source_topic, "soundhash.audio");
    r->source_partition = 7;
    r->source_offset = 1234567890123;
}

static void test_dlq_round_trip(void **state)
{
    (void)state;
    const uint8_t garbage[] = {0xff, 0, 1, 2, 3};
    sh_dlq_record r, back = {0};
    make_dlq(&r, garbage, sizeof garbage);
    uint8_t *buf;
    size_t len;
    sh_err e = {0};
    if (sh_dlq_encode(&r, REG, NULL, &buf, &len, &e))
        fail_msg("%s", e.msg);
    if (sh_dlq_decode(buf, len, REG, NULL, &back, &e))
        fail_msg("%s", e.msg);
    assert_int_equal(back.original_len, sizeof garbage);
    assert_memory_equal(back.original, garbage, sizeof garbage);
    assert_int_equal(back.schema_id, -1);
    assert_string_equal(back.track_id, "trk-9");
    assert_string_equal(back.event_id, "");
    assert_int_equal(back.error_code, SH_EDECODE);
    assert_string_equal(back.error_name, "SH_EDECODE");
    assert_string_equal(back.reason, r.reason);
    assert_string_equal(back.worker, r.worker);
    assert_int_equal(back.attempts, 3);
    assert_int_equal(back.failed_at_ms, r.failed_at_ms);
    assert_string_equal(back.source_topic, r.source_topic);
    assert_int_equal(back.source_partition, 7);
    assert_int_equal(back.source_offset, r.source_offset);
    /* A dead letter is not an audio event. */
    sh_audio_event ev = {0};
    assert_int_equal(sh_event_decode(buf, len, REG, NULL, &ev, &e), SH_ESCHEMA);
    free(buf);
    sh_dlq_clear(&back);

    /* Caps and rules. */
    r.attempts = 0;
    assert_int_equal(sh_dlq_encode(&r, REG, NULL, &buf, &len, &e), SH_EINVAL);
    r.attempts = 1;
    r.error_code = 0;
    assert_int_equal(sh_dlq_encode(&r, REG, NULL, &buf, &len, &e), SH_EINVAL);
    r.error_code = SH_EIO;
    free(r.reason);
    r.reason = malloc(SH_REASON_MAX + 2);
    memset(r.reason, 'r', SH_REASON_MAX + 1);
    r.reason[SH_REASON_MAX + 1] = '\0';
    assert_int_equal(sh_dlq_encode(&r, REG, NULL, &buf, &len, &e), SH_ETOOBIG);
    r.reason[SH_REASON_MAX] = '\0';
    assert_int_equal(sh_dlq_encode(&r, REG, NULL, &buf, &len, &e), 0);
    free(buf);
    free(r.reason);
    r.reason = NULL; /* NULL reason encodes as "" */
    r.worker[0] = '\0';
    assert_int_equal(sh_dlq_encode(&r, REG, NULL, &buf, &len, &e), SH_EINVAL);
    strcpy(r.worker, "w");
    free(r.original);
    r.original_len = SH_DLQ_ORIGINAL_DEFAULT_MAX + 1;
    r.original = calloc(1, r.original_len);
    assert_int_equal(sh_dlq_encode(&r, REG, NULL, &buf, &len, &e), SH_ETOOBIG);
    r.original_len--;
    assert_int_equal(sh_dlq_encode(&r, REG, NULL, &buf, &len, &e), 0);
    assert_int_equal(sh_dlq_decode(buf, len, REG, NULL, &back, &e), 0);
    assert_int_equal(back.original_len, SH_DLQ_ORIGINAL_DEFAULT_MAX);
    assert_string_equal(back.reason, "");
    sh_dlq_clear(&back);
    free(buf);
    sh_dlq_clear(&r);
}

static void test_delta_round_trip(void **state)
{
    (void)state;
    sh_delta_envelope d = {0}, back = {0};
    d.shard = 5;
    d.epoch = 2;
    d.prev_sequence = 41;
    d.sequence = 42;
    d.count = 1000;
    d.fp_version = 3;
    d.codec = SH_CODEC_ZSTD;
    d.raw_size = 1 << 20;
    d.payload_len = 70000;
    d.payload = malloc(d.payload_len);
    for (size_t i = 0; i < d.payload_len; i++)
        d.payload[i] = (uint8_t)(i ^ (i >> 8));
    d.commit_lsn = INT64_MAX;
    d.created_at_ms = 1700000000000;
    strcpy(d.region, "us-east");
    uint8_t *buf;
    size_t len;
    sh_err e = {0};
    if (sh_delta_encode(&d, REG, NULL, &buf, &len, &e))
        fail_msg("%s", e.msg);
    if (sh_delta_decode(buf, len, REG, NULL, &back, &e))
        fail_msg("%s", e.msg);
    assert_int_equal(back.shard, 5);
    assert_int_equal(back.epoch, 2);
    assert_int_equal(back.sequence, 42);
    assert_int_equal(back.prev_sequence, 41);
    assert_int_equal(back.count, 1000);
    assert_int_equal(back.fp_version, 3);
    assert_int_equal(back.codec, SH_CODEC_ZSTD);
    assert_int_equal(back.raw_size, 1 << 20);
    assert_int_equal(back.payload_len, d.payload_len);
    assert_memory_equal(back.payload, d.payload, d.payload_len);
    assert_int_equal(back.commit_lsn, INT64_MAX);
    assert_int_equal(back.created_at_ms, d.created_at_ms);
    assert_string_equal(back.region, "us-east");
    sh_delta_clear(&back);

    /* A smaller configured payload cap rejects it on decode. */
    sh_schema_limits lim = {.delta_payload_max = 1000};
    assert_int_equal(sh_delta_decode(buf, len, REG, &lim, &back, &e), SH_ETOOBIG);
    assert_null(back.payload);
    free(buf);

    /* Empty heartbeat delta, codec NONE. */
    free(d.payload);
    d.payload = NULL;
    d.payload_len = 0;
    d.raw_size = 0;
    d.count = 0;
    d.codec = SH_CODEC_NONE;
    d.region[0] = '\0';
    assert_int_equal(sh_delta_encode(&d, REG, NULL, &buf, &len, &e), 0);
    assert_int_equal(sh_delta_decode(buf, len, REG, NULL, &back, &e), 0);
    assert_int_equal(back.payload_len, 0);
    assert_null(back.payload);
    free(buf);

    /* Rules. */
    d.sequence = d.prev_sequence;
    assert_int_equal(sh_delta_encode(&d, REG, NULL, &buf, &len, &e), SH_EINVAL);
    assert_non_null(strstr(e.msg, "sequence"));
    d.sequence = 42;
    d.raw_size = 3;
    assert_int_equal(sh_delta_encode(&d, REG, NULL, &buf, &len, &e), SH_EINVAL);
    d.raw_size = 0;
    d.shard = -1;
    assert_int_equal(sh_delta_encode(&d, REG, NULL, &buf, &len, &e), SH_EINVAL);
    d.shard = 0;
    d.codec = (sh_delta_codec)9;
    assert_int_equal(sh_delta_encode(&d, REG, NULL, &buf, &len, &e), SH_EINVAL);
    sh_delta_clear(&d);
}

/* ---- helpers --------------------------------------------------------------------------------- */

static void test_event_id(void **state)
{
    (void)state;
    char a[SH_EVENT_ID_LEN + 1], b[SH_EVENT_ID_LEN + 1];
    assert_int_equal(sh_event_id_new(a, NULL), 0);
    assert_int_equal(sh_event_id_new(b, NULL), 0);
    assert_int_equal(strlen(a), 36);
    assert_string_not_equal(a, b);
    assert_int_equal(a[14], '7');                   /* version 7 */
    assert_non_null(strchr("89ab", a[19]));         /* RFC 4122 variant */
    assert_true(strncmp(a, b, 8) <= 0);             /* time-ordered prefix */
}

static void test_sanitize(void **state)
{
    (void)state;
    char s[] = "ok \xc3\xa9 bad\xff\xfe ctl\x01 tab\tnl\n \xe2\x82";
    assert_int_equal(sh_text_sanitize(s), 5);
    assert_string_equal(s, "ok \xc3\xa9 bad?? ctl? tab\tnl\n ??");
    char c1[] = "a\xc2\x9b" "31m\xc2\xa0z"; /* CSI is a C1 control; NBSP is not */
    assert_int_equal(sh_text_sanitize(c1), 2);
    assert_string_equal(c1, "a??31m\xc2\xa0z");
    assert_int_equal(sh_text_sanitize(NULL), 0);
}

static void test_limits_clamp(void **state)
{
    (void)state;
    sh_schema_limits in = {.inline_audio_max = (size_t)1 << 40}, out;
    sh_limits_resolve(&in, &out);
    assert_int_equal(out.inline_audio_max, SH_INLINE_AUDIO_HARD_MAX);
    assert_int_equal(out.dlq_original_max, SH_DLQ_ORIGINAL_DEFAULT_MAX);
    sh_limits_resolve(NULL, &out);
    assert_int_equal(out.delta_payload_max, SH_DELTA_PAYLOAD_DEFAULT_MAX);
}

int main(void)
{
    sh_err e = {0};
    if (sh_registry_new_embedded(&REG, &e)) {
        fprintf(stderr, "embedded registry: %s\n", e.msg);
        return 1;
    }
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_event_round_trip_file),
        cmocka_unit_test(test_event_round_trip_url_unicode_empty_meta),
        cmocka_unit_test(test_event_round_trip_inline_max_and_delete),
        cmocka_unit_test(test_event_round_trip_meta_full),
        cmocka_unit_test(test_event_rules),
        cmocka_unit_test(test_meta_rules),
        cmocka_unit_test(test_decode_rejects_rule_breakers),
        cmocka_unit_test(test_decode_caps),
        cmocka_unit_test(test_frame_errors),
        cmocka_unit_test(test_evolution_v1_decodes_with_defaults),
        cmocka_unit_test(test_evolution_v2_decodes_with_defaults),
        cmocka_unit_test(test_base_version_negative),
        cmocka_unit_test(test_dlq_round_trip),
        cmocka_unit_test(test_delta_round_trip),
        cmocka_unit_test(test_event_id),
        cmocka_unit_test(test_sanitize),
        cmocka_unit_test(test_limits_clamp),
    };
    int rc = cmocka_run_group_tests_name("schema", tests, NULL, NULL);
    sh_registry_free(REG);
    return rc;
}
