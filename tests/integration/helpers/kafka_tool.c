/* kafka_tool.c — a tiny test helper, compiled by the integration tests that need it (not part of
 * the build): produces raw bytes that no SoundHash producer would send, and reads back what the
 * workers leave in Kafka.
 *
 *   kafka_tool produce BROKERS TOPIC KEY FILE     one message whose value is FILE's bytes
 *   kafka_tool produce-to BROKERS TOPIC PART FILE one message, FILE's bytes, to partition PART
 *   kafka_tool fetch BROKERS TOPIC PART OFFSET FILE   writes the value of the message at OFFSET
 *                                                 (-1: the last one) of partition PART to FILE
 *   kafka_tool dlq BROKERS N TIMEOUT_S            reads the DLQ topic from the start until N
 *                                                 records were decoded; prints one line each:
 *                                                 track_id|event_id|error_name|source_topic|
 *                                                 source_partition|source_offset|attempts|
 *                                                 original_len|schema_id|worker|reason
 *                                                 exit 1 if fewer than N arrived in time
 *   kafka_tool events BROKERS TOPIC N TIMEOUT_S   reads audio events from the start until N were
 *                                                 decoded; prints one line each:
 *                                                 track_id|op|submitted_at_ms|base_version|
 *                                                 fp_version|priority; exit 1 if fewer arrived
 *   kafka_tool committed BROKERS GROUP TOPIC      prints "partition offset" per partition
 *   kafka_tool end BROKERS TOPIC                  prints "partition high_watermark" per partition
 *   kafka_tool watermarks BROKERS TOPIC           prints "partition low high" per partition
 *   kafka_tool topic-config BROKERS TOPIC K=V...  sets the topic's dynamic configs to exactly
 *                                                 these (AlterConfigs replaces the set)
 *   kafka_tool replicas BROKERS TOPIC             prints "partition leader replicas isr" per
 *                                                 partition (ids comma-separated, leader -1 when
 *                                                 none), as the brokers' metadata says now
 *   kafka_tool create-topic BROKERS TOPIC PARTS   creates TOPIC (replication: the broker default;
 *                                                 one that exists is fine): a scratch topic on a
 *                                                 cluster that does not auto-create topics
 *   kafka_tool delete-topic BROKERS TOPIC         deletes TOPIC (a missing one is fine)
 *   kafka_tool reset BROKERS TIMEOUT_S            deletes the project's topics (those that exist),
 *                                                 waits until the metadata lists none of them, then
 *                                                 deletes every consumer group (retrying one that
 *                                                 still has members until their sessions expire);
 *                                                 exit 1 on an error or after TIMEOUT_S
 */
#include "sh_kafka.h"
#include "sh_registry.h"
#include "sh_schema.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static rd_kafka_t *client(rd_kafka_type_t type, const char *brokers, const char *group)
{
    char err[512];
    rd_kafka_conf_t *c = rd_kafka_conf_new();
    rd_kafka_conf_set(c, "bootstrap.servers", brokers, err, sizeof err);
    if (group) {
        rd_kafka_conf_set(c, "group.id", group, err, sizeof err);
        rd_kafka_conf_set(c, "enable.auto.commit", "false", err, sizeof err);
    }
    rd_kafka_t *rk = rd_kafka_new(type, c, err, sizeof err);
    if (!rk)
        fprintf(stderr, "kafka_tool: %s\n", err);
    return rk;
}

static int produce(const char *brokers, const char *topic, const char *key, int part,
                   const char *path)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return perror(path), 1;
    static char buf[1 << 20];
    size_t n = fread(buf, 1, sizeof buf, f);
    fclose(f);
    rd_kafka_t *rk = client(RD_KAFKA_PRODUCER, brokers, NULL);
    if (!rk)
        return 1;
    rd_kafka_resp_err_t err = rd_kafka_producev(
        rk, RD_KAFKA_V_TOPIC(topic), RD_KAFKA_V_KEY(key, strlen(key)), RD_KAFKA_V_VALUE(buf, n),
        RD_KAFKA_V_PARTITION(part), RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY), RD_KAFKA_V_END);
    if (!err)
        err = rd_kafka_flush(rk, 10000);
    rd_kafka_destroy(rk);
    if (err)
        fprintf(stderr, "kafka_tool produce: %s\n", rd_kafka_err2str(err));
    return err ? 1 : 0;
}

