/* sh_event.c — the audio event (io.soundhash.v1.AudioEvent): rules, setters, Avro mapping. */
#include "sh_schema_int.h"

#include "sh_clock.h"

#include <stdlib.h>
#include <string.h>
#include <sys/random.h>

static const char *const OP_NAMES[] = {"UPSERT", "REINDEX", "DELETE"};

const char *sh_event_op_name(sh_event_op op)
{
    return (int)op >= 0 && (int)op < 3 ? OP_NAMES[op] : NULL;
}

static int op_parse(const char *s, sh_event_op *op)
{
    for (int i = 0; i < 3; i++) {
        if (strcmp(s, OP_NAMES[i]) == 0) {
            *op = (sh_event_op)i;
            return 0;
        }
    }
    return -1;
}

/* ---- event ids ------------------------------------------------------------------------------- */

int sh_event_id_new(char out[SH_EVENT_ID_LEN + 1], sh_err *e)
{
    uint8_t b[16];
    size_t got = 0;
    while (got < 10) {
        ssize_t n = getrandom(b + 6 + got, 10 - got, 0);
        if (n <= 0)
            return sh_err_set(e, SH_EIO, "getrandom failed");
        got += (size_t)n;
    }
    uint64_t ms = (uint64_t)sh_clock_wall_ms();
    for (int i = 0; i < 6; i++)
        b[i] = (uint8_t)(ms >> (40 - 8 * i));
    b[6] = (uint8_t)(0x70 | (b[6] & 0x0f)); /* version 7 */
    b[8] = (uint8_t)(0x80 | (b[8] & 0x3f)); /* variant 10 */
    static const char hex[] = "0123456789abcdef";
    size_t o = 0;
    for (int i = 0; i < 16; i++) {
        if (i == 4 || i == 6 || i == 8 || i == 10)
            out[o++] = '-';
        out[o++] = hex[b[i] >> 4];
        out[o++] = hex[b[i] & 15];
    }
    out[o] = '\0';
    return 0;
}

/* Canonical lower-case UUID text: 8-4-4-4-12 hex digits. */
static int uuid_valid(const char *s)
{
    for (int i = 0; i < SH_EVENT_ID_LEN; i++) {
        char c = s[i];
        if (i == 8 || i == 13 || i == 18 || i == 23) {
            if (c != '-')
                return 0;
        } else if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'))) {
            return 0;
        }
    }
    return s[SH_EVENT_ID_LEN] == '\0';
}

/* ---- rules ------------------------------------------------------------------------------------ */

int sh_track_id_check(const char *id, size_t len, sh_err *e)
{
    if (len == 0)
        return sh_err_set(e, SH_EINVAL, "empty track id");
    if (len > SH_TRACK_ID_MAX)
        return sh_err_set(e, SH_EINVAL, "track id is %zu bytes, over the %d-byte limit", len,
                          SH_TRACK_ID_MAX);
    return sh_txt_check("track id", id, len, SH_TRACK_ID_MAX, SH_TXT_NOCTRL, SH_EINVAL, e);
}

static int check_uri(const sh_audio_source *src, sh_err *e)
{
    if (!src->uri)
        return sh_err_set(e, SH_EINVAL, "source uri missing");
    size_t n = strnlen(src->uri, SH_URI_MAX + 1);
    int rc = sh_txt_check("source uri", src->uri, n, SH_URI_MAX,
                          SH_TXT_NONEMPTY | SH_TXT_NOCTRL, SH_EINVAL, e);
    if (rc)
        return rc;
    if (strchr(src->uri, ' '))
        return sh_err_set(e, SH_EINVAL, "source uri contains a space");
    if (src->kind == SH_SRC_FILE) {
        if (strncmp(src->uri, "file:///", 8) != 0)
            return sh_err_set(e, SH_EINVAL, "file source uri must start with file:/// (absolute path)");
        /* ".." could climb out of the media root before the worker resolves the path. */
        const char *p = src->uri + 7;
        while ((p = strstr(p, "/..")) != NULL) {
            if (p[3] == '/' || p[3] == '\0')
                return sh_err_set(e, SH_EINVAL, "file source uri contains a '..' segment");
            p += 3;
        }
        return 0;
    }
    size_t skip = strncmp(src->uri, "http://", 7) == 0    ? 7
                  : strncmp(src->uri, "https://", 8) == 0 ? 8
                                                          : 0;
    if (!skip)
        return sh_err_set(e, SH_EINVAL, "url source must start with http:// or https://");
    if (src->uri[skip] == '\0' || src->uri[skip] == '/')
        return sh_err_set(e, SH_EINVAL, "url source has no host");
    return 0;
}

