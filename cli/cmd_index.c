/* cmd_index.c — `soundhash index add|delete|stats`: maintain a local shard index (sh_shard.h).
 *
 *   index add --index DIR [--id ID] [--tenant T] [--meta k=v|JSON]... FILE...
 *       {"file","track_id","status":"added"|"replaced","hashes","duration_s"} per file
 *   index delete --index DIR ID...     {"track_id","deleted":true|false} per id
 *   index stats --index DIR            one object: tracks, postings, sizes, bytes per posting ...
 *   index compact --index DIR [--wait S]
 *       repacks the shard and shrinks its file (sh_shard_repack()); one object: bytes before and
 *       after, bytes per posting, MB per audio hour, waited_ms (for other processes to close it)
 *       and elapsed_ms (the compaction itself). Needs the shard to be closed by every other
 *       process (they are refused because a process holding the old file would keep committing
 *       into it); processes opening it during the compact wait until it is done.
 *   index add --compact ...             the same once the files are added
 *
 * Files are fingerprinted one by one and written in batches (one LMDB transaction per batch), so
 * a crash loses at most the current batch and never leaves a half track. A FILE that fails is
 * named on stderr and the others go on; the exit code is then 1. Usage errors exit 2: bad options,
 * and an --index without a shard for delete/stats/compact.
 */
#include "sh_clock.h"
#include "sh_cmds.h"
#include "sh_extract.h"
#include "sh_fp.h"
#include "sh_opt.h"
#include "sh_shard.h"

#include <jansson.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

typedef struct index_cfg {
    char *index;
    char *id;
    char *tenant;
    sh_strlist meta_list; /* --meta entries: k=v or JSON objects (sh_opt_meta_pairs) */
    char *meta;           /* the JSON object they make; owned, freed by sh_cmd_index */
    long batch;
    double max_duration_s;
    size_t map_size;
    double wait_s;
    bool progress;
    bool compact;
} index_cfg;

/* Prints one compact JSON object as a line; consumes `o`. */
static int print_json(json_t *o)
{
    char *line = o ? json_dumps(o, JSON_COMPACT | JSON_REAL_PRECISION(10)) : NULL;
    json_decref(o);
    if (!line) {
        fprintf(stderr, "soundhash index: cannot encode JSON (out of memory?)\n");
        return SH_ENOMEM;
    }
    puts(line);
    free(line);
    return 0;
}

/* The default track id: the file name without directory and extension. */
static void default_id(const char *path, char *out, size_t cap)
{
    const char *base = strrchr(path, '/');
    base = base ? base + 1 : path;
    const char *dot = strrchr(base, '.');
    size_t n = dot && dot != base ? (size_t)(dot - base) : strlen(base);
    snprintf(out, cap, "%.*s", (int)(n < cap - 1 ? n : cap - 1), base);
}

enum { SH_BAR_WIDTH = 30, SH_BAR_LINE = 100 }; /* the bar line never exceeds SH_BAR_LINE */

/* Draws "[####------] 3/8 name" over the previous bar (same line, \r). */
static void progress(const index_cfg *c, size_t done, size_t total, const char *path)
{
    if (!c->progress)
        return;
    size_t fill = total ? done * SH_BAR_WIDTH / total : SH_BAR_WIDTH;
    char bar[SH_BAR_WIDTH + 1];
    memset(bar, '#', fill);
    memset(bar + fill, '-', SH_BAR_WIDTH - fill);
    bar[SH_BAR_WIDTH] = '\0';
    const char *name = strrchr(path, '/');
    fprintf(stderr, "\r[%s] %zu/%zu %-30.30s", bar, done, total, name ? name + 1 : path);
    if (done == total)
        fputc('\n', stderr);
    fflush(stderr);
}

/* Blanks the bar line before other output, so JSON lines and messages sharing the terminal do not
 * start in the middle of it (the next progress() call redraws the bar). */
static void progress_clear(const index_cfg *c)
{
    if (c->progress)
        fprintf(stderr, "\r%*s\r", SH_BAR_LINE, "");
}