static int fetch(const char *brokers, const char *topic, int part, long long offset,
                 const char *path)
{
    rd_kafka_t *rk = client(RD_KAFKA_CONSUMER, brokers, "kafka-tool-fetch");
    if (!rk)
        return 1;
    int64_t lo = 0, hi = 0;
    if (offset < 0 &&
        rd_kafka_query_watermark_offsets(rk, topic, part, &lo, &hi, 10000) == 0 && hi > lo)
        offset = hi - 1;
    int rc = 1;
    rd_kafka_topic_partition_list_t *l = rd_kafka_topic_partition_list_new(1);
    rd_kafka_topic_partition_list_add(l, topic, part)->offset = offset;
    if (offset >= 0 && rd_kafka_assign(rk, l) == 0) {
        for (int i = 0; i < 100 && rc; i++) {
            rd_kafka_message_t *m = rd_kafka_consumer_poll(rk, 100);
            if (m && !m->err && m->offset == offset) {
                FILE *f = fopen(path, "wb");
                rc = !f || fwrite(m->payload, 1, m->len, f) != m->len;
                if (f)
                    fclose(f);
            }
            if (m)
                rd_kafka_message_destroy(m);
        }
    }
    rd_kafka_topic_partition_list_destroy(l);
    rd_kafka_consumer_close(rk);
    rd_kafka_destroy(rk);
    if (rc)
        fprintf(stderr, "kafka_tool fetch: no message at %s/%d offset %lld\n", topic, part,
                offset);
    return rc;
}

static int partitions_of(rd_kafka_t *rk, const char *topic)
{
    const struct rd_kafka_metadata *md;
    rd_kafka_topic_t *t = rd_kafka_topic_new(rk, topic, NULL);
    int n = 0;
    if (rd_kafka_metadata(rk, 0, t, &md, 10000) == 0) {
        n = md->topic_cnt ? md->topics[0].partition_cnt : 0;
        rd_kafka_metadata_destroy(md);
    }
    rd_kafka_topic_destroy(t);
    return n;
}

static void print_dlq(const sh_dlq_record *r)
{
    printf("%s|%s|%s|%s|%d|%lld|%d|%zu|%d|%s|%s\n", r->track_id, r->event_id, r->error_name,
           r->source_topic, (int)r->source_partition, (long long)r->source_offset,
           (int)r->attempts, r->original_len, (int)r->schema_id, r->worker,
           r->reason ? r->reason : "");
}

/* Decodes and prints one record; returns 1 when it counted (decoded), 0 when it did not. */
typedef int (*print_fn)(const rd_kafka_message_t *m, sh_registry *reg);

static int print_dlq_msg(const rd_kafka_message_t *m, sh_registry *reg)
{
    sh_dlq_record r = {0};
    sh_err e = {0};
    int ok = sh_dlq_decode(m->payload, m->len, reg, NULL, &r, &e) == 0;
    if (ok)
        print_dlq(&r);
    else
        printf("UNDECODABLE|%s\n", sh_err_text(&e));
    sh_dlq_clear(&r);
    return ok;
}

static int print_event_msg(const rd_kafka_message_t *m, sh_registry *reg)
{
    sh_audio_event ev = {0};
    sh_err e = {0};
    int ok = sh_event_decode(m->payload, m->len, reg, NULL, &ev, &e) == 0;
    if (ok)
        printf("%s|%s|%lld|%lld|%d|%d\n", ev.track_id, sh_event_op_name(ev.op),
               (long long)ev.submitted_at_ms, (long long)ev.base_version, (int)ev.fp_version,
               (int)ev.priority);
    else
        printf("UNDECODABLE|%s\n", sh_err_text(&e));
    sh_event_clear(&ev);
    return ok;
}

