/* cmd_fingerprint.c — `soundhash fingerprint [--hashes] FILE...`: one JSON line per file.
 *
 *   {"file":"a.flac","duration_s":183.4,"sample_rate":44100,"channels":2,"fp_version":2,
 *    "hashes":5120,"format":"FLAC"[,"hash_list":[[hash,t],...]]}
 *
 * A file that fails prints `soundhash fingerprint: FILE: message` on stderr and the command goes on
 * with the others; the exit code is then 1. Usage errors exit 2.
 */
#include "sh_cmds.h"
#include "sh_extract.h"
#include "sh_fp.h"
#include "sh_opt.h"

#include <jansson.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>

typedef struct fp_cfg {
    bool hashes;
    bool query;
    double max_duration_s;
    size_t max_bytes;
} fp_cfg;

static json_t *hash_list(const sh_fp *fp)
{
    size_t n;
    const sh_hash *h = sh_fp_hashes(fp, &n);
    json_t *list = json_array();
    for (size_t i = 0; list && i < n; i++) {
        json_t *pair = json_pack("[II]", (json_int_t)h[i].hash, (json_int_t)h[i].t);
        if (!pair || json_array_append_new(list, pair) != 0) {
            json_decref(list);
            return NULL;
        }
    }
    return list;
}

/* Prints one line for `path`; returns 0 or the error (already reported on stderr). */
static int fingerprint_one(const char *path, const fp_cfg *c, const sh_audio_opts *ao, sh_fp *fp)
{
    sh_err e = {0};
    sh_extract_result r;
    int rc = sh_extract_file(path, ao, fp, &r, &e);
    if (rc) {
        /* The audio layer already names the path in most messages; say it once regardless. */
        fprintf(stderr, "soundhash fingerprint: %s: %s (%s)\n", path, sh_err_text(&e),
                sh_err_name(rc));
        return rc;
    }
    size_t n;
    sh_fp_hashes(fp, &n);
    /* The fields first, in its order; "format" is an extra at the end. */
    json_t *o =
        json_pack("{s:s, s:f, s:i, s:i, s:i, s:I, s:s}", "file", path, "duration_s", r.duration_s,
                  "sample_rate", r.info.src_rate, "channels", r.info.channels, "fp_version",
                  SH_FP_VERSION, "hashes", (json_int_t)n, "format", r.info.format);
    if (o && c->hashes && json_object_set_new(o, "hash_list", hash_list(fp)) != 0) {
        json_decref(o);
        o = NULL;
    }
    char *line = o ? json_dumps(o, JSON_COMPACT | JSON_REAL_PRECISION(10)) : NULL;
    json_decref(o);
    if (!line) {
        fprintf(stderr, "soundhash fingerprint: %s: cannot encode JSON (out of memory?)\n", path);
        return SH_ENOMEM;
    }
    puts(line);
    free(line);
    return 0;
}

int sh_cmd_fingerprint(int argc, char **argv)
{
    fp_cfg c = {0};
    sh_opt opts[] = {
        {"hashes", 0, SH_OPT_BOOL, &c.hashes, "false",
         "also print every hash as \"hash_list\":[[hash,t],...] (t in analysis frames)", 0, 0, 0},
        {"query", 0, SH_OPT_BOOL, &c.query, "false",
         "extract in query mode (denser hashes, as `match` does)", 0, 0, 0},
        {"max-duration", 0, SH_OPT_DOUBLE, &c.max_duration_s, "10800",
         "reject audio longer than this many seconds", 0, 0, 0},
        {"max-bytes", 0, SH_OPT_SIZE, &c.max_bytes, "2G", "reject files larger than this", 0, 0, 0},
        {NULL, 0, 0, NULL, NULL, NULL, 0, 0, 0},
    };
    sh_cmd_spec spec = {
        .name = "fingerprint",
        .usage = "[options] FILE...",
        .summary =
            "Decodes each audio file (any format libsndfile reads), fingerprints it and prints "
            "one JSON object per line: file, duration_s, sample_rate, channels, fp_version, "
            "hashes, format. Exit 1 if any file failed (each failure is named on stderr).",
        .examples = "soundhash fingerprint music/*.flac\n"
                    "soundhash fingerprint --hashes --query clip.wav | jq '.hash_list | length'",
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
        fprintf(stderr, "soundhash fingerprint: no FILE given (see --help)\n");
        sh_opt_free(&spec);
        return SH_EXIT_USAGE;
    }
    sh_fp_config fc;
    if (c.query)
        sh_fp_config_query(&fc);
    else
        sh_fp_config_default(&fc);
    sh_audio_opts ao;
    sh_audio_opts_default(&ao);
    ao.rate = fc.rate;
    ao.max_duration_s = c.max_duration_s;
    ao.max_bytes = c.max_bytes;
    sh_fp *fp = NULL;
    if (!(ao.max_duration_s > 0) || ao.max_bytes == 0) {
        fprintf(stderr, "soundhash fingerprint: --max-duration and --max-bytes must be > 0\n");
        code = SH_EXIT_USAGE;
    } else if ((rc = sh_fp_new(&fc, &fp, &err)) != 0) {
        fprintf(stderr, "soundhash fingerprint: %s\n", sh_err_text(&err));
        code = SH_EXIT_RUNTIME;
    } else {
        code = SH_EXIT_OK;
        for (size_t i = 0; i < spec.args.n; i++) {
            if (fingerprint_one(spec.args.v[i], &c, &ao, fp) != 0)
                code = SH_EXIT_RUNTIME;
            fflush(stdout);
        }
    }
    sh_fp_free(fp);
    sh_opt_free(&spec);
    return code;
}
