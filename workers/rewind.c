/* rewind.c — `soundhash worker rewind`: after a takeover, moves a worker group's committed Kafka
 * offsets back to the positions the (promoted) database recorded (sh_primary_offsets_save), so
 * that every upload the lost primary took after the follower's last replayed commit is consumed
 * again. The version check makes the replay of what the follower already holds a no-op.
 *
 * Why offsets recorded in the database and not a timestamp: a worker that is backlogged commits
 * an event long after it was published, so "the follower's last commit minus a margin" would skip
 * events published before that instant but written after it. A row that the follower replayed
 * names a point below which every write is in the follower, whatever the backlog. */
#include "worker.h"

#include "sh_clock.h"
#include "sh_cmds.h"
#include "sh_kafka.h"
#include "sh_kclient.h"
#include "sh_log.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct rw_cfg {
    char *brokers;
    char *dsn;
    char *group;
    sh_strlist props;
    long timeout_s;
} rw_cfg;

/* The recorded offset of (topic, partition), or -1. */
static int64_t recorded(const sh_group_offset *v, size_t n, const char *topic, int32_t p)
{
    for (size_t i = 0; i < n; i++) {
        if (v[i].partition == p && !strcmp(v[i].topic, topic))
            return v[i].next_offset;
    }
    return -1;
}

/* Builds the commit list: per partition of both worker topics, the recorded offset, or the low
 * watermark (replay everything retained) when the group never recorded one there. */
static int rw_targets(rd_kafka_t *rk, const rw_cfg *c, const sh_group_offset *v, size_t n,
                      rd_kafka_topic_partition_list_t *l, sh_err *e)
{
    static const char *const topics[] = {SH_TOPIC_AUDIO_EVENTS, SH_TOPIC_AUDIO_REINDEX};
    const int tmo = (int)c->timeout_s * 1000;
    for (size_t t = 0; t < 2; t++) {
        int parts = 0;
        int rc = sh_kafka_describe_topic(rk, topics[t], tmo, &parts, e);
        if (rc)
            return rc;
        for (int32_t p = 0; p < parts; p++) {
            int64_t lo = 0, hi = 0, at = recorded(v, n, topics[t], p);
            rd_kafka_resp_err_t err = rd_kafka_query_watermark_offsets(rk, topics[t], p, &lo, &hi,
                                                                       tmo);
            if (err)
                return sh_kafka_err_set(e, err, "watermarks of %s[%d]", topics[t], (int)p);
            if (at < lo || at > hi) /* never recorded, or retention passed it: all retained */
                at = at > hi ? hi : lo;
            rd_kafka_topic_partition_list_add(l, topics[t], p)->offset = at;
        }
    }
    return 0;
}

/* Events the rewind makes the group read again: sum of (committed - target) where positive. */
static int64_t rw_replay(rd_kafka_t *rk, const rd_kafka_topic_partition_list_t *l, int tmo)
{
    rd_kafka_topic_partition_list_t *cur = rd_kafka_topic_partition_list_copy(l);
    int64_t sum = 0;
    if (rd_kafka_committed(rk, cur, tmo) == RD_KAFKA_RESP_ERR_NO_ERROR) {
        for (int i = 0; i < cur->cnt; i++) {
            int64_t now = cur->elems[i].offset;
            if (now >= 0 && now > l->elems[i].offset)
                sum += now - l->elems[i].offset;
        }
    }
    rd_kafka_topic_partition_list_destroy(cur);
    return sum;
}

/* The rewind joins the group as its only member and commits as that member: Kafka accepts
 * commits from outside a group only while the group is empty (and the mock cluster never), and a
 * worker that was killed stays a member until its session times out. Joining waits that out, and
 * getting EVERY partition proves no live worker is left to consume meanwhile. */
typedef struct rw_join {
    int assigned; /* partitions assigned to us now */
} rw_join;

static void rw_rebalance(rd_kafka_t *rk, rd_kafka_resp_err_t err,
                         rd_kafka_topic_partition_list_t *parts, void *opaque)
{
    rw_join *j = opaque;
    if (err == RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS) {
        rd_kafka_assign(rk, parts);
        rd_kafka_pause_partitions(rk, parts); /* we read nothing: only commit */
        j->assigned = parts->cnt;
    } else {
        rd_kafka_assign(rk, NULL);
        j->assigned = 0;
    }
}

