/* sh_schema_util.c — text rules, by-name Avro accessors and Confluent framing for schemas/. */
#include "sh_avro_check.h"
#include "sh_schema_int.h"

#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

/* ---- limits ----------------------------------------------------------------------------------- */

void sh_schema_limits_default(sh_schema_limits *lim)
{
    lim->inline_audio_max = SH_INLINE_AUDIO_DEFAULT_MAX;
    lim->dlq_original_max = SH_DLQ_ORIGINAL_DEFAULT_MAX;
    lim->delta_payload_max = SH_DELTA_PAYLOAD_DEFAULT_MAX;
}

static size_t clamp(size_t v, size_t def, size_t hard)
{
    if (v == 0)
        return def;
    return v > hard ? hard : v;
}

void sh_limits_resolve(const sh_schema_limits *in, sh_schema_limits *out)
{
    sh_schema_limits_default(out);
    if (!in)
        return;
    out->inline_audio_max =
        clamp(in->inline_audio_max, SH_INLINE_AUDIO_DEFAULT_MAX, SH_INLINE_AUDIO_HARD_MAX);
    out->dlq_original_max =
        clamp(in->dlq_original_max, SH_DLQ_ORIGINAL_DEFAULT_MAX, SH_DLQ_ORIGINAL_HARD_MAX);
    out->delta_payload_max =
        clamp(in->delta_payload_max, SH_DELTA_PAYLOAD_DEFAULT_MAX, SH_DELTA_PAYLOAD_HARD_MAX);
}

/* ---- text ------------------------------------------------------------------------------------- */

