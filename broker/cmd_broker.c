/* cmd_broker.c — `soundhash broker`: a development/test Kafka broker (librdkafka's mock cluster)
 * and `soundhash broker topics`: check (or create) the project's topics on any Kafka cluster.
 *
 * The mock cluster speaks the Kafka protocol over loopback TCP, so every other process talks to it
 * exactly as to real Kafka. Its limits (documented in --help and broker/README.md): in-memory only;
 * each partition keeps the newest ~5 MiB / 100,000 message sets; no real transactions; listener
 * ports are chosen by the kernel (librdkafka 2.0.2 offers no way to fix them), so clients learn the
 * bootstrap list from stdout or --bootstrap-file.
 */
#include "sh_cmds.h"
#include "sh_err.h"
#include "sh_file.h"
#include "sh_kafka.h"
#include "sh_kclient.h"
#include "sh_log.h"
#include "sh_opt.h"
#include "sh_signal.h"

#include <librdkafka/rdkafka.h>
#include <librdkafka/rdkafka_mock.h>

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* ---- soundhash broker (run) ------------------------------------------------------------------ */

typedef struct broker_conf {
    long broker_count;
    char *bootstrap_file;
} broker_conf;

static int create_topics(rd_kafka_mock_cluster_t *mc, int broker_count, sh_err *e)
{
    size_t n;
    const sh_kafka_topic_def *t = sh_kafka_topics(&n);
    int replication = broker_count < 3 ? broker_count : 3;
    for (size_t i = 0; i < n; i++) {
        rd_kafka_resp_err_t err =
            rd_kafka_mock_topic_create(mc, t[i].name, t[i].partitions, replication);
        if (err)
            return sh_kafka_err_set(e, err, "creating topic %s", t[i].name);
    }
    return 0;
}

static int serve(rd_kafka_mock_cluster_t *mc, const broker_conf *c, sh_stop *stop, sh_err *e)
{
    const char *bootstraps = rd_kafka_mock_cluster_bootstraps(mc);
    if (c->bootstrap_file && *c->bootstrap_file) {
        char line[4096];
        snprintf(line, sizeof line, "%s\n", bootstraps);
        /* Atomic: tests poll for the file and must never read half a list. */
        int rc = sh_file_write_atomic(c->bootstrap_file, line, strlen(line), e);
        if (rc)
            return rc;
    }
    printf("%s\n", bootstraps);
    fflush(stdout);
    sh_log(SH_LOG_INFO, "broker_ready", "brokers=%ld bootstrap=%s", c->broker_count, bootstraps);
    sh_stop_wait(stop); /* the signals are delivered only there: no polling */
    sh_log(SH_LOG_INFO, "broker_stopping", "signal=%d", sh_stop_signal(stop));
    if (c->bootstrap_file && *c->bootstrap_file)
        unlink(c->bootstrap_file); /* the file exists only while the broker does */
    return 0;
}

static int run_broker(const broker_conf *c, sh_err *e)
{
    /* Before any librdkafka thread exists: they inherit the blocked SIGINT/SIGTERM, so the
     * signals reach sh_stop_wait() in this thread; a client vanishing mid-write must not kill
     * the broker (SIGPIPE). */
    sh_stop stop;
    int rc = sh_stop_install(&stop, SH_STOP_BLOCK | SH_STOP_IGNORE_SIGPIPE, e);
    if (rc)
        return rc;
    /* The handle only hosts the mock cluster; it never connects anywhere, so silence its
     * "no bootstrap.servers" notice. */
    static const sh_kclient_kv defaults[] = {{"log_level", "3"}};
    const sh_kclient_config kc = {
        .defaults = defaults, .n_defaults = 1, .what = "cannot create kafka handle"};
    rd_kafka_t *rk = NULL;
    if ((rc = sh_kafka_producer_new(&kc, &rk, e))) {
        sh_stop_uninstall(&stop);
        return rc;
    }
    rd_kafka_mock_cluster_t *mc = rd_kafka_mock_cluster_new(rk, (int)c->broker_count);
    if (!mc) {
        rd_kafka_destroy(rk);
        sh_stop_uninstall(&stop);
        return sh_err_set(e, SH_EKAFKA, "cannot start the mock cluster (listen on 127.0.0.1)");
    }
    rc = create_topics(mc, (int)c->broker_count, e);
    if (!rc)
        rc = serve(mc, c, &stop, e);
    rd_kafka_mock_cluster_destroy(mc);
    rd_kafka_destroy(rk);
    sh_stop_uninstall(&stop);
    return rc;
}

