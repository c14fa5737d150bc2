/* items.c — resolve, check and publish a batch of audio events (see items.h). */
#include "items.h"

#include "sh_log.h"
#include "sh_vec.h"


#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

/* ---- small helpers ---------------------------------------------------------------------------- */

static void item_free(ingest_item *it)
{
    free(it->label);
    free(it->track_id);
    free(it->tenant);
    free(it->uri);
    free(it->data);
    for (size_t i = 0; i < 2 * it->n_meta; i++)
        free(it->meta[i]);
    free(it->meta);
    memset(it, 0, sizeof *it);
}

void ingest_batch_free(ingest_batch *b)
{
    if (!b)
        return;
    for (size_t i = 0; i < b->n; i++)
        item_free(&b->v[i]);
    free(b->v);
    memset(b, 0, sizeof *b);
}

static int batch_push(ingest_batch *b, ingest_item *it)
{
    if (sh_vec_reserve(&b->v, &b->cap, b->n + 1, SH_VEC_NOCAP)) {
        item_free(it);
        return SH_ENOMEM;
    }
    b->v[b->n++] = *it;
    return 0;
}

/* Prints one problem as ONE line on stderr: names and paths come from the user and may hold
 * control characters (a newline would split the line, an escape sequence would drive the
 * terminal), so any left in the text are shown as '?'. */