/* One pending output line per file of the current batch, printed after its commit. */
typedef struct add_line {
    const char *file;
    char id[SH_SHARD_ID_MAX + 1];
    bool existed;
    size_t hashes;
    double duration_s;
} add_line;

static int commit_batch(const index_cfg *c, sh_shard_batch **b, add_line *lines, size_t *nlines)
{
    sh_err e = {0};
    int rc = sh_shard_batch_commit(*b, NULL, &e);
    *b = NULL;
    progress_clear(c);
    if (rc) {
        fprintf(stderr, "soundhash index add: writing the index: %s\n", sh_err_text(&e));
        *nlines = 0;
        return rc;
    }
    for (size_t i = 0; i < *nlines; i++)
        print_json(json_pack("{s:s, s:s, s:s, s:I, s:f}", "file", lines[i].file, "track_id",
                             lines[i].id, "status", lines[i].existed ? "replaced" : "added",
                             "hashes", (json_int_t)lines[i].hashes, "duration_s",
                             lines[i].duration_s));
    fflush(stdout);
    *nlines = 0;
    return 0;
}

/* True when an earlier file of the uncommitted batch has the id (the later one replaces it). */
static bool pending_id(const add_line *lines, size_t n, const char *id)
{
    for (size_t i = 0; i < n; i++)
        if (!strcmp(lines[i].id, id))
            return true;
    return false;
}

/* Fingerprints one file and records it in the batch as lines[npending]. Returns 0, or an error
 * already reported. */
static int add_one(sh_shard *s, sh_shard_batch *b, const index_cfg *c, const char *path, sh_fp *fp,
                   const sh_audio_opts *ao, add_line *lines, size_t npending, char *infobuf,
                   size_t infocap)
{
    add_line *line = &lines[npending];
    sh_err e = {0};
    sh_extract_result r;
    int rc = sh_extract_file(path, ao, fp, &r, &e);
    if (rc) {
        progress_clear(c);
        fprintf(stderr, "soundhash index add: %s: %s (%s)\n", path, sh_err_text(&e),
                sh_err_name(rc));
        return rc;
    }
    line->file = path;
    if (c->id)
        snprintf(line->id, sizeof line->id, "%s", c->id);
    else
        default_id(path, line->id, sizeof line->id);
    sh_shard_info info;
    line->existed = sh_shard_info_by_id(s, line->id, &info, infobuf, infocap, NULL) == 0 ||
                    pending_id(lines, npending, line->id);
    size_t n;
    const sh_hash *h = sh_fp_hashes(fp, &n);
    sh_shard_track t = {.id = line->id,
                        .tenant = c->tenant,
                        .version = SH_SHARD_VERSION_NEXT,
                        .duration_s = r.duration_s,
                        .meta_json = c->meta};
    if ((rc = sh_shard_batch_put(b, &t, h, n, &e))) {
        progress_clear(c);
        fprintf(stderr, "soundhash index add: %s: %s\n", path, sh_err_text(&e));
        return rc;
    }
    line->hashes = n;
    line->duration_s = r.duration_s;
    return 0;
}

/* add creates the shard; delete and stats need an existing one (a typo must not make one). */
static int open_shard(const index_cfg *c, bool any_fp, bool read_only, bool create, sh_shard **s)
{
    sh_shard_opts o;
    sh_shard_opts_default(&o);
    if (c->map_size)
        o.map_size = c->map_size;
    o.read_only = read_only;
    o.no_create = !create;
    o.fp_version = any_fp ? -1 : 0;
    sh_err e = {0};
    int rc = sh_shard_open(c->index, &o, s, &e);
    if (rc)
        fprintf(stderr, "soundhash index: --index %s\n", sh_err_text(&e));
    return rc;
}

/* A missing shard named by --index is a usage error (exit 2), other failures runtime (1). */
static int open_exit_code(int rc)
{
    return rc == SH_ENOTFOUND ? SH_EXIT_USAGE : SH_EXIT_RUNTIME;
}