static const char broker_summary[] =
    "Runs a DEVELOPMENT/TEST Kafka broker: librdkafka's mock cluster with N brokers on loopback "
    "TCP, with the SoundHash topics created (soundhash.audio.events 6, soundhash.audio.reindex 6, "
    "soundhash.audio.dlq 3, soundhash.index.deltas 8 partitions). Prints the bootstrap list on "
    "stdout (one line) and writes it to --bootstrap-file (atomically; removed on exit); runs until "
    "SIGTERM/SIGINT, then exits 0.\n\n"
    "Limits - do not use in production: everything is in memory and lost on exit; each partition "
    "keeps only the newest ~5 MiB (and at most 100,000 message sets), older messages vanish; no "
    "real transactions (no read_committed isolation; offsets sent in a transaction are not "
    "stored); listener ports are random (take them from stdout or --bootstrap-file). Consumer "
    "groups with committed offsets and the idempotent producer work.\n\n"
    "`--brokers N` is accepted on the command line as an alias of --broker-count (only there: "
    "SOUNDHASH_BROKERS is the clients' bootstrap list). `soundhash broker topics --brokers B` "
    "checks the project's topics on any cluster.";

/* `--brokers N` (the spelling) as a command-line alias of --broker-count. Only on the
 * command line: SOUNDHASH_BROKERS is every client's bootstrap list and must never reach this
 * option. Returns a malloc()ed argv copy (strings borrowed, except rewritten "--brokers=N" ones,
 * which are listed in `owned`), or NULL on ENOMEM. */
static char **alias_brokers(int argc, char **argv, sh_strlist *owned)
{
    char **v = calloc((size_t)argc + 1, sizeof *v);
    for (int i = 0; v && i < argc; i++) {
        v[i] = argv[i];
        if (i > 0 && !strcmp(argv[i], "--brokers")) {
            v[i] = "--broker-count";
        } else if (i > 0 && !strncmp(argv[i], "--brokers=", 10)) {
            char buf[64];
            snprintf(buf, sizeof buf, "--broker-count=%.40s", argv[i] + 10);
            if (sh_strlist_push(owned, buf)) {
                free(v);
                return NULL;
            }
            v[i] = owned->v[owned->n - 1];
        } else if (!strcmp(argv[i], "--")) {
            break; /* the rest are positional: copied below unchanged */
        }
    }
    for (int i = 0; v && i < argc; i++)
        if (!v[i])
            v[i] = argv[i];
    return v;
}

static int cmd_run(int argc, char **argv)
{
    broker_conf c = {0};
    sh_opt opts[] = {
        {"broker-count", 0, SH_OPT_INT, &c.broker_count, "3",
         "number of mock brokers (alias on the command line: --brokers N)",
         0, 1, 16},
        {"bootstrap-file", 0, SH_OPT_STR, &c.bootstrap_file, NULL,
         "also write the bootstrap list to this file (atomically)", 0, 0, 0},
        {0},
    };
    sh_cmd_spec spec = {.name = "broker",
                        .usage = "[--brokers N] [--bootstrap-file F] | topics --help",
                        .summary = broker_summary,
                        .examples = "soundhash broker --bootstrap-file /tmp/sh.boot &\n"
                                    "soundhash broker --brokers 1",
                        .opts = opts};
    sh_err e = {0};
    sh_strlist owned = {0};
    char **args = alias_brokers(argc, argv, &owned);
    if (!args) {
        fprintf(stderr, "soundhash broker: out of memory\n");
        return SH_EXIT_RUNTIME;
    }
    int rc = sh_opt_parse(&spec, argc, args, &e);
    int code = sh_opt_exit_code(&spec, rc, &e);
    if (code < 0 && spec.args.n > 0) {
        sh_err_set(&e, SH_EUSAGE, "unexpected argument '%s'", spec.args.v[0]);
        code = sh_opt_exit_code(&spec, SH_EUSAGE, &e);
    }
    if (code < 0 && c.bootstrap_file && *c.bootstrap_file &&
        sh_file_check_writable_dir(c.bootstrap_file, &e))
        code = sh_opt_exit_code(&spec, sh_err_wrap(&e, SH_EUSAGE, "--bootstrap-file"), &e);
    if (code < 0) {
        rc = run_broker(&c, &e);
        if (rc)
            fprintf(stderr, "soundhash broker: %s\n", sh_err_text(&e));
        code = rc ? SH_EXIT_RUNTIME : SH_EXIT_OK;
    }
    sh_opt_free(&spec);
    free(args);
    sh_strlist_clear(&owned);
    return code;
}

