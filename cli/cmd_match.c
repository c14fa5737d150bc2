/* cmd_match.c — `soundhash match --index DIR | --edge URL [--top K] FILE...`: identify clips
 * against a shard, or ask an edge (POST URL/v1/match) with the clip's hashes: the audio is
 * fingerprinted here (query mode, SH_FP_VERSION) and only its hashes leave (binary sh_qhash).
 *
 * One JSON object per line per file:
 *   {"query":"clip.wav","match":{"track_id","offset_s","duration_s","score","confidence","scale"}
 *    |null,"elapsed_ms":1.9[,"candidates":[{...},...]]}
 * `candidates` (with --top K > 1) lists up to K tracks above the no-match threshold, best first,
 * each an object like `match` (the first is `match` itself); [] when nothing matched. `scale` is
 * the estimated time-scale of the clip against the track (1.02: the clip plays 2 % fast).
 * elapsed_ms covers decode + fingerprint + lookup + ranking of that file (not process start or
 * opening the index). With --edge the line also carries the answering "node" and the "shards" it
 * consulted (with their epoch, position), the match objects are the edge's (plus node, shard,
 * fp_version, metadata), and elapsed_ms includes the round trip. A file that fails (decoding, or
 * an HTTP or edge error) is named on stderr, the others go on, and the exit code is then 1.
 * Usage errors exit 2.
 */
#include "sh_clock.h"
#include "sh_cmds.h"
#include "sh_httpc.h"
#include "sh_opt.h"
#include "sh_qhash.h"
#include "sh_recognize.h"
#include "sh_shard.h"

#include <curl/curl.h>
#include <errno.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum {
    SH_MATCH_TOP_MAX = SH_RECOGNIZE_TOP_MAX,
    MATCH_TOKEN_MAX = 4096,
    MATCH_ANSWER_MAX = 4 << 20, /* bytes of an edge's answer */
    MATCH_URL_MAX = 2048,
};

typedef struct match_cfg {
    char *index;
    char *edge;
    char *token_file;
    long top;
    long timeout_s;
    double max_duration_s;
    double min_confidence;
} match_cfg;

typedef struct match_ctx {
    const match_cfg *c;
    sh_shard *s;
    sh_recognizer *r;
    CURL *curl;       /* --edge */
    char url[MATCH_URL_MAX];
    struct curl_slist *hdr;
} match_ctx;

/* An answer as JSON. */
static json_t *result_json(const sh_recognize_answer *r)
{
    return json_pack("{s:s, s:f, s:f, s:i, s:f, s:f}", "track_id", r->id, "offset_s",
                     r->offset_s, "duration_s", r->duration_s, "score", r->score, "confidence",
                     r->confidence, "scale", r->scale);
}

/* Matches one file and prints its line. Returns 0 or an error already reported. */
static int match_one(match_ctx *x, const char *path)
{
    sh_err e = {0};
    const double t0 = sh_clock_mono_ms();
    int rc = sh_recognize_clip_file(x->r, path, &e);
    if (rc) {
        fprintf(stderr, "soundhash match: %s: %s (%s)\n", path, sh_err_text(&e), sh_err_name(rc));
        return rc;
    }
    size_t n;
    const sh_hash *h = sh_recognize_hashes(x->r, &n);
    sh_recognize_answer res[SH_MATCH_TOP_MAX];
    size_t nr = 0;
    if ((rc = sh_recognize_shard(x->r, x->s, h, n, (size_t)x->c->top, res, &nr, NULL, &e))) {
        fprintf(stderr, "soundhash match: %s: %s\n", path, sh_err_text(&e));
        return rc;
    }
    json_t *cands = json_array(), *best = NULL;
    for (size_t i = 0; i < nr; i++) {
        json_t *j = result_json(&res[i]);
        if (!j)
            continue;
        if (!best)
            best = json_incref(j);
        json_array_append_new(cands, j);
    }
    const double elapsed = sh_clock_mono_ms() - t0;
    json_t *o = json_pack("{s:s, s:o, s:f}", "query", path, "match", best ? best : json_null(),
                          "elapsed_ms", elapsed);
    if (o && x->c->top > 1)
        json_object_set(o, "candidates", cands);
    json_decref(cands);
    char *line = o ? json_dumps(o, JSON_COMPACT | JSON_REAL_PRECISION(10)) : NULL;
    json_decref(o);
    if (!line) {
        fprintf(stderr, "soundhash match: %s: cannot encode JSON (out of memory?)\n", path);
        return SH_ENOMEM;
    }
    puts(line);
    free(line);
    return 0;
}

/* ---- --edge ------------------------------------------------------------------------------- */

