/* sh_registry.c — embedded and Confluent-REST schema registries (see sh_registry.h). */
#include "sh_registry.h"

#include "sh_schema_json.h"

#include <curl/curl.h>
#include <errno.h>
#include <inttypes.h>
#include <jansson.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#define SH_NAMESPACE "io.soundhash.v1"

/* One embedded schema file. */
typedef struct embedded {
    int32_t id;
    sh_schema_kind kind;
    int version;
    int current; /* the version we write */
    const char *json;
    const char *file;
} embedded;

static const embedded EMBEDDED[] = {
    {SH_SCHEMA_ID_AUDIO_EVENT_V1, SH_KIND_AUDIO_EVENT, 1, 0, sh_json_audio_event_v1,
     "audio_event.v1.avsc"},
    {SH_SCHEMA_ID_AUDIO_EVENT_V2, SH_KIND_AUDIO_EVENT, 2, 0, sh_json_audio_event_v2,
     "audio_event.v2.avsc"},
    {SH_SCHEMA_ID_AUDIO_EVENT_V3, SH_KIND_AUDIO_EVENT, 3, 1, sh_json_audio_event_v3,
     "audio_event.v3.avsc"},
    {SH_SCHEMA_ID_DEAD_LETTER_V1, SH_KIND_DEAD_LETTER, 1, 1, sh_json_dead_letter_v1,
     "dead_letter.v1.avsc"},
    {SH_SCHEMA_ID_INDEX_DELTA_V1, SH_KIND_INDEX_DELTA, 1, 1, sh_json_index_delta_v1,
     "index_delta.v1.avsc"},
};
enum { N_EMBEDDED = sizeof EMBEDDED / sizeof EMBEDDED[0] };

static const char *const KIND_NAMES[SH_KIND_COUNT] = {
    SH_NAMESPACE ".AudioEvent",
    SH_NAMESPACE ".DeadLetter",
    SH_NAMESPACE ".IndexDelta",
};

struct sh_registry {
    int rest;
    char *url; /* without trailing '/' */
    char *userinfo;
    long connect_timeout_ms;
    long timeout_ms;
    pthread_mutex_t mu;
    sh_reg_schema *known[SH_REGISTRY_CACHE_MAX]; /* owned */
    size_t n_known;
    int32_t unknown[SH_REGISTRY_CACHE_MAX]; /* ids the registry said it does not have (ring) */
    size_t n_unknown;
    size_t unknown_next;
    const sh_reg_schema *writer[SH_KIND_COUNT];
};

const char *sh_registry_embedded_json(int32_t id)
{
    for (size_t i = 0; i < N_EMBEDDED; i++)
        if (EMBEDDED[i].id == id)
            return EMBEDDED[i].json;
    return NULL;
}

const char *sh_registry_embedded_file(int32_t id)
{
    for (size_t i = 0; i < N_EMBEDDED; i++)
        if (EMBEDDED[i].id == id)
            return EMBEDDED[i].file;
    return NULL;
}

static const embedded *current_embedded(sh_schema_kind kind)
{
    for (size_t i = 0; i < N_EMBEDDED; i++)
        if (EMBEDDED[i].kind == kind && EMBEDDED[i].current)
            return &EMBEDDED[i];
    return NULL;
}

static void entry_free(sh_reg_schema *s)
{
    if (!s)
        return;
    if (s->iface)
        avro_value_iface_decref(s->iface);
    if (s->schema)
        avro_schema_decref(s->schema);
    free(s);
}