static double mb_per_hour(const sh_shard_stats *st)
{
    return st->audio_s > 0 ? (double)st->file_bytes / 1e6 / (st->audio_s / 3600.0) : 0.0;
}

enum { COMPACT_POLL_MS = 50 };

/* Repacks the shard and prints one JSON line with the sizes before and after. While another
 * process has the shard open it retries every COMPACT_POLL_MS for up to --wait seconds, so the
 * time spent waiting (waited_ms) and the compaction itself (elapsed_ms) are reported apart. `verb`
 * names the command in messages. Returns an exit code. */
static int run_compact(const index_cfg *c, const char *verb)
{
    sh_shard_opts o;
    sh_shard_opts_default(&o);
    if (c->map_size)
        o.map_size = c->map_size;
    o.fp_version = -1; /* repacking does not read hashes: any fingerprint version */
    sh_shard_stats a, b;
    sh_err e = {0};
    const double start = sh_clock_mono_ms(), deadline = start + c->wait_s * 1000.0;
    double t0;
    bool told = false;
    int rc;
    for (;;) {
        t0 = sh_clock_mono_ms();
        rc = sh_shard_repack(c->index, &o, 0, &a, &b, &e);
        if (rc != SH_ETRANSIENT || sh_clock_mono_ms() >= deadline)
            break;
        if (!told) {
            fprintf(stderr, "soundhash %s: waiting up to %g s for other processes to close the "
                            "index (%s)\n", verb, c->wait_s, sh_err_text(&e));
            told = true;
        }
        struct timespec pause = {0, COMPACT_POLL_MS * 1000000L};
        nanosleep(&pause, NULL);
    }
    if (rc == SH_ETRANSIENT) {
        fprintf(stderr, "soundhash %s: %s; %s\n", verb, sh_err_text(&e),
                c->wait_s > 0 ? "it was still open when --wait ran out"
                              : "retry with --wait SECONDS to wait for it to be closed");
        return SH_EXIT_RUNTIME;
    }
    if (rc) {
        fprintf(stderr, "soundhash %s: %s%s\n", verb, rc == SH_ENOTFOUND ? "--index " : "",
                sh_err_text(&e));
        return open_exit_code(rc);
    }
    json_t *j = json_pack("{s:s, s:I, s:I, s:I, s:I, s:I, s:f, s:f, s:f, s:f, s:f, s:f, s:f}",
                          "index",
                          c->index, "tracks", (json_int_t)b.tracks, "postings",
                          (json_int_t)b.postings, "ranges", (json_int_t)b.ranges, "bytes_before",
                          (json_int_t)a.file_bytes, "bytes_after", (json_int_t)b.file_bytes,
                          "audio_s", b.audio_s, "bytes_per_posting_before", a.bytes_per_posting,
                          "bytes_per_posting", b.bytes_per_posting, "mb_per_audio_hour_before",
                          mb_per_hour(&a), "mb_per_audio_hour", mb_per_hour(&b), "waited_ms",
                          t0 - start, "elapsed_ms", sh_clock_mono_ms() - t0);
    return print_json(j) ? SH_EXIT_RUNTIME : SH_EXIT_OK;
}