typedef struct answer_buf {
    char *p;
    size_t n;
    int over;
} answer_buf;

static size_t on_answer(char *p, size_t size, size_t nmemb, void *ud)
{
    answer_buf *b = ud;
    const size_t n = size * nmemb;
    if (n > MATCH_ANSWER_MAX - b->n) {
        b->over = 1;
        return 0; /* stops the transfer */
    }
    char *q = realloc(b->p, b->n + n + 1);
    if (!q)
        return 0;
    memcpy(q + b->n, p, n);
    b->p = q;
    b->n += n;
    b->p[b->n] = '\0';
    return n;
}

/* The bearer token: --token-file's first line, else SOUNDHASH_API_TOKEN; "" when neither. */
static int read_token(const match_cfg *c, char *tok, size_t cap)
{
    tok[0] = '\0';
    if (c->token_file[0]) {
        FILE *f = fopen(c->token_file, "r");
        if (!f) {
            fprintf(stderr, "soundhash match: --token-file %s: %s\n", c->token_file,
                    strerror(errno));
            return SH_EUSAGE;
        }
        size_t n = fread(tok, 1, cap - 1, f);
        fclose(f);
        tok[n] = '\0';
        tok[strcspn(tok, "\r\n")] = '\0';
        if (!tok[0]) {
            fprintf(stderr, "soundhash match: --token-file %s: empty\n", c->token_file);
            return SH_EUSAGE;
        }
        return 0;
    }
    const char *t = getenv("SOUNDHASH_API_TOKEN");
    if (t && (strlen(t) >= cap || strpbrk(t, "\r\n"))) { /* a line break would forge headers */
        fprintf(stderr, "soundhash match: SOUNDHASH_API_TOKEN: one line of at most %zu bytes\n",
                cap - 1);
        return SH_EUSAGE;
    }
    snprintf(tok, cap, "%s", t ? t : "");
    return 0;
}

/* One curl handle for every file: the connection is kept alive between them. */
static int edge_open(match_ctx *x)
{
    const match_cfg *c = x->c;
    size_t n = strlen(c->edge);
    while (n && c->edge[n - 1] == '/')
        n--;
    if (!sh_httpc_url_ok(c->edge) || n + 32 >= sizeof x->url) {
        fprintf(stderr, "soundhash match: --edge %s: want http(s)://HOST:PORT\n", c->edge);
        return SH_EUSAGE;
    }
    snprintf(x->url, sizeof x->url, "%.*s/v1/match?top=%ld", (int)n, c->edge, c->top);
    char tok[MATCH_TOKEN_MAX], auth[MATCH_TOKEN_MAX + 32];
    int rc = read_token(c, tok, sizeof tok);
    if (rc)
        return rc;
    x->hdr = curl_slist_append(NULL, "Content-Type: " SH_QHASH_CONTENT_TYPE);
    if (x->hdr && tok[0]) {
        snprintf(auth, sizeof auth, "Authorization: Bearer %s", tok);
        struct curl_slist *h = curl_slist_append(x->hdr, auth);
        x->hdr = h ? h : x->hdr;
        if (!h)
            return SH_ENOMEM;
    }
    if (!x->hdr || !(x->curl = curl_easy_init()))
        return SH_ENOMEM;
    curl_easy_setopt(x->curl, CURLOPT_URL, x->url);
    curl_easy_setopt(x->curl, CURLOPT_HTTPHEADER, x->hdr);
    curl_easy_setopt(x->curl, CURLOPT_WRITEFUNCTION, on_answer);
    const long connect_s = c->timeout_s < 5 ? c->timeout_s : 5;
    curl_easy_setopt(x->curl, CURLOPT_CONNECTTIMEOUT_MS, connect_s * 1000);
    curl_easy_setopt(x->curl, CURLOPT_TIMEOUT_MS, c->timeout_s * 1000);
    curl_easy_setopt(x->curl, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(x->curl, CURLOPT_PROTOCOLS_STR, "http,https");
    return 0;
}

static void edge_close(match_ctx *x)
{
    curl_easy_cleanup(x->curl);
    curl_slist_free_all(x->hdr);
    x->curl = NULL;
    x->hdr = NULL;
}

/* POSTs the hashes; *answer gets the edge's JSON answer (200) or NULL after an error that is
 * already reported. */
static int edge_post(match_ctx *x, const char *path, const uint8_t *body, size_t len,
                     json_t **answer)
{
    *answer = NULL;
    answer_buf b = {0};
    curl_easy_setopt(x->curl, CURLOPT_POSTFIELDS, (const char *)body);
    curl_easy_setopt(x->curl, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)len);
    curl_easy_setopt(x->curl, CURLOPT_WRITEDATA, &b);
    CURLcode cc = curl_easy_perform(x->curl);
    long status = 0;
    curl_easy_getinfo(x->curl, CURLINFO_RESPONSE_CODE, &status);
    json_t *o = cc == CURLE_OK && b.p ? json_loads(b.p, 0, NULL) : NULL;
    int rc = 0;
    if (cc != CURLE_OK) {
        fprintf(stderr, "soundhash match: %s: edge %s: %s\n", path, x->c->edge,
                b.over ? "answer over 4 MiB" : curl_easy_strerror(cc));
        rc = cc == CURLE_OPERATION_TIMEDOUT ? SH_ETIMEOUT : SH_EHTTP;
    } else if (status != 200) {
        const char *err = json_string_value(json_object_get(o, "error"));
        fprintf(stderr, "soundhash match: %s: edge %s: HTTP %ld: %s\n", path, x->c->edge, status,
                err ? err : "(no JSON error)");
        rc = SH_EHTTP;
    } else if (!json_is_object(o) || !json_object_get(o, "match")) {
        fprintf(stderr, "soundhash match: %s: edge %s: not a match answer\n", path, x->c->edge);
        rc = SH_EFORMAT;
    }
    free(b.p);
    if (rc)
        json_decref(o);
    else
        *answer = o;
    return rc;
}