/* ---- soundhash broker topics ----------------------------------------------------------------- */

typedef struct topics_conf {
    char *bootstrap;
    sh_strlist props;
    double timeout_s;
    bool create;
    long replication;
} topics_conf;

/* Sum over partitions of (high - low) watermark: the messages the broker currently retains. */
static int count_messages(rd_kafka_t *rk, const char *topic, int partitions, int timeout_ms,
                          long long *out, sh_err *e)
{
    long long total = 0;
    for (int p = 0; p < partitions; p++) {
        int64_t lo = 0, hi = 0;
        rd_kafka_resp_err_t err = rd_kafka_query_watermark_offsets(rk, topic, p, &lo, &hi,
                                                                   timeout_ms);
        if (err)
            return sh_kafka_err_set(e, err, "watermarks of %s [%d]", topic, p);
        total += hi - lo;
    }
    *out = total;
    return 0;
}

static int create_missing(rd_kafka_t *rk, const topics_conf *c, int timeout_ms, sh_err *e)
{
    size_t n;
    const sh_kafka_topic_def *t = sh_kafka_topics(&n);
    rd_kafka_NewTopic_t *nt[8];
    char errstr[512];
    int rc = 0;
    size_t made = 0;
    for (size_t i = 0; i < n && i < 8 && !rc; i++) {
        nt[made] = rd_kafka_NewTopic_new(t[i].name, t[i].partitions, (int)c->replication, errstr,
                                         sizeof errstr);
        if (!nt[made])
            rc = sh_err_set(e, SH_EINVAL, "topic %s: %s", t[i].name, errstr);
        else
            made++;
    }
    rd_kafka_queue_t *q = rd_kafka_queue_new(rk);
    if (!rc) {
        rd_kafka_AdminOptions_t *ao = rd_kafka_AdminOptions_new(rk, RD_KAFKA_ADMIN_OP_CREATETOPICS);
        rd_kafka_AdminOptions_set_request_timeout(ao, timeout_ms, errstr, sizeof errstr);
        rd_kafka_CreateTopics(rk, nt, made, ao, q);
        rd_kafka_AdminOptions_destroy(ao);
        rd_kafka_event_t *ev = rd_kafka_queue_poll(q, timeout_ms + 1000);
        if (!ev) {
            rc = sh_err_set(e, SH_ETIMEOUT, "creating topics: no answer within %d ms", timeout_ms);
        } else {
            const rd_kafka_CreateTopics_result_t *res = rd_kafka_event_CreateTopics_result(ev);
            size_t rn = 0;
            const rd_kafka_topic_result_t **tr = res ? rd_kafka_CreateTopics_result_topics(res, &rn)
                                                     : NULL;
            if (rd_kafka_event_error(ev))
                rc = sh_kafka_err_set(e, rd_kafka_event_error(ev), "creating topics");
            for (size_t i = 0; !rc && i < rn; i++) {
                rd_kafka_resp_err_t err = rd_kafka_topic_result_error(tr[i]);
                if (err && err != RD_KAFKA_RESP_ERR_TOPIC_ALREADY_EXISTS)
                    rc = sh_kafka_err_set(e, err, "creating topic %s",
                                          rd_kafka_topic_result_name(tr[i]));
            }
            rd_kafka_event_destroy(ev);
        }
    }
    rd_kafka_queue_destroy(q);
    rd_kafka_NewTopic_destroy_array(nt, made);
    return rc;
}

/* Prints one JSON line per project topic; returns the number of topics that are missing or have
 * the wrong partition count, or a negative error. */