static int check_source(const sh_audio_event *ev, const sh_schema_limits *lim, sh_err *e)
{
    const sh_audio_source *s = &ev->source;
    switch (s->kind) {
    case SH_SRC_NONE:
        if (ev->op == SH_OP_UPSERT)
            return sh_err_set(e, SH_EINVAL, "an UPSERT event needs a source");
        return 0;
    case SH_SRC_FILE:
    case SH_SRC_URL:
        if (ev->op == SH_OP_DELETE)
            return sh_err_set(e, SH_EINVAL, "a DELETE event carries no source");
        return check_uri(s, e);
    case SH_SRC_INLINE:
        if (ev->op == SH_OP_DELETE)
            return sh_err_set(e, SH_EINVAL, "a DELETE event carries no source");
        if (!s->data || s->data_len == 0)
            return sh_err_set(e, SH_EINVAL, "inline source is empty");
        if (s->data_len > lim->inline_audio_max)
            return sh_err_set(e, SH_ETOOBIG, "inline audio: %zu bytes, over the %zu-byte limit",
                              s->data_len, lim->inline_audio_max);
        if (ev->size_bytes != -1 && (uint64_t)ev->size_bytes != s->data_len)
            return sh_err_set(e, SH_EINVAL, "size_bytes %lld differs from the inline audio size %zu",
                              (long long)ev->size_bytes, s->data_len);
        return 0;
    }
    return sh_err_set(e, SH_EINVAL, "invalid source kind %d", (int)s->kind);
}

static int check_meta(const sh_meta *m, sh_err *e)
{
    if (m->n > SH_META_MAX_ENTRIES)
        return sh_err_set(e, SH_ETOOBIG, "metadata: %zu entries, over the limit of %d", m->n,
                          SH_META_MAX_ENTRIES);
    size_t total = 0;
    for (size_t i = 0; i < m->n; i++) {
        const sh_meta_kv *kv = &m->kv[i];
        if (!kv->key || !kv->value)
            return sh_err_set(e, SH_EINVAL, "metadata entry %zu is incomplete", i);
        size_t kn = strnlen(kv->key, SH_META_KEY_MAX + 1);
        int rc = sh_txt_check("metadata key", kv->key, kn, SH_META_KEY_MAX,
                              SH_TXT_NONEMPTY | SH_TXT_NOCTRL, SH_EINVAL, e);
        if (rc)
            return rc;
        size_t vn = strnlen(kv->value, SH_META_MAX_BYTES + 1);
        if ((rc = sh_txt_check("metadata value", kv->value, vn, SH_META_MAX_BYTES, 0,
                               SH_ETOOBIG, e)))
            return sh_err_wrap(e, rc, "metadata[%s]", kv->key);
        total += kn + vn;
        if (total > SH_META_MAX_BYTES)
            return sh_err_set(e, SH_ETOOBIG, "metadata: over %d bytes of keys and values",
                              SH_META_MAX_BYTES);
        for (size_t j = 0; j < i; j++)
            if (strcmp(m->kv[j].key, kv->key) == 0)
                return sh_err_set(e, SH_EINVAL, "metadata key '%s' appears twice", kv->key);
    }
    return 0;
}