/* Reads `topic` from the beginning of every partition until `want` records were printed or
 * `timeout_s` passed; exit status 0 when enough were found. */
static int read_topic(const char *brokers, const char *group, const char *topic, int want,
                      int timeout_s, print_fn print)
{
    rd_kafka_t *rk = client(RD_KAFKA_CONSUMER, brokers, group);
    sh_registry *reg = NULL;
    if (!rk || sh_registry_new_from_env(&reg, NULL))
        return 1;
    int np = partitions_of(rk, topic);
    rd_kafka_topic_partition_list_t *l = rd_kafka_topic_partition_list_new(np);
    for (int p = 0; p < np; p++)
        rd_kafka_topic_partition_list_add(l, topic, p)->offset = RD_KAFKA_OFFSET_BEGINNING;
    rd_kafka_assign(rk, l);
    rd_kafka_topic_partition_list_destroy(l);
    int got = 0;
    time_t end = time(NULL) + timeout_s;
    while (got < want && time(NULL) < end) {
        rd_kafka_message_t *m = rd_kafka_consumer_poll(rk, 200);
        if (!m)
            continue;
        if (!m->err)
            got += print(m, reg);
        rd_kafka_message_destroy(m);
    }
    rd_kafka_consumer_close(rk);
    rd_kafka_destroy(rk);
    sh_registry_free(reg);
    return got >= want ? 0 : 1;
}

static int dlq(const char *brokers, int want, int timeout_s)
{
    return read_topic(brokers, "kafka-tool-dlq", SH_TOPIC_AUDIO_DLQ, want, timeout_s,
                      print_dlq_msg);
}

static int events(const char *brokers, const char *topic, int want, int timeout_s)
{
    return read_topic(brokers, "kafka-tool-events", topic, want, timeout_s, print_event_msg);
}

static int committed(const char *brokers, const char *group, const char *topic)
{
    rd_kafka_t *rk = client(RD_KAFKA_CONSUMER, brokers, group);
    if (!rk)
        return 1;
    int np = partitions_of(rk, topic);
    rd_kafka_topic_partition_list_t *l = rd_kafka_topic_partition_list_new(np);
    for (int p = 0; p < np; p++)
        rd_kafka_topic_partition_list_add(l, topic, p);
    rd_kafka_resp_err_t err = rd_kafka_committed(rk, l, 10000);
    for (int i = 0; !err && i < l->cnt; i++)
        printf("%d %lld\n", (int)l->elems[i].partition, (long long)l->elems[i].offset);
    rd_kafka_topic_partition_list_destroy(l);
    rd_kafka_destroy(rk);
    return err ? 1 : 0;
}

static int end_offsets(const char *brokers, const char *topic)
{
    rd_kafka_t *rk = client(RD_KAFKA_CONSUMER, brokers, "kafka-tool-end");
    if (!rk)
        return 1;
    int np = partitions_of(rk, topic), rc = 0;
    for (int p = 0; p < np && !rc; p++) {
        int64_t lo, hi;
        rc = rd_kafka_query_watermark_offsets(rk, topic, p, &lo, &hi, 10000) ? 1 : 0;
        if (!rc)
            printf("%d %lld\n", p, (long long)hi);
    }
    rd_kafka_destroy(rk);
    return rc;
}

static int watermarks(const char *brokers, const char *topic)
{
    rd_kafka_t *rk = client(RD_KAFKA_CONSUMER, brokers, "kafka-tool-end");
    if (!rk)
        return 1;
    int np = partitions_of(rk, topic), rc = 0;
    for (int p = 0; p < np && !rc; p++) {
        int64_t lo, hi;
        rc = rd_kafka_query_watermark_offsets(rk, topic, p, &lo, &hi, 10000) ? 1 : 0;
        if (!rc)
            printf("%d %lld %lld\n", p, (long long)lo, (long long)hi);
    }
    rd_kafka_destroy(rk);
    return rc;
}

