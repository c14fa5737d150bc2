/* Unit tests for schemas/sh_registry: the embedded schemas are the files in schemas/, and the
 * Confluent REST client against a fake Schema Registry on loopback (libmicrohttpd in this process)
 * that can answer correctly, with garbage, with an oversized body, with HTTP 500, slowly, or not
 * at all. Run from the repository root (as `make test` does): the .avsc files are read from
 * schemas/. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "sh_schema.h"
#include "sh_schema_int.h"

#include <arpa/inet.h>
#include <jansson.h>
#include <microhttpd.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

/* ---- the fake registry ----------------------------------------------------------------------- */

enum mode { MODE_OK, MODE_GARBAGE, MODE_HUGE, MODE_500, MODE_SLOW };

/* An AudioEvent from a newer producer: fields reordered, one extra field with a default, the Op
 * symbols in another order with an extra symbol. Our decoder must map it by name. */
static const char FOREIGN_V3[] =
    "{\"type\":\"record\",\"name\":\"AudioEvent\",\"namespace\":\"io.soundhash.v1\",\"fields\":["
    "{\"name\":\"loudness\",\"type\":\"double\",\"default\":0},"
    "{\"name\":\"track_id\",\"type\":\"string\"},"
    "{\"name\":\"event_id\",\"type\":\"string\"},"
    "{\"name\":\"op\",\"type\":{\"type\":\"enum\",\"name\":\"Op\","
    "\"symbols\":[\"ARCHIVE\",\"DELETE\",\"REINDEX\",\"UPSERT\"]}},"
    "{\"name\":\"tenant\",\"type\":\"string\"},"
    "{\"name\":\"source\",\"type\":[\"null\",{\"type\":\"record\",\"name\":\"UrlSource\","
    "\"fields\":[{\"name\":\"url\",\"type\":\"string\"}]}]},"
    "{\"name\":\"sha256\",\"type\":[\"null\",{\"type\":\"fixed\",\"name\":\"Sha256\",\"size\":32}]},"
    "{\"name\":\"size_bytes\",\"type\":\"int\"},"
    "{\"name\":\"content_type\",\"type\":[\"null\",\"string\"]},"
    "{\"name\":\"metadata\",\"type\":{\"type\":\"map\",\"values\":\"string\"}},"
    "{\"name\":\"submitted_at\",\"type\":\"long\"},"
    "{\"name\":\"producer\",\"type\":\"string\"},"
    "{\"name\":\"fp_version\",\"type\":\"int\"},"
    "{\"name\":\"priority\",\"type\":\"int\",\"default\":0},"
    "{\"name\":\"tags\",\"type\":{\"type\":\"array\",\"items\":\"string\"},\"default\":[]}"
    "]}";
static const char OTHER_RECORD[] =
    "{\"type\":\"record\",\"name\":\"Thing\",\"namespace\":\"com.other\",\"fields\":["
    "{\"name\":\"a\",\"type\":\"int\"}]}";
enum { ID_FOREIGN = 99, ID_OTHER = 98, ID_PROTOBUF = 97 };

typedef struct fake {
    struct MHD_Daemon *d;
    int port;
    enum mode mode;
    pthread_mutex_t mu;
    int posts, gets;
    char *schemas[4]; /* registered by id 71..73 */
} fake;

typedef struct upload {
    char *p;
    size_t n;
} upload;

static enum MHD_Result reply(struct MHD_Connection *c, unsigned status, const char *body)
{
    struct MHD_Response *r =
        MHD_create_response_from_buffer(strlen(body), (void *)body, MHD_RESPMEM_MUST_COPY);
    MHD_add_response_header(r, "Content-Type", "application/vnd.schemaregistry.v1+json");
    enum MHD_Result ok = MHD_queue_response(c, status, r);
    MHD_destroy_response(r);
    return ok;
}

static enum MHD_Result reply_json(struct MHD_Connection *c, unsigned status, json_t *j)
{
    char *s = json_dumps(j, JSON_COMPACT);
    json_decref(j);
    enum MHD_Result ok = reply(c, status, s);
    free(s);
    return ok;
}