int sh_event_validate(const sh_audio_event *ev, const sh_schema_limits *lim_in, sh_err *e)
{
    sh_schema_limits lim;
    sh_limits_resolve(lim_in, &lim);
    if (!ev)
        return sh_err_set(e, SH_EINVAL, "no event");
    if (!uuid_valid(ev->event_id))
        return sh_err_set(e, SH_EINVAL, "event_id is not a lower-case UUID");
    if (!sh_event_op_name(ev->op))
        return sh_err_set(e, SH_EINVAL, "invalid op %d", (int)ev->op);
    int rc;
    if ((rc = sh_txt_check_array("track_id", ev->track_id, sizeof ev->track_id,
                                 SH_TXT_NONEMPTY | SH_TXT_NOCTRL, e)) ||
        (rc = sh_txt_check_array("tenant", ev->tenant, sizeof ev->tenant,
                                 SH_TXT_NONEMPTY | SH_TXT_NOCTRL, e)) ||
        (rc = sh_txt_check_array("content_type", ev->content_type, sizeof ev->content_type,
                                 SH_TXT_NOCTRL, e)) ||
        (rc = sh_txt_check_array("producer", ev->producer, sizeof ev->producer,
                                 SH_TXT_NONEMPTY | SH_TXT_NOCTRL, e)) ||
        (rc = sh_txt_check_array("trace_id", ev->trace_id, sizeof ev->trace_id, SH_TXT_NOCTRL,
                                 e)))
        return rc;
    if ((rc = check_source(ev, &lim, e)) || (rc = check_meta(&ev->meta, e)))
        return rc;
    if (ev->size_bytes < -1)
        return sh_err_set(e, SH_EINVAL, "size_bytes %lld is negative", (long long)ev->size_bytes);
    if (ev->submitted_at_ms < 0)
        return sh_err_set(e, SH_EINVAL, "submitted_at is before 1970");
    if (ev->fp_version < 0)
        return sh_err_set(e, SH_EINVAL, "fp_version %d is negative", (int)ev->fp_version);
    if (ev->base_version < 0)
        return sh_err_set(e, SH_EINVAL, "base_version %lld is negative",
                          (long long)ev->base_version);
    return 0;
}

/* ---- ownership ------------------------------------------------------------------------------- */

static void meta_clear(sh_meta *m)
{
    for (size_t i = 0; i < m->n && i < SH_META_MAX_ENTRIES; i++) {
        free(m->kv[i].key);
        free(m->kv[i].value);
    }
    memset(m, 0, sizeof *m);
}

static void source_clear(sh_audio_source *s)
{
    free(s->uri);
    free(s->data);
    memset(s, 0, sizeof *s);
}

void sh_event_clear(sh_audio_event *ev)
{
    if (!ev)
        return;
    source_clear(&ev->source);
    meta_clear(&ev->meta);
    memset(ev, 0, sizeof *ev);
}

int sh_event_set_string(sh_audio_event *ev, const char *field, const char *value, sh_err *e)
{
    struct {
        const char *name;
        char *dst;
        size_t cap;
    } const f[] = {
        {"event_id", ev->event_id, sizeof ev->event_id},
        {"track_id", ev->track_id, sizeof ev->track_id},
        {"tenant", ev->tenant, sizeof ev->tenant},
        {"content_type", ev->content_type, sizeof ev->content_type},
        {"producer", ev->producer, sizeof ev->producer},
        {"trace_id", ev->trace_id, sizeof ev->trace_id},
    };
    if (!value)
        return sh_err_set(e, SH_EINVAL, "%s: no value", field);
    for (size_t i = 0; i < sizeof f / sizeof f[0]; i++) {
        if (strcmp(f[i].name, field) == 0) {
            size_t n = strnlen(value, f[i].cap);
            unsigned rules = SH_TXT_NOCTRL;
            int rc = sh_txt_check(field, value, n, f[i].cap - 1, rules, SH_EINVAL, e);
            return rc ? rc : sh_txt_copy(field, f[i].dst, f[i].cap, value, n, e);
        }
    }
    return sh_err_set(e, SH_EINVAL, "no string field named %s", field);
}

int sh_event_set_uri(sh_audio_event *ev, sh_source_kind kind, const char *uri, sh_err *e)
{
    if (kind != SH_SRC_FILE && kind != SH_SRC_URL)
        return sh_err_set(e, SH_EINVAL, "set_uri: kind must be SH_SRC_FILE or SH_SRC_URL");
    if (!uri || strnlen(uri, SH_URI_MAX + 1) > SH_URI_MAX)
        return sh_err_set(e, SH_EINVAL, "source uri missing or over %d bytes", SH_URI_MAX);
    sh_audio_source s = {.kind = kind, .uri = strdup(uri)};
    if (!s.uri)
        return sh_err_set(e, SH_ENOMEM, "out of memory");
    int rc = check_uri(&s, e);
    if (rc) {
        free(s.uri);
        return rc;
    }
    source_clear(&ev->source);
    ev->source = s;
    return 0;
}

