/* sh_delta.c — the index-delta envelope (io.soundhash.v1.IndexDelta): rules and Avro mapping. */
#include "sh_schema_int.h"

#include <stdlib.h>
#include <string.h>

static const char *const CODEC_NAMES[] = {"NONE", "ZSTD"};

int sh_delta_validate(const sh_delta_envelope *d, const sh_schema_limits *lim_in, sh_err *e)
{
    sh_schema_limits lim;
    sh_limits_resolve(lim_in, &lim);
    if (!d)
        return sh_err_set(e, SH_EINVAL, "no delta");
    if (d->shard < 0 || d->epoch < 0)
        return sh_err_set(e, SH_EINVAL, "shard %d / epoch %lld is negative", (int)d->shard,
                          (long long)d->epoch);
    if (d->prev_sequence < 0 || d->sequence <= d->prev_sequence)
        return sh_err_set(e, SH_EINVAL, "sequence %lld must be greater than prev_sequence %lld >= 0",
                          (long long)d->sequence, (long long)d->prev_sequence);
    if (d->count < 0 || d->fp_version < 0 || d->raw_size < 0 || d->commit_lsn < 0 ||
        d->created_at_ms < 0)
        return sh_err_set(e, SH_EINVAL, "count, fp_version, raw_size, commit_lsn and created_at "
                                        "must not be negative");
    if (d->codec != SH_CODEC_NONE && d->codec != SH_CODEC_ZSTD)
        return sh_err_set(e, SH_EINVAL, "invalid codec %d", (int)d->codec);
    if (d->payload_len > lim.delta_payload_max)
        return sh_err_set(e, SH_ETOOBIG, "payload: %zu bytes, over the %zu-byte limit",
                          d->payload_len, lim.delta_payload_max);
    if (d->payload_len && !d->payload)
        return sh_err_set(e, SH_EINVAL, "payload: NULL with length %zu", d->payload_len);
    if (d->codec == SH_CODEC_NONE && (uint64_t)d->raw_size != d->payload_len)
        return sh_err_set(e, SH_EINVAL, "raw_size %lld differs from the uncompressed payload %zu",
                          (long long)d->raw_size, d->payload_len);
    return sh_txt_check_array("region", d->region, sizeof d->region, SH_TXT_NOCTRL, e);
}

void sh_delta_clear(sh_delta_envelope *d)
{
    if (!d)
        return;
    free(d->payload);
    memset(d, 0, sizeof *d);
}

static int fill_delta(avro_value_t *rec, const void *obj, sh_err *e)
{
    const sh_delta_envelope *d = obj;
    int rc;
    if ((rc = sh_av_set_int(rec, "shard", d->shard, e)) ||
        (rc = sh_av_set_long(rec, "epoch", d->epoch, e)) ||
        (rc = sh_av_set_long(rec, "sequence", d->sequence, e)) ||
        (rc = sh_av_set_long(rec, "prev_sequence", d->prev_sequence, e)) ||
        (rc = sh_av_set_int(rec, "count", d->count, e)) ||
        (rc = sh_av_set_int(rec, "fp_version", d->fp_version, e)) ||
        (rc = sh_av_set_enum(rec, "codec", CODEC_NAMES[d->codec], e)) ||
        (rc = sh_av_set_long(rec, "raw_size", d->raw_size, e)) ||
        (rc = sh_av_set_bytes(rec, "payload", d->payload, d->payload_len, e)) ||
        (rc = sh_av_set_long(rec, "commit_lsn", d->commit_lsn, e)) ||
        (rc = sh_av_set_long(rec, "created_at", d->created_at_ms, e)) ||
        (rc = sh_av_set_str(rec, "region", d->region, e)))
        return rc;
    return 0;
}

int sh_delta_encode(const sh_delta_envelope *d, sh_registry *reg, const sh_schema_limits *lim,
                    uint8_t **out, size_t *len, sh_err *e)
{
    *out = NULL;
    *len = 0;
    int rc = sh_delta_validate(d, lim, e);
    if (rc)
        return sh_err_wrap(e, rc, "index delta");
    return sh_frame_encode(reg, SH_KIND_INDEX_DELTA, fill_delta, d, out, len, e);
}

static int map_delta(const avro_value_t *rec, void *obj, const sh_schema_limits *lim, sh_err *e)
{
    sh_delta_envelope *d = obj;
    const char *codec;
    int rc;
    if ((rc = sh_av_get_int(rec, "shard", 0, &d->shard, NULL, e)) ||
        (rc = sh_av_get_long(rec, "epoch", 0, &d->epoch, NULL, e)) ||
        (rc = sh_av_get_long(rec, "sequence", 0, &d->sequence, NULL, e)) ||
        (rc = sh_av_get_long(rec, "prev_sequence", 0, &d->prev_sequence, NULL, e)) ||
        (rc = sh_av_get_int(rec, "count", 0, &d->count, NULL, e)) ||
        (rc = sh_av_get_int(rec, "fp_version", 0, &d->fp_version, NULL, e)) ||
        (rc = sh_av_get_enum(rec, "codec", 0, &codec, NULL, e)) ||
        (rc = sh_av_get_long(rec, "raw_size", 0, &d->raw_size, NULL, e)) ||
        (rc = sh_av_dup_bytes(rec, "payload", 0, lim->delta_payload_max, &d->payload,
                              &d->payload_len, e)) ||
        (rc = sh_av_get_long(rec, "commit_lsn", 0, &d->commit_lsn, NULL, e)) ||
        (rc = sh_av_get_long(rec, "created_at", 0, &d->created_at_ms, NULL, e)) ||
        (rc = sh_av_copy_str(rec, "region", 0, d->region, sizeof d->region, e)))
        return rc;
    if (strcmp(codec, "NONE") == 0)
        d->codec = SH_CODEC_NONE;
    else if (strcmp(codec, "ZSTD") == 0)
        d->codec = SH_CODEC_ZSTD;
    else
        return sh_err_set(e, SH_EUNSUPPORTED, "codec %s is not supported", codec);
    return sh_delta_validate(d, lim, e);
}

int sh_delta_decode(const uint8_t *buf, size_t len, sh_registry *reg,
                    const sh_schema_limits *lim_in, sh_delta_envelope *out, sh_err *e)
{
    sh_schema_limits lim;
    sh_limits_resolve(lim_in, &lim);
    sh_delta_clear(out);
    int rc = sh_frame_decode(buf, len, reg, SH_KIND_INDEX_DELTA, 0, map_delta, out, &lim, e);
    if (rc) {
        sh_delta_clear(out);
        return sh_err_wrap(e, rc == SH_EINVAL ? SH_EFORMAT : rc, "decode IndexDelta");
    }
    return 0;
}