static enum MHD_Result on_post(fake *f, struct MHD_Connection *c, const char *url, upload *u)
{
    const char *prefix = "/subjects/io.soundhash.v1.";
    json_t *req = u->p ? json_loadb(u->p, u->n, 0, NULL) : NULL;
    json_t *schema = json_object_get(req, "schema");
    int kind = strstr(url, "AudioEvent") ? 0 : strstr(url, "DeadLetter") ? 1
               : strstr(url, "IndexDelta") ? 2 : -1;
    if (strncmp(url, prefix, strlen(prefix)) != 0 || kind < 0 || !json_is_string(schema)) {
        json_decref(req);
        return reply(c, 422, "{\"error_code\":42201,\"message\":\"Invalid schema\"}");
    }
    pthread_mutex_lock(&f->mu);
    f->posts++;
    free(f->schemas[kind]);
    f->schemas[kind] = strdup(json_string_value(schema));
    pthread_mutex_unlock(&f->mu);
    json_decref(req);
    return reply_json(c, 200, json_pack("{s:i}", "id", 71 + kind));
}

static enum MHD_Result on_get(fake *f, struct MHD_Connection *c, const char *url)
{
    int id = 0;
    if (sscanf(url, "/schemas/ids/%d", &id) != 1)
        return reply(c, 404, "{\"error_code\":404,\"message\":\"HTTP 404 Not Found\"}");
    pthread_mutex_lock(&f->mu);
    f->gets++;
    const char *text = id >= 71 && id <= 73 ? f->schemas[id - 71] : NULL;
    json_t *j = text ? json_pack("{s:s}", "schema", text) : NULL;
    pthread_mutex_unlock(&f->mu);
    if (j)
        return reply_json(c, 200, j);
    if (id == ID_FOREIGN)
        return reply_json(c, 200, json_pack("{s:s}", "schema", FOREIGN_V3));
    if (id == ID_OTHER)
        return reply_json(c, 200, json_pack("{s:s}", "schema", OTHER_RECORD));
    if (id == ID_PROTOBUF)
        return reply_json(c, 200, json_pack("{s:s,s:s}", "schemaType", "PROTOBUF", "schema",
                                            "syntax = \"proto3\";"));
    return reply(c, 404, "{\"error_code\":40403,\"message\":\"Schema not found\"}");
}

static enum MHD_Result handler(void *cls, struct MHD_Connection *c, const char *url,
                               const char *method, const char *version, const char *data,
                               size_t *data_size, void **con_cls)
{
    (void)version;
    fake *f = cls;
    upload *u = *con_cls;
    if (!u) {
        *con_cls = calloc(1, sizeof(upload));
        return *con_cls ? MHD_YES : MHD_NO;
    }
    if (*data_size) { /* request body arrives in pieces */
        char *p = realloc(u->p, u->n + *data_size + 1);
        if (!p)
            return MHD_NO;
        memcpy(p + u->n, data, *data_size);
        u->n += *data_size;
        p[u->n] = '\0';
        u->p = p;
        *data_size = 0;
        return MHD_YES;
    }
    switch (f->mode) {
    case MODE_GARBAGE:
        return reply(c, 200, "<html>proxy error</html>");
    case MODE_HUGE: {
        size_t n = 2u << 20;
        char *big = malloc(n + 1);
        memset(big, ' ', n);
        big[n] = '\0';
        enum MHD_Result ok = reply(c, 200, big);
        free(big);
        return ok;
    }
    case MODE_500:
        return reply(c, 500, "{\"error_code\":50001,\"message\":\"Error in the backend store\"}");
    case MODE_SLOW:
        usleep(1000 * 1000); /* the client gives up long before */
        return reply(c, 200, "{}");
    case MODE_OK:
        break;
    }
    if (strcmp(method, "POST") == 0)
        return on_post(f, c, url, u);
    return on_get(f, c, url);
}

static void completed(void *cls, struct MHD_Connection *c, void **con_cls,
                      enum MHD_RequestTerminationCode code)
{
    (void)cls, (void)c, (void)code;
    upload *u = *con_cls;
    if (u) {
        free(u->p);
        free(u);
    }
    *con_cls = NULL;
}

