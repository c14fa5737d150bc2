/* cmd_replicator.c — `soundhash replicator [snapshot|prune]`: options, start-up, tear-down.
 *
 *   soundhash replicator --dsn DSN --brokers B [--http ADDR] [--region NAME] [-X k=v]
 *   soundhash replicator snapshot --dsn DSN --shard N --out FILE [--shards N]
 *   soundhash replicator prune --dsn DSN --brokers B [--tombstone-days D]
 */
#include "replicator.h"

#include "sh_clock.h"
#include "sh_primary.h"
#include "sh_cmds.h"
#include "sh_kafka.h"
#include "sh_kclient.h"
#include "sh_log.h"
#include "sh_shardmap.h"
#include "sh_signal.h"
#include "sh_token.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static const char *const SUMMARY =
    "Streams every committed change of the primary's change log, in commit order and without "
    "gaps, as zstd-compressed index deltas to Kafka (topic soundhash.index.deltas, partition = "
    "shard = FNV-1a-64(track id) mod partitions). Each op carries its change-log seq; each delta "
    "covers (prev_sequence, sequence] of its shard. Progress is read back from the topic at "
    "start, so a restart after a crash at any instant loses nothing and a replay is harmless. "
    "Needs SELECT and LISTEN on the primary only. SIGTERM/SIGINT: finishes the batch in flight "
    "and exits 0. /health, /metrics and GET /v1/snapshots/{shard} on --http.";

static const sh_opt RUN_OPTS[] = {
    {"dsn", 0, SH_OPT_STR, NULL, NULL,
     "primary PostgreSQL connection string (password: env SOUNDHASH_DB_PASSWORD)",
     SH_OPT_REQUIRED | SH_OPT_DSN, 0, 0},
    {"brokers", 'b', SH_OPT_STR, NULL, NULL, "Kafka bootstrap servers host:port,...",
     SH_OPT_REQUIRED, 0, 0},
    {"http", 0, SH_OPT_STR, NULL, "", "serve /health, /metrics, /v1/snapshots on HOST:PORT", 0,
     0, 0},
    {"region", 0, SH_OPT_STR, NULL, "", "region name written into every delta (<= 64 bytes)", 0,
     0, 0},
    {"topic", 0, SH_OPT_STR, NULL, SH_TOPIC_INDEX_DELTAS, "index-delta topic", 0, 0, 0},
    {"property", 'X', SH_OPT_LIST, NULL, NULL, "librdkafka property key=value (repeatable)", 0,
     0, 0},
    {"batch-ms", 0, SH_OPT_INT, NULL, "50", "longest time one batch keeps reading changes", 0, 1,
     60000},
    {"batch-bytes", 0, SH_OPT_SIZE, NULL, "512K", "posting-blob bytes that close a batch", 0, 0,
     0},
    {"poll-ms", 0, SH_OPT_INT, NULL, "1000", "read the change log at least this often", 0, 10,
     600000},
    {"heartbeat-ms", 0, SH_OPT_INT, NULL, "1000", "an idle shard gets an empty delta this often",
     0, 10, 3600000},
    {"lag-threshold-ms", 0, SH_OPT_INT, NULL, "5000",
     "/health fails when an unpublished change is older than this", 0, 1, 86400000},
    {"connect-timeout", 0, SH_OPT_INT, NULL, "30",
     "seconds to wait for Kafka and PostgreSQL at start, then exit 1", 0, 1, 3600},
    {"zstd-level", 0, SH_OPT_INT, NULL, "3", "zstd level of the payloads", 0, 1, 19},
    {"max-delta-bytes", 0, SH_OPT_SIZE, NULL, "900K",
     "a delta's payload stays under this; keep it below the topic's max.message.bytes", 0, 0, 0},
    {"api-token-file", 0, SH_OPT_STR, NULL, "",
     "file holding the bearer token /v1/snapshots asks for (else env SOUNDHASH_SNAPSHOT_TOKEN; "
     "none: open)", 0, 0, 0},
    {NULL, 0, 0, NULL, NULL, NULL, 0, 0, 0},
};
#define N_RUN_OPTS (sizeof RUN_OPTS / sizeof RUN_OPTS[0])