/* Parses a writer schema and classifies it; it must be one of our record kinds. */
static int entry_new(int32_t id, const char *json, size_t len, int version, sh_reg_schema **out,
                     sh_err *e)
{
    *out = NULL;
    sh_reg_schema *s = calloc(1, sizeof *s);
    if (!s)
        return sh_err_set(e, SH_ENOMEM, "registry: out of memory");
    s->id = id;
    s->version = version;
    if (avro_schema_from_json_length(json, len, &s->schema)) {
        s->schema = NULL;
        entry_free(s);
        return sh_err_set(e, SH_ESCHEMA, "schema id %" PRId32 ": unparseable: %s", id,
                          avro_strerror());
    }
    const char *ns = avro_schema_namespace(s->schema);
    const char *name = avro_schema_name(s->schema);
    int kind = -1;
    if (avro_typeof(s->schema) == AVRO_RECORD && ns && name && strcmp(ns, SH_NAMESPACE) == 0) {
        for (int k = 0; k < SH_KIND_COUNT; k++)
            if (strcmp(KIND_NAMES[k] + sizeof SH_NAMESPACE, name) == 0)
                kind = k;
    }
    if (kind < 0) {
        /* Format before freeing: ns and name belong to the schema. */
        sh_err_set(e, SH_ESCHEMA, "schema id %" PRId32 " is not a SoundHash record (%s.%s)", id,
                   ns ? ns : "", name ? name : "?");
        entry_free(s);
        return SH_ESCHEMA;
    }
    s->kind = (sh_schema_kind)kind;
    s->iface = avro_generic_class_from_schema(s->schema);
    if (!s->iface) {
        entry_free(s);
        return sh_err_set(e, SH_EAVRO, "schema id %" PRId32 ": %s", id, avro_strerror());
    }
    *out = s;
    return 0;
}

static int registry_alloc(sh_registry **out, sh_err *e)
{
    sh_registry *r = calloc(1, sizeof *r);
    if (!r)
        return sh_err_set(e, SH_ENOMEM, "registry: out of memory");
    if (pthread_mutex_init(&r->mu, NULL)) {
        free(r);
        return sh_err_set(e, SH_ENOMEM, "registry: cannot create mutex");
    }
    *out = r;
    return 0;
}

int sh_registry_new_embedded(sh_registry **out, sh_err *e)
{
    sh_registry *r;
    int rc = registry_alloc(&r, e);
    if (rc)
        return rc;
    for (size_t i = 0; i < N_EMBEDDED; i++) {
        const embedded *m = &EMBEDDED[i];
        sh_reg_schema *s;
        if ((rc = entry_new(m->id, m->json, strlen(m->json), m->version, &s, e))) {
            sh_registry_free(r);
            return rc == SH_ESCHEMA ? SH_EAVRO : rc; /* an embedded schema is a build defect */
        }
        r->known[r->n_known++] = s;
        if (m->current)
            r->writer[m->kind] = s;
    }
    *out = r;
    return 0;
}

int sh_registry_new(const sh_registry_config *cfg, sh_registry **out, sh_err *e)
{
    *out = NULL;
    if (!cfg || !cfg->url || !cfg->url[0])
        return sh_registry_new_embedded(out, e);
    const char *u = cfg->url;
    if (strncmp(u, "http://", 7) != 0 && strncmp(u, "https://", 8) != 0)
        return sh_err_set(e, SH_EINVAL, "schema registry url must start with http:// or https://");
    if (strlen(u) > 2048)
        return sh_err_set(e, SH_EINVAL, "schema registry url too long");
    for (const char *p = u; *p; p++)
        if ((unsigned char)*p <= 0x20 || *p == 0x7f)
            return sh_err_set(e, SH_EINVAL, "schema registry url contains a space or control char");
    if (curl_global_init(CURL_GLOBAL_DEFAULT))
        return sh_err_set(e, SH_EHTTP, "schema registry: curl_global_init failed");
    sh_registry *r;
    int rc = registry_alloc(&r, e);
    if (rc) {
        curl_global_cleanup();
        return rc;
    }
    r->rest = 1;
    r->url = strdup(u);
    r->userinfo = cfg->userinfo ? strdup(cfg->userinfo) : NULL;
    if (!r->url || (cfg->userinfo && !r->userinfo)) {
        sh_registry_free(r);
        return sh_err_set(e, SH_ENOMEM, "registry: out of memory");
    }
    size_t n = strlen(r->url);
    while (n > 0 && r->url[n - 1] == '/')
        r->url[--n] = '\0';
    r->connect_timeout_ms = cfg->connect_timeout_ms > 0 ? cfg->connect_timeout_ms : 2000;
    r->timeout_ms = cfg->timeout_ms > 0 ? cfg->timeout_ms : 5000;
    *out = r;
    return 0;
}