static int fake_start(void **state)
{
    fake *f = calloc(1, sizeof *f);
    pthread_mutex_init(&f->mu, NULL);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    f->d = MHD_start_daemon(MHD_USE_THREAD_PER_CONNECTION | MHD_USE_INTERNAL_POLLING_THREAD, 0,
                            NULL, NULL, handler, f, MHD_OPTION_SOCK_ADDR, &sa,
                            MHD_OPTION_NOTIFY_COMPLETED, completed, NULL, MHD_OPTION_END);
    if (!f->d)
        return -1;
    f->port = MHD_get_daemon_info(f->d, MHD_DAEMON_INFO_BIND_PORT)->port;
    *state = f;
    return 0;
}

static int fake_stop(void **state)
{
    fake *f = *state;
    MHD_stop_daemon(f->d);
    for (int i = 0; i < 4; i++)
        free(f->schemas[i]);
    pthread_mutex_destroy(&f->mu);
    free(f);
    return 0;
}

static sh_registry *rest(const fake *f, long timeout_ms)
{
    char url[64];
    snprintf(url, sizeof url, "http://127.0.0.1:%d/", f->port);
    sh_registry_config cfg = {.url = url, .timeout_ms = timeout_ms};
    sh_registry *r = NULL;
    sh_err e = {0};
    if (sh_registry_new(&cfg, &r, &e))
        fail_msg("%s", e.msg);
    assert_true(sh_registry_is_rest(r));
    return r;
}

static void make_event(sh_audio_event *ev)
{
    memset(ev, 0, sizeof *ev);
    assert_int_equal(sh_event_id_new(ev->event_id, NULL), 0);
    ev->op = SH_OP_UPSERT;
    strcpy(ev->track_id, "trk-1");
    strcpy(ev->tenant, "acme");
    strcpy(ev->producer, "test/1");
    assert_int_equal(sh_event_set_uri(ev, SH_SRC_URL, "https://example.com/a.ogg", NULL), 0);
    ev->size_bytes = -1;
    ev->submitted_at_ms = 1700000000000;
    assert_int_equal(sh_meta_set(&ev->meta, "title", "Naïma", NULL), 0);
}

/* ---- tests: embedded ------------------------------------------------------------------------- */

static char *slurp(const char *path, size_t *n)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return NULL;
    char *buf = calloc(1, 1 << 20);
    *n = fread(buf, 1, (1 << 20) - 1, f);
    fclose(f);
    return buf;
}

static void test_embedded_matches_files(void **state)
{
    (void)state;
    const int32_t ids[] = {SH_SCHEMA_ID_AUDIO_EVENT_V1, SH_SCHEMA_ID_AUDIO_EVENT_V2,
                           SH_SCHEMA_ID_AUDIO_EVENT_V3, SH_SCHEMA_ID_DEAD_LETTER_V1,
                           SH_SCHEMA_ID_INDEX_DELTA_V1};
    for (size_t i = 0; i < sizeof ids / sizeof ids[0]; i++) {
        char path[256];
        snprintf(path, sizeof path, "schemas/%s", sh_registry_embedded_file(ids[i]));
        size_t n = 0;
        char *text = slurp(path, &n);
        if (!text)
            fail_msg("cannot read %s (run from the repository root)", path);
        const char *emb = sh_registry_embedded_json(ids[i]);
        if (strlen(emb) != n || memcmp(emb, text, n) != 0)
            fail_msg("%s differs from its embedded copy: run schemas/embed.sh", path);
        /* Every field has a doc, and the record names its version. */
        json_t *j = json_loadb(text, n, 0, NULL);
        assert_non_null(j);
        assert_true(json_is_integer(json_object_get(j, "version")));
        assert_string_equal(json_string_value(json_object_get(j, "namespace")), "io.soundhash.v1");
        size_t k;
        json_t *fld;
        json_array_foreach(json_object_get(j, "fields"), k, fld)
        {
            if (!json_is_string(json_object_get(fld, "doc")))
                fail_msg("%s: field %s has no doc", path,
                         json_string_value(json_object_get(fld, "name")));
        }
        json_decref(j);
        free(text);
    }
    assert_null(sh_registry_embedded_json(5));
}

/* The defaults the C decoder applies for version 2 and 3 fields are the ones the current .avsc
 * declares. */