static int report_topics(rd_kafka_t *rk, int timeout_ms, sh_err *e)
{
    size_t n;
    const sh_kafka_topic_def *t = sh_kafka_topics(&n);
    int bad = 0;
    for (size_t i = 0; i < n; i++) {
        int parts = 0;
        long long msgs = 0;
        int rc = sh_kafka_describe_topic(rk, t[i].name, timeout_ms, &parts, e);
        if (!rc && parts > 0)
            rc = count_messages(rk, t[i].name, parts, timeout_ms, &msgs, e);
        if (rc)
            return rc;
        bool ok = parts == t[i].partitions;
        bad += !ok;
        printf("{\"topic\":\"%s\",\"partitions\":%d,\"expected_partitions\":%d,\"messages\":%lld,"
               "\"ok\":%s}\n",
               t[i].name, parts, t[i].partitions, msgs, ok ? "true" : "false");
    }
    fflush(stdout);
    return bad;
}

/* Takes over `rk`. */
static int run_topics(const topics_conf *c, rd_kafka_t *rk, sh_err *e)
{
    int rc;
    int timeout_ms = (int)(c->timeout_s * 1000.0);
    rc = sh_kafka_wait_ready(rk, c->bootstrap, timeout_ms, e);
    if (!rc && c->create)
        rc = create_missing(rk, c, timeout_ms, e);
    if (!rc) {
        rc = report_topics(rk, timeout_ms, e);
        if (rc > 0)
            rc = sh_err_set(e, SH_ENOTFOUND, "%d topic(s) missing or with the wrong partition count",
                            rc);
    }
    rd_kafka_destroy(rk);
    return rc;
}

static int cmd_topics(int argc, char **argv)
{
    topics_conf c = {0};
    sh_opt opts[] = {
        {"brokers", 'b', SH_OPT_STR, &c.bootstrap, NULL, "bootstrap servers host:port,...",
         SH_OPT_REQUIRED, 0, 0},
        {"property", 'X', SH_OPT_LIST, &c.props, NULL, "librdkafka property key=value (repeatable)",
         0, 0, 0},
        {"timeout", 0, SH_OPT_DOUBLE, &c.timeout_s, "10", "seconds to wait for the cluster", 0, 0,
         0},
        {"create", 0, SH_OPT_BOOL, &c.create, "false",
         "create missing topics with the documented partition counts", 0, 0, 0},
        {"replication", 0, SH_OPT_INT, &c.replication, "-1",
         "replication factor for --create (-1 = broker default)", 0, -1, 16},
        {0},
    };
    sh_cmd_spec spec = {.name = "broker topics",
                        .usage = "--brokers B [-X key=value]... [--create]",
                        .summary = "Checks that a Kafka cluster (real or `soundhash broker`) has "
                                   "the SoundHash topics with the documented partition counts; "
                                   "prints one JSON line per topic with the messages it retains; "
                                   "exits 1 if any is missing or differs. --create creates missing "
                                   "ones (Admin API) first.",
                        .examples = "soundhash broker topics --brokers kafka1:9092\n"
                                    "soundhash broker topics --brokers kafka1:9092 --create "
                                    "--replication 3 -X security.protocol=SSL",
                        .opts = opts};
    sh_err e = {0};
    int rc = sh_opt_parse(&spec, argc, argv, &e);
    int code = sh_opt_exit_code(&spec, rc, &e);
    if (code < 0 && !(c.timeout_s > 0 && c.timeout_s <= 3600)) {
        sh_err_set(&e, SH_EUSAGE, "--timeout must be in (0, 3600] seconds");
        code = sh_opt_exit_code(&spec, SH_EUSAGE, &e);
    }
    rd_kafka_t *rk = NULL;
    rc = 0;
    if (code < 0) {
        const sh_kclient_config kc = {.bootstrap = c.bootstrap,
                                      .props = &c.props,
                                      .quiet_until_ready = true, /* run_topics waits first */
                                      .what = "cannot create kafka client"};
        rc = sh_kafka_producer_new(&kc, &rk, &e);
        if (rc == SH_EINVAL || rc == SH_EUSAGE)
            code = sh_opt_exit_code(&spec, SH_EUSAGE, &e); /* a bad -X is a usage error */
    }
    if (code < 0) {
        if (!rc)
            rc = run_topics(&c, rk, &e);
        if (rc)
            fprintf(stderr, "soundhash broker topics: %s\n", sh_err_text(&e));
        code = rc ? SH_EXIT_RUNTIME : SH_EXIT_OK;
    }
    sh_opt_free(&spec);
    return code;
}

int sh_cmd_broker(int argc, char **argv)
{
    if (argc > 1 && !strcmp(argv[1], "topics"))
        return cmd_topics(argc - 1, argv + 1);
    return cmd_run(argc, argv);
}