int sh_registry_new_from_env(sh_registry **out, sh_err *e)
{
    sh_registry_config cfg = {.url = getenv("SOUNDHASH_SCHEMA_REGISTRY_URL"),
                              .userinfo = getenv("SOUNDHASH_SCHEMA_REGISTRY_USERINFO")};
    const char *t = getenv("SOUNDHASH_SCHEMA_REGISTRY_TIMEOUT_MS");
    if (t && t[0]) {
        char *end;
        errno = 0;
        long v = strtol(t, &end, 10);
        if (errno || *end || v <= 0 || v > 600000)
            return sh_err_set(e, SH_EINVAL,
                              "SOUNDHASH_SCHEMA_REGISTRY_TIMEOUT_MS: expected 1..600000, got '%s'",
                              t);
        cfg.timeout_ms = v;
        cfg.connect_timeout_ms = v;
    }
    return sh_registry_new(&cfg, out, e);
}

void sh_registry_free(sh_registry *reg)
{
    if (!reg)
        return;
    for (size_t i = 0; i < reg->n_known; i++)
        entry_free(reg->known[i]);
    pthread_mutex_destroy(&reg->mu);
    if (reg->rest)
        curl_global_cleanup();
    free(reg->url);
    free(reg->userinfo);
    free(reg);
}

int sh_registry_is_rest(const sh_registry *reg)
{
    return reg && reg->rest;
}

/* ---- HTTP ------------------------------------------------------------------------------------ */

typedef struct body {
    char *p;
    size_t n;
    int overflow;
} body;

static size_t on_data(char *ptr, size_t size, size_t nmemb, void *ud)
{
    body *b = ud;
    size_t n = size * nmemb;
    if (n > SH_REGISTRY_RESPONSE_MAX - b->n) {
        b->overflow = 1;
        return 0; /* makes curl fail the transfer */
    }
    char *q = realloc(b->p, b->n + n + 1);
    if (!q) {
        b->overflow = 1;
        return 0;
    }
    memcpy(q + b->n, ptr, n);
    b->n += n;
    q[b->n] = '\0';
    b->p = q;
    return n;
}

/* Performs one request; on success *status is the HTTP status and *out the NUL-terminated body
 * (caller frees). Transport failures are SH_EHTTP / SH_ETIMEOUT / SH_ETOOBIG. */
static int http(const sh_registry *r, const char *path, const char *post, long *status,
                body *out, sh_err *e)
{
    char url[4096];
    int un = snprintf(url, sizeof url, "%s%s", r->url, path);
    if (un < 0 || (size_t)un >= sizeof url)
        return sh_err_set(e, SH_EINVAL, "schema registry: url too long");
    CURL *h = curl_easy_init();
    if (!h)
        return sh_err_set(e, SH_ENOMEM, "schema registry: curl_easy_init failed");
    struct curl_slist *hdr = curl_slist_append(NULL, "Accept: application/vnd.schemaregistry.v1+json, application/json");
    if (post && hdr)
        hdr = curl_slist_append(hdr, "Content-Type: application/vnd.schemaregistry.v1+json");
    *out = (body){0};
    curl_easy_setopt(h, CURLOPT_URL, url);
    curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(h, CURLOPT_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(h, CURLOPT_CONNECTTIMEOUT_MS, r->connect_timeout_ms);
    curl_easy_setopt(h, CURLOPT_TIMEOUT_MS, r->timeout_ms);
    curl_easy_setopt(h, CURLOPT_HTTPHEADER, hdr);
    curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, on_data);
    curl_easy_setopt(h, CURLOPT_WRITEDATA, out);
    if (r->userinfo)
        curl_easy_setopt(h, CURLOPT_USERPWD, r->userinfo);
    if (post)
        curl_easy_setopt(h, CURLOPT_POSTFIELDS, post);
    CURLcode cc = curl_easy_perform(h);
    curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, status);
    curl_slist_free_all(hdr);
    curl_easy_cleanup(h);
    int rc = 0;
    if (out->overflow)
        rc = sh_err_set(e, SH_EHTTP, "schema registry %s: response over %d bytes", url,
                        SH_REGISTRY_RESPONSE_MAX);
    else if (cc == CURLE_OPERATION_TIMEDOUT)
        rc = sh_err_set(e, SH_ETIMEOUT, "schema registry %s: timed out after %ld ms", url,
                        r->timeout_ms);
    else if (cc != CURLE_OK)
        rc = sh_err_set(e, SH_EHTTP, "schema registry %s: %s", url, curl_easy_strerror(cc));
    if (rc) {
        free(out->p);
        *out = (body){0};
    }
    return rc;
}

