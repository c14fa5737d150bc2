/* cmd_match.c — `soundhash match --index DIR [--top K] FILE...`: identify clips against a shard.
 *
 * One JSON object per line per file:
 *   {"query":"clip.wav","match":{"track_id","offset_s","duration_s","score","confidence","scale"}
 *    |null,"elapsed_ms":1.9[,"candidates":[{...},...]]}
 * `candidates` (with --top K > 1) lists up to K tracks above the no-match threshold, best first,
 * each an object like `match` (the first is `match` itself); [] when nothing matched. `scale` is
 * the estimated time-scale of the clip against the track (1.02: the clip plays 2 % fast).
 * elapsed_ms covers decode + fingerprint + lookup + ranking of that file (not process start or
 * opening the index). A file that fails is named on stderr, the others go on, and the exit code is
 * then 1. Usage errors exit 2.
 */
#include "sh_clock.h"
#include "sh_cmds.h"
#include "sh_opt.h"
#include "sh_recognize.h"
#include "sh_shard.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>

enum { SH_MATCH_TOP_MAX = SH_RECOGNIZE_TOP_MAX };

typedef struct match_cfg {
    char *index;
    long top;
    double max_duration_s;
    double min_confidence;
} match_cfg;

typedef struct match_ctx {
    const match_cfg *c;
    sh_shard *s;
    sh_recognizer *r;
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
    int orc = sh_shard_open(c->index, &so, &x.s, &e);
    if (orc) { /* a missing shard at --index is a usage error */
        fprintf(stderr, "soundhash match: --index %s\n", sh_err_text(&e));
        code = orc == SH_ENOTFOUND ? SH_EXIT_USAGE : SH_EXIT_RUNTIME;
        goto out;
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
        if (match_one(&x, files->v[i]))
            code = SH_EXIT_RUNTIME;
        fflush(stdout);
    }
out:
    sh_recognizer_free(x.r);
    sh_shard_free(x.s);
    return code;
}

int sh_cmd_match(int argc, char **argv)
{
    match_cfg c = {0};
    sh_opt opts[] = {
        {"index", 'i', SH_OPT_STR, &c.index, NULL, "index directory (see `soundhash index`)",
         SH_OPT_REQUIRED, 0, 0},
        {"top", 'k', SH_OPT_INT, &c.top, "1", "also list up to K candidates when K > 1", 0, 1,
         SH_MATCH_TOP_MAX},
        {"max-duration", 0, SH_OPT_DOUBLE, &c.max_duration_s, "600",
         "reject clips longer than this many seconds", 0, 0, 0},
        {"min-confidence", 0, SH_OPT_DOUBLE, &c.min_confidence, "-1",
         "no-match threshold on the confidence, 0..1 (-1: the matcher's calibrated one)", 0, 0, 0},
        {NULL, 0, 0, NULL, NULL, NULL, 0, 0, 0},
    };
    sh_cmd_spec spec = {
        .name = "match",
        .usage = "--index DIR [--top K] FILE...",
        .summary = "Identifies each audio clip against the shard index in DIR. One JSON line per "
                   "file: query, match {track_id, offset_s, duration_s, score, confidence, scale} "
                   "or null when nothing in the index matches, elapsed_ms; with --top K > 1 also "
                   "candidates: up to K such objects, best first. Exit 1 if any FILE failed (each "
                   "is named on stderr).",
        .examples = "soundhash match --index idx clip.wav\n"
                    "soundhash match --index idx --top 5 clips/*.wav",
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
    } else if (!(c.max_duration_s > 0) || c.min_confidence > 1 ||
               (c.min_confidence < 0 && c.min_confidence != -1)) {
        /* -1 is the default's sentinel ("the matcher's calibrated threshold"). */
        fprintf(stderr, "soundhash match: --max-duration must be > 0, --min-confidence 0..1\n");
        code = SH_EXIT_USAGE;
    } else {
        code = run(&c, &spec.args);
    }
    sh_opt_free(&spec);
    return code;
}
