/* cmd_dlq.c — `soundhash dlq show|tail`: the dead letters as JSON lines, so nobody has to decode
 * binary Avro with kcat.
 *
 *   dlq show --brokers B [--since TIME]   what the topic holds now (from TIME), then exits 0
 *   dlq tail --brokers B [--since TIME]   new dead letters (or from TIME on) until SIGINT/SIGTERM
 *
 * One line per dead letter (io.soundhash.v1.DeadLetter, decoded with schemas/):
 *   {"partition","offset","failed_at","failed_at_ms","code","error_code","reason","track_id",
 *    "event_id","worker","attempts","source_topic","source_partition","source_offset",
 *    "schema_id","original_bytes"}
 * A record that does not decode is printed as {"partition","offset","undecodable":"<why>"} and
 * the others go on. A plain consumer without a group: reading commits nothing and never disturbs
 * the workers. Uses only core/ and schemas/.
 */
#include "sh_clock.h"
#include "sh_cmds.h"
#include "sh_kafka.h"
#include "sh_kclient.h"
#include "sh_log.h"
#include "sh_opt.h"
#include "sh_registry.h"
#include "sh_schema.h"
#include "sh_signal.h"

#include <jansson.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

enum { DLQ_PARTITIONS_MAX = 1024, DLQ_POLL_MS = 200 };

typedef struct dlq_cfg {
    char *brokers;
    sh_strlist props;
    char *since;
    char *topic;
    double timeout_s;
} dlq_cfg;

/* --since: an RFC 3339 UTC time (2026-12-02T03:00:00Z, seconds and Z optional), a duration ago
 * (90s, 15m, 2h, 7d) or milliseconds since 1970. Returns 0 or SH_EUSAGE. */
static int parse_since(const char *s, int64_t now, int64_t *out_ms)
{
    struct tm tm;
    memset(&tm, 0, sizeof tm);
    const char *end = strptime(s, "%Y-%m-%dT%H:%M", &tm);
    if (end) {
        if (*end == ':')
            end = strptime(end, ":%S", &tm);
        if (end && *end == 'Z')
            end++;
        if (!end || *end)
            return SH_EUSAGE;
        time_t t = timegm(&tm);
        *out_ms = (int64_t)t * 1000;
        return t < 0 ? SH_EUSAGE : 0;
    }
    long v;
    size_t n = strlen(s);
    if (n > 1 && n < 32 && strchr("smhd", s[n - 1])) {
        char num[32];
        snprintf(num, sizeof num, "%.*s", (int)(n - 1), s);
        if (sh_parse_long(num, &v) || v < 0 || v > 3650L * 86400)
            return SH_EUSAGE;
        long unit = s[n - 1] == 's' ? 1 : s[n - 1] == 'm' ? 60 : s[n - 1] == 'h' ? 3600 : 86400;
        if (v > 3650L * 86400 / unit)
            return SH_EUSAGE;
        *out_ms = now - (int64_t)v * unit * 1000;
        return 0;
    }
    if (sh_parse_long(s, &v) || v < 0)
        return SH_EUSAGE;
    *out_ms = v;
    return 0;
}

static void iso_ms(int64_t ms, char *out, size_t cap) /* cap >= 64 */
{
    time_t t = (time_t)(ms / 1000);
    struct tm tm;
    gmtime_r(&t, &tm);
    snprintf(out, cap, "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ", tm.tm_year + 1900, tm.tm_mon + 1,
             tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, (int)(ms % 1000));
}

/* Prints one message as a JSON line unless it failed before `since_ms` (its failed_at, or the
 * message's timestamp when it does not decode). Returns 0, or SH_ENOMEM. */
