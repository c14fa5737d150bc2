/* Unit tests for the ingest C API (ingest/sh_ingest.h) against librdkafka's mock cluster run
 * in-process (real loopback sockets): publish, consume back, decode with the schemas codec and
 * compare every field; routing by op; the callback contract; failures and fast errors. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include "../../ingest/sh_ingest.h"
#include "sh_kafka.h"

#include <librdkafka/rdkafka_mock.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct fixture {
    rd_kafka_t *host;
    rd_kafka_mock_cluster_t *mc;
    const char *bootstrap;
    sh_registry *reg;
    sh_strlist quiet; /* -X log_level=0: expected connection failures stay off the test log */
} fixture;

static int setup(void **state)
{
    fixture *f = calloc(1, sizeof *f);
    assert_non_null(f);
    assert_int_equal(sh_strlist_push(&f->quiet, "log_level=0"), 0);
    rd_kafka_conf_t *conf = NULL;
    assert_int_equal(sh_kafka_conf_new(NULL, &f->quiet, &conf, NULL), 0);
    char errstr[256];
    f->host = rd_kafka_new(RD_KAFKA_PRODUCER, conf, errstr, sizeof errstr);
    assert_non_null(f->host);
    f->mc = rd_kafka_mock_cluster_new(f->host, 3);
    assert_non_null(f->mc);
    size_t n;
    const sh_kafka_topic_def *t = sh_kafka_topics(&n);
    for (size_t i = 0; i < n; i++)
        assert_int_equal(rd_kafka_mock_topic_create(f->mc, t[i].name, t[i].partitions, 3), 0);
    f->bootstrap = rd_kafka_mock_cluster_bootstraps(f->mc);
    assert_int_equal(sh_registry_new_embedded(&f->reg, NULL), 0);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    fixture *f = *state;
    sh_registry_free(f->reg);
    rd_kafka_mock_cluster_destroy(f->mc);
    rd_kafka_destroy(f->host);
    sh_strlist_clear(&f->quiet);
    free(f);
    return 0;
}

static sh_ingest *publisher(fixture *f, int delivery_timeout_ms)
{
    sh_ingest_config cfg;
    sh_ingest_config_default(&cfg);
    cfg.brokers = f->bootstrap;
    cfg.registry = f->reg;
    cfg.props = &f->quiet;
    if (delivery_timeout_ms)
        cfg.delivery_timeout_ms = delivery_timeout_ms;
    sh_ingest *p = NULL;
    sh_err e = {0};
    int rc = sh_ingest_new(&cfg, &p, &e);
    if (rc)
        fail_msg("sh_ingest_new: %s", e.msg);
    return p;
}

/* Collects results of the asynchronous API. */
typedef struct results {
    int calls;
    int code[8];
    char event_id[8][SH_EVENT_ID_LEN + 1];
    char topic[8][64];
    int32_t partition[8];
    int64_t offset[8];
} results;

static void collect(const sh_ingest_result *r, void *opaque)
{
    results *rs = opaque;
    int i = rs->calls++;
    assert_true(i < 8);
    rs->code[i] = r->code;
    snprintf(rs->event_id[i], sizeof rs->event_id[i], "%s", r->event_id);
    snprintf(rs->topic[i], sizeof rs->topic[i], "%s", r->topic);
    rs->partition[i] = r->partition;
    rs->offset[i] = r->offset;
}

static void make_upsert(sh_audio_event *ev, const char *track)
{
    memset(ev, 0, sizeof *ev);
    ev->op = SH_OP_UPSERT;
    assert_int_equal(sh_event_set_string(ev, "track_id", track, NULL), 0);
    assert_int_equal(sh_event_set_string(ev, "tenant", "acme", NULL), 0);
    assert_int_equal(sh_event_set_string(ev, "content_type", "audio/ogg", NULL), 0);
    assert_int_equal(sh_event_set_string(ev, "trace_id", "trace-1", NULL), 0);
    assert_int_equal(sh_event_set_uri(ev, SH_SRC_FILE, "file:///srv/media/a%20b.ogg", NULL), 0);
    ev->has_sha256 = true;
    for (int i = 0; i < 32; i++)
        ev->sha256[i] = (uint8_t)(i * 7);
    ev->size_bytes = 123456;
    ev->priority = 3;
    ev->fp_version = 2;
    assert_int_equal(sh_meta_set(&ev->meta, "title", "Song \"A\"", NULL), 0);
    assert_int_equal(sh_meta_set(&ev->meta, "artist", "X", NULL), 0);
}