/* Fingerprints one file here, asks the edge and prints its line. Returns 0 or an error already
 * reported. */
static int match_one_edge(match_ctx *x, const char *path)
{
    sh_err e = {0};
    const double t0 = sh_clock_mono_ms();
    int rc = sh_recognize_clip_file(x->r, path, &e);
    if (rc) {
        fprintf(stderr, "soundhash match: %s: %s (%s)\n", path, sh_err_text(&e), sh_err_name(rc));
        return rc;
    }
    size_t n;
    const sh_hash *h = sh_recognize_hashes(x->r, &n);
    uint8_t *body = NULL;
    size_t len = 0;
    json_t *a = NULL;
    if ((rc = sh_qhash_encode(SH_FP_VERSION, h, n, &body, &len, &e)) != 0)
        fprintf(stderr, "soundhash match: %s: %s\n", path, sh_err_text(&e));
    else
        rc = edge_post(x, path, body, len, &a);
    free(body);
    if (rc)
        return rc;
    json_t *o = json_pack("{s:s, s:O, s:O, s:O, s:f}", "query", path, "match",
                          json_object_get(a, "match"), "node", json_object_get(a, "node"),
                          "shards", json_object_get(a, "shards"), "elapsed_ms",
                          sh_clock_mono_ms() - t0);
    if (o && x->c->top > 1) {
        json_t *cands = json_object_get(a, "candidates");
        json_object_set(o, "candidates", cands ? cands : json_array());
    }
    json_decref(a);
    char *line = o ? json_dumps(o, JSON_COMPACT | JSON_REAL_PRECISION(10)) : NULL;
    json_decref(o);
    if (!line) {
        fprintf(stderr, "soundhash match: %s: edge answer incomplete or out of memory\n", path);
        return SH_EFORMAT;
    }
    puts(line);
    free(line);
    return 0;
}

static int run(const match_cfg *c, const sh_strlist *files)
{
    match_ctx x = {.c = c};
    sh_err e = {0};
    sh_shard_opts so;
    sh_shard_opts_default(&so);
    so.read_only = true;
    sh_recognize_config rcfg;
    sh_recognize_config_default(&rcfg);
    rcfg.max_duration_s = c->max_duration_s;
    if (c->min_confidence >= 0)
        rcfg.match.min_confidence = c->min_confidence;
    int code = SH_EXIT_RUNTIME;
    if (c->edge[0]) {
        int erc = edge_open(&x);
        if (erc) {
            if (erc == SH_ENOMEM)
                fprintf(stderr, "soundhash match: out of memory\n");
            code = erc == SH_EUSAGE ? SH_EXIT_USAGE : SH_EXIT_RUNTIME;
            goto out;
        }
    } else {
        int orc = sh_shard_open(c->index, &so, &x.s, &e);
        if (orc) { /* a missing shard at --index is a usage error */
            fprintf(stderr, "soundhash match: --index %s\n", sh_err_text(&e));
            code = orc == SH_ENOTFOUND ? SH_EXIT_USAGE : SH_EXIT_RUNTIME;
            goto out;
        }
    }
    int nrc = sh_recognizer_new(&rcfg, &x.r, &e);
    if (nrc == SH_EINVAL && c->min_confidence >= 0) { /* the only tunable taken from the user */
        fprintf(stderr, "soundhash match: --min-confidence: %s\n", sh_err_text(&e));
        code = SH_EXIT_USAGE;
        goto out;
    }
    if (nrc) {
        fprintf(stderr, "soundhash match: %s\n", sh_err_text(&e));
        goto out;
    }
    code = SH_EXIT_OK;
    for (size_t i = 0; i < files->n; i++) {
        if (x.curl ? match_one_edge(&x, files->v[i]) : match_one(&x, files->v[i]))
            code = SH_EXIT_RUNTIME;
        fflush(stdout);
    }
out:
    edge_close(&x);
    sh_recognizer_free(x.r);
    sh_shard_free(x.s);
    return code;
}

