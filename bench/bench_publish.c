/* bench_publish — publish throughput of metadata-only audio events (no inline audio) through the
 * ingest C API (validate + Avro encode + idempotent produce, acks=all) to a broker over loopback
 * TCP. Target: >= 50,000 events/s on the 2-core dev machine.
 *
 * The broker is librdkafka's mock cluster (as `soundhash broker`) in a forked child process, so
 * it talks to the publisher only over TCP, as a real broker would; or an external cluster when
 * SOUNDHASH_BENCH_BROKERS is set.
 *
 *   bench_publish [EVENTS] [-X key=value]...     (default 200000 events; -X as in the CLI)
 */
#include "../ingest/sh_ingest.h"
#include "sh_clock.h"
#include "sh_kafka.h"

#include <librdkafka/rdkafka_mock.h>

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

/* Child: runs a 3-broker mock cluster with the project's topics, writes its bootstrap list to
 * `fd`, then waits until the parent closes the pipe's other end (or dies). */
static int run_broker_child(int wfd, int rfd_parent_alive)
{
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    rd_kafka_conf_set(conf, "log_level", "3", NULL, 0);
    char errstr[256];
    rd_kafka_t *rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, errstr, sizeof errstr);
    if (!rk)
        return 1;
    rd_kafka_mock_cluster_t *mc = rd_kafka_mock_cluster_new(rk, 3);
    if (!mc)
        return 1;
    size_t n;
    const sh_kafka_topic_def *t = sh_kafka_topics(&n);
    for (size_t i = 0; i < n; i++)
        rd_kafka_mock_topic_create(mc, t[i].name, t[i].partitions, 3);
    const char *bs = rd_kafka_mock_cluster_bootstraps(mc);
    if (write(wfd, bs, strlen(bs)) < 0)
        return 1;
    close(wfd);
    char c;
    while (read(rfd_parent_alive, &c, 1) > 0) /* EOF when the parent is done */
        ;
    rd_kafka_mock_cluster_destroy(mc);
    rd_kafka_destroy(rk);
    return 0;
}

static void count_cb(const sh_ingest_result *r, void *opaque)
{
    size_t *failed = opaque;
    if (r->code)
        (*failed)++;
}

static void make_event(sh_audio_event *ev, size_t i)
{
    char id[64], uri[128];
    snprintf(id, sizeof id, "bench-track-%08zu", i);
    snprintf(uri, sizeof uri, "file:///srv/media/catalogue/%08zu.flac", i);
    sh_event_set_string(ev, "track_id", id, NULL);
    sh_event_set_uri(ev, SH_SRC_FILE, uri, NULL);
    for (int k = 0; k < 32; k++)
        ev->sha256[k] = (uint8_t)(i * 31 + (size_t)k);
}

int main(int argc, char **argv)
{
    size_t events = 200000;
    sh_strlist props = {0};
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "-X") && i + 1 < argc)
            sh_strlist_push(&props, argv[++i]);
        else
            events = (size_t)strtoul(argv[i], NULL, 10);
    }
    const char *ext = getenv("SOUNDHASH_BENCH_BROKERS");
    char bootstrap[1024] = {0};
    int to_child[2] = {-1, -1};
    pid_t child = -1;
    if (ext && *ext) {
        snprintf(bootstrap, sizeof bootstrap, "%s", ext);
    } else {
        int from_child[2];
        if (pipe(from_child) || pipe(to_child))
            return 1;
        child = fork(); /* before any librdkafka thread exists in this process */
        if (child == 0) {
            close(from_child[0]);
            close(to_child[1]);
            _exit(run_broker_child(from_child[1], to_child[0]));
        }
        close(from_child[1]);
        close(to_child[0]);
        ssize_t n = read(from_child[0], bootstrap, sizeof bootstrap - 1);
        close(from_child[0]);
        if (n <= 0) {
            fprintf(stderr, "bench_publish: broker child failed\n");
            return 1;
        }
    }

    sh_ingest_config cfg;
    sh_ingest_config_default(&cfg);
    cfg.brokers = bootstrap;
    cfg.props = &props;
    sh_ingest *p = NULL;
    sh_err e = {0};
    if (sh_ingest_new(&cfg, &p, &e)) {
        fprintf(stderr, "bench_publish: %s\n", e.msg);
        return 1;
    }
    sh_audio_event ev = {0};
    ev.op = SH_OP_UPSERT;
    sh_event_set_string(&ev, "tenant", "bench", NULL);
    sh_event_set_string(&ev, "content_type", "audio/flac", NULL);
    sh_meta_set(&ev.meta, "title", "Benchmark Track", NULL);
    sh_meta_set(&ev.meta, "artist", "The Publishers", NULL);
    sh_meta_set(&ev.meta, "album", "Throughput", NULL);
    ev.has_sha256 = true;
    ev.size_bytes = 31415926;

    /* Warm-up: connections, metadata, producer id. */
    make_event(&ev, 0);
    sh_ingest_publish_sync(p, &ev, 10000, NULL, NULL, &e);

    size_t failed = 0;
    double t0 = sh_clock_mono_s();
    for (size_t i = 0; i < events; i++) {
        make_event(&ev, i);
        if (sh_ingest_publish(p, &ev, count_cb, &failed, NULL, &e)) {
            fprintf(stderr, "bench_publish: %s\n", e.msg);
            return 1;
        }
        if ((i & 1023) == 0)
            sh_ingest_poll(p, 0);
    }
    double t_enq = sh_clock_mono_s() - t0;
    int frc = sh_ingest_flush(p, 120000, &e);
    double t = sh_clock_mono_s() - t0;
    printf("bench_publish: %zu metadata-only events in %.2f s = %.0f events/s delivered "
           "(acks=all, idempotent; enqueue alone %.0f events/s; failed %zu%s)\n",
           events, t, (double)events / t, (double)events / t_enq, failed, frc ? ", flush timeout" : "");
    sh_event_clear(&ev);
    sh_ingest_free(p);
    sh_strlist_clear(&props);
    if (child > 0) {
        close(to_child[1]);
        waitpid(child, NULL, 0);
    }
    return failed || frc ? 1 : 0;
}
