/* cmd_ingest.c — `soundhash ingest publish | delete | reindex`.
 *
 * Usage errors exit 2 before anything is sent: bad options (a -X librdkafka refuses, a --meta that
 * is neither key=value nor a JSON object), a --media-root or --manifest that cannot be opened. Bad
 * inputs (a FILE outside the media root, a manifest row, a track id) are all listed, nothing is
 * published and the exit code is 1. */
#include "items.h"
#include "manifest.h"
#include "reindex.h"
#include "sh_cmds.h"
#include "sh_ingest.h"
#include "sh_kafka.h"
#include "sh_log.h"
#include "sh_media.h"
#include "sh_opt.h"
#include "sh_primary.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

enum { MANIFEST_FILE_MAX = 256 * 1024 * 1024 }; /* bytes of a manifest file read into memory */

/* Options every producing subcommand shares. */
typedef struct common_conf {
    char *brokers;
    sh_strlist props;
    double timeout_s;          /* bounded wait for the cluster */
    double delivery_timeout_s; /* per event, then the flush */
    char *topic;
    char *tenant;
} common_conf;

#define COMMON_OPTS(c)                                                                            \
    {"brokers", 'b', SH_OPT_STR, &(c).brokers, NULL, "Kafka bootstrap servers host:port,...",    \
     SH_OPT_REQUIRED, 0, 0},                                                                      \
        {"property", 'X', SH_OPT_LIST, &(c).props, NULL,                                          \
         "librdkafka property key=value (repeatable), e.g. -X linger.ms=20", 0, 0, 0},            \
        {"timeout", 0, SH_OPT_DOUBLE, &(c).timeout_s, "10",                                       \
         "seconds to wait for a broker to answer before giving up", 0, 0, 0},                     \
        {"delivery-timeout", 0, SH_OPT_DOUBLE, &(c).delivery_timeout_s, "30",                     \
         "seconds librdkafka retries one event before reporting it failed", 0, 0, 0},             \
        {"topic", 0, SH_OPT_STR, &(c).topic, NULL,                                                \
         "override the topic (default: soundhash.audio.events; reindex: soundhash.audio.reindex)",\
         0, 0, 0},                                                                                \
    {                                                                                             \
        "tenant", 0, SH_OPT_STR, &(c).tenant, "default", "tenant of the events", 0, 0, 0          \
    }

static int check_common(const common_conf *c, sh_err *e)
{
    if (!(c->timeout_s > 0 && c->timeout_s <= 3600))
        return sh_err_set(e, SH_EUSAGE, "--timeout must be in (0, 3600] seconds");
    if (!(c->delivery_timeout_s > 0 && c->delivery_timeout_s <= 3600))
        return sh_err_set(e, SH_EUSAGE, "--delivery-timeout must be in (0, 3600] seconds");
    return 0;
}

/* Connects (bounded wait). SH_EUSAGE/SH_EINVAL mean bad -X: the caller maps them to exit 2. */
static int connect_publisher(const common_conf *c, sh_ingest **p, sh_err *e)
{
    sh_ingest_config cfg;
    sh_ingest_config_default(&cfg);
    cfg.brokers = c->brokers;
    cfg.props = &c->props;
    cfg.topic = c->topic;
    cfg.connect_timeout_ms = (int)(c->timeout_s * 1000.0);
    cfg.delivery_timeout_ms = (int)(c->delivery_timeout_s * 1000.0);
    return sh_ingest_new(&cfg, p, e);
}

static int exit_for(int rc)
{
    if (rc == 0)
        return SH_EXIT_OK;
    return rc == SH_EUSAGE ? SH_EXIT_USAGE : SH_EXIT_RUNTIME;
}

/* Connects and publishes a checked batch. */
static int publish_batch(const char *cmd, const common_conf *c, const ingest_batch *b,
                         const ingest_batch_opts *o)
{
    sh_err e = {0};
    sh_ingest *p = NULL;
    int rc = connect_publisher(c, &p, &e);
    if (rc == SH_EINVAL)
        rc = SH_EUSAGE; /* a property librdkafka refused */
    if (!rc) {
        ingest_publish_stats st;
        int flush_ms = (int)(c->delivery_timeout_s * 1000.0) + 5000;
        rc = ingest_batch_publish(b, o, p, flush_ms, &st, &e);
        sh_log(SH_LOG_INFO, "ingest_done", "cmd=%s events=%zu ok=%zu failed=%zu", cmd, b->n,
               st.ok, st.failed);
    }
    sh_ingest_free(p);
    if (rc)
        fprintf(stderr, "soundhash ingest %s: %s\n", cmd, sh_err_text(&e));
    return exit_for(rc);
}

/* ---- publish ---------------------------------------------------------------------------------- */