static void init_run_opts(rp_config *c, sh_opt *opts, sh_cmd_spec *spec)
{
    void *targets[] = {&c->dsn,          &c->brokers,       &c->http,
                       &c->region,       &c->topic,         &c->kafka_props,
                       &c->batch_ms,     &c->batch_bytes,   &c->poll_ms,
                       &c->heartbeat_ms, &c->lag_threshold_ms, &c->connect_timeout_s,
                       &c->zstd_level,   &c->max_delta_bytes, &c->token_file};
    _Static_assert(sizeof targets / sizeof targets[0] == N_RUN_OPTS - 1, "one target per option");
    memcpy(opts, RUN_OPTS, sizeof RUN_OPTS);
    for (size_t i = 0; i < N_RUN_OPTS - 1; i++)
        opts[i].target = targets[i];
    spec->name = "replicator";
    spec->usage = "--dsn DSN --brokers B [--http ADDR] [--region NAME] [options]";
    spec->examples = "soundhash replicator --dsn \"$(cat /tmp/sh-pg/dsn)\" --brokers "
                     "127.0.0.1:9092 --http 127.0.0.1:9200 --region us-east\n"
                     "soundhash replicator snapshot --help; soundhash replicator prune --help";
    spec->summary = SUMMARY;
    spec->opts = opts;
}

/* Connects to the primary, waiting while it is merely down (bounded; `stop` may be NULL). */
static int db_connect(const char *dsn, const char *app, long timeout_s, sh_stop *stop,
                      sh_primary **out, sh_err *e)
{
    sh_primary_config pc;
    sh_primary_config_default(&pc);
    pc.dsn = dsn;
    pc.application_name = app;
    double deadline = sh_clock_mono_ms() + (double)timeout_s * 1000;
    for (;;) {
        int rc = sh_primary_new(&pc, out, e);
        if (rc != SH_ETRANSIENT)
            return rc;
        if (sh_clock_mono_ms() > deadline)
            return sh_err_wrap(e, SH_ETIMEOUT, "primary not reachable within %ld s", timeout_s);
        if (sh_clock_sleep_ms(250, stop ? sh_stop_requested_fn : NULL, stop))
            return sh_err_set(e, SH_ECANCELED, "interrupted while waiting for the primary");
    }
}

/* Producer up, cluster answering, topic present: its partition count is the shard count. */
static int kafka_start(rp *r, sh_err *e)
{
    int rc = rp_producer_new(r, e);
    if (rc)
        return rc;
    int tmo = (int)r->cfg.connect_timeout_s * 1000;
    rc = sh_kafka_wait_ready(r->producer, r->cfg.brokers, tmo, e);
    if (rc == 0)
        rc = sh_kafka_describe_topic(r->producer, r->cfg.topic, tmo, &r->nshards, e);
    if (rc == 0 && r->nshards <= 0)
        rc = sh_err_set(e, SH_ENOTFOUND,
                        "topic %s does not exist: create it (`soundhash broker topics --brokers B "
                        "--create`) with one partition per shard",
                        r->cfg.topic);
    if (rc == 0 && (unsigned)r->nshards > SH_SHARDS_MAX)
        rc = sh_err_set(e, SH_EUNSUPPORTED, "topic %s has %d partitions, over %u shards",
                        r->cfg.topic, r->nshards, SH_SHARDS_MAX);
    return rc;
}

/* A malformed --dsn is a usage error (SH_EUSAGE naming the flag); 0 when it parses. */
static int dsn_usage(const char *dsn, sh_err *e)
{
    int rc = sh_primary_dsn_check(dsn, e);
    return rc == SH_EINVAL ? sh_opt_usage_error(e, "--dsn") : rc;
}

/* What can be checked before connecting anywhere; every failure is a usage error (exit 2). */
static int check_config(const rp_config *c, sh_err *e)
{
    if (strlen(c->region) > SH_REGION_MAX)
        return sh_err_set(e, SH_EUSAGE, "--region: at most %d bytes", SH_REGION_MAX);
    if (!c->topic[0])
        return sh_err_set(e, SH_EUSAGE, "--topic: empty");
    if (c->max_delta_bytes < 4096 || c->max_delta_bytes > 64u << 20)
        return sh_err_set(e, SH_EUSAGE, "--max-delta-bytes: 4K to 64M");
    int rc = dsn_usage(c->dsn, e);
    return rc ? rc : sh_kafka_props_check(c->brokers, &c->kafka_props, e);
}