static int print_record(const rd_kafka_message_t *m, sh_registry *reg, int64_t since_ms)
{
    sh_dlq_record r = {0};
    sh_err e = {0};
    json_t *o;
    int rc = sh_dlq_decode(m->payload, m->len, reg, NULL, &r, &e);
    int64_t when_ms = rc ? rd_kafka_message_timestamp(m, NULL) : r.failed_at_ms;
    if (since_ms > 0 && when_ms < since_ms) {
        sh_dlq_clear(&r);
        return 0;
    }
    if (rc == 0) {
        char when[64];
        iso_ms(r.failed_at_ms, when, sizeof when);
        o = json_pack("{s:i, s:I, s:s, s:I, s:s, s:i, s:s, s:s?, s:s?, s:s, s:i, s:s, s:i, s:I, "
                      "s:i, s:I}",
                      "partition", (int)m->partition, "offset", (json_int_t)m->offset, "failed_at",
                      when, "failed_at_ms", (json_int_t)r.failed_at_ms, "code", r.error_name,
                      "error_code", (int)r.error_code, "reason", r.reason ? r.reason : "",
                      "track_id", r.track_id[0] ? r.track_id : NULL, "event_id",
                      r.event_id[0] ? r.event_id : NULL, "worker", r.worker, "attempts",
                      (int)r.attempts, "source_topic", r.source_topic, "source_partition",
                      (int)r.source_partition, "source_offset", (json_int_t)r.source_offset,
                      "schema_id", (int)r.schema_id, "original_bytes",
                      (json_int_t)r.original_len);
    } else {
        o = json_pack("{s:i, s:I, s:s}", "partition", (int)m->partition, "offset",
                      (json_int_t)m->offset, "undecodable", sh_err_text(&e));
    }
    sh_dlq_clear(&r);
    char *line = o ? json_dumps(o, JSON_COMPACT) : NULL;
    json_decref(o);
    if (!line)
        return SH_ENOMEM;
    puts(line);
    free(line);
    fflush(stdout);
    return 0;
}

/* Where each partition starts: the earliest offset at or after `since_ms` (offsets_for_times),
 * the beginning (since 0 = "everything"), or the end (tail without --since). */
static int start_offsets(rd_kafka_t *rk, const char *topic, int np, int64_t since_ms, bool from_end,
                         int timeout_ms, rd_kafka_topic_partition_list_t **out, sh_err *e)
{
    rd_kafka_topic_partition_list_t *l = rd_kafka_topic_partition_list_new(np);
    for (int p = 0; p < np; p++) {
        rd_kafka_topic_partition_t *tp = rd_kafka_topic_partition_list_add(l, topic, p);
        tp->offset = from_end ? RD_KAFKA_OFFSET_END
                     : since_ms > 0 ? since_ms
                                    : RD_KAFKA_OFFSET_BEGINNING;
    }
    if (!from_end && since_ms > 0) {
        rd_kafka_resp_err_t err = rd_kafka_offsets_for_times(rk, l, timeout_ms);
        if (err) {
            rd_kafka_topic_partition_list_destroy(l);
            return sh_kafka_err_set(e, err, "looking up offsets of %s at --since", topic);
        }
        /* -1: no message at or after the time — or a broker that cannot look times up (the
         * mock cluster answers -1 to every time). Reading from the start is right either way:
         * print_record filters by time too. */
        for (int i = 0; i < l->cnt; i++) {
            if (l->elems[i].offset < 0)
                l->elems[i].offset = RD_KAFKA_OFFSET_BEGINNING;
        }
    }
    *out = l;
    return 0;
}

/* Polls until every partition reported its end (show) or a signal arrives (tail). */
static int read_loop(rd_kafka_t *rk, sh_registry *reg, int np, bool follow, int64_t since_ms,
                     const sh_stop *stop, sh_err *e)
{
    bool *eof = calloc((size_t)np, sizeof *eof);
    if (!eof)
        return sh_err_set(e, SH_ENOMEM, "out of memory");
    int at_end = 0, rc = 0;
    while (!sh_stop_requested(stop) && !rc && (follow || at_end < np)) {
        rd_kafka_message_t *m = rd_kafka_consumer_poll(rk, DLQ_POLL_MS);
        if (!m)
            continue;
        if (m->err == RD_KAFKA_RESP_ERR__PARTITION_EOF) {
            if (m->partition >= 0 && m->partition < np && !eof[m->partition]) {
                eof[m->partition] = true;
                at_end++;
            }
        } else if (m->err) {
            /* Transport trouble is retried by librdkafka; anything else ends the read. */
            int code = sh_kafka_errcode(m->err);
            if (code != SH_ETRANSIENT && code != SH_ETIMEOUT)
                rc = sh_kafka_err_set(e, m->err, "reading the dead-letter topic");
        } else {
            rc = print_record(m, reg, since_ms) ? sh_err_set(e, SH_ENOMEM, "out of memory") : 0;
        }
        rd_kafka_message_destroy(m);
    }
    free(eof);
    return rc;
}