/* AlterConfigs (librdkafka 2.0 has no incremental form): the topic's dynamic configs become kv. */
static int topic_config(const char *brokers, const char *topic, char **kv, int n)
{
    rd_kafka_t *rk = client(RD_KAFKA_PRODUCER, brokers, NULL);
    if (!rk)
        return 1;
    rd_kafka_ConfigResource_t *r = rd_kafka_ConfigResource_new(RD_KAFKA_RESOURCE_TOPIC, topic);
    int rc = 0;
    for (int i = 0; i < n && !rc; i++) {
        char *eq = strchr(kv[i], '=');
        if (!eq) {
            fprintf(stderr, "kafka_tool topic-config: %s: want key=value\n", kv[i]);
            rc = 2;
            break;
        }
        *eq = 0;
        if (rd_kafka_ConfigResource_set_config(r, kv[i], eq + 1)) {
            fprintf(stderr, "kafka_tool topic-config: cannot set %s\n", kv[i]);
            rc = 1;
        }
    }
    rd_kafka_queue_t *q = rd_kafka_queue_new(rk);
    rd_kafka_event_t *ev = NULL;
    if (!rc) {
        rd_kafka_AlterConfigs(rk, &r, 1, NULL, q);
        ev = rd_kafka_queue_poll(q, 15000);
        rc = !ev || rd_kafka_event_error(ev) ? 1 : 0;
        if (ev && rd_kafka_event_error(ev))
            fprintf(stderr, "kafka_tool topic-config: %s\n", rd_kafka_event_error_string(ev));
    }
    const rd_kafka_AlterConfigs_result_t *res = ev ? rd_kafka_event_AlterConfigs_result(ev) : NULL;
    size_t nr = 0;
    const rd_kafka_ConfigResource_t **rr = res ? rd_kafka_AlterConfigs_result_resources(res, &nr)
                                               : NULL;
    for (size_t i = 0; i < nr; i++)
        if (rd_kafka_ConfigResource_error(rr[i])) {
            fprintf(stderr, "kafka_tool topic-config: %s\n",
                    rd_kafka_ConfigResource_error_string(rr[i]));
            rc = 1;
        }
    if (ev)
        rd_kafka_event_destroy(ev);
    rd_kafka_queue_destroy(q);
    rd_kafka_ConfigResource_destroy(r);
    rd_kafka_destroy(rk);
    return rc;
}

static void print_ids(const int32_t *ids, int n)
{
    for (int i = 0; i < n; i++)
        printf("%s%d", i ? "," : " ", (int)ids[i]);
    if (!n)
        printf(" -");
}

static int replicas(const char *brokers, const char *topic)
{
    rd_kafka_t *rk = client(RD_KAFKA_PRODUCER, brokers, NULL);
    if (!rk)
        return 1;
    const struct rd_kafka_metadata *md = NULL;
    rd_kafka_topic_t *t = rd_kafka_topic_new(rk, topic, NULL);
    rd_kafka_resp_err_t err = rd_kafka_metadata(rk, 0, t, &md, 10000);
    if (!err && (md->topic_cnt != 1 || md->topics[0].err))
        err = md->topic_cnt ? md->topics[0].err : RD_KAFKA_RESP_ERR_UNKNOWN_TOPIC_OR_PART;
    for (int i = 0; !err && i < md->topics[0].partition_cnt; i++) {
        const struct rd_kafka_metadata_partition *mp = &md->topics[0].partitions[i];
        printf("%d %d", (int)mp->id, (int)mp->leader);
        print_ids(mp->replicas, mp->replica_cnt);
        print_ids(mp->isrs, mp->isr_cnt);
        printf("\n");
    }
    if (err)
        fprintf(stderr, "kafka_tool replicas: %s\n", rd_kafka_err2str(err));
    if (md)
        rd_kafka_metadata_destroy(md);
    rd_kafka_topic_destroy(t);
    rd_kafka_destroy(rk);
    return err ? 1 : 0;
}