/* Reads one message at (topic, partition, offset) with a plain consumer. */
static rd_kafka_message_t *fetch(fixture *f, const char *topic, int32_t partition, int64_t offset)
{
    rd_kafka_conf_t *conf = NULL;
    assert_int_equal(sh_kafka_conf_new(f->bootstrap, &f->quiet, &conf, NULL), 0);
    assert_int_equal(sh_kafka_conf_set(conf, "group.id", "test-ingest", NULL), 0);
    char errstr[256];
    rd_kafka_t *c = rd_kafka_new(RD_KAFKA_CONSUMER, conf, errstr, sizeof errstr);
    assert_non_null(c);
    rd_kafka_topic_partition_list_t *l = rd_kafka_topic_partition_list_new(1);
    rd_kafka_topic_partition_list_add(l, topic, partition)->offset = offset;
    assert_int_equal(rd_kafka_assign(c, l), 0);
    rd_kafka_topic_partition_list_destroy(l);
    rd_kafka_message_t *m = NULL;
    for (int tries = 0; tries < 100 && !m; tries++) {
        m = rd_kafka_consumer_poll(c, 100);
        if (m && m->err) {
            rd_kafka_message_destroy(m);
            m = NULL;
        }
    }
    assert_non_null(m);
    /* The message outlives the consumer only if we copy it; keep the consumer alive instead by
     * leaking nothing: copy out what the tests need. */
    rd_kafka_message_t *copy = calloc(1, sizeof *copy);
    assert_non_null(copy);
    copy->len = m->len;
    copy->payload = malloc(m->len);
    memcpy(copy->payload, m->payload, m->len);
    copy->key_len = m->key_len;
    copy->key = malloc(m->key_len + 1);
    memcpy(copy->key, m->key, m->key_len);
    ((char *)copy->key)[m->key_len] = '\0';
    copy->offset = m->offset;
    copy->partition = m->partition;
    rd_kafka_message_destroy(m);
    rd_kafka_consumer_close(c);
    rd_kafka_destroy(c);
    return copy;
}

static void free_copy(rd_kafka_message_t *m)
{
    free(m->payload);
    free(m->key);
    free(m);
}