static int rw_consumer(const rw_cfg *c, rw_join *j, rd_kafka_t **rk, sh_err *e)
{
    /* eager assignment: the callback above assigns whole generations */
    sh_kclient_kv forced[] = {{"group.id", c->group},
                              {"enable.auto.commit", "false"},
                              {"partition.assignment.strategy", "range"}};
    sh_kclient_config kc = {.bootstrap = c->brokers,
                            .props = &c->props,
                            .forced = forced,
                            .n_forced = sizeof forced / sizeof forced[0],
                            .require_bootstrap = true,
                            .quiet_until_ready = true,
                            .what = "rewind consumer",
                            .opaque = j,
                            .rebalance_cb = rw_rebalance};
    return sh_kafka_consumer_new(&kc, rk, e);
}

static int rw_commit(rd_kafka_t *rk, const rw_cfg *c, rw_join *j,
                     rd_kafka_topic_partition_list_t *l, sh_err *e)
{
    rd_kafka_topic_partition_list_t *sub = rd_kafka_topic_partition_list_new(2);
    rd_kafka_topic_partition_list_add(sub, SH_TOPIC_AUDIO_EVENTS, RD_KAFKA_PARTITION_UA);
    rd_kafka_topic_partition_list_add(sub, SH_TOPIC_AUDIO_REINDEX, RD_KAFKA_PARTITION_UA);
    rd_kafka_resp_err_t err = rd_kafka_subscribe(rk, sub);
    rd_kafka_topic_partition_list_destroy(sub);
    if (err)
        return sh_kafka_err_set(e, err, "join group %s", c->group);
    const double end = sh_clock_mono_ms() + (double)c->timeout_s * 1000.0;
    double next_note = sh_clock_mono_ms() + 2000;
    while (j->assigned < l->cnt) {
        if (sh_clock_mono_ms() > end)
            return sh_err_set(e, SH_ETIMEOUT,
                              "group %s: got %d of %d partitions within %ld s: other members are "
                              "alive; stop every worker of the group, then rewind",
                              c->group, j->assigned, l->cnt, c->timeout_s);
        if (sh_clock_mono_ms() > next_note) {
            SH_INFO("rewind_waiting_for_group", "group=%s assigned=%d of=%d", c->group,
                    j->assigned, l->cnt);
            next_note = sh_clock_mono_ms() + 5000;
        }
        rd_kafka_message_t *m = rd_kafka_consumer_poll(rk, 100);
        if (m)
            rd_kafka_message_destroy(m); /* fetched before the pause: not ours to read */
    }
    err = rd_kafka_commit(rk, l, 0);
    for (int i = 0; !err && i < l->cnt; i++)
        err = l->elems[i].err;
    return err ? sh_kafka_err_set(e, err, "commit the rewound offsets of group %s", c->group) : 0;
}

static int rw_run(const rw_cfg *c, sh_err *e)
{
    sh_primary_config pc;
    sh_primary_config_default(&pc);
    pc.dsn = c->dsn;
    pc.connect_timeout_s = (int)c->timeout_s;
    pc.application_name = "soundhash-rewind";
    sh_primary *db = NULL;
    rd_kafka_t *rk = NULL;
    rd_kafka_topic_partition_list_t *l = rd_kafka_topic_partition_list_new(16);
    sh_group_offset *v = calloc(SH_PRIMARY_OFFSETS_MAX, sizeof *v);
    sh_primary_role role;
    rw_join join = {0};
    size_t n = 0;
    int rc = !v || !l ? sh_err_set(e, SH_ENOMEM, "out of memory") : 0;
    if (rc == 0)
        rc = sh_primary_new(&pc, &db, e);
    if (rc == 0)
        rc = sh_primary_role_get(db, &role, e);
    if (rc == 0 && role.follower)
        rc = sh_err_set(e, SH_EINVAL, "the database is still a follower: promote it first "
                                      "(soundhash db promote), then rewind");
    if (rc == 0)
        rc = sh_primary_offsets_load(db, c->group, v, SH_PRIMARY_OFFSETS_MAX, &n, e);
    if (rc == 0)
        rc = rw_consumer(c, &join, &rk, e);
    if (rc == 0)
        rc = sh_kafka_wait_ready(rk, c->brokers, (int)c->timeout_s * 1000, e);
    if (rc == 0)
        rc = rw_targets(rk, c, v, n, l, e);
    int64_t replay = rc == 0 ? rw_replay(rk, l, (int)c->timeout_s * 1000) : 0;
    if (rc == 0)
        rc = rw_commit(rk, c, &join, l, e);
    if (rc == 0) {
        printf("{\"group\":\"%s\",\"partitions\":%d,\"recorded\":%zu,\"events_to_replay\":%" PRId64
               ",\"offsets\":[",
               c->group, l->cnt, n, replay);
        for (int i = 0; i < l->cnt; i++)
            printf("%s{\"topic\":\"%s\",\"partition\":%d,\"offset\":%" PRId64 "}", i ? "," : "",
                   l->elems[i].topic, (int)l->elems[i].partition, l->elems[i].offset);
        printf("]}\n");
        SH_INFO("group_rewound", "group=%s partitions=%d recorded=%zu replay=%" PRId64, c->group,
                l->cnt, n, replay);
    }
    if (rk) {
        rd_kafka_consumer_close(rk); /* leaves the group; nothing more is committed */
        rd_kafka_destroy(rk);
    }
    if (l)
        rd_kafka_topic_partition_list_destroy(l);
    sh_primary_free(db);
    free(v);
    return rc;
}