int sh_event_set_inline(sh_audio_event *ev, const uint8_t *data, size_t len, sh_err *e)
{
    if (!data || len == 0)
        return sh_err_set(e, SH_EINVAL, "inline source is empty");
    if (len > SH_INLINE_AUDIO_HARD_MAX)
        return sh_err_set(e, SH_ETOOBIG, "inline audio: %zu bytes, over the %zu-byte limit", len,
                          (size_t)SH_INLINE_AUDIO_HARD_MAX);
    uint8_t *copy = malloc(len);
    if (!copy)
        return sh_err_set(e, SH_ENOMEM, "out of memory");
    memcpy(copy, data, len);
    source_clear(&ev->source);
    ev->source = (sh_audio_source){.kind = SH_SRC_INLINE, .data = copy, .data_len = len};
    return 0;
}

int sh_meta_set(sh_meta *m, const char *key, const char *value, sh_err *e)
{
    if (!key || !value)
        return sh_err_set(e, SH_EINVAL, "metadata: key and value required");
    int rc = sh_txt_check("metadata key", key, strnlen(key, SH_META_KEY_MAX + 1),
                          SH_META_KEY_MAX, SH_TXT_NONEMPTY | SH_TXT_NOCTRL, SH_EINVAL, e);
    if (rc)
        return rc;
    if ((rc = sh_txt_check("metadata value", value, strnlen(value, SH_META_MAX_BYTES + 1),
                           SH_META_MAX_BYTES, 0, SH_ETOOBIG, e)))
        return sh_err_wrap(e, rc, "metadata[%s]", key);
    size_t slot = m->n;
    for (size_t i = 0; i < m->n; i++)
        if (strcmp(m->kv[i].key, key) == 0)
            slot = i;
    if (slot == SH_META_MAX_ENTRIES)
        return sh_err_set(e, SH_ETOOBIG, "metadata: more than %d entries", SH_META_MAX_ENTRIES);
    char *v = strdup(value);
    char *k = slot == m->n ? strdup(key) : m->kv[slot].key;
    if (!v || !k) {
        free(v);
        if (slot == m->n)
            free(k);
        return sh_err_set(e, SH_ENOMEM, "out of memory");
    }
    if (slot == m->n) {
        m->kv[slot].key = k;
        m->n++;
    } else {
        free(m->kv[slot].value);
    }
    m->kv[slot].value = v;
    return 0;
}

const char *sh_meta_get(const sh_meta *m, const char *key)
{
    for (size_t i = 0; i < m->n && i < SH_META_MAX_ENTRIES; i++)
        if (m->kv[i].key && strcmp(m->kv[i].key, key) == 0)
            return m->kv[i].value;
    return NULL;
}

/* ---- Avro ------------------------------------------------------------------------------------ */

static int fill_source(avro_value_t *rec, const sh_audio_source *s, sh_err *e)
{
    avro_value_t r;
    int rc;
    switch (s->kind) {
    case SH_SRC_FILE:
        rc = sh_av_set_record(rec, "source", "FileSource", &r, e);
        return rc ? rc : sh_av_set_str(&r, "uri", s->uri, e);
    case SH_SRC_URL:
        rc = sh_av_set_record(rec, "source", "UrlSource", &r, e);
        return rc ? rc : sh_av_set_str(&r, "url", s->uri, e);
    case SH_SRC_INLINE:
        rc = sh_av_set_record(rec, "source", "InlineSource", &r, e);
        return rc ? rc : sh_av_set_bytes(&r, "data", s->data, s->data_len, e);
    case SH_SRC_NONE:
        break;
    }
    return sh_av_set_null(rec, "source", e);
}