/* Parses a JSON object body; garbage is SH_EHTTP (a registry malfunction, not a verdict on the
 * schema: callers may retry). */
static int parse_json(const body *b, const char *what, json_t **out, sh_err *e)
{
    json_error_t je;
    *out = b->p ? json_loadb(b->p, b->n, JSON_REJECT_DUPLICATES, &je) : NULL;
    if (!*out || !json_is_object(*out)) {
        json_decref(*out);
        *out = NULL;
        return sh_err_set(e, SH_EHTTP, "schema registry %s: response is not a JSON object",
                          what);
    }
    return 0;
}

static int http_status_error(long status, const body *b, const char *what, sh_err *e)
{
    json_t *j = NULL;
    const char *msg = "";
    if (b->p && parse_json(b, what, &j, NULL) == 0 && json_is_string(json_object_get(j, "message")))
        msg = json_string_value(json_object_get(j, "message"));
    int rc = sh_err_set(e, SH_EHTTP, "schema registry %s: HTTP %ld %.200s", what, status, msg);
    json_decref(j);
    return rc;
}

/* ---- cache ------------------------------------------------------------------------------------ */

static const sh_reg_schema *find_known(const sh_registry *r, int32_t id)
{
    for (size_t i = 0; i < r->n_known; i++)
        if (r->known[i]->id == id)
            return r->known[i];
    return NULL;
}

static int is_unknown(const sh_registry *r, int32_t id)
{
    for (size_t i = 0; i < r->n_unknown; i++)
        if (r->unknown[i] == id)
            return 1;
    return 0;
}

static void remember_unknown(sh_registry *r, int32_t id)
{
    r->unknown[r->unknown_next] = id;
    r->unknown_next = (r->unknown_next + 1) % SH_REGISTRY_CACHE_MAX;
    if (r->n_unknown < SH_REGISTRY_CACHE_MAX)
        r->n_unknown++;
}

/* Adds `s` (ownership passes) unless the id is already cached; returns the cached entry. */
static int remember(sh_registry *r, sh_reg_schema *s, const sh_reg_schema **out, sh_err *e)
{
    const sh_reg_schema *old = find_known(r, s->id);
    if (old) {
        entry_free(s);
        *out = old;
        return 0;
    }
    if (r->n_known >= SH_REGISTRY_CACHE_MAX) {
        entry_free(s);
        return sh_err_set(e, SH_ESCHEMA, "schema registry: more than %d schemas seen",
                          SH_REGISTRY_CACHE_MAX);
    }
    r->known[r->n_known++] = s;
    *out = s;
    return 0;
}

/* ---- lookups ---------------------------------------------------------------------------------- */

static int fetch_schema(sh_registry *r, int32_t id, sh_reg_schema **out, sh_err *e)
{
    char path[64], what[64];
    snprintf(path, sizeof path, "/schemas/ids/%" PRId32, id);
    snprintf(what, sizeof what, "GET schema id %" PRId32, id);
    long status = 0;
    body b;
    int rc = http(r, path, NULL, &status, &b, e);
    if (rc)
        return rc;
    json_t *j = NULL;
    if (status == 404) {
        rc = sh_err_set(e, SH_ESCHEMA, "unknown schema id %" PRId32 " (registry: not found)", id);
    } else if (status != 200) {
        rc = http_status_error(status, &b, what, e);
    } else if ((rc = parse_json(&b, what, &j, e)) == 0) {
        json_t *type = json_object_get(j, "schemaType");
        json_t *schema = json_object_get(j, "schema");
        if (type && !(json_is_string(type) && strcmp(json_string_value(type), "AVRO") == 0))
            rc = sh_err_set(e, SH_ESCHEMA, "schema id %" PRId32 " is not an Avro schema", id);
        else if (!json_is_string(schema))
            rc = sh_err_set(e, SH_EHTTP, "schema registry %s: no \"schema\" string", what);
        else
            rc = entry_new(id, json_string_value(schema), json_string_length(schema), 0, out, e);
    }
    json_decref(j);
    free(b.p);
    return rc;
}

