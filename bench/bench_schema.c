/* Benchmark: encode and decode throughput of the Avro contract (embedded registry), for a
 * metadata-only upload event (file source, 4 metadata entries), a 64 KiB inline-clip event, and
 * a 256 KiB index delta. Prints records/s and MB/s per case. */
#include "sh_clock.h"
#include "sh_schema.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void report(const char *name, const char *what, long n, size_t bytes, double secs)
{
    printf("bench_schema %-18s %-6s %9.0f records/s  %8.1f MB/s  (%ld records, %zu bytes each)\n",
           name, what, (double)n / secs, (double)n * (double)bytes / secs / 1e6, n, bytes);
}

static int bench_event(sh_registry *reg, const char *name, const sh_audio_event *ev, long n)
{
    uint8_t *buf = NULL;
    size_t len = 0;
    double t0 = sh_clock_mono_s();
    for (long i = 0; i < n; i++) {
        free(buf);
        if (sh_event_encode(ev, reg, NULL, &buf, &len, NULL))
            return 1;
    }
    report(name, "encode", n, len, sh_clock_mono_s() - t0);
    sh_audio_event out = {0};
    t0 = sh_clock_mono_s();
    for (long i = 0; i < n; i++) {
        if (sh_event_decode(buf, len, reg, NULL, &out, NULL))
            return 1;
        sh_event_clear(&out);
    }
    report(name, "decode", n, len, sh_clock_mono_s() - t0);
    free(buf);
    return 0;
}

static int bench_delta(sh_registry *reg, long n)
{
    sh_delta_envelope d = {.shard = 1, .epoch = 1, .sequence = 2, .prev_sequence = 1,
                           .count = 1000, .fp_version = 1, .codec = SH_CODEC_ZSTD,
                           .raw_size = 1 << 20, .commit_lsn = 1, .created_at_ms = 1};
    d.payload_len = 256 * 1024;
    d.payload = calloc(1, d.payload_len);
    strcpy(d.region, "us-east");
    uint8_t *buf = NULL;
    size_t len = 0;
    double t0 = sh_clock_mono_s();
    for (long i = 0; i < n; i++) {
        free(buf);
        if (sh_delta_encode(&d, reg, NULL, &buf, &len, NULL))
            return 1;
    }
    report("delta-256KiB", "encode", n, len, sh_clock_mono_s() - t0);
    sh_delta_envelope out = {0};
    t0 = sh_clock_mono_s();
    for (long i = 0; i < n; i++) {
        if (sh_delta_decode(buf, len, reg, NULL, &out, NULL))
            return 1;
        sh_delta_clear(&out);
    }
    report("delta-256KiB", "decode", n, len, sh_clock_mono_s() - t0);
    free(buf);
    free(d.payload);
    return 0;
}

int main(int argc, char **argv)
{
    long n = argc > 1 ? strtol(argv[1], NULL, 10) : 200000;
    if (n <= 0)
        n = 200000;
    sh_registry *reg;
    sh_err e = {0};
    if (sh_registry_new_embedded(&reg, &e)) {
        fprintf(stderr, "bench_schema: %s\n", e.msg);
        return 1;
    }
    sh_audio_event ev = {0};
    sh_event_id_new(ev.event_id, NULL);
    ev.op = SH_OP_UPSERT;
    strcpy(ev.track_id, "catalogue/0001/track-000123");
    strcpy(ev.tenant, "acme-records");
    strcpy(ev.producer, "soundhash-ingest/0.1.0");
    strcpy(ev.content_type, "audio/ogg");
    sh_event_set_uri(&ev, SH_SRC_FILE, "file:///srv/media/acme/0001/track-000123.ogg", NULL);
    ev.has_sha256 = true;
    ev.size_bytes = 4123456;
    ev.submitted_at_ms = 1700000000000;
    sh_meta_set(&ev.meta, "title", "So What", NULL);
    sh_meta_set(&ev.meta, "artist", "Miles Davis", NULL);
    sh_meta_set(&ev.meta, "album", "Kind of Blue", NULL);
    sh_meta_set(&ev.meta, "year", "1959", NULL);
    int rc = bench_event(reg, "event-metadata", &ev, n);
    static uint8_t clip[64 * 1024];
    sh_event_set_inline(&ev, clip, sizeof clip, NULL);
    ev.size_bytes = sizeof clip;
    rc = rc || bench_event(reg, "event-inline-64KiB", &ev, n / 20 + 1);
    rc = rc || bench_delta(reg, n / 100 + 1);
    sh_event_clear(&ev);
    sh_registry_free(reg);
    if (rc)
        fprintf(stderr, "bench_schema: encode/decode failed\n");
    return rc;
}