int wk_cmd_rewind(int argc, char **argv)
{
    rw_cfg c;
    memset(&c, 0, sizeof c);
    sh_opt opts[] = {
        {"brokers", 'b', SH_OPT_STR, &c.brokers, NULL, "Kafka bootstrap servers host:port,...",
         SH_OPT_REQUIRED, 0, 0},
        {"dsn", 0, SH_OPT_STR, &c.dsn, NULL, "the NEW primary (the promoted follower)",
         SH_OPT_REQUIRED | SH_OPT_DSN, 0, 0},
        {"group", 'g', SH_OPT_STR, &c.group, "soundhash-workers", "the workers' consumer group", 0,
         0, 0},
        {"property", 'X', SH_OPT_LIST, &c.props, NULL, "librdkafka property key=value", 0, 0, 0},
        {"timeout", 0, SH_OPT_INT, &c.timeout_s, "30", "seconds for each Kafka/database wait", 0,
         1, 3600},
        {NULL, 0, 0, NULL, NULL, NULL, 0, 0, 0},
    };
    sh_cmd_spec spec = {
        .name = "worker rewind",
        .usage = "--brokers B --dsn NEW_PRIMARY [--group G]",
        .summary = "After a takeover (ops/takeover.sh): sets the committed offsets of the workers' "
                   "group, for every partition of soundhash.audio.events and "
                   "soundhash.audio.reindex, to the ones the workers recorded in the database "
                   "(table consumer_offsets; the oldest retained offset where none was recorded), "
                   "so the uploads the lost primary took after the follower's last replayed commit "
                   "are consumed again. Every worker of the group must be stopped: the rewind joins "
                   "the group and waits (--timeout) until it holds every partition, i.e. until the "
                   "sessions of killed workers expired. A database that is still a follower is "
                   "refused. Prints "
                   "one JSON line: group, partitions, recorded, events_to_replay, offsets.",
        .examples = "soundhash worker rewind --brokers 127.0.0.1:9092 --dsn \"$(cat /srv/pg-b/dsn)\"",
        .opts = opts};
    sh_err e = {0};
    int code = sh_opt_exit_code(&spec, sh_opt_parse(&spec, argc, argv, &e), &e);
    if (code < 0 && sh_primary_dsn_check(c.dsn, &e))
        code = sh_opt_exit_code(&spec, sh_err_wrap(&e, SH_EUSAGE, "--dsn"), &e);
    if (code < 0 && sh_kafka_props_check(c.brokers, &c.props, &e))
        code = sh_opt_exit_code(&spec, SH_EUSAGE, &e);
    if (code >= 0) {
        sh_opt_free(&spec);
        return code;
    }
    int rc = rw_run(&c, &e);
    if (rc)
        fprintf(stderr, "soundhash worker rewind: %s (%s)\n", sh_err_text(&e), sh_err_name(rc));
    sh_opt_free(&spec);
    return rc ? SH_EXIT_RUNTIME : SH_EXIT_OK;
}