/* HTTP first, so that /health answers (503, "starting") while the primary and Kafka are awaited;
 * a malformed address is a usage error, a busy port a runtime one. */
static int http_first(rp *r, sh_err *e)
{
    int rc = rp_http_start(r, e);
    if (rc == SH_EINVAL)
        return sh_opt_usage_error(e, "--http");
    if (rc) {
        char why[SH_ERR_MSG_MAX];
        snprintf(why, sizeof why, "%s", sh_err_text(e));
        sh_err_set(e, rc, "--http: %s", why);
    }
    return rc;
}

/* The delta topic's tails, read at start by a fresh consumer. Right after a broker restart or a
 * leader election its metadata may not know a partition yet ("Local: Unknown partition", found by
 * the fault storm) or a leader may be missing: transient, so retried with backoff until
 * --connect-timeout, as recover() does later. Positions that cannot be right (SH_EINVAL,
 * SH_EFORMAT) are final. */
static int positions_first(rp *r, sh_err *e)
{
    int64_t end = (int64_t)sh_clock_mono_ms() + (int64_t)r->cfg.connect_timeout_s * 1000;
    for (int attempt = 0;; attempt++) {
        int rc = rp_positions_load(r, (int)r->cfg.connect_timeout_s * 1000, e);
        if (rc == 0 || rc == SH_EINVAL || rc == SH_EFORMAT || rc == SH_ENOMEM ||
            (int64_t)sh_clock_mono_ms() >= end)
            return rc;
        SH_WARN("positions_retry", "code=%s msg=%s", sh_err_name(rc), SH_Q(sh_err_text(e)));
        if (sh_clock_sleep_ms(sh_backoff_ms(200, 5000, attempt), sh_stop_requested_fn, r->stop))
            return SH_ECANCELED;
    }
}

static int start(rp *r, sh_err *e)
{
    int64_t epoch = 0;
    int rc = sh_registry_new_from_env(&r->reg, e);
    if (rc == 0 && rp_metrics_init(r))
        rc = sh_err_set(e, SH_ENOMEM, "metrics registry");
    if (rc == 0)
        rc = http_first(r, e);
    sh_schema_limits_default(&r->lim);
    if (rc == 0)
        rc = db_connect(r->cfg.dsn, "soundhash-replicator", r->cfg.connect_timeout_s, r->stop,
                        &r->db, e);
    if (rc == 0)
        rc = sh_primary_replication_get(r->db, &epoch, &r->epoch_start, e);
    r->epoch = epoch;
    if (rc == 0)
        rc = kafka_start(r, e);
    if (rc == 0 && !(r->shards = calloc((size_t)r->nshards, sizeof *r->shards)))
        rc = sh_err_set(e, SH_ENOMEM, "out of memory");
    if (rc == 0 && rp_metrics_shards(r))
        rc = sh_err_set(e, SH_ENOMEM, "metrics registry");
    if (rc == 0)
        rc = positions_first(r, e);
    atomic_store(&r->db_ok, rc == 0);
    atomic_store(&r->kafka_ok, rc == 0);
    atomic_store(&r->started, rc == 0);
    return rc;
}

static void teardown(rp *r)
{
    sh_http_free(r->http); /* first: its handlers read what is freed below */
    if (r->producer) {
        rd_kafka_flush(r->producer, 5000);
        rd_kafka_destroy(r->producer);
    }
    sh_primary_free(r->db);
    rp_metrics_free(r);
    free(r->shards);
    sh_registry_free(r->reg);
    free(r->token);
}

/* SOUNDHASH_TEST_KILL_AFTER_ACKS (see rp_config): read once here, logged loudly when set. */
static void test_hooks(rp_config *c)
{
    const char *v = getenv("SOUNDHASH_TEST_KILL_AFTER_ACKS");
    char *end = NULL;
    long n = v ? strtol(v, &end, 10) : 0;
    if (!v || end == v || *end || n <= 0 || n > 1000000)
        return;
    c->test_kill_after_acks = n;
    SH_WARN("test_hook", "SOUNDHASH_TEST_KILL_AFTER_ACKS=%ld: this process will SIGKILL itself "
            "after %ld acknowledged rounds (fault injection for tests only)", n, n);
}