static void problem(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void problem(const char *fmt, ...)
{
    char line[2 * SH_URI_MAX];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(line, sizeof line, fmt, ap);
    va_end(ap);
    for (unsigned char *p = (unsigned char *)line; *p; p++)
        if (*p < 0x20 || *p == 0x7f)
            *p = '?';
    fprintf(stderr, "soundhash ingest: %s\n", line);
}

/* Reports a bad item and counts it; returns 0 (not fatal) unless the cause is SH_ENOMEM. */
static int item_failed(ingest_batch *b, ingest_item *it, int rc, const sh_err *e)
{
    problem("%s: %s", it->label ? it->label : "(item)", sh_err_text(e));
    item_free(it);
    b->bad++;
    return rc == SH_ENOMEM ? rc : 0;
}

/* How messages name an item: "manifest line N", or the argument quoted with control bytes
 * (C0, DEL) escaped as \xNN so that the user can still tell which file it was. */
static char *label_for(const char *what, size_t line)
{
    char buf[4 * SH_URI_MAX + 64];
    if (line) {
        snprintf(buf, sizeof buf, "manifest line %zu", line);
        return strdup(buf);
    }
    size_t o = 0;
    buf[o++] = '\'';
    for (const unsigned char *p = (const unsigned char *)(what ? what : ""); *p; p++) {
        if (o + 8 >= sizeof buf)
            break;
        if (*p < 0x20 || *p == 0x7f)
            o += (size_t)snprintf(buf + o, sizeof buf - o, "\\x%02x", *p);
        else
            buf[o++] = (char)*p;
    }
    buf[o++] = '\'';
    buf[o] = '\0';
    return strdup(buf);
}

static const char *content_type_of(const char *path)
{
    static const char *const map[][2] = {
        {".wav", "audio/wav"},   {".flac", "audio/flac"}, {".ogg", "audio/ogg"},
        {".oga", "audio/ogg"},   {".opus", "audio/ogg"},  {".mp3", "audio/mpeg"},
        {".m4a", "audio/mp4"},   {".aif", "audio/aiff"},  {".aiff", "audio/aiff"},
    };
    const char *dot = strrchr(path, '.');
    const char *slash = strrchr(path, '/');
    if (!dot || (slash && dot < slash))
        return "";
    for (size_t i = 0; i < sizeof map / sizeof map[0]; i++) {
        if (!strcasecmp(dot, map[i][0]))
            return map[i][1];
    }
    return "";
}

/* "dir/My Song.flac" or "https://h/x/My%20Song.flac?x=1" → "My Song" / "My%20Song". */
static int derive_track_id(const char *ref, char *out, size_t cap, sh_err *e)
{
    size_t end = strcspn(ref, "?#");
    while (end > 0 && ref[end - 1] == '/')
        end--;
    size_t start = end;
    while (start > 0 && ref[start - 1] != '/')
        start--;
    size_t len = end - start;
    const char *dot = NULL; /* the last '.', but not a leading one (".hidden") */
    for (size_t i = end; i > start + 1; i--) {
        if (ref[i - 1] == '.') {
            dot = ref + i - 1;
            break;
        }
    }
    if (dot)
        len = (size_t)(dot - (ref + start));
    if (len == 0 || len >= cap)
        return sh_err_set(e, SH_EINVAL, "cannot derive a track id from the name (use --track-id "
                                        "or a manifest)");
    memcpy(out, ref + start, len);
    out[len] = '\0';
    return sh_track_id_check(out, len, e);
}

static bool has_scheme(const char *ref);

/* What the default track id is derived from: for a file:// URI its decoded path (so that
 * "file:///m/My%20Song.flac" and the path "/m/My Song.flac" give the same id "My Song"); else
 * `ref` itself (URLs keep their escapes: they are not file names). The path goes to `buf`. */
static const char *name_source(const char *ref, char *buf, size_t cap)
{
    sh_uri_kind kind;
    if (has_scheme(ref) && !sh_uri_classify(ref, &kind, NULL) && kind == SH_URI_FILE &&
        !sh_uri_file_path(ref, buf, cap, NULL))
        return buf;
    return ref;
}

/* Whether `ref` starts with a URI scheme ("x:" with x = ALPHA *(ALPHA / DIGIT / "+" / "-" / ".")),
 * i.e. must be classified rather than taken as a path. */
static bool has_scheme(const char *ref)
{
    size_t i = 0;
    if (!((ref[0] >= 'a' && ref[0] <= 'z') || (ref[0] >= 'A' && ref[0] <= 'Z')))
        return false;
    while (ref[i] && (((ref[i] | 0x20) >= 'a' && (ref[i] | 0x20) <= 'z') ||
                      (ref[i] >= '0' && ref[i] <= '9') || ref[i] == '+' || ref[i] == '-' ||
                      ref[i] == '.'))
        i++;
    return ref[i] == ':';
}

/* Percent-encodes an absolute path into a file:// URI (RFC 8089): unreserved characters and '/'
 * stay, every other byte becomes %XX. */
static int file_uri(const char *path, char **out, sh_err *e)
{
    static const char hex[] = "0123456789ABCDEF";
    size_t len = strlen(path);
    if (len * 3 + 8 > SH_URI_MAX)
        return sh_err_set(e, SH_ETOOBIG, "path too long for a URI");
    char *u = malloc(len * 3 + 8), *o = u;
    if (!u)
        return sh_err_set(e, SH_ENOMEM, "out of memory");
    memcpy(o, "file://", 7);
    o += 7;
    for (const unsigned char *p = (const unsigned char *)path; *p; p++) {
        unsigned char c = *p;
        bool keep = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                    c == '/' || c == '-' || c == '.' || c == '_' || c == '~';
        if (keep) {
            *o++ = (char)c;
        } else {
            *o++ = '%';
            *o++ = hex[c >> 4];
            *o++ = hex[c & 15];
        }
    }
    *o = '\0';
    *out = u;
    return 0;
}

/* SHA-256 and size of an open file, streamed (audio files may be large). */
static int hash_fd(int fd, uint8_t sha[32], int64_t *size, sh_err *e)
{
    uint64_t n = 0;
    int rc = sh_sha256_fd(fd, sha, &n, e);
    *size = (int64_t)n;
    return rc;
}

/* The canonical path of an open descriptor (via /proc), so the URI we publish names exactly the
 * file sh_media_open() checked, not the spelling the user typed. */
static int fd_path(int fd, char *out, size_t cap, sh_err *e)
{
    char link[64];
    snprintf(link, sizeof link, "/proc/self/fd/%d", fd);
    ssize_t n = readlink(link, out, cap - 1);
    if (n < 0 || (size_t)n >= cap - 1)
        return sh_err_set(e, SH_EIO, "cannot resolve the opened file's path");
    out[n] = '\0';
    return 0;
}

/* A local file (path or file:// URI) under the media root → FILE item with checksum and size. */
static int resolve_file(const ingest_batch_opts *o, const char *media_ref, ingest_item *it,
                        sh_err *e)
{
    if (!o->media)
        return sh_err_set(e, SH_EUSAGE, "local files need --media-root (the directory the "
                                        "workers read audio from)");
    int fd = -1;
    int rc = sh_media_open(o->media, media_ref, &fd, e);
    if (rc)
        return rc;
    char path[PATH_MAX];
    rc = fd_path(fd, path, sizeof path, e);
    if (!rc)
        rc = hash_fd(fd, it->sha256, &it->size_bytes, e);
    close(fd);
    if (!rc)
        rc = file_uri(path, &it->uri, e);
    if (rc)
        return rc;
    it->kind = SH_SRC_FILE;
    it->has_sha256 = true;
    it->content_type = content_type_of(path);
    return 0;
}

/* A local file whose bytes travel inside the event. Under the media root when one is set;
 * otherwise any readable regular file (the path is not published). */
static int resolve_inline(const ingest_batch_opts *o, const char *media_ref, const char *path,
                          ingest_item *it, sh_err *e)
{
    int rc;
    if (o->media) {
        rc = sh_media_read(o->media, media_ref, o->lim.inline_audio_max, &it->data, &it->data_len,
                           e);
    } else {
        int fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK | O_NOCTTY);
        struct stat st;
        if (fd < 0)
            return sh_err_set(e, errno == ENOENT ? SH_ENOTFOUND : SH_EIO, "cannot open: %s",
                              strerror(errno));
        if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
            close(fd);
            return sh_err_set(e, SH_EIO, "not a regular file");
        }
        rc = sh_read_fd(fd, o->lim.inline_audio_max, &it->data, &it->data_len, e);
        close(fd);
    }
    if (rc == SH_ETOOBIG)
        return sh_err_set(e, SH_ETOOBIG, "over the inline audio cap of %zu bytes (publish it as a "
                                         "file under the media root instead)",
                          o->lim.inline_audio_max);
    if (rc)
        return rc;
    rc = sh_sha256(it->data, it->data_len, it->sha256, e);
    if (rc)
        return rc;
    it->kind = SH_SRC_INLINE;
    it->has_sha256 = true;
    it->size_bytes = (int64_t)it->data_len;
    it->content_type = content_type_of(path);
    return 0;
}