/* How many of the project's topics the cluster lists now; -1 when the metadata is not answered. */
static int project_topics_listed(rd_kafka_t *rk)
{
    const struct rd_kafka_metadata *md;
    if (rd_kafka_metadata(rk, 1, NULL, &md, 10000))
        return -1;
    int n = 0;
    for (int i = 0; i < md->topic_cnt; i++)
        n += !md->topics[i].err && sh_kafka_topic_partitions(md->topics[i].topic) > 0;
    rd_kafka_metadata_destroy(md);
    return n;
}

static int delete_topics(const char *brokers, int timeout_s)
{
    rd_kafka_t *rk = client(RD_KAFKA_PRODUCER, brokers, NULL);
    if (!rk)
        return 1;
    size_t n;
    const sh_kafka_topic_def *t = sh_kafka_topics(&n);
    rd_kafka_DeleteTopic_t *dt[8];
    for (size_t i = 0; i < n && i < 8; i++)
        dt[i] = rd_kafka_DeleteTopic_new(t[i].name);
    rd_kafka_queue_t *q = rd_kafka_queue_new(rk);
    rd_kafka_DeleteTopics(rk, dt, n, NULL, q);
    rd_kafka_event_t *ev = rd_kafka_queue_poll(q, timeout_s * 1000);
    int rc = ev ? 0 : 1;
    if (ev && rd_kafka_event_error(ev)) {
        fprintf(stderr, "kafka_tool reset: %s\n", rd_kafka_event_error_string(ev));
        rc = 1;
    }
    const rd_kafka_DeleteTopics_result_t *res = ev ? rd_kafka_event_DeleteTopics_result(ev) : NULL;
    size_t nr = 0;
    const rd_kafka_topic_result_t **tr = res ? rd_kafka_DeleteTopics_result_topics(res, &nr) : NULL;
    for (size_t i = 0; i < nr; i++) {
        rd_kafka_resp_err_t e = rd_kafka_topic_result_error(tr[i]);
        if (e && e != RD_KAFKA_RESP_ERR_UNKNOWN_TOPIC_OR_PART) {
            fprintf(stderr, "kafka_tool reset: %s: %s\n", rd_kafka_topic_result_name(tr[i]),
                    rd_kafka_err2str(e));
            rc = 1;
        }
    }
    if (ev)
        rd_kafka_event_destroy(ev);
    rd_kafka_queue_destroy(q);
    rd_kafka_DeleteTopic_destroy_array(dt, n);
    /* Deletion is asynchronous in the controller: wait until the metadata lists none of them. */
    struct timespec pause = {0, 100 * 1000 * 1000};
    for (int waited = 0; !rc; waited += 100) {
        int left = project_topics_listed(rk);
        if (left == 0)
            break;
        if (waited >= timeout_s * 1000) {
            fprintf(stderr, "kafka_tool reset: %d topic(s) still listed\n", left);
            rc = 1;
        }
        nanosleep(&pause, NULL);
    }
    rd_kafka_destroy(rk);
    return rc;
}

/* Deletes the groups in `names`; sets *busy to how many still have members (not deleted). */
static int delete_groups_once(rd_kafka_t *rk, const char **names, int n, int *busy)
{
    rd_kafka_DeleteGroup_t *dg[64];
    int m = n < 64 ? n : 64, rc = 0;
    *busy = 0;
    for (int i = 0; i < m; i++)
        dg[i] = rd_kafka_DeleteGroup_new(names[i]);
    rd_kafka_queue_t *q = rd_kafka_queue_new(rk);
    rd_kafka_DeleteGroups(rk, dg, (size_t)m, NULL, q);
    rd_kafka_event_t *ev = rd_kafka_queue_poll(q, 30000);
    const rd_kafka_DeleteGroups_result_t *res = ev ? rd_kafka_event_DeleteGroups_result(ev) : NULL;
    size_t nr = 0;
    const rd_kafka_group_result_t **gr = res ? rd_kafka_DeleteGroups_result_groups(res, &nr) : NULL;
    if (!res)
        rc = 1;
    for (size_t i = 0; i < nr; i++) {
        const rd_kafka_error_t *e = rd_kafka_group_result_error(gr[i]);
        rd_kafka_resp_err_t code = e ? rd_kafka_error_code(e) : RD_KAFKA_RESP_ERR_NO_ERROR;
        if (code == RD_KAFKA_RESP_ERR_NON_EMPTY_GROUP)
            (*busy)++;
        else if (code && code != RD_KAFKA_RESP_ERR_GROUP_ID_NOT_FOUND) {
            fprintf(stderr, "kafka_tool reset: group %s: %s\n", rd_kafka_group_result_name(gr[i]),
                    rd_kafka_err2str(code));
            rc = 1;
        }
    }
    if (ev)
        rd_kafka_event_destroy(ev);
    rd_kafka_queue_destroy(q);
    rd_kafka_DeleteGroup_destroy_array(dg, (size_t)m);
    return rc;
}