static int cmd_run(int argc, char **argv)
{
    rp r;
    memset(&r, 0, sizeof r);
    sh_cmd_spec spec;
    memset(&spec, 0, sizeof spec);
    sh_opt opts[N_RUN_OPTS];
    init_run_opts(&r.cfg, opts, &spec);
    sh_err e = {0};
    int code = sh_opt_exit_code(&spec, sh_opt_parse(&spec, argc, argv, &e), &e);
    if (code < 0 && spec.args.n) {
        sh_err_set(&e, SH_EUSAGE, "unexpected argument '%s'", spec.args.v[0]);
        code = sh_opt_exit_code(&spec, SH_EUSAGE, &e);
    }
    if (code < 0 && (check_config(&r.cfg, &e) ||
                     sh_token_load(r.cfg.token_file, "--api-token-file",
                                   "SOUNDHASH_SNAPSHOT_TOKEN", &r.token, &e)))
        code = sh_opt_exit_code(&spec, SH_EUSAGE, &e);
    if (code >= 0) {
        sh_opt_free(&spec);
        return code;
    }
    test_hooks(&r.cfg);
    sh_stop stop;
    int rc = sh_stop_install(&stop, SH_STOP_IGNORE_SIGPIPE, &e);
    r.stop = &stop;
    if (rc == 0)
        rc = start(&r, &e);
    if (rc == 0) {
        SH_INFO("replicator_started", "epoch=%" PRId64 " shards=%d read_from=%" PRId64
                " region=%s", r.epoch, r.nshards, r.read_pos, r.cfg.region);
        rc = rp_run(&r, &e);
    } else if (rc == SH_ECANCELED) {
        rc = 0;
    }
    if (rc == SH_EUSAGE) {
        code = sh_opt_exit_code(&spec, SH_EUSAGE, &e);
    } else if (rc) {
        fprintf(stderr, "soundhash replicator: %s\n", sh_err_text(&e));
    }
    teardown(&r);
    sh_stop_uninstall(&stop);
    SH_INFO("replicator_stopped", "rc=%d", rc);
    sh_opt_free(&spec);
    return rc == SH_EUSAGE ? SH_EXIT_USAGE : rc ? SH_EXIT_RUNTIME : SH_EXIT_OK;
}

/* ---- snapshot ----------------------------------------------------------------------------- */

typedef struct snap_cfg {
    char *dsn;
    long shard;
    long shards;
    char *out;
} snap_cfg;