typedef struct publish_conf {
    common_conf c;
    sh_strlist meta;       /* --meta entries as given */
    sh_strlist meta_pairs; /* key, value, ... (sh_opt_meta_pairs) */
    char *media_root;
    char *manifest;
    char *track_id;
    bool inline_audio;
    size_t inline_max;
    long priority;
} publish_conf;

static int read_manifest(const char *path, ingest_manifest *m, sh_err *e)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return sh_err_set(e, SH_EIO, "manifest %s: %s", path, strerror(errno));
    struct stat st;
    if (fstat(fd, &st) != 0 || S_ISDIR(st.st_mode)) {
        close(fd);
        return sh_err_set(e, SH_EIO, "manifest %s: not a file", path);
    }
    uint8_t *buf = NULL;
    size_t len = 0;
    int rc = sh_read_fd(fd, MANIFEST_FILE_MAX, &buf, &len, e);
    close(fd);
    if (rc)
        return sh_err_wrap(e, rc, "manifest %s", path);
    rc = ingest_manifest_parse((const char *)buf, len, m, e);
    free(buf);
    for (size_t i = 0; i < m->errors.n; i++)
        fprintf(stderr, "soundhash ingest publish: %s: %s\n", path, m->errors.v[i]);
    if (m->bad_lines > m->errors.n)
        fprintf(stderr, "soundhash ingest publish: %s: ... and %zu more bad lines\n", path,
                m->bad_lines - m->errors.n);
    if (!rc && m->n == 0) /* most likely the wrong file: say so rather than succeed silently */
        rc = sh_err_set(e, SH_EFORMAT, "no rows");
    return rc ? sh_err_wrap(e, rc, "manifest %s", path) : 0;
}

/* Resolves every input into the batch; returns 0 or an exit code. */
static int build_publish_batch(const publish_conf *pc, const sh_cmd_spec *spec,
                               ingest_batch_opts *o, ingest_batch *b)
{
    sh_err e = {0};
    size_t n_args = spec->args.n;
    if (!n_args && !pc->manifest)
        return sh_err_set(&e, SH_EUSAGE, "nothing to publish: give FILE|URL arguments or "
                                         "--manifest"),
               sh_opt_exit_code(spec, SH_EUSAGE, &e);
    if (pc->track_id && (n_args != 1 || pc->manifest))
        return sh_err_set(&e, SH_EUSAGE, "--track-id needs exactly one FILE|URL (use a manifest "
                                         "for many)"),
               sh_opt_exit_code(spec, SH_EUSAGE, &e);
    if (pc->media_root && *pc->media_root) {
        int rc = sh_media_new(pc->media_root, 0, &o->media, &e);
        if (rc)
            return fprintf(stderr, "soundhash ingest publish: --media-root: %s\n", sh_err_text(&e)),
                   SH_EXIT_USAGE;
    }
    if (pc->manifest && access(pc->manifest, R_OK) != 0)
        return fprintf(stderr, "soundhash ingest publish: --manifest %s: %s\n", pc->manifest,
                       strerror(errno)),
               SH_EXIT_USAGE;
    int rc = 0;
    for (size_t i = 0; !rc && i < n_args; i++)
        rc = ingest_batch_add_ref(b, o, spec->args.v[i], pc->track_id);
    if (!rc && pc->manifest) {
        ingest_manifest m = {0};
        rc = read_manifest(pc->manifest, &m, &e);
        if (rc) {
            fprintf(stderr, "soundhash ingest publish: %s; nothing published\n", sh_err_text(&e));
            ingest_manifest_free(&m);
            return SH_EXIT_RUNTIME;
        }
        rc = ingest_batch_add_manifest(b, o, &m);
        ingest_manifest_free(&m);
    }
    if (rc)
        return fprintf(stderr, "soundhash ingest publish: out of memory\n"), SH_EXIT_RUNTIME;
    ingest_batch_validate(b, o); /* also after resolution failures: list every problem at once */
    if (b->bad) {
        fprintf(stderr, "soundhash ingest publish: %zu bad input(s); nothing published\n", b->bad);
        return SH_EXIT_RUNTIME;
    }
    return 0;
}

