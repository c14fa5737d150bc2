/* manifest.c — CSV / JSON-lines manifests for `soundhash ingest publish` (see manifest.h). */
#include "manifest.h"

#include "sh_schema.h"
#include "sh_vec.h"

#include <jansson.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum { CSV_MAX_FIELDS = 8 };

enum column { COL_TRACK_ID, COL_URI, COL_TENANT, COL_METADATA, COL_COUNT };
static const char *const column_names[COL_COUNT] = {"track_id", "uri", "tenant", "metadata"};

/* Records one bad line. Returns SH_EFORMAT so callers can `return bad_line(...)`. */
static int bad_line(ingest_manifest *m, size_t line, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static int bad_line(ingest_manifest *m, size_t line, const char *fmt, ...)
{
    m->bad_lines++;
    if (m->errors.n >= INGEST_ERRORS_MAX)
        return SH_EFORMAT;
    char why[256], msg[320];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(why, sizeof why, fmt, ap);
    va_end(ap);
    snprintf(msg, sizeof msg, "line %zu: %s", line, why);
    /* Reasons quote the input (keys, JSON text): keep each message one harmless line. */
    for (unsigned char *p = (unsigned char *)msg; *p; p++)
        if (*p < 0x20 || *p == 0x7f)
            *p = '?';
    sh_strlist_push(&m->errors, msg); /* on ENOMEM the message is lost, the count is not */
    return SH_EFORMAT;
}

static bool has_control(const char *s, size_t len)
{
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c < 0x20 || c == 0x7f)
            return true;
    }
    return false;
}

static void row_free(ingest_row *r)
{
    free(r->track_id);
    free(r->uri);
    free(r->tenant);
    for (size_t i = 0; i < 2 * r->n_meta; i++)
        free(r->meta[i]);
    free(r->meta);
    memset(r, 0, sizeof *r);
}

void ingest_manifest_free(ingest_manifest *m)
{
    if (!m)
        return;
    for (size_t i = 0; i < m->n; i++)
        row_free(&m->rows[i]);
    free(m->rows);
    sh_strlist_clear(&m->errors);
    memset(m, 0, sizeof *m);
}

static char *dup_n(const char *s, size_t n)
{
    char *d = malloc(n + 1);
    if (d) {
        memcpy(d, s, n);
        d[n] = '\0';
    }
    return d;
}

/* ---- field checks shared by both formats ------------------------------------------------------ */

static int check_uri(ingest_manifest *m, size_t line, const char *s, size_t len)
{
    if (len == 0)
        return bad_line(m, line, "empty uri");
    if (len > SH_URI_MAX)
        return bad_line(m, line, "uri is %zu bytes, over the %d-byte limit", len, SH_URI_MAX);
    if (has_control(s, len) || strlen(s) != len)
        return bad_line(m, line, "uri contains a control character");
    return 0;
}

static int check_tenant(ingest_manifest *m, size_t line, const char *s, size_t len)
{
    if (len > SH_TENANT_MAX)
        return bad_line(m, line, "tenant is %zu bytes, over the %d-byte limit", len,
                        SH_TENANT_MAX);
    if (has_control(s, len) || strlen(s) != len)
        return bad_line(m, line, "tenant contains a control character");
    return 0;
}

static int set_track_id(ingest_manifest *m, size_t line, ingest_row *r, const char *s, size_t len)
{
    sh_err e = {0};
    if (strlen(s) != len)
        return bad_line(m, line, "track id contains a NUL byte");
    if (sh_track_id_check(s, len, &e))
        return bad_line(m, line, "%s", e.msg);
    r->track_id = dup_n(s, len);
    return r->track_id ? 0 : SH_ENOMEM;
}

static int set_uri(ingest_manifest *m, size_t line, ingest_row *r, const char *s, size_t len)
{
    int rc = check_uri(m, line, s, len);
    if (rc)
        return rc;
    r->uri = dup_n(s, len);
    return r->uri ? 0 : SH_ENOMEM;
}