static int run_add(const index_cfg *c, const sh_strlist *files)
{
    if (c->id && files->n != 1) {
        fprintf(stderr, "soundhash index add: --id needs exactly one FILE\n");
        return SH_EXIT_USAGE;
    }
    if (c->id && (!*c->id || strlen(c->id) > SH_SHARD_ID_MAX)) {
        fprintf(stderr, "soundhash index add: --id must be 1..%d bytes\n", SH_SHARD_ID_MAX);
        return SH_EXIT_USAGE;
    }
    sh_shard *s = NULL;
    int orc = open_shard(c, false, false, true, &s);
    if (orc)
        return open_exit_code(orc);
    sh_fp_config fc;
    sh_fp_config_default(&fc);
    sh_audio_opts ao;
    sh_audio_opts_default(&ao);
    ao.rate = fc.rate;
    ao.max_duration_s = c->max_duration_s;
    sh_err e = {0};
    sh_fp *fp = NULL;
    size_t infocap = SH_SHARD_ID_MAX + SH_SHARD_TENANT_MAX + SH_SHARD_META_MAX + 3;
    char *infobuf = malloc(infocap);
    add_line *lines = calloc((size_t)c->batch, sizeof *lines);
    sh_shard_batch *b = NULL;
    int code = SH_EXIT_OK;
    if (!infobuf || !lines || sh_fp_new(&fc, &fp, &e)) {
        fprintf(stderr, "soundhash index add: %s\n", e.msg[0] ? e.msg : "out of memory");
        code = SH_EXIT_RUNTIME;
        goto out;
    }
    size_t nlines = 0;
    for (size_t i = 0; i < files->n; i++) {
        progress(c, i, files->n, files->v[i]);
        if (!b && sh_shard_batch_begin(s, 0, &b, &e)) {
            fprintf(stderr, "soundhash index add: %s\n", sh_err_text(&e));
            code = SH_EXIT_RUNTIME;
            break;
        }
        if (add_one(s, b, c, files->v[i], fp, &ao, lines, nlines, infobuf, infocap) == 0)
            nlines++;
        else
            code = SH_EXIT_RUNTIME;
        if (nlines == (size_t)c->batch && commit_batch(c, &b, lines, &nlines))
            code = SH_EXIT_RUNTIME;
    }
    if (b && commit_batch(c, &b, lines, &nlines))
        code = SH_EXIT_RUNTIME;
    progress(c, files->n, files->n, "done");
out:
    sh_shard_batch_abort(b);
    free(lines);
    free(infobuf);
    sh_fp_free(fp);
    sh_shard_free(s);
    /* After the shard is closed: a repack needs no other handle open, ours included. */
    if (c->compact && run_compact(c, "index add --compact") != SH_EXIT_OK)
        code = SH_EXIT_RUNTIME;
    return code;
}

static int run_delete(const index_cfg *c, const sh_strlist *ids)
{
    sh_shard *s = NULL;
    int orc = open_shard(c, true, false, false, &s);
    if (orc)
        return open_exit_code(orc);
    sh_err e = {0};
    sh_shard_batch *b = NULL;
    size_t infocap = SH_SHARD_ID_MAX + SH_SHARD_TENANT_MAX + SH_SHARD_META_MAX + 3;
    char *infobuf = malloc(infocap);
    bool *found = calloc(ids->n, sizeof *found);
    int code = SH_EXIT_OK;
    if (!infobuf || !found || sh_shard_batch_begin(s, 0, &b, &e)) {
        fprintf(stderr, "soundhash index delete: %s\n", e.msg[0] ? e.msg : "out of memory");
        code = SH_EXIT_RUNTIME;
        goto out;
    }
    for (size_t i = 0; i < ids->n; i++) {
        sh_shard_info info;
        found[i] = sh_shard_info_by_id(s, ids->v[i], &info, infobuf, infocap, NULL) == 0;
        if (!found[i]) {
            fprintf(stderr, "soundhash index delete: %s: not in the index\n", ids->v[i]);
            code = SH_EXIT_RUNTIME;
        } else if (sh_shard_batch_delete(b, ids->v[i], SH_SHARD_VERSION_NEXT, &e)) {
            fprintf(stderr, "soundhash index delete: %s: %s\n", ids->v[i], sh_err_text(&e));
            found[i] = false;
            code = SH_EXIT_RUNTIME;
        }
    }
    int rc = sh_shard_batch_commit(b, NULL, &e);
    b = NULL;
    /* Remove the deleted postings and repack now rather than over later commits. */
    if (!rc)
        rc = sh_shard_compact(s, &e);
    if (rc) {
        fprintf(stderr, "soundhash index delete: %s\n", sh_err_text(&e));
        code = SH_EXIT_RUNTIME;
        goto out;
    }
    for (size_t i = 0; i < ids->n; i++)
        print_json(json_pack("{s:s, s:b}", "track_id", ids->v[i], "deleted", found[i]));
out:
    sh_shard_batch_abort(b);
    free(found);
    free(infobuf);
    sh_shard_free(s);
    return code;
}