static int run(const dlq_cfg *c, bool follow, int64_t since_ms, const sh_stop *stop, sh_err *e)
{
    /* No group: assign() reads without joining or committing anything. */
    static const sh_kclient_kv forced[] = {
        {"enable.partition.eof", "true"},
        {"enable.auto.commit", "false"},
        {"group.id", "soundhash-dlq-reader"},
    };
    const sh_kclient_config kc = {.bootstrap = c->brokers,
                                  .props = &c->props,
                                  .forced = forced,
                                  .n_forced = sizeof forced / sizeof forced[0],
                                  .quiet_until_ready = true,
                                  .what = "cannot create Kafka consumer"};
    rd_kafka_t *rk = NULL;
    int rc = sh_kafka_consumer_new(&kc, &rk, e);
    if (rc)
        return rc == SH_EINVAL ? SH_EUSAGE : rc; /* a property librdkafka refused */
    const int timeout_ms = (int)(c->timeout_s * 1000.0);
    const char *topic = c->topic && *c->topic ? c->topic : SH_TOPIC_AUDIO_DLQ;
    sh_registry *reg = NULL;
    rd_kafka_topic_partition_list_t *l = NULL;
    int np = 0;
    rc = sh_kafka_wait_ready(rk, c->brokers, timeout_ms, e);
    if (!rc)
        rc = sh_kafka_describe_topic(rk, topic, timeout_ms, &np, e);
    if (!rc && (np <= 0 || np > DLQ_PARTITIONS_MAX))
        rc = sh_err_set(e, SH_ENOTFOUND, "topic %s %s", topic,
                        np <= 0 ? "does not exist (soundhash broker topics --create makes it)"
                                : "has too many partitions");
    if (!rc)
        rc = sh_registry_new_from_env(&reg, e);
    if (!rc)
        rc = start_offsets(rk, topic, np, since_ms, follow && since_ms < 0, timeout_ms, &l, e);
    if (!rc) {
        rd_kafka_resp_err_t err = rd_kafka_assign(rk, l);
        rc = err ? sh_kafka_err_set(e, err, "assigning %s", topic) : 0;
    }
    if (!rc)
        rc = read_loop(rk, reg, np, follow, since_ms, stop, e);
    if (l)
        rd_kafka_topic_partition_list_destroy(l);
    rd_kafka_consumer_close(rk);
    rd_kafka_destroy(rk);
    sh_registry_free(reg);
    return rc;
}

static const char *const subs[][4] = {
    /* name, usage, summary, examples */
    {"show", "--brokers B [--since TIME]",
     "Prints the dead letters the topic holds now (from --since TIME on, else all it retains) as "
     "JSON lines, then exits 0: partition, offset, failed_at (UTC) and failed_at_ms, code and "
     "error_code, reason, track_id, event_id, worker, attempts, source_topic, source_partition, "
     "source_offset, schema_id, original_bytes. A record that does not decode prints "
     "{partition, offset, undecodable}. Reads without a consumer group: nothing is committed. "
     "TIME is a UTC time (2026-12-02T03:00:00Z), a duration ago (90s, 15m, 2h, 7d) or "
     "milliseconds since 1970.",
     "soundhash dlq show --brokers B\nsoundhash dlq show --brokers B --since 2h | jq -r .reason"},
    {"tail", "--brokers B [--since TIME]",
     "Follows the dead-letter topic and prints each new dead letter as a JSON line (as `dlq "
     "show`; with --since, from that time on) until SIGINT or SIGTERM, then exits 0.",
     "soundhash dlq tail --brokers B\nsoundhash dlq tail --brokers B --since 15m"},
};