/* Length of the well-formed UTF-8 sequence at s[0..n), or 0 when it is not one. */
static size_t utf8_seq(const unsigned char *s, size_t n)
{
    unsigned char c = s[0];
    if (c < 0x80)
        return 1;
    size_t len;
    uint32_t cp, min;
    if (c >= 0xc2 && c <= 0xdf) {
        len = 2, cp = c & 0x1f, min = 0x80;
    } else if (c >= 0xe0 && c <= 0xef) {
        len = 3, cp = c & 0x0f, min = 0x800;
    } else if (c >= 0xf0 && c <= 0xf4) {
        len = 4, cp = c & 0x07, min = 0x10000;
    } else {
        return 0;
    }
    if (len > n)
        return 0;
    for (size_t i = 1; i < len; i++) {
        if ((s[i] & 0xc0) != 0x80)
            return 0;
        cp = (cp << 6) | (s[i] & 0x3f);
    }
    if (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
        return 0;
    return len;
}

int sh_utf8_valid(const char *s, size_t n)
{
    const unsigned char *p = (const unsigned char *)s;
    for (size_t i = 0; i < n;) {
        size_t k = utf8_seq(p + i, n - i);
        if (!k)
            return 0;
        i += k;
    }
    return 1;
}

/* Bytes of the control character at p[0] (C0 < 0x20, DEL, or a C1 control U+0080..U+009F, i.e.
 * the UTF-8 pair C2 80..C2 9F), or 0 when p[0] does not start one. Terminals act on C1 controls
 * (CSI, NEL) just as on C0 ones, so "no control characters" means both. */
static size_t ctrl_len(const unsigned char *p, size_t n)
{
    if (p[0] < 0x20 || p[0] == 0x7f)
        return 1;
    return n >= 2 && p[0] == 0xc2 && p[1] >= 0x80 && p[1] <= 0x9f ? 2 : 0;
}

size_t sh_text_sanitize(char *s)
{
    if (!s)
        return 0;
    unsigned char *p = (unsigned char *)s;
    size_t n = strlen(s), fixed = 0;
    for (size_t i = 0; i < n;) {
        size_t k = utf8_seq(p + i, n - i);
        if (k && ctrl_len(p + i, n - i) && p[i] != '\t' && p[i] != '\n') {
            for (size_t j = 0; j < k; j++)
                p[i + j] = '?';
            i += k;
            fixed += k;
        } else if (!k) {
            p[i++] = '?';
            fixed++;
        } else {
            i += k;
        }
    }
    return fixed;
}

int sh_txt_check(const char *field, const char *s, size_t n, size_t max, unsigned rules,
                 int toobig, sh_err *e)
{
    if ((rules & SH_TXT_NONEMPTY) && n == 0)
        return sh_err_set(e, SH_EINVAL, "%s is empty", field);
    if (n > max)
        return sh_err_set(e, toobig, "%s: %zu bytes, over the %zu-byte limit", field, n, max);
    if (n && memchr(s, 0, n))
        return sh_err_set(e, SH_EINVAL, "%s contains a NUL byte", field);
    if (rules & SH_TXT_NOCTRL) {
        const unsigned char *p = (const unsigned char *)s;
        for (size_t i = 0; i < n; i++) {
            size_t k = ctrl_len(p + i, n - i);
            if (k)
                return sh_err_set(e, SH_EINVAL, "%s contains control character 0x%02x at byte %zu",
                                  field, k == 1 ? p[i] : p[i + 1], i);
        }
    }
    if (!sh_utf8_valid(s, n))
        return sh_err_set(e, SH_EINVAL, "%s is not valid UTF-8", field);
    return 0;
}

int sh_txt_check_array(const char *field, const char *s, size_t cap, unsigned rules, sh_err *e)
{
    size_t n = strnlen(s, cap);
    if (n == cap)
        return sh_err_set(e, SH_EINVAL, "%s: over the %zu-byte limit (not NUL-terminated)", field,
                          cap - 1);
    return sh_txt_check(field, s, n, cap - 1, rules, SH_EINVAL, e);
}

int sh_txt_copy(const char *field, char *dst, size_t cap, const char *s, size_t n, sh_err *e)
{
    if (n >= cap)
        return sh_err_set(e, SH_EINVAL, "%s: %zu bytes, over the %zu-byte limit", field, n,
                          cap - 1);
    if (n)
        memcpy(dst, s, n);
    dst[n] = '\0';
    return 0;
}

/* ---- reading ---------------------------------------------------------------------------------- */

static int av_lookup(const avro_value_t *rec, const char *name, unsigned flags, avro_value_t *out,
                     int *present, sh_err *e)
{
    if (present)
        *present = 0;
    avro_schema_t rs = avro_value_get_schema(rec);
    if (avro_schema_record_field_get_index(rs, name) < 0) {
        if (flags & SH_AV_OPTIONAL)
            return 0;
        return sh_err_set(e, SH_ESCHEMA, "writer schema %s lacks required field %s",
                          avro_schema_name(rs), name);
    }
    if (avro_value_get_by_name(rec, name, out, NULL))
        return sh_err_set(e, SH_EAVRO, "field %s: %s", name, avro_strerror());
    if (avro_value_get_type(out) == AVRO_UNION) {
        avro_value_t branch;
        if (avro_value_get_current_branch(out, &branch))
            return sh_err_set(e, SH_EFORMAT, "field %s: union without a branch", name);
        *out = branch;
    }
    if (avro_value_get_type(out) == AVRO_NULL) {
        if (flags & SH_AV_NULLABLE)
            return 0;
        return sh_err_set(e, SH_ESCHEMA, "field %s is null", name);
    }
    if (present)
        *present = 1;
    return 0;
}

static int wrong_type(const char *name, const avro_value_t *v, const char *want, sh_err *e)
{
    return sh_err_set(e, SH_ESCHEMA, "field %s: writer type %s, expected %s", name,
                      avro_schema_type_name(avro_value_get_schema(v)), want);
}

int sh_av_get_value(const avro_value_t *rec, const char *name, unsigned flags, avro_value_t *out,
                    int *present, sh_err *e)
{
    int here = 0;
    int rc = av_lookup(rec, name, flags, out, &here, e);
    if (present)
        *present = here;
    return rc;
}

/* The lookup every typed getter starts with: finds the field (unwrapping a union), reports
 * presence, and checks the writer's type (`want`, or AVRO_INT32/AVRO_INT64 both when `want` is
 * AVRO_INT64: Avro promotes int to long). Returns 1 (present, *v set), 0 (absent per flags) or
 * an error. */
static int av_typed(const avro_value_t *rec, const char *name, unsigned flags, avro_type_t want,
                    const char *want_name, avro_value_t *v, int *present, sh_err *e)
{
    int here = 0;
    int rc = av_lookup(rec, name, flags, v, &here, e);
    if (present)
        *present = here;
    if (rc || !here)
        return rc;
    avro_type_t t = avro_value_get_type(v);
    if (t != want && !(want == AVRO_INT64 && t == AVRO_INT32))
        return wrong_type(name, v, want_name, e);
    return 1;
}

int sh_av_get_str(const avro_value_t *rec, const char *name, unsigned flags, const char **s,
                  size_t *n, int *present, sh_err *e)
{
    avro_value_t v;
    *s = NULL;
    *n = 0;
    int rc = av_typed(rec, name, flags, AVRO_STRING, "string", &v, present, e);
    if (rc <= 0)
        return rc;
    size_t size = 0;
    if (avro_value_get_string(&v, s, &size) || !*s || size == 0)
        return sh_err_set(e, SH_EFORMAT, "field %s: unreadable string", name);
    *n = size - 1; /* avro-c counts the NUL terminator */
    return 0;
}

int sh_av_get_bytes(const avro_value_t *rec, const char *name, unsigned flags,
                    const uint8_t **p, size_t *n, int *present, sh_err *e)
{
    avro_value_t v;
    *p = NULL;
    *n = 0;
    int rc = av_typed(rec, name, flags, AVRO_BYTES, "bytes", &v, present, e);
    if (rc <= 0)
        return rc;
    const void *buf = NULL;
    if (avro_value_get_bytes(&v, &buf, n))
        return sh_err_set(e, SH_EFORMAT, "field %s: unreadable bytes", name);
    *p = buf;
    return 0;
}

int sh_av_get_long(const avro_value_t *rec, const char *name, unsigned flags, int64_t *out,
                   int *present, sh_err *e)
{
    avro_value_t v;
    int rc = av_typed(rec, name, flags, AVRO_INT64, "long", &v, present, e);
    if (rc <= 0)
        return rc;
    int32_t i = 0;
    if (avro_value_get_type(&v) == AVRO_INT32) {
        rc = avro_value_get_int(&v, &i);
        *out = i;
    } else {
        rc = avro_value_get_long(&v, out);
    }
    return rc ? sh_err_set(e, SH_EFORMAT, "field %s: unreadable number", name) : 0;
}

int sh_av_get_int(const avro_value_t *rec, const char *name, unsigned flags, int32_t *out,
                  int *present, sh_err *e)
{
    avro_value_t v;
    int rc = av_typed(rec, name, flags, AVRO_INT32, "int", &v, present, e);
    if (rc <= 0)
        return rc;
    return avro_value_get_int(&v, out) ? sh_err_set(e, SH_EFORMAT, "field %s: unreadable", name)
                                       : 0;
}

int sh_av_get_enum(const avro_value_t *rec, const char *name, unsigned flags, const char **sym,
                   int *present, sh_err *e)
{
    avro_value_t v;
    *sym = NULL;
    int rc = av_typed(rec, name, flags, AVRO_ENUM, "enum", &v, present, e);
    if (rc <= 0)
        return rc;
    int idx = -1;
    avro_schema_t es = avro_value_get_schema(&v);
    if (avro_value_get_enum(&v, &idx) || idx < 0 || idx >= avro_schema_enum_number_of_symbols(es))
        return sh_err_set(e, SH_EFORMAT, "field %s: enum index out of range", name);
    *sym = avro_schema_enum_get(es, idx);
    return *sym ? 0 : sh_err_set(e, SH_EFORMAT, "field %s: enum index out of range", name);
}

int sh_av_get_fixed(const avro_value_t *rec, const char *name, unsigned flags, size_t size,
                    const uint8_t **p, int *present, sh_err *e)
{
    avro_value_t v;
    *p = NULL;
    int rc = av_typed(rec, name, flags, AVRO_FIXED, "fixed", &v, present, e);
    if (rc <= 0)
        return rc;
    const void *buf = NULL;
    size_t n = 0;
    if (avro_value_get_fixed(&v, &buf, &n) || n != size)
        return sh_err_set(e, SH_ESCHEMA, "field %s: expected fixed(%zu)", name, size);
    *p = buf;
    return 0;
}

int sh_av_copy_str(const avro_value_t *rec, const char *name, unsigned flags, char *dst,
                   size_t cap, sh_err *e)
{
    const char *s;
    size_t n;
    dst[0] = '\0';
    int rc = sh_av_get_str(rec, name, flags, &s, &n, NULL, e);
    if (rc || !s)
        return rc;
    if (memchr(s, 0, n))
        return sh_err_set(e, SH_EINVAL, "%s contains a NUL byte", name);
    return sh_txt_copy(name, dst, cap, s, n, e);
}

int sh_av_dup_bytes(const avro_value_t *rec, const char *name, unsigned flags, size_t max,
                    uint8_t **out, size_t *n, sh_err *e)
{
    const uint8_t *p;
    *out = NULL;
    *n = 0;
    size_t len;
    int rc = sh_av_get_bytes(rec, name, flags, &p, &len, NULL, e);
    if (rc || !p || len == 0)
        return rc;
    if (len > max)
        return sh_err_set(e, SH_ETOOBIG, "%s: %zu bytes, over the %zu-byte limit", name, len, max);
    *out = malloc(len);
    if (!*out)
        return sh_err_set(e, SH_ENOMEM, "%s: out of memory", name);
    memcpy(*out, p, len);
    *n = len;
    return 0;
}

/* ---- writing ---------------------------------------------------------------------------------- */

static int defect(const char *name, sh_err *e)
{
    return sh_err_set(e, SH_EAVRO, "field %s: %s", name, avro_strerror());
}

/* Field `name`; when it is a union, selects the first branch of type `want` (and, for records,
 * named `rname`). */
static int field_as(avro_value_t *rec, const char *name, avro_type_t want, const char *rname,
                    avro_value_t *out, sh_err *e)
{
    avro_value_t f;
    if (avro_value_get_by_name(rec, name, &f, NULL))
        return defect(name, e);
    if (avro_value_get_type(&f) != AVRO_UNION) {
        *out = f;
        return avro_value_get_type(&f) == want ? 0 : defect(name, e);
    }
    avro_schema_t us = avro_value_get_schema(&f);
    size_t nb = avro_schema_union_size(us);
    for (size_t i = 0; i < nb; i++) {
        avro_schema_t b = avro_schema_union_branch(us, (int)i);
        if (avro_typeof(b) == AVRO_LINK)
            b = avro_schema_link_target(b);
        if (avro_typeof(b) != want || (rname && strcmp(avro_schema_name(b), rname) != 0))
            continue;
        return avro_value_set_branch(&f, (int)i, out) ? defect(name, e) : 0;
    }
    return sh_err_set(e, SH_EAVRO, "field %s: no union branch of the needed type", name);
}

int sh_av_set_null(avro_value_t *rec, const char *name, sh_err *e)
{
    avro_value_t v;
    int rc = field_as(rec, name, AVRO_NULL, NULL, &v, e);
    return rc ? rc : (avro_value_set_null(&v) ? defect(name, e) : 0);
}

int sh_av_set_str(avro_value_t *rec, const char *name, const char *s, sh_err *e)
{
    avro_value_t v;
    int rc = field_as(rec, name, AVRO_STRING, NULL, &v, e);
    if (rc)
        return rc;
    return avro_value_set_string_len(&v, s, strlen(s) + 1) ? defect(name, e) : 0;
}

int sh_av_set_opt_str(avro_value_t *rec, const char *name, const char *s, sh_err *e)
{
    return s && s[0] ? sh_av_set_str(rec, name, s, e) : sh_av_set_null(rec, name, e);
}

int sh_av_set_bytes(avro_value_t *rec, const char *name, const uint8_t *p, size_t n, sh_err *e)
{
    avro_value_t v;
    int rc = field_as(rec, name, AVRO_BYTES, NULL, &v, e);
    if (rc)
        return rc;
    static const uint8_t empty[1];
    avro_wrapped_buffer_t wb;
    /* Wrapped without a free function: avro-c references the caller's bytes, no copy. */
    if (avro_wrapped_buffer_new(&wb, n ? p : empty, n))
        return defect(name, e);
    return avro_value_give_bytes(&v, &wb) ? defect(name, e) : 0;
}

int sh_av_set_long(avro_value_t *rec, const char *name, int64_t x, sh_err *e)
{
    avro_value_t v;
    int rc = field_as(rec, name, AVRO_INT64, NULL, &v, e);
    return rc ? rc : (avro_value_set_long(&v, x) ? defect(name, e) : 0);
}

int sh_av_set_int(avro_value_t *rec, const char *name, int32_t x, sh_err *e)
{
    avro_value_t v;
    int rc = field_as(rec, name, AVRO_INT32, NULL, &v, e);
    return rc ? rc : (avro_value_set_int(&v, x) ? defect(name, e) : 0);
}

int sh_av_set_enum(avro_value_t *rec, const char *name, const char *sym, sh_err *e)
{
    avro_value_t v;
    int rc = field_as(rec, name, AVRO_ENUM, NULL, &v, e);
    if (rc)
        return rc;
    int idx = avro_schema_enum_get_by_name(avro_value_get_schema(&v), sym);
    if (idx < 0)
        return sh_err_set(e, SH_EAVRO, "field %s: no symbol %s", name, sym);
    return avro_value_set_enum(&v, idx) ? defect(name, e) : 0;
}

int sh_av_set_fixed(avro_value_t *rec, const char *name, const uint8_t *p, size_t n, sh_err *e)
{
    avro_value_t v;
    int rc = field_as(rec, name, AVRO_FIXED, NULL, &v, e);
    return rc ? rc : (avro_value_set_fixed(&v, (void *)p, n) ? defect(name, e) : 0);
}

int sh_av_set_record(avro_value_t *rec, const char *name, const char *record_name,
                     avro_value_t *out, sh_err *e)
{
    return field_as(rec, name, AVRO_RECORD, record_name, out, e);
}

int sh_av_field_map(avro_value_t *rec, const char *name, avro_value_t *out, sh_err *e)
{
    return field_as(rec, name, AVRO_MAP, NULL, out, e);
}

int sh_av_map_put(avro_value_t *map, const char *key, const char *value, sh_err *e)
{
    avro_value_t elem;
    if (avro_value_add(map, key, &elem, NULL, NULL))
        return defect("map", e);
    return avro_value_set_string_len(&elem, value, strlen(value) + 1) ? defect("map", e) : 0;
}

/* ---- framing ---------------------------------------------------------------------------------- */

int sh_frame_schema_id(const uint8_t *buf, size_t len, int32_t *id, sh_err *e)
{
    if (!buf || len < SH_FRAME_HEADER_LEN)
        return sh_err_set(e, SH_EFORMAT, "frame: %zu bytes, shorter than the 5-byte header", len);
    if (buf[0] != 0)
        return sh_err_set(e, SH_EFORMAT, "frame: magic byte 0x%02x, expected 0x00", buf[0]);
    *id = (int32_t)((uint32_t)buf[1] << 24 | (uint32_t)buf[2] << 16 | (uint32_t)buf[3] << 8 |
                    (uint32_t)buf[4]);
    return 0;
}

static const char *kind_name(sh_schema_kind k)
{
    static const char *const names[SH_KIND_COUNT] = {"AudioEvent", "DeadLetter", "IndexDelta"};
    return (int)k >= 0 && k < SH_KIND_COUNT ? names[k] : "?";
}

int sh_frame_encode(sh_registry *reg, sh_schema_kind kind, sh_fill_fn fill, const void *obj,
                    uint8_t **out, size_t *len, sh_err *e)
{
    *out = NULL;
    *len = 0;
    const sh_reg_schema *w;
    int rc = sh_registry_writer(reg, kind, &w, e);
    if (rc)
        return rc;
    avro_value_t rec;
    if (avro_generic_value_new(w->iface, &rec))
        return sh_err_set(e, SH_ENOMEM, "encode %s: %s", kind_name(kind), avro_strerror());
    size_t size = 0;
    uint8_t *buf = NULL;
    rc = fill(&rec, obj, e);
    if (!rc && avro_value_sizeof(&rec, &size))
        rc = sh_err_set(e, SH_EAVRO, "encode %s: %s", kind_name(kind), avro_strerror());
    if (!rc && !(buf = malloc(SH_FRAME_HEADER_LEN + size)))
        rc = sh_err_set(e, SH_ENOMEM, "encode %s: out of memory", kind_name(kind));
    if (!rc) {
        uint32_t id = (uint32_t)w->id;
        buf[0] = 0;
        buf[1] = (uint8_t)(id >> 24);
        buf[2] = (uint8_t)(id >> 16);
        buf[3] = (uint8_t)(id >> 8);
        buf[4] = (uint8_t)id;
        avro_writer_t wr = avro_writer_memory((const char *)buf + SH_FRAME_HEADER_LEN,
                                              (int64_t)size);
        if (!wr || avro_value_write(wr, &rec))
            rc = sh_err_set(e, SH_EAVRO, "encode %s: %s", kind_name(kind), avro_strerror());
        if (wr)
            avro_writer_free(wr);
    }
    avro_value_decref(&rec);
    if (rc) {
        free(buf);
        return rc;
    }
    *out = buf;
    *len = SH_FRAME_HEADER_LEN + size;
    return 0;
}

int sh_frame_decode(const uint8_t *buf, size_t len, sh_registry *reg, sh_schema_kind kind,
                    size_t container_max, sh_map_fn map, void *obj, const sh_schema_limits *lim,
                    sh_err *e)
{
    int32_t id = 0;
    int rc = sh_frame_schema_id(buf, len, &id, e);
    if (rc)
        return rc;
    const sh_reg_schema *w;
    if ((rc = sh_registry_lookup(reg, id, &w, e)))
        return rc;
    if (w->kind != kind)
        return sh_err_set(e, SH_ESCHEMA, "frame: schema id %" PRId32 " belongs to %s, expected %s", id,
                          kind_name(w->kind), kind_name(kind));
    const uint8_t *body = buf + SH_FRAME_HEADER_LEN;
    size_t n = len - SH_FRAME_HEADER_LEN;
    if ((rc = sh_avro_check(w->schema, body, n, container_max, e)))
        return rc;
    avro_value_t rec;
    if (avro_generic_value_new(w->iface, &rec))
        return sh_err_set(e, SH_ENOMEM, "avro: %s", avro_strerror());
    avro_reader_t rd = avro_reader_memory((const char *)body, (int64_t)n);
    if (!rd)
        rc = sh_err_set(e, SH_ENOMEM, "out of memory");
    else if (avro_value_read(rd, &rec))
        rc = sh_err_set(e, SH_EFORMAT, "avro: %s", avro_strerror());
    else
        rc = map(&rec, obj, lim, e);
    if (rd)
        avro_reader_free(rd);
    avro_value_decref(&rec);
    return rc;
}