static int run_stats(const index_cfg *c)
{
    sh_shard *s = NULL;
    int orc = open_shard(c, true, true, false, &s);
    if (orc)
        return open_exit_code(orc);
    sh_err e = {0};
    sh_shard_stats st;
    int rc = sh_shard_stats_get(s, &st, &e);
    sh_shard_free(s);
    if (rc) {
        fprintf(stderr, "soundhash index stats: %s\n", sh_err_text(&e));
        return SH_EXIT_RUNTIME;
    }
    double hours = st.audio_s / 3600.0;
    json_t *o = json_pack(
        "{s:s, s:i, s:I, s:I, s:I, s:I, s:I, s:I, s:f, s:f, s:f, s:f}", "index", c->index,
        "fp_version", st.fp_version, "tracks", (json_int_t)st.tracks, "postings",
        (json_int_t)st.postings, "dead_postings", (json_int_t)st.dead_postings, "ranges",
        (json_int_t)st.ranges, "file_bytes", (json_int_t)st.file_bytes, "used_bytes",
        (json_int_t)st.used_bytes, "audio_s", st.audio_s, "bytes_per_posting", st.bytes_per_posting,
        "postings_per_s", st.audio_s > 0 ? st.postings / st.audio_s : 0.0, "mb_per_audio_hour",
        hours > 0 ? st.file_bytes / 1e6 / hours : 0.0);
    return print_json(o) ? SH_EXIT_RUNTIME : SH_EXIT_OK;
}

static void overview(FILE *out)
{
    fprintf(out, "usage: soundhash index <add|delete|stats|compact> --index DIR [options] [args]\n\n"
                 "  add     FILE...  fingerprint audio files and add them (replacing same ids)\n"
                 "  delete  ID...    delete tracks by id\n"
                 "  stats            print the index's counts and sizes (JSON)\n"
                 "  compact          repack the index and shrink its file (JSON)\n\n"
                 "`soundhash index <verb> --help` lists the options of each.\n");
}

enum { V_ADD = 1, V_DEL = 2, V_STATS = 4, V_COMPACT = 8, V_ALL = 15 };

/* What each verb takes and says in --help. */
typedef struct verb_def {
    const char *name;
    unsigned bit;
    const char *usage;
    const char *summary;
    const char *examples;
} verb_def;

static const verb_def verbs[] = {
    {"add", V_ADD, "--index DIR [options] FILE...",
     "Fingerprints each audio file and adds it to the shard index in DIR (created if missing), "
     "replacing a track of the same id. Prints one JSON line per file: "
     "{\"file\",\"track_id\",\"status\":\"added\"|\"replaced\",\"hashes\",\"duration_s\"}. "
     "--meta takes key=value or a JSON object of scalar values (repeatable; as `ingest publish`); "
     "the metadata is stored as one JSON object. Exit 1 if any FILE failed (each is named on "
     "stderr).",
     "soundhash index add --index idx music/*.flac\n"
     "soundhash index add --index idx --id t42 --meta artist=X --meta '{\"year\":1999}' a.ogg"},
    {"delete", V_DEL, "--index DIR ID...",
     "Deletes tracks by id and compacts the index. Prints one JSON line per id: "
     "{\"track_id\",\"deleted\":true|false}. Exit 1 if an id is not in the index.",
     "soundhash index delete --index idx t42 t43"},
    {"stats", V_STATS, "--index DIR",
     "Prints the index's counts and sizes as one JSON object: index, fp_version, tracks, postings, "
     "dead_postings, ranges, file_bytes, used_bytes, audio_s, bytes_per_posting, postings_per_s, "
     "mb_per_audio_hour.",
     "soundhash index stats --index idx"},
    {"compact", V_COMPACT, "--index DIR [--wait S]",
     "Repacks the index and gives the freed space back (the file shrinks): compacts, writes a "
     "compacted copy next to it and renames it over the data file. Refused (exit 1) while another "
     "process has the index open, reader or writer, unless it closes within --wait seconds; "
     "processes opening the index meanwhile wait until the compact is done. Prints one JSON "
     "object: index, tracks, postings, ranges, bytes_before, bytes_after, audio_s, "
     "bytes_per_posting(_before), mb_per_audio_hour(_before), waited_ms (waiting for other "
     "processes), elapsed_ms (the compaction).",
     "soundhash index compact --index idx\n"
     "soundhash index compact --index idx --wait 30"},
};