/* Resolves `ref`. `cwd_relative`: bare paths are relative to the working directory (command
 * line) instead of the media root (manifests). */
static int resolve(const ingest_batch_opts *o, const char *ref, bool cwd_relative,
                   ingest_item *it, sh_err *e)
{
    it->size_bytes = -1;
    it->content_type = "";
    if (has_scheme(ref)) {
        sh_uri_kind kind;
        int rc = sh_uri_classify(ref, &kind, e);
        if (rc)
            return rc;
        if (kind == SH_URI_HTTP || kind == SH_URI_HTTPS) {
            if (o->inline_audio)
                return sh_err_set(e, SH_EUNSUPPORTED, "--inline needs a local file, not a URL");
            it->kind = SH_SRC_URL;
            it->uri = strdup(ref);
            if (!it->uri)
                return sh_err_set(e, SH_ENOMEM, "out of memory");
            /* Schemes are case-insensitive (RFC 3986): publish the canonical lower-case form. */
            for (char *c = it->uri; *c != ':'; c++)
                *c = (char)(*c | 0x20);
            it->content_type = content_type_of(ref);
            return 0;
        }
        if (kind != SH_URI_FILE)
            return sh_err_set(e, SH_EUNSUPPORTED, "data:/inline: URIs are not accepted; publish "
                                                  "a file with --inline");
        char path[SH_MEDIA_PATH_MAX + 1];
        rc = sh_uri_file_path(ref, path, sizeof path, e);
        if (rc)
            return rc;
        return o->inline_audio ? resolve_inline(o, ref, path, it, e) : resolve_file(o, ref, it, e);
    }
    if (!cwd_relative || ref[0] == '/')
        return o->inline_audio ? resolve_inline(o, ref, ref, it, e) : resolve_file(o, ref, it, e);
    /* Relative to the working directory: canonicalize first, then the media root check applies
     * to where the file really is. */
    char abs[PATH_MAX];
    if (!realpath(ref, abs))
        return sh_err_set(e, errno == ENOENT ? SH_ENOTFOUND : SH_EIO, "cannot open: %s",
                          strerror(errno));
    return o->inline_audio ? resolve_inline(o, abs, abs, it, e) : resolve_file(o, abs, it, e);
}