static int fill_event(avro_value_t *rec, const void *obj, sh_err *e)
{
    const sh_audio_event *ev = obj;
    avro_value_t map;
    int rc;
    if ((rc = sh_av_set_str(rec, "event_id", ev->event_id, e)) ||
        (rc = sh_av_set_enum(rec, "op", sh_event_op_name(ev->op), e)) ||
        (rc = sh_av_set_str(rec, "track_id", ev->track_id, e)) ||
        (rc = sh_av_set_str(rec, "tenant", ev->tenant, e)) ||
        (rc = fill_source(rec, &ev->source, e)) ||
        (rc = ev->has_sha256 ? sh_av_set_fixed(rec, "sha256", ev->sha256, 32, e)
                             : sh_av_set_null(rec, "sha256", e)) ||
        (rc = sh_av_set_long(rec, "size_bytes", ev->size_bytes, e)) ||
        (rc = sh_av_set_opt_str(rec, "content_type", ev->content_type, e)) ||
        (rc = sh_av_field_map(rec, "metadata", &map, e)) ||
        (rc = sh_av_set_long(rec, "submitted_at", ev->submitted_at_ms, e)) ||
        (rc = sh_av_set_str(rec, "producer", ev->producer, e)) ||
        (rc = sh_av_set_int(rec, "fp_version", ev->fp_version, e)) ||
        (rc = sh_av_set_int(rec, "priority", ev->priority, e)) ||
        (rc = sh_av_set_opt_str(rec, "trace_id", ev->trace_id, e)) ||
        (rc = sh_av_set_long(rec, "base_version", ev->base_version, e)))
        return rc;
    for (size_t i = 0; i < ev->meta.n; i++)
        if ((rc = sh_av_map_put(&map, ev->meta.kv[i].key, ev->meta.kv[i].value, e)))
            return rc;
    return 0;
}

int sh_event_encode(const sh_audio_event *ev, sh_registry *reg, const sh_schema_limits *lim,
                    uint8_t **out, size_t *len, sh_err *e)
{
    *out = NULL;
    *len = 0;
    int rc = sh_event_validate(ev, lim, e);
    if (rc)
        return sh_err_wrap(e, rc, "event %s", ev ? ev->event_id : "");
    return sh_frame_encode(reg, SH_KIND_AUDIO_EVENT, fill_event, ev, out, len, e);
}

static int map_source(const avro_value_t *rec, sh_audio_source *s, const sh_schema_limits *lim,
                      sh_err *e)
{
    avro_value_t v;
    int here = 0;
    int rc = sh_av_get_value(rec, "source", SH_AV_NULLABLE, &v, &here, e);
    if (rc || !here)
        return rc;
    const char *name = avro_value_get_type(&v) == AVRO_RECORD
                           ? avro_schema_name(avro_value_get_schema(&v))
                           : "";
    const char *str;
    size_t n;
    if (strcmp(name, "InlineSource") == 0) {
        s->kind = SH_SRC_INLINE;
        return sh_av_dup_bytes(&v, "data", 0, lim->inline_audio_max, &s->data, &s->data_len, e);
    }
    if (strcmp(name, "FileSource") == 0) {
        s->kind = SH_SRC_FILE;
        rc = sh_av_get_str(&v, "uri", 0, &str, &n, NULL, e);
    } else if (strcmp(name, "UrlSource") == 0) {
        s->kind = SH_SRC_URL;
        rc = sh_av_get_str(&v, "url", 0, &str, &n, NULL, e);
    } else {
        return sh_err_set(e, SH_ESCHEMA, "source: unknown branch %s", name);
    }
    if (rc)
        return rc;
    if ((rc = sh_txt_check("source uri", str, n, SH_URI_MAX, SH_TXT_NONEMPTY | SH_TXT_NOCTRL,
                           SH_EINVAL, e)))
        return rc;
    if (!(s->uri = strndup(str, n)))
        return sh_err_set(e, SH_ENOMEM, "out of memory");
    return 0;
}