static void test_v2_defaults_match_avsc(void **state)
{
    (void)state;
    json_t *j = json_loads(sh_registry_embedded_json(SH_SCHEMA_ID_AUDIO_EVENT_V3), 0, NULL);
    assert_non_null(j);
    size_t k;
    json_t *fld;
    int seen = 0;
    json_array_foreach(json_object_get(j, "fields"), k, fld)
    {
        const char *name = json_string_value(json_object_get(fld, "name"));
        json_t *def = json_object_get(fld, "default");
        if (strcmp(name, "priority") == 0) {
            assert_true(json_is_integer(def) && json_integer_value(def) == 0);
            seen++;
        } else if (strcmp(name, "trace_id") == 0) {
            assert_true(json_is_null(def));
            seen++;
        } else if (strcmp(name, "base_version") == 0) {
            assert_true(json_is_integer(def) && json_integer_value(def) == 0);
            seen++;
        }
    }
    assert_int_equal(seen, 3);
    json_decref(j);
}

static void test_embedded_lookup(void **state)
{
    (void)state;
    sh_registry *r;
    assert_int_equal(sh_registry_new_embedded(&r, NULL), 0);
    assert_false(sh_registry_is_rest(r));
    const sh_reg_schema *s;
    assert_int_equal(sh_registry_writer(r, SH_KIND_AUDIO_EVENT, &s, NULL), 0);
    assert_int_equal(s->id, SH_SCHEMA_ID_AUDIO_EVENT_V3);
    assert_int_equal(s->version, 3);
    assert_int_equal(sh_registry_writer(r, SH_KIND_INDEX_DELTA, &s, NULL), 0);
    assert_int_equal(s->id, SH_SCHEMA_ID_INDEX_DELTA_V1);
    assert_int_equal(sh_registry_writer(r, SH_KIND_COUNT, &s, NULL), SH_EINVAL);
    sh_err e = {0};
    assert_int_equal(sh_registry_lookup(r, 12345, &s, &e), SH_ESCHEMA);
    assert_null(s);
    assert_int_equal(sh_registry_lookup(r, SH_SCHEMA_ID_AUDIO_EVENT_V1, &s, NULL), 0);
    assert_int_equal(s->kind, SH_KIND_AUDIO_EVENT);
    sh_registry_free(r);
    sh_registry_free(NULL);
}

static void test_config_errors(void **state)
{
    (void)state;
    sh_registry *r = NULL;
    sh_err e = {0};
    sh_registry_config cfg = {.url = "ftp://registry"};
    assert_int_equal(sh_registry_new(&cfg, &r, &e), SH_EINVAL);
    assert_null(r);
    cfg.url = "http://a b";
    assert_int_equal(sh_registry_new(&cfg, &r, &e), SH_EINVAL);
    unsetenv("SOUNDHASH_SCHEMA_REGISTRY_URL");
    assert_int_equal(sh_registry_new_from_env(&r, &e), 0);
    assert_false(sh_registry_is_rest(r));
    sh_registry_free(r);
    setenv("SOUNDHASH_SCHEMA_REGISTRY_URL", "http://127.0.0.1:1", 1);
    setenv("SOUNDHASH_SCHEMA_REGISTRY_TIMEOUT_MS", "soon", 1);
    assert_int_equal(sh_registry_new_from_env(&r, &e), SH_EINVAL);
    assert_non_null(strstr(e.msg, "TIMEOUT_MS"));
    setenv("SOUNDHASH_SCHEMA_REGISTRY_TIMEOUT_MS", "250", 1);
    assert_int_equal(sh_registry_new_from_env(&r, &e), 0);
    assert_true(sh_registry_is_rest(r));
    sh_registry_free(r);
    unsetenv("SOUNDHASH_SCHEMA_REGISTRY_URL");
    unsetenv("SOUNDHASH_SCHEMA_REGISTRY_TIMEOUT_MS");
}

/* ---- tests: REST ----------------------------------------------------------------------------- */