static int set_tenant(ingest_manifest *m, size_t line, ingest_row *r, const char *s, size_t len)
{
    if (len == 0)
        return 0; /* absent: the command's --tenant */
    int rc = check_tenant(m, line, s, len);
    if (rc)
        return rc;
    r->tenant = dup_n(s, len);
    return r->tenant ? 0 : SH_ENOMEM;
}

/* Copies a JSON object of strings into r->meta, checking the schema's caps. */
static int set_meta_json(ingest_manifest *m, size_t line, ingest_row *r, json_t *obj)
{
    if (!json_is_object(obj))
        return bad_line(m, line, "metadata must be a JSON object of strings");
    size_t n = json_object_size(obj), total = 0;
    if (n > SH_META_MAX_ENTRIES)
        return bad_line(m, line, "metadata has %zu entries, over the limit of %d", n,
                        SH_META_MAX_ENTRIES);
    const char *key;
    json_t *val;
    json_object_foreach(obj, key, val) {
        size_t klen = strlen(key);
        if (!json_is_string(val))
            return bad_line(m, line, "metadata value of '%.64s' is not a string", key);
        if (klen == 0 || klen > SH_META_KEY_MAX || has_control(key, klen))
            return bad_line(m, line, "metadata key '%.64s' is empty, too long or has a control "
                                     "character", key);
        total += klen + json_string_length(val);
    }
    if (total > SH_META_MAX_BYTES)
        return bad_line(m, line, "metadata is %zu bytes, over the %d-byte limit", total,
                        SH_META_MAX_BYTES);
    r->meta = calloc(2 * n + 1, sizeof *r->meta);
    if (!r->meta)
        return SH_ENOMEM;
    json_object_foreach(obj, key, val) {
        r->meta[2 * r->n_meta] = strdup(key);
        r->meta[2 * r->n_meta + 1] = strdup(json_string_value(val));
        r->n_meta++;
        if (!r->meta[2 * r->n_meta - 2] || !r->meta[2 * r->n_meta - 1])
            return SH_ENOMEM;
    }
    return 0;
}

static int set_meta_text(ingest_manifest *m, size_t line, ingest_row *r, const char *s, size_t len)
{
    if (len == 0)
        return 0;
    json_error_t jerr;
    json_t *obj = json_loadb(s, len, JSON_REJECT_DUPLICATES, &jerr);
    if (!obj)
        return bad_line(m, line, "metadata is not valid JSON: %s", jerr.text);
    int rc = set_meta_json(m, line, r, obj);
    json_decref(obj);
    return rc;
}

/* Appends a completed row (taking ownership) or frees it when it failed. */
static int keep_row(ingest_manifest *m, ingest_row *r, int rc)
{
    if (rc) {
        row_free(r);
        return rc == SH_EFORMAT ? 0 : rc; /* bad lines are collected, not fatal */
    }
    rc = sh_vec_reserve(&m->rows, &m->cap, m->n + 1, INGEST_ROWS_MAX); /* SH_ETOOBIG past it */
    if (rc) {
        row_free(r);
        return rc;
    }
    m->rows[m->n++] = *r;
    return 0;
}

/* ---- JSON lines ------------------------------------------------------------------------------- */

static int json_row(ingest_manifest *m, size_t line, const char *s, size_t len)
{
    json_error_t jerr;
    json_t *obj = json_loadb(s, len, JSON_REJECT_DUPLICATES, &jerr);
    if (!obj)
        return keep_row(m, &(ingest_row){0},
                        bad_line(m, line, "invalid JSON at column %d: %s", jerr.column, jerr.text));
    ingest_row r = {.line = line};
    int rc = 0;
    if (!json_is_object(obj))
        rc = bad_line(m, line, "expected a JSON object");
    const char *key;
    json_t *val;
    json_object_foreach(obj, key, val) {
        if (rc)
            break;
        bool text = json_is_string(val);
        const char *sv = text ? json_string_value(val) : NULL;
        size_t sl = text ? json_string_length(val) : 0;
        if (!strcmp(key, "metadata"))
            rc = set_meta_json(m, line, &r, val);
        else if (strcmp(key, "track_id") && strcmp(key, "uri") && strcmp(key, "tenant"))
            rc = bad_line(m, line, "unknown key '%.64s' (expected track_id, uri, tenant, metadata)",
                          key);
        else if (!text)
            rc = bad_line(m, line, "'%s' must be a string", key);
        else if (!strcmp(key, "track_id"))
            rc = set_track_id(m, line, &r, sv, sl);
        else if (!strcmp(key, "uri"))
            rc = set_uri(m, line, &r, sv, sl);
        else
            rc = set_tenant(m, line, &r, sv, sl);
    }
    if (!rc && !r.track_id)
        rc = bad_line(m, line, "missing track_id");
    if (!rc && !r.uri)
        rc = bad_line(m, line, "missing uri");
    json_decref(obj);
    return keep_row(m, &r, rc);
}