static void usage(FILE *out)
{
    fprintf(out, "usage: soundhash dlq <show|tail> --brokers B [--since TIME]\n\n"
                 "  show   print the dead letters as JSON lines and exit\n"
                 "  tail   follow new dead letters until SIGINT/SIGTERM\n\n"
                 "`soundhash dlq <sub> --help` lists the options of each.\n");
}

int sh_cmd_dlq(int argc, char **argv)
{
    if (argc < 2 || !strcmp(argv[1], "--help") || !strcmp(argv[1], "-h")) {
        usage(argc < 2 ? stderr : stdout);
        return argc < 2 ? SH_EXIT_USAGE : SH_EXIT_OK;
    }
    const char *const *sub = NULL;
    for (size_t i = 0; i < sizeof subs / sizeof subs[0]; i++) {
        if (!strcmp(argv[1], subs[i][0]))
            sub = subs[i];
    }
    if (!sub) {
        fprintf(stderr, "soundhash dlq: unknown subcommand '%s'\n", argv[1]);
        usage(stderr);
        return SH_EXIT_USAGE;
    }
    dlq_cfg c = {0};
    sh_opt opts[] = {
        {"brokers", 'b', SH_OPT_STR, &c.brokers, NULL, "Kafka bootstrap servers host:port,...",
         SH_OPT_REQUIRED, 0, 0},
        {"property", 'X', SH_OPT_LIST, &c.props, NULL,
         "librdkafka property key=value (repeatable)", 0, 0, 0},
        {"since", 0, SH_OPT_STR, &c.since, NULL,
         "from this time on: UTC 2026-12-02T03:00:00Z, 15m/2h/7d ago, or epoch ms", 0, 0, 0},
        {"timeout", 0, SH_OPT_DOUBLE, &c.timeout_s, "10",
         "seconds to wait for the cluster to answer", 0, 0, 0},
        {"topic", 0, SH_OPT_STR, &c.topic, NULL, "the dead-letter topic (default: "
         SH_TOPIC_AUDIO_DLQ ")", 0, 0, 0},
        {NULL, 0, 0, NULL, NULL, NULL, 0, 0, 0},
    };
    char name[16];
    snprintf(name, sizeof name, "dlq %s", sub[0]);
    sh_cmd_spec spec = {.name = name, .usage = sub[1], .summary = sub[2], .examples = sub[3],
                        .opts = opts};
    sh_err e = {0};
    int rc = sh_opt_parse(&spec, argc - 1, argv + 1, &e);
    int code = sh_opt_exit_code(&spec, rc, &e);
    int64_t since_ms = -1;
    if (code < 0 && spec.args.n)
        rc = sh_err_set(&e, SH_EUSAGE, "unexpected argument '%s'", spec.args.v[0]);
    else if (code < 0 && !(c.timeout_s > 0 && c.timeout_s <= 3600))
        rc = sh_err_set(&e, SH_EUSAGE, "--timeout must be in (0, 3600] seconds");
    else if (code < 0 && c.since && parse_since(c.since, sh_clock_wall_ms(), &since_ms))
        rc = sh_err_set(&e, SH_EUSAGE, "--since '%s': want a UTC time (2026-12-02T03:00:00Z), "
                                       "a duration ago (90s, 15m, 2h, 7d) or epoch ms", c.since);
    else
        rc = 0;
    if (code < 0 && rc)
        code = sh_opt_exit_code(&spec, rc, &e);
    if (code < 0) {
        bool tail = !strcmp(sub[0], "tail");
        sh_stop stop;
        rc = sh_stop_install(&stop, 0, &e);
        /* No --since: show reads everything (0), tail only what comes next (-1). */
        if (!rc)
            rc = run(&c, tail, c.since ? since_ms : tail ? -1 : 0, &stop, &e);
        sh_stop_uninstall(&stop);
        if (rc)
            fprintf(stderr, "soundhash %s: %s\n", spec.name, sh_err_text(&e));
        code = !rc ? SH_EXIT_OK : rc == SH_EUSAGE ? SH_EXIT_USAGE : SH_EXIT_RUNTIME;
    }
    sh_opt_free(&spec);
    return code;
}