static void test_rest_register_and_lookup(void **state)
{
    fake *f = *state;
    f->mode = MODE_OK;
    sh_registry *r = rest(f, 0);
    sh_audio_event ev, back = {0};
    make_event(&ev);
    uint8_t *buf, *buf2;
    size_t len, len2;
    sh_err e = {0};
    if (sh_event_encode(&ev, r, NULL, &buf, &len, &e))
        fail_msg("%s", e.msg);
    int32_t id;
    assert_int_equal(sh_frame_schema_id(buf, len, &id, NULL), 0);
    assert_int_equal(id, 71);
    assert_int_equal(f->posts, 1);
    /* Registered once, then cached; our own frames decode without a lookup. */
    assert_int_equal(sh_event_encode(&ev, r, NULL, &buf2, &len2, NULL), 0);
    assert_int_equal(f->posts, 1);
    assert_int_equal(sh_event_decode(buf, len, r, NULL, &back, &e), 0);
    assert_int_equal(f->gets, 0);
    sh_event_clear(&back);

    /* A fresh consumer looks the id up (once) and decodes. */
    sh_registry *r2 = rest(f, 0);
    assert_int_equal(sh_event_decode(buf, len, r2, NULL, &back, &e), 0);
    assert_int_equal(sh_event_decode(buf2, len2, r2, NULL, &back, &e), 0);
    assert_int_equal(f->gets, 1);
    assert_string_equal(back.track_id, "trk-1");
    assert_string_equal(sh_meta_get(&back.meta, "title"), "Naïma");
    sh_event_clear(&back);

    /* Dead letters and deltas register their own subjects. */
    sh_dlq_record d = {.schema_id = -1, .error_code = SH_EIO, .attempts = 1};
    strcpy(d.error_name, "SH_EIO");
    strcpy(d.worker, "w");
    strcpy(d.source_topic, "t");
    uint8_t *db;
    size_t dl;
    assert_int_equal(sh_dlq_encode(&d, r, NULL, &db, &dl, &e), 0);
    assert_int_equal(sh_frame_schema_id(db, dl, &id, NULL), 0);
    assert_int_equal(id, 72);
    sh_dlq_record dback = {0};
    assert_int_equal(sh_dlq_decode(db, dl, r2, NULL, &dback, &e), 0);
    sh_dlq_clear(&dback);
    free(db);

    free(buf);
    free(buf2);
    sh_event_clear(&ev);
    sh_registry_free(r);
    sh_registry_free(r2);
}

static int fill_foreign(avro_value_t *rec, sh_err *e)
{
    avro_value_t map, src, tags, item;
    static const uint8_t sha[32] = {1, 2, 3};
    int rc;
    if ((rc = sh_av_set_str(rec, "event_id", "0190c6a2-7b1c-7abc-8def-0123456789ab", e)) ||
        (rc = sh_av_set_enum(rec, "op", "REINDEX", e)) ||
        (rc = sh_av_set_str(rec, "track_id", "from-java", e)) ||
        (rc = sh_av_set_str(rec, "tenant", "acme", e)) ||
        (rc = sh_av_set_record(rec, "source", "UrlSource", &src, e)) ||
        (rc = sh_av_set_str(&src, "url", "http://h/x.flac", e)) ||
        (rc = sh_av_set_fixed(rec, "sha256", sha, 32, e)) ||
        (rc = sh_av_set_int(rec, "size_bytes", 77, e)) ||
        (rc = sh_av_set_null(rec, "content_type", e)) ||
        (rc = sh_av_field_map(rec, "metadata", &map, e)) ||
        (rc = sh_av_set_long(rec, "submitted_at", 5, e)) ||
        (rc = sh_av_set_str(rec, "producer", "java/17", e)) ||
        (rc = sh_av_set_int(rec, "fp_version", 4, e)) ||
        (rc = sh_av_set_int(rec, "priority", 9, e)))
        return rc;
    avro_value_t loud;
    if (avro_value_get_by_name(rec, "loudness", &loud, NULL) || avro_value_set_double(&loud, -14.5))
        return SH_EAVRO;
    if (avro_value_get_by_name(rec, "tags", &tags, NULL) ||
        avro_value_append(&tags, &item, NULL) || avro_value_set_string(&item, "jazz"))
        return SH_EAVRO;
    return 0;
}