/* ---- building the batch ----------------------------------------------------------------------- */

int ingest_batch_add_ref(ingest_batch *b, const ingest_batch_opts *o, const char *ref,
                         const char *track_id)
{
    ingest_item it = {0};
    sh_err e = {0};
    it.label = label_for(ref, 0);
    if (!it.label)
        return SH_ENOMEM;
    char derived[SH_TRACK_ID_MAX + 1], path[SH_MEDIA_PATH_MAX + 1];
    int rc = 0;
    if (track_id)
        rc = sh_track_id_check(track_id, strlen(track_id), &e);
    else
        rc = derive_track_id(name_source(ref, path, sizeof path), derived, sizeof derived, &e);
    if (!rc) {
        it.track_id = strdup(track_id ? track_id : derived);
        rc = it.track_id ? 0 : sh_err_set(&e, SH_ENOMEM, "out of memory");
    }
    if (!rc)
        rc = resolve(o, ref, true, &it, &e);
    if (rc)
        return item_failed(b, &it, rc, &e);
    return batch_push(b, &it);
}

static int copy_meta(ingest_item *it, const ingest_row *r)
{
    if (!r->n_meta)
        return 0;
    it->meta = calloc(2 * r->n_meta, sizeof *it->meta);
    if (!it->meta)
        return SH_ENOMEM;
    for (size_t i = 0; i < 2 * r->n_meta; i++) {
        it->meta[i] = strdup(r->meta[i]);
        if (!it->meta[i])
            return SH_ENOMEM;
        it->n_meta = i / 2 + 1;
    }
    return 0;
}

int ingest_batch_add_manifest(ingest_batch *b, const ingest_batch_opts *o,
                              const ingest_manifest *m)
{
    for (size_t i = 0; i < m->n; i++) {
        const ingest_row *r = &m->rows[i];
        ingest_item it = {0};
        sh_err e = {0};
        it.label = label_for(NULL, r->line);
        it.track_id = strdup(r->track_id);
        it.tenant = r->tenant ? strdup(r->tenant) : NULL;
        int rc = 0;
        if (!it.label || !it.track_id || (r->tenant && !it.tenant) || copy_meta(&it, r))
            rc = sh_err_set(&e, SH_ENOMEM, "out of memory");
        if (!rc)
            rc = resolve(o, r->uri, false, &it, &e);
        if (rc) {
            rc = item_failed(b, &it, rc, &e);
            if (rc)
                return rc;
            continue;
        }
        rc = batch_push(b, &it);
        if (rc)
            return rc;
    }
    return 0;
}