/* Copies the options `bit` takes from `all` into `out` (terminated). */
static void select_opts(const sh_opt *all, const unsigned *takes, unsigned bit, sh_opt *out)
{
    size_t n = 0;
    for (size_t i = 0; all[i].name; i++) {
        if (takes[i] & bit)
            out[n++] = all[i];
    }
    memset(&out[n], 0, sizeof out[n]);
}

/* Checks what the option parser cannot (positional arguments, value ranges); returns -1 to go
 * on, or SH_EXIT_USAGE after saying what is wrong. */
static int check_args(const index_cfg *c, const sh_cmd_spec *spec, unsigned bit)
{
    struct stat st;
    if ((bit & (V_ADD | V_DEL)) && spec->args.n == 0)
        fprintf(stderr, "soundhash %s: no %s given (see --help)\n", spec->name,
                bit == V_ADD ? "FILE" : "ID");
    else if ((bit & (V_STATS | V_COMPACT)) && spec->args.n)
        fprintf(stderr, "soundhash %s: unexpected argument '%s'\n", spec->name, spec->args.v[0]);
    else if (!(c->wait_s >= 0 && c->wait_s <= 86400))
        fprintf(stderr, "soundhash %s: --wait must be 0..86400 seconds\n", spec->name);
    else if (bit == V_ADD && !(c->max_duration_s > 0))
        fprintf(stderr, "soundhash %s: --max-duration must be > 0\n", spec->name);
    else if (stat(c->index, &st) == 0 && !S_ISDIR(st.st_mode))
        fprintf(stderr, "soundhash %s: --index %s: not a directory (an index is a directory)\n",
                spec->name, c->index);
    else
        return -1;
    return SH_EXIT_USAGE;
}

/* --meta entries → one JSON object text in c->meta. Returns -1 or an exit code. */
static int build_meta(index_cfg *c, const char *cmd)
{
    if (!c->meta_list.n)
        return -1;
    sh_strlist kv = {0};
    sh_err e = {0};
    int rc = sh_opt_meta_pairs(&c->meta_list, &kv, &e);
    json_t *o = rc ? NULL : json_object();
    for (size_t i = 0; o && i + 1 < kv.n; i += 2) {
        if (json_object_set_new(o, kv.v[i], json_string(kv.v[i + 1])))
            rc = sh_err_set(&e, SH_EUSAGE, "--meta: '%.64s' or its value is not valid UTF-8",
                            kv.v[i]);
    }
    sh_strlist_clear(&kv);
    if (!rc && !o)
        rc = sh_err_set(&e, SH_ENOMEM, "out of memory");
    if (!rc && !(c->meta = json_dumps(o, JSON_COMPACT)))
        rc = sh_err_set(&e, SH_ENOMEM, "out of memory");
    json_decref(o);
    if (!rc && strlen(c->meta) > SH_SHARD_META_MAX)
        rc = sh_err_set(&e, SH_EUSAGE, "--meta: %zu bytes of JSON, over the %d-byte limit",
                        strlen(c->meta), SH_SHARD_META_MAX);
    if (!rc)
        return -1;
    fprintf(stderr, "soundhash %s: %s\n", cmd, sh_err_text(&e));
    return rc == SH_EUSAGE ? SH_EXIT_USAGE : SH_EXIT_RUNTIME;
}