static int cmd_snapshot(int argc, char **argv)
{
    snap_cfg c;
    memset(&c, 0, sizeof c);
    sh_opt opts[] = {
        {"dsn", 0, SH_OPT_STR, &c.dsn, NULL, "primary PostgreSQL connection string",
         SH_OPT_REQUIRED | SH_OPT_DSN, 0, 0},
        {"shard", 0, SH_OPT_INT, &c.shard, NULL, "shard number", SH_OPT_REQUIRED, 0,
         SH_SHARDS_MAX - 1},
        {"shards", 0, SH_OPT_INT, &c.shards, "8",
         "shard count (= partitions of soundhash.index.deltas)", 0, 1, SH_SHARDS_MAX},
        {"out", 'o', SH_OPT_STR, &c.out, NULL, "file to write (created, or replaced whole)",
         SH_OPT_REQUIRED, 0, 0},
        {NULL, 0, 0, NULL, NULL, NULL, 0, 0, 0},
    };
    sh_cmd_spec spec = {.name = "replicator snapshot",
                        .usage = "--dsn DSN --shard N --out FILE [--shards N]",
                        .examples = "soundhash replicator snapshot --dsn \"$DSN\" --shard 3 "
                                    "--out shard3.snap",
                        .summary = "Writes one shard's snapshot (every active track with its "
                                   "postings, read in one consistent transaction) at the "
                                   "primary's current change-log seq, in the checksummed "
                                   "snapshot format an edge bootstraps from.",
                        .opts = opts};
    sh_err e = {0};
    int code = sh_opt_exit_code(&spec, sh_opt_parse(&spec, argc, argv, &e), &e);
    if (code < 0 && c.shard >= c.shards) {
        sh_err_set(&e, SH_EUSAGE, "--shard %ld: must be below --shards %ld", c.shard, c.shards);
        code = sh_opt_exit_code(&spec, SH_EUSAGE, &e);
    }
    if (code < 0 && dsn_usage(c.dsn, &e))
        code = sh_opt_exit_code(&spec, SH_EUSAGE, &e);
    if (code >= 0) {
        sh_opt_free(&spec);
        return code;
    }
    /* Written next to the target and renamed: a reader never sees half a snapshot. */
    char tmp[4096];
    snprintf(tmp, sizeof tmp, "%s.tmp.%ld", c.out, (long)getpid());
    sh_primary *db = NULL;
    int64_t epoch = 0, start_seq = 0, seq = 0;
    uint64_t tracks = 0;
    int fd = -1;
    int rc = db_connect(c.dsn, "soundhash-snapshot", 10, NULL, &db, &e);
    if (rc == 0)
        rc = sh_primary_replication_get(db, &epoch, &start_seq, &e);
    if (rc == 0 && (fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644)) < 0)
        rc = sh_err_set(&e, SH_EUSAGE, "--out %s: %s", c.out, strerror(errno));
    if (rc == 0)
        rc = rp_snapshot_write(db, (int)c.shard, (int)c.shards, epoch, fd, &seq, &tracks, &e);
    if (rc == 0 && fsync(fd) != 0)
        rc = sh_err_set(&e, SH_EIO, "fsync %s: %s", tmp, strerror(errno));
    if (fd >= 0 && close(fd) != 0 && rc == 0)
        rc = sh_err_set(&e, SH_EIO, "close %s: %s", tmp, strerror(errno));
    if (rc == 0 && rename(tmp, c.out) != 0)
        rc = sh_err_set(&e, SH_EIO, "rename to %s: %s", c.out, strerror(errno));
    if (rc && fd >= 0)
        unlink(tmp);
    sh_primary_free(db);
    if (rc == 0)
        printf("{\"shard\":%ld,\"shards\":%ld,\"epoch\":%" PRId64 ",\"seq\":%" PRId64
               ",\"tracks\":%" PRIu64 ",\"file\":\"%s\"}\n",
               c.shard, c.shards, epoch, seq, tracks, c.out);
    else
        fprintf(stderr, "soundhash replicator snapshot: %s\n", sh_err_text(&e));
    sh_opt_free(&spec);
    return rc == SH_EUSAGE ? SH_EXIT_USAGE : rc ? SH_EXIT_RUNTIME : SH_EXIT_OK;
}

/* Partition count of `topic` (0 when it does not exist), from a short-lived client. */
static int topic_partitions(const char *brokers, const sh_strlist *props, const char *topic,
                            int timeout_ms, int *n, sh_err *e)
{
    sh_kclient_config kc = {.bootstrap = brokers, .props = props, .quiet_until_ready = true,
                            .what = "metadata client"};
    rd_kafka_t *rk = NULL;
    int rc = sh_kafka_producer_new(&kc, &rk, e);
    if (rc == 0)
        rc = sh_kafka_wait_ready(rk, brokers, timeout_ms, e);
    if (rc == 0)
        rc = sh_kafka_describe_topic(rk, topic, timeout_ms, n, e);
    if (rk)
        rd_kafka_destroy(rk);
    return rc;
}

/* ---- prune -------------------------------------------------------------------------------- */

typedef struct prune_cfg {
    char *dsn;
    char *brokers;
    char *topic;
    sh_strlist kafka_props;
    double tombstone_days;
} prune_cfg;

/* The change log may lose every seq that every shard's stream has passed: the replicator never
 * reads below the smallest shard position again (snapshots are read from the tables, not the
 * log). Tombstone rows in `tracks` guard against an older upload event arriving late, so they
 * stay for --tombstone-days (longer than the audio-events topic's retention). */