int ingest_batch_add_delete(ingest_batch *b, const char *track_id)
{
    ingest_item it = {0};
    sh_err e = {0};
    it.label = label_for(track_id, 0);
    if (!it.label)
        return SH_ENOMEM;
    int rc = sh_track_id_check(track_id, strlen(track_id), &e);
    if (!rc) {
        it.track_id = strdup(track_id);
        rc = it.track_id ? 0 : sh_err_set(&e, SH_ENOMEM, "out of memory");
    }
    if (rc)
        return item_failed(b, &it, rc, &e);
    it.kind = SH_SRC_NONE;
    it.size_bytes = -1;
    it.content_type = "";
    return batch_push(b, &it);
}

/* ---- events ----------------------------------------------------------------------------------- */

int ingest_item_event(const ingest_item *it, const ingest_batch_opts *o, sh_audio_event *ev,
                      sh_err *e)
{
    ev->op = o->op;
    ev->priority = o->priority;
    ev->size_bytes = it->size_bytes;
    ev->has_sha256 = it->has_sha256;
    memcpy(ev->sha256, it->sha256, sizeof ev->sha256);
    int rc = sh_event_set_string(ev, "track_id", it->track_id, e);
    if (!rc)
        rc = sh_event_set_string(ev, "tenant", it->tenant ? it->tenant : o->tenant, e);
    if (!rc && it->content_type[0])
        rc = sh_event_set_string(ev, "content_type", it->content_type, e);
    if (!rc && (it->kind == SH_SRC_FILE || it->kind == SH_SRC_URL))
        rc = sh_event_set_uri(ev, it->kind, it->uri, e);
    if (!rc && it->kind == SH_SRC_INLINE)
        rc = sh_event_set_inline(ev, it->data, it->data_len, e);
    for (size_t i = 0; !rc && o->meta && i + 1 < o->meta->n; i += 2)
        rc = sh_meta_set(&ev->meta, o->meta->v[i], o->meta->v[i + 1], e);
    for (size_t i = 0; !rc && i < it->n_meta; i++)
        rc = sh_meta_set(&ev->meta, it->meta[2 * i], it->meta[2 * i + 1], e);
    return rc;
}

/* Orders item indexes by track id, then by position (so that reports list items in input order). */
static int cmp_by_track(const void *a, const void *b, void *batch)
{
    const ingest_batch *bt = batch;
    size_t i = *(const size_t *)a, j = *(const size_t *)b;
    int c = strcmp(bt->v[i].track_id, bt->v[j].track_id);
    return c ? c : (i > j) - (i < j);
}

/* Two events for one track in one batch is almost certainly a mistake in the input: each such
 * track is reported once, naming where it appears ("manifest line 2, manifest line 9"). */
static size_t report_duplicates(const ingest_batch *b)
{
    if (b->n < 2)
        return 0;
    size_t *ix = malloc(b->n * sizeof *ix);
    if (!ix)
        return 0;
    for (size_t i = 0; i < b->n; i++)
        ix[i] = i;
    qsort_r(ix, b->n, sizeof *ix, cmp_by_track, (void *)b);
    size_t dups = 0;
    for (size_t i = 0; i < b->n;) {
        size_t end = i + 1;
        while (end < b->n && !strcmp(b->v[ix[end]].track_id, b->v[ix[i]].track_id))
            end++;
        if (end - i > 1) {
            char where[512];
            size_t o = 0;
            for (size_t k = i; k < end && o < sizeof where - 64; k++)
                o += (size_t)snprintf(where + o, sizeof where - o, "%s%s", k > i ? ", " : "",
                                      b->v[ix[k]].label);
            problem("track id '%s' appears %zu times in the batch: %s%s", b->v[ix[i]].track_id,
                    end - i, where, o >= sizeof where - 64 ? ", ..." : "");
            dups++;
        }
        i = end;
    }
    free(ix);
    return dups;
}