int sh_cmd_index(int argc, char **argv)
{
    if (argc < 2 || !strcmp(argv[1], "--help") || !strcmp(argv[1], "-h")) {
        overview(argc < 2 ? stderr : stdout);
        return argc < 2 ? SH_EXIT_USAGE : SH_EXIT_OK;
    }
    const verb_def *v = NULL;
    for (size_t i = 0; i < sizeof verbs / sizeof verbs[0]; i++) {
        if (!strcmp(argv[1], verbs[i].name))
            v = &verbs[i];
    }
    if (!v) {
        fprintf(stderr, "soundhash index: unknown verb '%s'\n", argv[1]);
        overview(stderr);
        return SH_EXIT_USAGE;
    }
    index_cfg c = {0};
    bool tty = isatty(STDERR_FILENO);
    const sh_opt all[] = {
        {"index", 'i', SH_OPT_STR, &c.index, NULL, "index directory", SH_OPT_REQUIRED, 0, 0},
        {"id", 0, SH_OPT_STR, &c.id, NULL, "track id (default: file name without extension)", 0,
         0, 0},
        {"tenant", 0, SH_OPT_STR, &c.tenant, NULL, "tenant recorded with the tracks", 0, 0, 0},
        {"meta", 0, SH_OPT_LIST, &c.meta_list, NULL,
         "metadata: key=value or a JSON object (repeatable)", 0, 0, 0},
        {"batch", 0, SH_OPT_INT, &c.batch, "64", "files per transaction", 0, 1, 100000},
        {"max-duration", 0, SH_OPT_DOUBLE, &c.max_duration_s, "10800",
         "reject audio longer than this many seconds", 0, 0, 0},
        {"map-size", 0, SH_OPT_SIZE, &c.map_size, "64M", "initial LMDB map size (grows when full)",
         0, 0, 0},
        {"progress", 0, SH_OPT_BOOL, &c.progress, tty ? "true" : "false",
         "progress bar on stderr (on by default when stderr is a terminal)", 0, 0, 0},
        {"compact", 0, SH_OPT_BOOL, &c.compact, "false",
         "compact the index once the files are added (as `index compact`)", 0, 0, 0},
        {"wait", 0, SH_OPT_DOUBLE, &c.wait_s, "0",
         "seconds to wait for other processes to close the index before compacting", 0, 0, 0},
        {NULL, 0, 0, NULL, NULL, NULL, 0, 0, 0},
    };
    static const unsigned takes[] = {V_ALL, V_ADD, V_ADD, V_ADD, V_ADD, V_ADD,
                                     V_ADD | V_DEL | V_COMPACT, V_ADD, V_ADD, V_ADD | V_COMPACT};
    _Static_assert(sizeof takes / sizeof takes[0] + 1 == sizeof all / sizeof all[0],
                   "one verb mask per option");
    sh_opt opts[sizeof all / sizeof all[0]];
    select_opts(all, takes, v->bit, opts);
    char name[32];
    snprintf(name, sizeof name, "index %s", v->name);
    sh_cmd_spec spec = {
        .name = name, .usage = v->usage, .summary = v->summary, .examples = v->examples,
        .opts = opts};
    sh_err err = {0};
    int rc = sh_opt_parse(&spec, argc - 1, argv + 1, &err);
    int code = sh_opt_exit_code(&spec, rc, &err);
    if (code < 0)
        code = check_args(&c, &spec, v->bit);
    if (code < 0)
        code = build_meta(&c, spec.name);
    if (code < 0)
        code = v->bit == V_ADD   ? run_add(&c, &spec.args)
               : v->bit == V_DEL ? run_delete(&c, &spec.args)
               : v->bit == V_COMPACT ? run_compact(&c, spec.name)
                                     : run_stats(&c);
    free(c.meta);
    sh_opt_free(&spec);
    return code;
}