/* With the groups gone too, no test inherits an earlier test's committed offsets or the members
 * of its SIGKILLed consumers (a group keeps them until their sessions expire). */
static int delete_groups(const char *brokers, int timeout_s)
{
    rd_kafka_t *rk = client(RD_KAFKA_PRODUCER, brokers, NULL);
    if (!rk)
        return 1;
    struct timespec pause = {0, 200 * 1000 * 1000};
    int rc = 0;
    for (int waited = 0;; waited += 200) {
        const struct rd_kafka_group_list *gl = NULL;
        if (rd_kafka_list_groups(rk, NULL, &gl, 10000)) {
            fprintf(stderr, "kafka_tool reset: cannot list the groups\n");
            rc = 1;
            break;
        }
        const char *names[64];
        int n = 0, busy = 0;
        for (int i = 0; i < gl->group_cnt && n < 64; i++)
            names[n++] = gl->groups[i].group;
        rc = n ? delete_groups_once(rk, names, n, &busy) : 0;
        rd_kafka_group_list_destroy(gl);
        if (rc || !busy)
            break;
        if (waited >= timeout_s * 1000) {
            fprintf(stderr, "kafka_tool reset: %d group(s) still have members\n", busy);
            rc = 1;
            break;
        }
        nanosleep(&pause, NULL);
    }
    rd_kafka_destroy(rk);
    return rc;
}

/* The outcome of a CreateTopics or DeleteTopics request for one topic: 0, or 1 (printed), with
 * `ok` an error code that counts as success (the topic already there, or already gone). */
static int topic_admin_result(rd_kafka_event_t *ev, const char *what, rd_kafka_resp_err_t ok)
{
    if (!ev || rd_kafka_event_error(ev)) {
        fprintf(stderr, "kafka_tool %s: %s\n", what,
                ev ? rd_kafka_event_error_string(ev) : "no answer");
        return 1;
    }
    size_t nr = 0;
    const rd_kafka_topic_result_t **tr =
        rd_kafka_event_type(ev) == RD_KAFKA_EVENT_CREATETOPICS_RESULT
            ? rd_kafka_CreateTopics_result_topics(rd_kafka_event_CreateTopics_result(ev), &nr)
            : rd_kafka_DeleteTopics_result_topics(rd_kafka_event_DeleteTopics_result(ev), &nr);
    rd_kafka_resp_err_t e = nr == 1 ? rd_kafka_topic_result_error(tr[0]) : RD_KAFKA_RESP_ERR__FAIL;
    if (e && e != ok) {
        fprintf(stderr, "kafka_tool %s: %s\n", what, rd_kafka_err2str(e));
        return 1;
    }
    return 0;
}