int ingest_batch_validate(ingest_batch *b, const ingest_batch_opts *o)
{
    for (size_t i = 0; i < b->n; i++) {
        sh_audio_event ev = {0};
        sh_err e = {0};
        int rc = ingest_item_event(&b->v[i], o, &ev, &e);
        if (!rc) {
            ev.submitted_at_ms = 1; /* filled at publish time; validate the rest */
            snprintf(ev.producer, sizeof ev.producer, "soundhash-ingest");
            rc = sh_event_id_new(ev.event_id, &e);
        }
        if (!rc)
            rc = sh_event_validate(&ev, &o->lim, &e);
        if (rc) {
            problem("%s (track '%s'): %s", b->v[i].label, b->v[i].track_id, sh_err_text(&e));
            b->bad++;
        }
        sh_event_clear(&ev);
    }
    b->bad += report_duplicates(b);
    return b->bad ? SH_EINVAL : 0;
}

/* ---- publishing ------------------------------------------------------------------------------- */

void ingest_json_string(void *out, const char *s)
{
    FILE *f = out;
    fputc('"', f);
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        if (*p == '"' || *p == '\\')
            fprintf(f, "\\%c", *p);
        else if (*p < 0x20 || *p == 0x7f)
            fprintf(f, "\\u%04x", *p);
        else
            fputc(*p, f);
    }
    fputc('"', f);
}

typedef struct publish_state {
    ingest_publish_stats *st;
    size_t total;
    bool progress;
    size_t shown; /* last count drawn */
} publish_state;

static void draw_progress(publish_state *s, bool final)
{
    size_t done = s->st->ok + s->st->failed;
    if (!s->progress || (!final && done - s->shown < (s->total / 100 ? s->total / 100 : 1)))
        return;
    s->shown = done;
    int width = 30, filled = s->total ? (int)(done * (size_t)width / s->total) : width;
    char bar[32];
    for (int i = 0; i < width; i++)
        bar[i] = i < filled ? '#' : '.';
    bar[width] = '\0';
    fprintf(stderr, "\r[%s] %zu/%zu events%s", bar, done, s->total, final ? "\n" : "");
}

static void on_result(const sh_ingest_result *r, void *opaque)
{
    publish_state *s = opaque;
    if (r->code == 0) {
        s->st->ok++;
        fputs("{\"track_id\":", stdout);
        ingest_json_string(stdout, r->track_id);
        printf(",\"event_id\":\"%s\",\"topic\":\"%s\",\"partition\":%d,\"offset\":%lld}\n",
               r->event_id, r->topic, (int)r->partition, (long long)r->offset);
    } else {
        s->st->failed++;
        fprintf(stderr, "%ssoundhash ingest: FAILED track '%s' (event %s): %s\n",
                s->progress ? "\n" : "", r->track_id, r->event_id, r->message);
    }
    draw_progress(s, false);
}

int ingest_batch_publish(const ingest_batch *b, const ingest_batch_opts *o, sh_ingest *p,
                         int flush_timeout_ms, ingest_publish_stats *st, sh_err *e)
{
    publish_state s = {.st = st, .total = b->n, .progress = isatty(2) && b->n >= 200};
    memset(st, 0, sizeof *st);
    int rc = 0;
    size_t sent = 0;
    for (size_t i = 0; i < b->n && !rc; i++) {
        sh_audio_event ev = {0};
        rc = ingest_item_event(&b->v[i], o, &ev, e);
        if (!rc)
            rc = sh_ingest_publish(p, &ev, on_result, &s, NULL, e);
        sh_event_clear(&ev);
        if (!rc)
            sent++;
        sh_ingest_poll(p, 0); /* serve reports as they come, keeping memory flat */
    }
    int frc = sh_ingest_flush(p, flush_timeout_ms, e);
    draw_progress(&s, true);
    fflush(stdout);
    if (rc)
        return sh_err_wrap(e, rc, "stopped after %zu of %zu events were sent", sent, b->n);
    if (frc)
        return frc;
    if (st->failed)
        return sh_err_set(e, SH_EKAFKA, "%zu of %zu events failed (listed above)", st->failed,
                          b->n);
    return 0;
}