static int cmd_prune(int argc, char **argv)
{
    prune_cfg c;
    memset(&c, 0, sizeof c);
    sh_opt opts[] = {
        {"dsn", 0, SH_OPT_STR, &c.dsn, NULL,
         "primary connection string of a role that may DELETE from change_log and tracks",
         SH_OPT_REQUIRED | SH_OPT_DSN, 0, 0},
        {"brokers", 'b', SH_OPT_STR, &c.brokers, NULL, "Kafka bootstrap servers",
         SH_OPT_REQUIRED, 0, 0},
        {"topic", 0, SH_OPT_STR, &c.topic, SH_TOPIC_INDEX_DELTAS, "index-delta topic", 0, 0, 0},
        {"property", 'X', SH_OPT_LIST, &c.kafka_props, NULL, "librdkafka property key=value", 0,
         0, 0},
        {"tombstone-days", 0, SH_OPT_DOUBLE, &c.tombstone_days, "7",
         "keep tombstones of deleted tracks this long", 0, 0, 0},
        {NULL, 0, 0, NULL, NULL, NULL, 0, 0, 0},
    };
    sh_cmd_spec spec = {.name = "replicator prune",
                        .usage = "--dsn DSN --brokers B [--tombstone-days D]",
                        .examples = "soundhash replicator prune --dsn \"$ADMIN_DSN\" --brokers "
                                    "127.0.0.1:9092 --tombstone-days 14",
                        .summary = "Deletes change-log rows every shard's delta stream has "
                                   "passed (read back from the topic) and tombstones older than "
                                   "--tombstone-days whose delete every stream has passed. Run "
                                   "it periodically (cron) with a role allowed to DELETE.",
                        .opts = opts};
    sh_err e = {0};
    int code = sh_opt_exit_code(&spec, sh_opt_parse(&spec, argc, argv, &e), &e);
    if (code < 0 && !(c.tombstone_days >= 0)) {
        sh_err_set(&e, SH_EUSAGE, "--tombstone-days must be >= 0");
        code = sh_opt_exit_code(&spec, SH_EUSAGE, &e);
    }
    if (code < 0 && (dsn_usage(c.dsn, &e) || sh_kafka_props_check(c.brokers, &c.kafka_props, &e)))
        code = sh_opt_exit_code(&spec, SH_EUSAGE, &e);
    if (code >= 0) {
        sh_opt_free(&spec);
        return code;
    }
    sh_primary *db = NULL;
    sh_registry *reg = NULL;
    sh_schema_limits lim;
    sh_schema_limits_default(&lim);
    int64_t epoch = 0, start_seq = 0, seqs[SH_SHARDS_MAX];
    int nshards = 0;
    int64_t upto = INT64_MAX, changes = 0, tombs = 0;
    int rc = sh_registry_new_from_env(&reg, &e);
    if (rc == 0)
        rc = db_connect(c.dsn, "soundhash-prune", 10, NULL, &db, &e);
    if (rc == 0)
        rc = sh_primary_replication_get(db, &epoch, &start_seq, &e);
    if (rc == 0)
        rc = topic_partitions(c.brokers, &c.kafka_props, c.topic, 10000, &nshards,
                                          &e);
    if (rc == 0 && (nshards <= 0 || (unsigned)nshards > SH_SHARDS_MAX))
        rc = sh_err_set(&e, SH_ENOTFOUND, "topic %s: %d partitions", c.topic, nshards);
    if (rc == 0)
        rc = rp_topic_last_sequences(c.brokers, &c.kafka_props, c.topic, nshards, epoch, reg, &lim,
                                     10000, seqs, &e);
    for (int s = 0; rc == 0 && s < nshards; s++)
        upto = seqs[s] < 0 ? start_seq < upto ? start_seq : upto : seqs[s] < upto ? seqs[s] : upto;
    if (rc == 0)
        rc = sh_primary_prune(db, upto, (int64_t)(c.tombstone_days * 86400.0), &changes, &tombs,
                              &e);
    if (rc == 0)
        printf("{\"pruned_through_seq\":%" PRId64 ",\"changes_deleted\":%" PRId64
               ",\"tombstones_deleted\":%" PRId64 "}\n",
               upto, changes, tombs);
    else
        fprintf(stderr, "soundhash replicator prune: %s\n", sh_err_text(&e));
    sh_primary_free(db);
    sh_registry_free(reg);
    sh_opt_free(&spec);
    return rc ? SH_EXIT_RUNTIME : SH_EXIT_OK;
}

int sh_cmd_replicator(int argc, char **argv)
{
    if (argc > 1 && strcmp(argv[1], "snapshot") == 0)
        return cmd_snapshot(argc - 1, argv + 1);
    if (argc > 1 && strcmp(argv[1], "prune") == 0)
        return cmd_prune(argc - 1, argv + 1);
    return cmd_run(argc, argv);
}