static int cmd_publish(int argc, char **argv)
{
    publish_conf pc = {0};
    sh_opt opts[] = {
        COMMON_OPTS(pc.c),
        {"meta", 0, SH_OPT_LIST, &pc.meta, NULL, "metadata key=value for every event (repeatable)",
         0, 0, 0},
        {"media-root", 0, SH_OPT_STR, &pc.media_root, NULL,
         "directory the workers read audio from; local files must lie under it", 0, 0, 0},
        {"manifest", 0, SH_OPT_STR, &pc.manifest, NULL,
         "CSV (header: track_id,uri[,tenant][,metadata]) or JSON lines; paths relative to the "
         "media root",
         0, 0, 0},
        {"track-id", 0, SH_OPT_STR, &pc.track_id, NULL,
         "track id of the single FILE|URL (default: its file name without extension)", 0, 0, 0},
        {"inline", 0, SH_OPT_BOOL, &pc.inline_audio, "false",
         "embed the audio bytes in the event (short clips only)", 0, 0, 0},
        {"inline-max", 0, SH_OPT_SIZE, &pc.inline_max, "900K", "cap on inline audio bytes", 0, 0,
         0},
        {"priority", 0, SH_OPT_INT, &pc.priority, "0", "event priority (higher = more urgent)", 0,
         -1000, 1000},
        {0},
    };
    sh_cmd_spec spec = {
        .name = "ingest publish",
        .usage = "--brokers B [--tenant T] [--meta k=v]... [--media-root DIR] [--manifest F] "
                 "[--inline] [FILE|URL]...",
        .summary = "Publishes one audio event per FILE (a file:// URI under --media-root, with its "
                   "sha256 and size), URL (http/https, as is) or manifest row, keyed by track id, "
                   "with an idempotent producer (acks=all). Every input is checked before "
                   "anything is sent: one bad input and nothing is published. --meta takes "
                   "key=value or a JSON object of scalar values (repeatable; as `index add`). "
                   "Prints one JSON line per delivered event {track_id, event_id, topic, "
                   "partition, offset}; exits 1 naming every event that failed.",
        .examples = "soundhash ingest publish --brokers B --media-root /srv/media /srv/media/a.flac\n"
                    "soundhash ingest publish --brokers B --media-root /srv/media --manifest "
                    "uploads.csv --meta '{\"source\":\"backfill\"}'",
        .opts = opts};
    sh_err e = {0};
    int rc = sh_opt_parse(&spec, argc, argv, &e);
    int code = sh_opt_exit_code(&spec, rc, &e);
    if (code < 0 && check_common(&pc.c, &e))
        code = sh_opt_exit_code(&spec, SH_EUSAGE, &e);
    if (code < 0 && (rc = sh_opt_meta_pairs(&pc.meta, &pc.meta_pairs, &e)))
        code = sh_opt_exit_code(&spec, rc, &e);
    ingest_batch_opts o = {.op = SH_OP_UPSERT, .tenant = pc.c.tenant, .meta = &pc.meta_pairs,
                           .inline_audio = pc.inline_audio, .priority = (int32_t)pc.priority};
    sh_schema_limits_default(&o.lim);
    if (pc.inline_max)
        o.lim.inline_audio_max = pc.inline_max;
    ingest_batch b = {0};
    if (code < 0) {
        code = build_publish_batch(&pc, &spec, &o, &b);
        if (code == 0)
            code = publish_batch("publish", &pc.c, &b, &o);
    }
    ingest_batch_free(&b);
    sh_media_free(o.media);
    sh_strlist_clear(&pc.meta_pairs);
    sh_opt_free(&spec);
    return code;
}

/* ---- delete ----------------------------------------------------------------------------------- */

/* With a --dsn, says which ids the primary does not hold (or holds only as a tombstone): their
 * delete events change nothing but a tombstone. Publishing goes on — a tombstone also stops an
 * older upload still in flight — but nobody is left believing a typo deleted something. The check
 * is advice: when the database cannot be asked (SOUNDHASH_DSN may come from a shared environment)
 * that is one warning and the deletes go out unchecked. */
static void warn_unknown_ids(const char *dsn, const sh_strlist *ids, size_t *unknown)
{
    sh_primary_config pc;
    sh_primary_config_default(&pc);
    pc.dsn = dsn;
    pc.application_name = "soundhash-ingest-delete";
    sh_primary *db = NULL;
    sh_err e = {0};
    int rc = sh_primary_new(&pc, &db, &e);
    for (size_t i = 0; !rc && i < ids->n; i++) {
        sh_track t = {0};
        int r = sh_primary_get_track(db, ids->v[i], 0, &t, &e);
        if (r == SH_ENOTFOUND || (!r && t.deleted)) {
            fprintf(stderr, "soundhash ingest delete: warning: track '%s' %s; its delete event "
                            "only records a tombstone\n", ids->v[i],
                    r ? "is not in the primary" : "is already deleted");
            (*unknown)++;
        } else if (r) {
            rc = r;
        }
        sh_track_clear(&t);
    }
    sh_primary_free(db);
    if (!rc)
        return;
    for (char *p = e.msg; *p; p++) /* libpq's messages span lines: keep the warning on one */
        if ((unsigned char)*p < 0x20)
            *p = ' ';
    fprintf(stderr, "soundhash ingest delete: warning: cannot check the ids against the primary "
                    "(--dsn: %s); publishing them unchecked\n", sh_err_text(&e));
}