static void test_rest_foreign_writer(void **state)
{
    fake *f = *state;
    f->mode = MODE_OK;
    avro_schema_t s;
    assert_int_equal(avro_schema_from_json_length(FOREIGN_V3, strlen(FOREIGN_V3), &s), 0);
    avro_value_iface_t *iface = avro_generic_class_from_schema(s);
    avro_value_t rec;
    assert_int_equal(avro_generic_value_new(iface, &rec), 0);
    assert_int_equal(fill_foreign(&rec, NULL), 0);
    size_t size;
    assert_int_equal(avro_value_sizeof(&rec, &size), 0);
    uint8_t *buf = malloc(size + 5);
    memcpy(buf, "\0\0\0\0\x63", 5); /* id 99 */
    avro_writer_t w = avro_writer_memory((const char *)buf + 5, (int64_t)size);
    assert_int_equal(avro_value_write(w, &rec), 0);
    avro_writer_free(w);
    avro_value_decref(&rec);
    avro_value_iface_decref(iface);
    avro_schema_decref(s);

    sh_registry *r = rest(f, 0);
    sh_audio_event back = {0};
    sh_err e = {0};
    if (sh_event_decode(buf, size + 5, r, NULL, &back, &e))
        fail_msg("%s", e.msg);
    assert_int_equal(back.op, SH_OP_REINDEX); /* by symbol name, not index */
    assert_string_equal(back.track_id, "from-java");
    assert_int_equal(back.source.kind, SH_SRC_URL);
    assert_string_equal(back.source.uri, "http://h/x.flac");
    assert_int_equal(back.size_bytes, 77); /* int promoted to long */
    assert_true(back.has_sha256);
    assert_int_equal(back.sha256[2], 3);
    assert_int_equal(back.priority, 9);
    assert_string_equal(back.trace_id, ""); /* absent in the writer: default */
    assert_int_equal(back.fp_version, 4);
    sh_event_clear(&back);
    sh_registry_free(r);
    free(buf);
}

static void test_rest_unknown_and_foreign_ids(void **state)
{
    fake *f = *state;
    f->mode = MODE_OK;
    sh_registry *r = rest(f, 0);
    const sh_reg_schema *s;
    sh_err e = {0};
    int gets = f->gets;
    assert_int_equal(sh_registry_lookup(r, 4242, &s, &e), SH_ESCHEMA);
    assert_non_null(strstr(e.msg, "4242"));
    assert_int_equal(sh_registry_lookup(r, 4242, &s, &e), SH_ESCHEMA);
    assert_int_equal(f->gets, gets + 1); /* unknown ids are remembered */
    assert_int_equal(sh_registry_lookup(r, ID_OTHER, &s, &e), SH_ESCHEMA);
    assert_non_null(strstr(e.msg, "not a SoundHash record"));
    assert_int_equal(sh_registry_lookup(r, ID_PROTOBUF, &s, &e), SH_ESCHEMA);
    assert_non_null(strstr(e.msg, "not an Avro schema"));
    assert_int_equal(sh_registry_lookup(r, -3, &s, &e), SH_ESCHEMA);
    /* Embedded ids mean nothing to a real registry. */
    assert_int_equal(sh_registry_lookup(r, SH_SCHEMA_ID_AUDIO_EVENT_V2, &s, &e), SH_ESCHEMA);
    sh_registry_free(r);
}

/* Threads sharing one cold REST registry: concurrent lookups of the same id all succeed and the
 * cache keeps one entry. */
typedef struct job {
    sh_registry *reg;
    const uint8_t *frame;
    size_t len;
    int failures;
} job;

static void *decode_many(void *arg)
{
    job *j = arg;
    for (int i = 0; i < 50; i++) {
        sh_audio_event ev = {0};
        if (sh_event_decode(j->frame, j->len, j->reg, NULL, &ev, NULL))
            j->failures++;
        sh_event_clear(&ev);
    }
    return NULL;
}

static void test_rest_concurrent(void **state)
{
    fake *f = *state;
    f->mode = MODE_OK;
    sh_registry *w = rest(f, 0);
    sh_audio_event ev;
    make_event(&ev);
    uint8_t *buf;
    size_t len;
    assert_int_equal(sh_event_encode(&ev, w, NULL, &buf, &len, NULL), 0);
    sh_registry *r = rest(f, 0);
    int gets = f->gets;
    pthread_t t[4];
    job jobs[4];
    for (int i = 0; i < 4; i++) {
        jobs[i] = (job){.reg = r, .frame = buf, .len = len};
        assert_int_equal(pthread_create(&t[i], NULL, decode_many, &jobs[i]), 0);
    }
    for (int i = 0; i < 4; i++) {
        pthread_join(t[i], NULL);
        assert_int_equal(jobs[i].failures, 0);
    }
    assert_true(f->gets - gets >= 1 && f->gets - gets <= 4);
    const sh_reg_schema *a, *b;
    assert_int_equal(sh_registry_lookup(r, 71, &a, NULL), 0);
    assert_int_equal(sh_registry_lookup(r, 71, &b, NULL), 0);
    assert_ptr_equal(a, b);
    free(buf);
    sh_event_clear(&ev);
    sh_registry_free(r);
    sh_registry_free(w);
}