static int create_topic(const char *brokers, const char *topic, int parts)
{
    char err[256];
    rd_kafka_t *rk = client(RD_KAFKA_PRODUCER, brokers, NULL);
    if (!rk)
        return 1;
    rd_kafka_NewTopic_t *nt = rd_kafka_NewTopic_new(topic, parts, -1, err, sizeof err);
    int rc = 1;
    if (nt) {
        rd_kafka_queue_t *q = rd_kafka_queue_new(rk);
        rd_kafka_CreateTopics(rk, &nt, 1, NULL, q);
        rd_kafka_event_t *ev = rd_kafka_queue_poll(q, 30000);
        rc = topic_admin_result(ev, "create-topic", RD_KAFKA_RESP_ERR_TOPIC_ALREADY_EXISTS);
        if (ev)
            rd_kafka_event_destroy(ev);
        rd_kafka_queue_destroy(q);
        rd_kafka_NewTopic_destroy(nt);
    } else {
        fprintf(stderr, "kafka_tool create-topic: %s\n", err);
    }
    rd_kafka_destroy(rk);
    return rc;
}

static int delete_topic(const char *brokers, const char *topic)
{
    rd_kafka_t *rk = client(RD_KAFKA_PRODUCER, brokers, NULL);
    if (!rk)
        return 1;
    rd_kafka_DeleteTopic_t *dt = rd_kafka_DeleteTopic_new(topic);
    rd_kafka_queue_t *q = rd_kafka_queue_new(rk);
    rd_kafka_DeleteTopics(rk, &dt, 1, NULL, q);
    rd_kafka_event_t *ev = rd_kafka_queue_poll(q, 30000);
    int rc = topic_admin_result(ev, "delete-topic", RD_KAFKA_RESP_ERR_UNKNOWN_TOPIC_OR_PART);
    if (ev)
        rd_kafka_event_destroy(ev);
    rd_kafka_queue_destroy(q);
    rd_kafka_DeleteTopic_destroy(dt);
    rd_kafka_destroy(rk);
    return rc;
}

int main(int argc, char **argv)
{
    if (argc == 6 && !strcmp(argv[1], "produce"))
        return produce(argv[2], argv[3], argv[4], RD_KAFKA_PARTITION_UA, argv[5]);
    if (argc == 6 && !strcmp(argv[1], "produce-to"))
        return produce(argv[2], argv[3], "hostile", (int)strtol(argv[4], NULL, 10), argv[5]);
    if (argc == 7 && !strcmp(argv[1], "fetch"))
        return fetch(argv[2], argv[3], (int)strtol(argv[4], NULL, 10), strtoll(argv[5], NULL, 10),
                     argv[6]);
    if (argc == 5 && !strcmp(argv[1], "dlq"))
        return dlq(argv[2], (int)strtol(argv[3], NULL, 10), (int)strtol(argv[4], NULL, 10));
    if (argc == 6 && !strcmp(argv[1], "events"))
        return events(argv[2], argv[3], (int)strtol(argv[4], NULL, 10),
                      (int)strtol(argv[5], NULL, 10));
    if (argc == 5 && !strcmp(argv[1], "committed"))
        return committed(argv[2], argv[3], argv[4]);
    if (argc == 4 && !strcmp(argv[1], "end"))
        return end_offsets(argv[2], argv[3]);
    if (argc == 4 && !strcmp(argv[1], "watermarks"))
        return watermarks(argv[2], argv[3]);
    if (argc >= 5 && !strcmp(argv[1], "topic-config"))
        return topic_config(argv[2], argv[3], argv + 4, argc - 4);
    if (argc == 4 && !strcmp(argv[1], "replicas"))
        return replicas(argv[2], argv[3]);
    if (argc == 5 && !strcmp(argv[1], "create-topic"))
        return create_topic(argv[2], argv[3], (int)strtol(argv[4], NULL, 10));
    if (argc == 4 && !strcmp(argv[1], "delete-topic"))
        return delete_topic(argv[2], argv[3]);
    if (argc == 4 && !strcmp(argv[1], "reset")) {
        int timeout_s = (int)strtol(argv[3], NULL, 10);
        return delete_topics(argv[2], timeout_s) || delete_groups(argv[2], timeout_s);
    }
    fprintf(stderr, "usage: see the comment at the top of kafka_tool.c\n");
    return 2;
}