static void test_publish_roundtrip(void **state)
{
    fixture *f = *state;
    sh_ingest *p = publisher(f, 0);
    sh_audio_event up, rx, del;
    make_upsert(&up, "track-1");
    make_upsert(&rx, "track-2");
    rx.op = SH_OP_REINDEX;
    rx.priority = -5;
    memset(&del, 0, sizeof del);
    del.op = SH_OP_DELETE;
    assert_int_equal(sh_event_set_string(&del, "track_id", "track-3", NULL), 0);
    assert_int_equal(sh_event_set_string(&del, "tenant", "acme", NULL), 0);
    del.size_bytes = -1;

    results rs = {0};
    char ids[3][SH_EVENT_ID_LEN + 1];
    sh_err e = {0};
    assert_int_equal(sh_ingest_publish(p, &up, collect, &rs, ids[0], &e), 0);
    assert_int_equal(sh_ingest_publish(p, &rx, collect, &rs, ids[1], &e), 0);
    assert_int_equal(sh_ingest_publish(p, &del, collect, &rs, ids[2], &e), 0);
    assert_int_equal(sh_ingest_in_flight(p), 3);
    assert_int_equal(sh_ingest_flush(p, 10000, &e), 0);
    assert_int_equal(sh_ingest_in_flight(p), 0);
    assert_int_equal(rs.calls, 3);

    const char *want_topic[3] = {SH_TOPIC_AUDIO_EVENTS, SH_TOPIC_AUDIO_REINDEX,
                                 SH_TOPIC_AUDIO_EVENTS};
    const sh_audio_event *sent[3] = {&up, &rx, &del};
    for (int i = 0; i < 3; i++) {
        /* Reports may arrive in any order across partitions: find this event's. */
        int k = -1;
        for (int j = 0; j < 3; j++)
            k = strcmp(rs.event_id[j], ids[i]) ? k : j;
        assert_true(k >= 0);
        assert_int_equal(rs.code[k], 0);
        assert_string_equal(rs.topic[k], want_topic[i]);
        assert_true(rs.partition[k] >= 0 && rs.offset[k] >= 0);

        rd_kafka_message_t *m = fetch(f, rs.topic[k], rs.partition[k], rs.offset[k]);
        assert_int_equal(m->offset, rs.offset[k]);
        assert_string_equal((char *)m->key, sent[i]->track_id); /* key = track id */
        sh_audio_event got = {0};
        assert_int_equal(sh_event_decode(m->payload, m->len, f->reg, NULL, &got, &e), 0);
        assert_string_equal(got.event_id, ids[i]);
        assert_int_equal(got.op, sent[i]->op);
        assert_string_equal(got.track_id, sent[i]->track_id);
        assert_string_equal(got.tenant, sent[i]->tenant);
        assert_int_equal(got.source.kind, sent[i]->source.kind);
        if (sent[i]->source.uri)
            assert_string_equal(got.source.uri, sent[i]->source.uri);
        assert_int_equal(got.has_sha256, sent[i]->has_sha256);
        assert_memory_equal(got.sha256, sent[i]->sha256, 32);
        assert_int_equal(got.size_bytes, sent[i]->size_bytes);
        assert_string_equal(got.content_type, sent[i]->content_type);
        assert_int_equal(got.meta.n, sent[i]->meta.n);
        for (size_t j = 0; j < got.meta.n; j++)
            assert_string_equal(sh_meta_get(&got.meta, sent[i]->meta.kv[j].key),
                                sent[i]->meta.kv[j].value);
        assert_true(got.submitted_at_ms > 1600000000000LL); /* filled in: now */
        assert_string_equal(got.producer, "soundhash-ingest/" SH_VERSION);
        assert_int_equal(got.priority, sent[i]->priority);
        assert_string_equal(got.trace_id, sent[i]->trace_id);
        assert_int_equal(got.fp_version, sent[i]->fp_version);
        sh_event_clear(&got);
        free_copy(m);
    }
    /* Same key → same partition, later offset (one track's events stay ordered). */
    int32_t part = -1;
    int64_t off = -1;
    assert_int_equal(sh_ingest_publish_sync(p, &up, -1, &part, &off, &e), 0);
    int k0 = strcmp(rs.event_id[0], ids[0]) ? (strcmp(rs.event_id[1], ids[0]) ? 2 : 1) : 0;
    assert_int_equal(part, rs.partition[k0]);
    assert_true(off > rs.offset[k0]);

    sh_event_clear(&up);
    sh_event_clear(&rx);
    sh_event_clear(&del);
    sh_ingest_free(p);
}