/* ---- CSV -------------------------------------------------------------------------------------- */

typedef struct csv_fields {
    size_t n;
    char *v[CSV_MAX_FIELDS]; /* owned, decoded */
    size_t len[CSV_MAX_FIELDS];
} csv_fields;

static void csv_fields_free(csv_fields *f)
{
    for (size_t i = 0; i < f->n; i++)
        free(f->v[i]);
    f->n = 0;
}

/* Splits one line into decoded fields. Returns 0, SH_EFORMAT (reported) or SH_ENOMEM. */
static int csv_split(ingest_manifest *m, size_t line, const char *s, size_t len, csv_fields *f)
{
    size_t pos = 0;
    for (;;) {
        if (f->n == CSV_MAX_FIELDS)
            return bad_line(m, line, "more than %d fields", CSV_MAX_FIELDS);
        char *out = malloc(len + 1); /* a field never decodes longer than its line */
        if (!out)
            return SH_ENOMEM;
        size_t o = 0;
        f->v[f->n] = out;
        f->n++;
        if (pos < len && s[pos] == '"') {
            pos++;
            for (;;) {
                if (pos >= len)
                    return bad_line(m, line, "unterminated quoted field");
                if (s[pos] == '"' && pos + 1 < len && s[pos + 1] == '"') {
                    out[o++] = '"';
                    pos += 2;
                } else if (s[pos] == '"') {
                    pos++;
                    break;
                } else {
                    out[o++] = s[pos++];
                }
            }
            if (pos < len && s[pos] != ',')
                return bad_line(m, line, "text after a closing quote at column %zu", pos + 1);
        } else {
            while (pos < len && s[pos] != ',') {
                if (s[pos] == '"')
                    return bad_line(m, line, "quote inside an unquoted field at column %zu",
                                    pos + 1);
                out[o++] = s[pos++];
            }
        }
        out[o] = '\0';
        f->len[f->n - 1] = o;
        if (pos >= len)
            return 0;
        pos++; /* the comma; a trailing comma yields a final empty field */
    }
}

typedef struct csv_header {
    size_t n;
    int col[CSV_MAX_FIELDS]; /* enum column of each position */
} csv_header;

static int csv_parse_header(ingest_manifest *m, size_t line, const char *s, size_t len,
                            csv_header *h)
{
    csv_fields f = {0};
    int rc = csv_split(m, line, s, len, &f);
    bool seen[COL_COUNT] = {0};
    for (size_t i = 0; !rc && i < f.n; i++) {
        int c = -1;
        for (int k = 0; k < COL_COUNT; k++) {
            if (!strcmp(f.v[i], column_names[k]))
                c = k;
        }
        if (c < 0)
            rc = bad_line(m, line, "unknown column '%.64s' (expected track_id, uri, tenant, "
                                   "metadata)", f.v[i]);
        else if (seen[c])
            rc = bad_line(m, line, "column '%s' appears twice", column_names[c]);
        else
            seen[c] = true;
        h->col[i] = c;
    }
    if (!rc && (!seen[COL_TRACK_ID] || !seen[COL_URI]))
        rc = bad_line(m, line, "the header must name the columns track_id and uri");
    h->n = rc ? 0 : f.n;
    csv_fields_free(&f);
    return rc;
}