static int map_meta(const avro_value_t *rec, sh_meta *m, sh_err *e)
{
    avro_value_t map;
    int rc = sh_av_get_value(rec, "metadata", 0, &map, NULL, e);
    if (rc)
        return rc;
    size_t n = 0;
    if (avro_value_get_type(&map) != AVRO_MAP ||
        avro_typeof(avro_schema_map_values(avro_value_get_schema(&map))) != AVRO_STRING)
        return sh_err_set(e, SH_ESCHEMA, "field metadata: expected map<string>");
    if (avro_value_get_size(&map, &n))
        return sh_err_set(e, SH_EFORMAT, "metadata: unreadable");
    if (n > SH_META_MAX_ENTRIES)
        return sh_err_set(e, SH_ETOOBIG, "metadata: %zu entries, over the limit of %d", n,
                          SH_META_MAX_ENTRIES);
    for (size_t i = 0; i < n; i++) {
        avro_value_t v;
        const char *key = NULL, *val = NULL;
        size_t vn = 0;
        if (avro_value_get_by_index(&map, i, &v, &key) || !key ||
            avro_value_get_string(&v, &val, &vn) || !val || vn == 0)
            return sh_err_set(e, SH_EFORMAT, "metadata: unreadable entry %zu", i);
        if (memchr(val, 0, vn - 1))
            return sh_err_set(e, SH_EINVAL, "metadata[%s] contains a NUL byte", key);
        if ((rc = sh_meta_set(m, key, val, e)))
            return rc;
    }
    return 0;
}

static int map_event(const avro_value_t *rec, void *obj, const sh_schema_limits *lim, sh_err *e)
{
    sh_audio_event *ev = obj;
    const char *op = NULL;
    const uint8_t *sha = NULL;
    int have_sha = 0;
    int rc;
    if ((rc = sh_av_copy_str(rec, "event_id", 0, ev->event_id, sizeof ev->event_id, e)) ||
        (rc = sh_av_get_enum(rec, "op", 0, &op, NULL, e)) ||
        (rc = sh_av_copy_str(rec, "track_id", 0, ev->track_id, sizeof ev->track_id, e)) ||
        (rc = sh_av_copy_str(rec, "tenant", 0, ev->tenant, sizeof ev->tenant, e)) ||
        (rc = map_source(rec, &ev->source, lim, e)) ||
        (rc = sh_av_get_fixed(rec, "sha256", SH_AV_NULLABLE, 32, &sha, &have_sha, e)) ||
        (rc = sh_av_get_long(rec, "size_bytes", 0, &ev->size_bytes, NULL, e)) ||
        (rc = sh_av_copy_str(rec, "content_type", SH_AV_NULLABLE, ev->content_type,
                             sizeof ev->content_type, e)) ||
        (rc = map_meta(rec, &ev->meta, e)) ||
        (rc = sh_av_get_long(rec, "submitted_at", 0, &ev->submitted_at_ms, NULL, e)) ||
        (rc = sh_av_copy_str(rec, "producer", 0, ev->producer, sizeof ev->producer, e)) ||
        (rc = sh_av_get_int(rec, "fp_version", 0, &ev->fp_version, NULL, e)) ||
        /* version 2 fields: defaults (0, null) when the writer is version 1 */
        (rc = sh_av_get_int(rec, "priority", SH_AV_OPTIONAL, &ev->priority, NULL, e)) ||
        (rc = sh_av_copy_str(rec, "trace_id", SH_AV_OPTIONAL | SH_AV_NULLABLE, ev->trace_id,
                             sizeof ev->trace_id, e)) ||
        /* version 3 field: default 0 when the writer is version 1 or 2 */
        (rc = sh_av_get_long(rec, "base_version", SH_AV_OPTIONAL, &ev->base_version, NULL, e)))
        return rc;
    if (op_parse(op, &ev->op))
        return sh_err_set(e, SH_ESCHEMA, "op: unknown symbol %s", op);
    if (have_sha) {
        ev->has_sha256 = true;
        memcpy(ev->sha256, sha, 32);
    }
    return sh_event_validate(ev, lim, e);
}

int sh_event_decode(const uint8_t *buf, size_t len, sh_registry *reg,
                    const sh_schema_limits *lim_in, sh_audio_event *out, sh_err *e)
{
    sh_schema_limits lim;
    sh_limits_resolve(lim_in, &lim);
    sh_event_clear(out);
    int rc = sh_frame_decode(buf, len, reg, SH_KIND_AUDIO_EVENT, SH_META_MAX_ENTRIES, map_event,
                             out, &lim, e);
    if (rc) {
        sh_event_clear(out);
        /* A rule broken by received data is malformed input, not a caller's invalid argument. */
        return sh_err_wrap(e, rc == SH_EINVAL ? SH_EFORMAT : rc, "decode AudioEvent");
    }
    return 0;
}