/* A registry in trouble: encode fails with a clear error and produces nothing. */
static void expect_encode_fails(fake *f, enum mode m, long timeout_ms, int code, const char *needle)
{
    f->mode = m;
    sh_registry *r = rest(f, timeout_ms);
    sh_audio_event ev;
    make_event(&ev);
    uint8_t *buf = (uint8_t *)"junk";
    size_t len = 3;
    sh_err e = {0};
    int rc = sh_event_encode(&ev, r, NULL, &buf, &len, &e);
    if (rc != code || !strstr(e.msg, needle))
        fail_msg("mode %d: expected %s '%s', got %s: %s", m, sh_err_name(code), needle,
                 sh_err_name(rc), e.msg);
    assert_null(buf);
    assert_int_equal(len, 0);
    /* Lookups fail the same way. */
    const sh_reg_schema *s;
    assert_int_equal(sh_registry_lookup(r, 71, &s, &e), code);
    /* Registry trouble is not remembered: once it recovers, the same handle works. */
    f->mode = MODE_OK;
    rc = sh_event_encode(&ev, r, NULL, &buf, &len, &e);
    if (rc)
        fail_msg("after recovery: %s", e.msg);
    free(buf);
    sh_event_clear(&ev);
    sh_registry_free(r);
    f->mode = MODE_OK;
}

static void test_rest_garbage(void **state)
{
    expect_encode_fails(*state, MODE_GARBAGE, 0, SH_EHTTP, "not a JSON object");
}

static void test_rest_huge(void **state)
{
    expect_encode_fails(*state, MODE_HUGE, 0, SH_EHTTP, "response over");
}

static void test_rest_500(void **state)
{
    expect_encode_fails(*state, MODE_500, 0, SH_EHTTP, "HTTP 500 Error in the backend store");
}

static void test_rest_slow(void **state)
{
    expect_encode_fails(*state, MODE_SLOW, 200, SH_ETIMEOUT, "timed out");
}

static void test_rest_down(void **state)
{
    (void)state;
    /* A loopback port with nothing listening: bound, then closed. */
    int s = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t sl = sizeof sa;
    assert_int_equal(bind(s, (struct sockaddr *)&sa, sizeof sa), 0);
    assert_int_equal(getsockname(s, (struct sockaddr *)&sa, &sl), 0);
    close(s);
    char url[64];
    snprintf(url, sizeof url, "http://127.0.0.1:%d", ntohs(sa.sin_port));
    sh_registry_config cfg = {.url = url, .timeout_ms = 2000};
    sh_registry *r;
    assert_int_equal(sh_registry_new(&cfg, &r, NULL), 0);
    sh_audio_event ev;
    make_event(&ev);
    uint8_t *buf;
    size_t len;
    sh_err e = {0};
    assert_int_equal(sh_event_encode(&ev, r, NULL, &buf, &len, &e), SH_EHTTP);
    assert_null(buf);
    assert_non_null(strstr(e.msg, url));
    sh_event_clear(&ev);
    sh_registry_free(r);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_embedded_matches_files),
        cmocka_unit_test(test_v2_defaults_match_avsc),
        cmocka_unit_test(test_embedded_lookup),
        cmocka_unit_test(test_config_errors),
        cmocka_unit_test(test_rest_register_and_lookup),
        cmocka_unit_test(test_rest_foreign_writer),
        cmocka_unit_test(test_rest_unknown_and_foreign_ids),
        cmocka_unit_test(test_rest_concurrent),
        cmocka_unit_test(test_rest_garbage),
        cmocka_unit_test(test_rest_huge),
        cmocka_unit_test(test_rest_500),
        cmocka_unit_test(test_rest_slow),
        cmocka_unit_test(test_rest_down),
    };
    return cmocka_run_group_tests_name("registry", tests, fake_start, fake_stop);
}