static int csv_row(ingest_manifest *m, size_t line, const char *s, size_t len, const csv_header *h)
{
    csv_fields f = {0};
    ingest_row r = {.line = line};
    int rc = csv_split(m, line, s, len, &f);
    if (!rc && f.n != h->n)
        rc = bad_line(m, line, "%zu fields, the header has %zu", f.n, h->n);
    for (size_t i = 0; !rc && i < f.n; i++) {
        switch (h->col[i]) {
        case COL_TRACK_ID:
            rc = set_track_id(m, line, &r, f.v[i], f.len[i]);
            break;
        case COL_URI:
            rc = set_uri(m, line, &r, f.v[i], f.len[i]);
            break;
        case COL_TENANT:
            rc = set_tenant(m, line, &r, f.v[i], f.len[i]);
            break;
        default:
            rc = set_meta_text(m, line, &r, f.v[i], f.len[i]);
            break;
        }
    }
    csv_fields_free(&f);
    return keep_row(m, &r, rc);
}

/* ---- lines ------------------------------------------------------------------------------------ */

static bool is_blank(const char *s, size_t len)
{
    for (size_t i = 0; i < len; i++) {
        if (s[i] != ' ' && s[i] != '\t')
            return false;
    }
    return true;
}

static const char *first_nonspace(const char *s, size_t len)
{
    for (size_t i = 0; i < len; i++) {
        if (s[i] != ' ' && s[i] != '\t')
            return s + i;
    }
    return s + len;
}

typedef enum { FMT_UNKNOWN, FMT_JSON, FMT_CSV } manifest_format;

/* Handles one line; returns 0 or a fatal error (bad lines are recorded, not fatal). */
static int one_line(ingest_manifest *m, size_t line, const char *s, size_t len,
                    manifest_format *fmt, csv_header *h, bool *header_bad)
{
    if (len > INGEST_LINE_MAX)
        return keep_row(m, &(ingest_row){0},
                        bad_line(m, line, "line is %zu bytes, over the %d-byte limit", len,
                                 INGEST_LINE_MAX));
    if (memchr(s, '\0', len))
        return keep_row(m, &(ingest_row){0}, bad_line(m, line, "NUL byte in line"));
    if (*fmt == FMT_UNKNOWN) {
        *fmt = *first_nonspace(s, len) == '{' ? FMT_JSON : FMT_CSV;
        if (*fmt == FMT_CSV) {
            int rc = csv_parse_header(m, line, s, len, h);
            *header_bad = rc != 0;
            return rc == SH_EFORMAT ? 0 : rc;
        }
    }
    if (*fmt == FMT_JSON)
        return json_row(m, line, s, len);
    if (*header_bad)
        return 0; /* rows cannot be checked without a header; the header error says why */
    return csv_row(m, line, s, len, h);
}

int ingest_manifest_parse(const char *buf, size_t len, ingest_manifest *out, sh_err *e)
{
    manifest_format fmt = FMT_UNKNOWN;
    csv_header h = {0};
    bool header_bad = false;
    size_t pos = 0, line = 0;
    if (len >= 3 && !memcmp(buf, "\xEF\xBB\xBF", 3))
        pos = 3;
    int rc = 0;
    while (pos < len && !rc) {
        const char *s = buf + pos;
        const char *nl = memchr(s, '\n', len - pos);
        size_t l = nl ? (size_t)(nl - s) : len - pos;
        pos += l + (nl ? 1 : 0);
        line++;
        if (l > 0 && s[l - 1] == '\r')
            l--;
        if (!is_blank(s, l))
            rc = one_line(out, line, s, l, &fmt, &h, &header_bad);
    }
    if (rc == SH_ETOOBIG)
        return sh_err_set(e, rc, "manifest has more than %d rows", INGEST_ROWS_MAX);
    if (rc)
        return sh_err_set(e, rc, "out of memory parsing the manifest");
    if (out->bad_lines)
        return sh_err_set(e, SH_EFORMAT, "%zu malformed manifest line(s)", out->bad_lines);
    return 0;
}