static void test_invalid_event_never_calls_back(void **state)
{
    fixture *f = *state;
    sh_ingest *p = publisher(f, 0);
    results rs = {0};
    sh_err e = {0};
    sh_audio_event ev;
    make_upsert(&ev, "ok");
    ev.track_id[0] = '\0'; /* empty track id */
    assert_int_equal(sh_ingest_publish(p, &ev, collect, &rs, NULL, &e), SH_EINVAL);
    assert_non_null(strstr(e.msg, "track"));
    snprintf(ev.track_id, sizeof ev.track_id, "bad\x01id");
    assert_int_equal(sh_ingest_publish(p, &ev, collect, &rs, NULL, &e), SH_EINVAL);
    /* Inline audio over the cap. */
    snprintf(ev.track_id, sizeof ev.track_id, "big");
    uint8_t *big = calloc(1, SH_INLINE_AUDIO_DEFAULT_MAX + 1);
    assert_non_null(big);
    free(ev.source.uri);
    ev.source.uri = NULL;
    ev.source.kind = SH_SRC_INLINE;
    ev.source.data = big;
    ev.source.data_len = SH_INLINE_AUDIO_DEFAULT_MAX + 1;
    assert_int_equal(sh_ingest_publish(p, &ev, collect, &rs, NULL, &e), SH_ETOOBIG);
    assert_int_equal(sh_ingest_flush(p, 1000, &e), 0);
    assert_int_equal(rs.calls, 0);
    assert_int_equal(sh_ingest_in_flight(p), 0);
    sh_event_clear(&ev);
    sh_ingest_free(p);
}

static void test_unreachable_and_bad_config(void **state)
{
    fixture *f = *state;
    sh_ingest_config cfg;
    sh_ingest_config_default(&cfg);
    cfg.registry = f->reg;
    cfg.props = &f->quiet;
    cfg.brokers = "127.0.0.1:1";
    cfg.connect_timeout_ms = 300;
    sh_ingest *p = (sh_ingest *)&cfg;
    sh_err e = {0};
    assert_int_equal(sh_ingest_new(&cfg, &p, &e), SH_ETIMEOUT);
    assert_null(p);
    assert_non_null(strstr(e.msg, "127.0.0.1:1"));

    cfg.brokers = NULL;
    assert_int_equal(sh_ingest_new(&cfg, &p, &e), SH_EUSAGE);
    assert_non_null(strstr(e.msg, "no Kafka brokers"));

    sh_strlist bad = {0};
    assert_int_equal(sh_strlist_push(&bad, "enable.idempotence=maybe"), 0);
    cfg.brokers = f->bootstrap;
    cfg.props = &bad;
    assert_int_equal(sh_ingest_new(&cfg, &p, &e), SH_EINVAL);
    assert_non_null(strstr(e.msg, "enable.idempotence"));
    sh_strlist_clear(&bad);
}

/* With every broker down, an event fails after the delivery timeout: its callback runs once with
 * the error; freeing with events in flight runs their callbacks with SH_ECANCELED. */
static void test_delivery_failure_and_cancel(void **state)
{
    fixture *f = *state;
    sh_ingest *p = publisher(f, 600);
    for (int b = 1; b <= 3; b++)
        assert_int_equal(rd_kafka_mock_broker_set_down(f->mc, b), 0);
    results rs = {0};
    sh_err e = {0};
    sh_audio_event ev;
    make_upsert(&ev, "t-fail");
    assert_int_equal(sh_ingest_publish(p, &ev, collect, &rs, NULL, &e), 0);
    assert_int_equal(sh_ingest_flush(p, 10000, &e), 0);
    assert_int_equal(rs.calls, 1);
    assert_int_equal(rs.code[0], SH_ETIMEOUT);
    assert_int_equal(rs.partition[0], -1);

    int32_t part;
    assert_int_equal(sh_ingest_publish_sync(p, &ev, 5000, &part, NULL, &e), SH_ETIMEOUT);

    assert_int_equal(sh_ingest_publish(p, &ev, collect, &rs, NULL, &e), 0);
    sh_ingest_free(p);
    assert_int_equal(rs.calls, 2);
    assert_int_equal(rs.code[1], SH_ECANCELED);
    for (int b = 1; b <= 3; b++)
        assert_int_equal(rd_kafka_mock_broker_set_up(f->mc, b), 0);
    sh_event_clear(&ev);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_publish_roundtrip),
        cmocka_unit_test(test_invalid_event_never_calls_back),
        cmocka_unit_test(test_unreachable_and_bad_config),
        cmocka_unit_test(test_delivery_failure_and_cancel),
    };
    return cmocka_run_group_tests_name("sh_ingest", tests, setup, teardown);
}