int sh_cmd_match(int argc, char **argv)
{
    match_cfg c = {0};
    sh_opt opts[] = {
        {"index", 'i', SH_OPT_STR, &c.index, "", "index directory (see `soundhash index`)", 0, 0,
         0},
        {"edge", 0, SH_OPT_STR, &c.edge, "",
         "ask this edge instead (http://HOST:PORT): only the clip's hashes are sent", 0, 0, 0},
        {"top", 'k', SH_OPT_INT, &c.top, "1", "also list up to K candidates when K > 1", 0, 1,
         SH_MATCH_TOP_MAX},
        {"max-duration", 0, SH_OPT_DOUBLE, &c.max_duration_s, "600",
         "reject clips longer than this many seconds", 0, 0, 0},
        {"min-confidence", 0, SH_OPT_DOUBLE, &c.min_confidence, "-1",
         "no-match threshold on the confidence, 0..1 (-1: the matcher's calibrated one; --index "
         "only)", 0, 0, 0},
        {"token-file", 0, SH_OPT_STR, &c.token_file, "",
         "--edge: file holding the bearer token (else env SOUNDHASH_API_TOKEN)", 0, 0, 0},
        {"timeout", 0, SH_OPT_INT, &c.timeout_s, "30",
         "--edge: seconds one request may take (connecting: at most 5)", 0, 1, 3600},
        {NULL, 0, 0, NULL, NULL, NULL, 0, 0, 0},
    };
    sh_cmd_spec spec = {
        .name = "match",
        .usage = "--index DIR | --edge URL [--top K] FILE...",
        .summary = "Identifies each audio clip against the shard index in DIR, or asks an edge "
                   "(--edge: the clip is fingerprinted here and only its hashes are POSTed to "
                   "URL/v1/match). One JSON line per file: query, match {track_id, offset_s, "
                   "duration_s, score, confidence, scale} or null when nothing matches, "
                   "elapsed_ms; with --edge also node and shards (the edge's answer); with --top "
                   "K > 1 also candidates: up to K such objects, best first. Exit 1 if any FILE "
                   "failed (each is named on stderr, with the HTTP status and the edge's error).",
        .examples = "soundhash match --index idx clip.wav\n"
                    "soundhash match --index idx --top 5 clips/*.wav\n"
                    "SOUNDHASH_API_TOKEN=secret soundhash match --edge http://127.0.0.1:8080 "
                    "clip.wav",
        .opts = opts,
    };
    sh_err err = {0};
    int rc = sh_opt_parse(&spec, argc, argv, &err);
    int code = sh_opt_exit_code(&spec, rc, &err);
    if (code >= 0) {
        sh_opt_free(&spec);
        return code;
    }
    if (spec.args.n == 0) {
        fprintf(stderr, "soundhash match: no FILE given (see --help)\n");
        code = SH_EXIT_USAGE;
    } else if (!c.index[0] == !c.edge[0]) {
        fprintf(stderr, "soundhash match: give one of --index DIR or --edge URL\n");
        code = SH_EXIT_USAGE;
    } else if (c.edge[0] && c.min_confidence != -1) {
        fprintf(stderr, "soundhash match: --min-confidence applies to --index only (an edge "
                        "ranks with its own threshold)\n");
        code = SH_EXIT_USAGE;
    } else if (!(c.max_duration_s > 0) || c.min_confidence > 1 ||
               (c.min_confidence < 0 && c.min_confidence != -1)) {
        /* -1 is the default's sentinel ("the matcher's calibrated threshold"). */
        fprintf(stderr, "soundhash match: --max-duration must be > 0, --min-confidence 0..1\n");
        code = SH_EXIT_USAGE;
    } else {
        curl_global_init(CURL_GLOBAL_DEFAULT);
        code = run(&c, &spec.args);
        curl_global_cleanup();
    }
    sh_opt_free(&spec);
    return code;
}
