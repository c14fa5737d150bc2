/* sh_dlq.c — the dead-letter record (io.soundhash.v1.DeadLetter): rules and Avro mapping. */
#include "sh_schema_int.h"

#include <stdlib.h>
#include <string.h>

int sh_dlq_validate(const sh_dlq_record *r, const sh_schema_limits *lim_in, sh_err *e)
{
    sh_schema_limits lim;
    sh_limits_resolve(lim_in, &lim);
    if (!r)
        return sh_err_set(e, SH_EINVAL, "no dead-letter record");
    if (r->original_len > lim.dlq_original_max)
        return sh_err_set(e, SH_ETOOBIG, "original: %zu bytes, over the %zu-byte limit",
                          r->original_len, lim.dlq_original_max);
    if (r->original_len && !r->original)
        return sh_err_set(e, SH_EINVAL, "original: NULL with length %zu", r->original_len);
    if (r->schema_id < -1)
        return sh_err_set(e, SH_EINVAL, "schema_id %d is invalid", (int)r->schema_id);
    if (r->error_code >= 0)
        return sh_err_set(e, SH_EINVAL, "error_code %d is not an error", (int)r->error_code);
    if (r->attempts < 1)
        return sh_err_set(e, SH_EINVAL, "attempts %d is below 1", (int)r->attempts);
    if (r->failed_at_ms < 0)
        return sh_err_set(e, SH_EINVAL, "failed_at is before 1970");
    if (r->source_partition < -1 || r->source_offset < -1)
        return sh_err_set(e, SH_EINVAL, "source partition/offset is invalid");
    int rc;
    if ((rc = sh_txt_check_array("track_id", r->track_id, sizeof r->track_id, SH_TXT_NOCTRL,
                                 e)) ||
        (rc = sh_txt_check_array("event_id", r->event_id, sizeof r->event_id, SH_TXT_NOCTRL,
                                 e)) ||
        (rc = sh_txt_check_array("error_name", r->error_name, sizeof r->error_name,
                                 SH_TXT_NONEMPTY | SH_TXT_NOCTRL, e)) ||
        (rc = sh_txt_check_array("worker", r->worker, sizeof r->worker,
                                 SH_TXT_NONEMPTY | SH_TXT_NOCTRL, e)) ||
        (rc = sh_txt_check_array("source_topic", r->source_topic, sizeof r->source_topic,
                                 SH_TXT_NONEMPTY | SH_TXT_NOCTRL, e)))
        return rc;
    if (r->reason)
        return sh_txt_check("reason", r->reason, strnlen(r->reason, SH_REASON_MAX + 1),
                            SH_REASON_MAX, 0, SH_ETOOBIG, e);
    return 0;
}

void sh_dlq_clear(sh_dlq_record *r)
{
    if (!r)
        return;
    free(r->original);
    free(r->reason);
    memset(r, 0, sizeof *r);
}

static int fill_dlq(avro_value_t *rec, const void *obj, sh_err *e)
{
    const sh_dlq_record *r = obj;
    int rc;
    if ((rc = sh_av_set_bytes(rec, "original", r->original, r->original_len, e)) ||
        (rc = sh_av_set_int(rec, "schema_id", r->schema_id, e)) ||
        (rc = sh_av_set_opt_str(rec, "track_id", r->track_id, e)) ||
        (rc = sh_av_set_opt_str(rec, "event_id", r->event_id, e)) ||
        (rc = sh_av_set_int(rec, "error_code", r->error_code, e)) ||
        (rc = sh_av_set_str(rec, "error_name", r->error_name, e)) ||
        (rc = sh_av_set_str(rec, "reason", r->reason ? r->reason : "", e)) ||
        (rc = sh_av_set_str(rec, "worker", r->worker, e)) ||
        (rc = sh_av_set_int(rec, "attempts", r->attempts, e)) ||
        (rc = sh_av_set_long(rec, "failed_at", r->failed_at_ms, e)) ||
        (rc = sh_av_set_str(rec, "source_topic", r->source_topic, e)) ||
        (rc = sh_av_set_int(rec, "source_partition", r->source_partition, e)) ||
        (rc = sh_av_set_long(rec, "source_offset", r->source_offset, e)))
        return rc;
    return 0;
}

int sh_dlq_encode(const sh_dlq_record *r, sh_registry *reg, const sh_schema_limits *lim,
                  uint8_t **out, size_t *len, sh_err *e)
{
    *out = NULL;
    *len = 0;
    int rc = sh_dlq_validate(r, lim, e);
    if (rc)
        return sh_err_wrap(e, rc, "dead letter");
    return sh_frame_encode(reg, SH_KIND_DEAD_LETTER, fill_dlq, r, out, len, e);
}

static int map_dlq(const avro_value_t *rec, void *obj, const sh_schema_limits *lim, sh_err *e)
{
    sh_dlq_record *r = obj;
    const char *reason;
    size_t reason_len;
    int rc;
    if ((rc = sh_av_dup_bytes(rec, "original", 0, lim->dlq_original_max, &r->original,
                              &r->original_len, e)) ||
        (rc = sh_av_get_int(rec, "schema_id", 0, &r->schema_id, NULL, e)) ||
        (rc = sh_av_copy_str(rec, "track_id", SH_AV_NULLABLE, r->track_id, sizeof r->track_id,
                             e)) ||
        (rc = sh_av_copy_str(rec, "event_id", SH_AV_NULLABLE, r->event_id, sizeof r->event_id,
                             e)) ||
        (rc = sh_av_get_int(rec, "error_code", 0, &r->error_code, NULL, e)) ||
        (rc = sh_av_copy_str(rec, "error_name", 0, r->error_name, sizeof r->error_name, e)) ||
        (rc = sh_av_get_str(rec, "reason", 0, &reason, &reason_len, NULL, e)) ||
        (rc = sh_av_copy_str(rec, "worker", 0, r->worker, sizeof r->worker, e)) ||
        (rc = sh_av_get_int(rec, "attempts", 0, &r->attempts, NULL, e)) ||
        (rc = sh_av_get_long(rec, "failed_at", 0, &r->failed_at_ms, NULL, e)) ||
        (rc = sh_av_copy_str(rec, "source_topic", 0, r->source_topic, sizeof r->source_topic,
                             e)) ||
        (rc = sh_av_get_int(rec, "source_partition", 0, &r->source_partition, NULL, e)) ||
        (rc = sh_av_get_long(rec, "source_offset", 0, &r->source_offset, NULL, e)))
        return rc;
    if ((rc = sh_txt_check("reason", reason, reason_len, SH_REASON_MAX, 0, SH_ETOOBIG, e)))
        return rc;
    if (!(r->reason = strndup(reason, reason_len)))
        return sh_err_set(e, SH_ENOMEM, "out of memory");
    return sh_dlq_validate(r, lim, e);
}

int sh_dlq_decode(const uint8_t *buf, size_t len, sh_registry *reg, const sh_schema_limits *lim_in,
                  sh_dlq_record *out, sh_err *e)
{
    sh_schema_limits lim;
    sh_limits_resolve(lim_in, &lim);
    sh_dlq_clear(out);
    int rc = sh_frame_decode(buf, len, reg, SH_KIND_DEAD_LETTER, 0, map_dlq, out, &lim, e);
    if (rc) {
        sh_dlq_clear(out);
        return sh_err_wrap(e, rc == SH_EINVAL ? SH_EFORMAT : rc, "decode DeadLetter");
    }
    return 0;
}