int sh_registry_lookup(sh_registry *reg, int32_t id, const sh_reg_schema **out, sh_err *e)
{
    *out = NULL;
    pthread_mutex_lock(&reg->mu);
    const sh_reg_schema *s = find_known(reg, id);
    int unknown = !s && (!reg->rest || is_unknown(reg, id));
    pthread_mutex_unlock(&reg->mu);
    if (s) {
        *out = s;
        return 0;
    }
    if (unknown)
        return sh_err_set(e, SH_ESCHEMA, "unknown schema id %" PRId32, id);
    if (id <= 0)
        return sh_err_set(e, SH_ESCHEMA, "invalid schema id %" PRId32, id);
    /* Not under the lock: a slow registry must not block threads that hit the cache. */
    sh_reg_schema *fresh;
    int rc = fetch_schema(reg, id, &fresh, e);
    pthread_mutex_lock(&reg->mu);
    if (rc == SH_ESCHEMA)
        remember_unknown(reg, id);
    else if (rc == 0)
        rc = remember(reg, fresh, out, e);
    pthread_mutex_unlock(&reg->mu);
    return rc;
}

static int register_schema(sh_registry *r, const embedded *m, sh_reg_schema **out, sh_err *e)
{
    char path[256], what[160];
    snprintf(path, sizeof path, "/subjects/%s/versions", KIND_NAMES[m->kind]);
    snprintf(what, sizeof what, "POST subject %s", KIND_NAMES[m->kind]);
    json_t *req = json_pack("{s:s}", "schema", m->json);
    char *post = req ? json_dumps(req, JSON_COMPACT) : NULL;
    json_decref(req);
    if (!post)
        return sh_err_set(e, SH_ENOMEM, "schema registry: cannot build request");
    long status = 0;
    body b;
    int rc = http(r, path, post, &status, &b, e);
    free(post);
    if (rc)
        return rc;
    json_t *j = NULL;
    if (status != 200) {
        rc = http_status_error(status, &b, what, e);
    } else if ((rc = parse_json(&b, what, &j, e)) == 0) {
        json_t *id = json_object_get(j, "id");
        if (!json_is_integer(id) || json_integer_value(id) <= 0 ||
            json_integer_value(id) > INT32_MAX)
            rc = sh_err_set(e, SH_EHTTP, "schema registry %s: no valid \"id\" in response",
                            what);
        else
            rc = entry_new((int32_t)json_integer_value(id), m->json, strlen(m->json), m->version,
                           out, e);
    }
    json_decref(j);
    free(b.p);
    return rc;
}

int sh_registry_writer(sh_registry *reg, sh_schema_kind kind, const sh_reg_schema **out,
                       sh_err *e)
{
    *out = NULL;
    if ((int)kind < 0 || kind >= SH_KIND_COUNT)
        return sh_err_set(e, SH_EINVAL, "invalid schema kind %d", (int)kind);
    pthread_mutex_lock(&reg->mu);
    const sh_reg_schema *w = reg->writer[kind];
    pthread_mutex_unlock(&reg->mu);
    if (w) {
        *out = w;
        return 0;
    }
    sh_reg_schema *fresh;
    int rc = register_schema(reg, current_embedded(kind), &fresh, e);
    if (rc)
        return rc;
    pthread_mutex_lock(&reg->mu);
    const sh_reg_schema *kept;
    rc = remember(reg, fresh, &kept, e);
    if (rc == 0 && kept->kind != kind)
        rc = sh_err_set(e, SH_ESCHEMA, "schema registry returned id %" PRId32
                        " that already names another record", kept->id);
    if (rc == 0) {
        reg->writer[kind] = kept;
        *out = kept;
    }
    pthread_mutex_unlock(&reg->mu);
    return rc;
}