static int cmd_delete(int argc, char **argv)
{
    common_conf c = {0};
    sh_strlist ids = {0};
    char *dsn = NULL;
    sh_opt opts[] = {
        COMMON_OPTS(c),
        {"track-id", 0, SH_OPT_LIST, &ids, NULL, "track to erase everywhere (repeatable)", 0, 0,
         0},
        {"dsn", 0, SH_OPT_STR, &dsn, NULL,
         "primary PostgreSQL: warn about ids it does not hold (advice only: without it, or when "
         "it cannot be reached, the ids go out unchecked)", SH_OPT_DSN, 0, 0},
        {0},
    };
    sh_cmd_spec spec = {.name = "ingest delete",
                        .usage = "--brokers B --track-id ID [--track-id ID]... [--dsn DSN]",
                        .summary = "Publishes a delete event per track id: workers erase the "
                                   "track from the primary and the deletion reaches every edge. "
                                   "Without --dsn the ids cannot be checked: an unknown id is "
                                   "published too and becomes a tombstone; with --dsn each id the "
                                   "primary does not hold (or already deleted) is warned about "
                                   "first. Prints one JSON line per delivered event; exits 1 "
                                   "naming every event that failed.",
                        .examples = "soundhash ingest delete --brokers B --track-id t42\n"
                                    "soundhash ingest delete --brokers B --dsn \"$DSN\" "
                                    "--track-id t42 --track-id t43",
                        .opts = opts};
    sh_err e = {0};
    int rc = sh_opt_parse(&spec, argc, argv, &e);
    int code = sh_opt_exit_code(&spec, rc, &e);
    if (code < 0 && check_common(&c, &e))
        code = sh_opt_exit_code(&spec, SH_EUSAGE, &e);
    if (code < 0 && (ids.n == 0 || spec.args.n > 0)) {
        sh_err_set(&e, SH_EUSAGE, "give the tracks as --track-id ID (repeatable)");
        code = sh_opt_exit_code(&spec, SH_EUSAGE, &e);
    }
    if (code < 0 && dsn && sh_primary_dsn_check(dsn, &e))
        code = sh_opt_exit_code(&spec, sh_err_wrap(&e, SH_EUSAGE, "--dsn"), &e);
    ingest_batch_opts o = {.op = SH_OP_DELETE, .tenant = c.tenant};
    sh_schema_limits_default(&o.lim);
    ingest_batch b = {0};
    for (size_t i = 0; code < 0 && i < ids.n; i++) {
        if (ingest_batch_add_delete(&b, ids.v[i]))
            code = SH_EXIT_RUNTIME;
    }
    if (code < 0)
        ingest_batch_validate(&b, &o);
    if (code < 0 && b.bad) {
        fprintf(stderr, "soundhash ingest delete: %zu bad track id(s); nothing published\n", b.bad);
        code = SH_EXIT_RUNTIME;
    }
    size_t unknown = 0;
    if (code < 0 && dsn)
        warn_unknown_ids(dsn, &ids, &unknown);
    if (code < 0)
        code = publish_batch("delete", &c, &b, &o);
    if (unknown && code == SH_EXIT_OK)
        fprintf(stderr, "soundhash ingest delete: %zu of %zu id(s) were not in the primary: only "
                        "tombstones were recorded for them\n", unknown, ids.n);
    ingest_batch_free(&b);
    sh_strlist_clear(&ids);
    sh_opt_free(&spec);
    return code;
}

/* ---- dispatch --------------------------------------------------------------------------------- */

static void usage(FILE *out)
{
    fprintf(out, "usage: soundhash ingest <publish|delete|reindex> [options]\n\n"
                 "  publish   publish audio events for files, URLs or a manifest\n"
                 "  delete    publish delete events for track ids\n"
                 "  reindex   re-fingerprint tracks of the primary database at a controlled rate\n\n"
                 "`soundhash ingest <sub> --help` describes its options.\n");
}

int sh_cmd_ingest(int argc, char **argv)
{
    if (argc < 2) {
        usage(stderr);
        return SH_EXIT_USAGE;
    }
    const char *sub = argv[1];
    if (!strcmp(sub, "publish"))
        return cmd_publish(argc - 1, argv + 1);
    if (!strcmp(sub, "delete"))
        return cmd_delete(argc - 1, argv + 1);
    if (!strcmp(sub, "reindex"))
        return ingest_cmd_reindex(argc - 1, argv + 1);
    if (!strcmp(sub, "--help") || !strcmp(sub, "-h") || !strcmp(sub, "help")) {
        usage(stdout);
        return SH_EXIT_OK;
    }
    fprintf(stderr, "soundhash ingest: unknown subcommand '%s'\n", sub);
    usage(stderr);
    return SH_EXIT_USAGE;
}
