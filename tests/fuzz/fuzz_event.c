/* libFuzzer target: arbitrary bytes decoded as a framed audio event, dead letter and index delta
 * (embedded registry). Whatever decodes must re-encode and decode to the same record, and must
 * satisfy its validation rules; nothing may crash, leak or allocate beyond the input and caps.
 * The first 5 bytes of the input select the schema id like a real frame does, so the saved corpus
 * holds valid frames of every record kind and version plus mutations of them. */
#include "sh_schema.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

static sh_registry *registry(void)
{
    /* One registry for the process: the harness has no setup hook. */
    static sh_registry *reg;
    if (!reg && sh_registry_new_embedded(&reg, NULL))
        abort();
    return reg;
}

static void check_event(const uint8_t *data, size_t size, sh_registry *reg)
{
    sh_audio_event ev = {0}, again = {0};
    if (sh_event_decode(data, size, reg, NULL, &ev, NULL))
        return;
    if (sh_event_validate(&ev, NULL, NULL))
        abort();
    uint8_t *buf;
    size_t len;
    if (sh_event_encode(&ev, reg, NULL, &buf, &len, NULL) ||
        sh_event_decode(buf, len, reg, NULL, &again, NULL))
        abort();
    if (strcmp(ev.track_id, again.track_id) || ev.meta.n != again.meta.n ||
        ev.source.kind != again.source.kind || ev.source.data_len != again.source.data_len ||
        ev.priority != again.priority || strcmp(ev.trace_id, again.trace_id))
        abort();
    free(buf);
    sh_event_clear(&ev);
    sh_event_clear(&again);
}

static void check_dlq(const uint8_t *data, size_t size, sh_registry *reg)
{
    sh_dlq_record r = {0}, again = {0};
    if (sh_dlq_decode(data, size, reg, NULL, &r, NULL))
        return;
    uint8_t *buf;
    size_t len;
    if (sh_dlq_encode(&r, reg, NULL, &buf, &len, NULL) ||
        sh_dlq_decode(buf, len, reg, NULL, &again, NULL))
        abort();
    if (r.original_len != again.original_len || r.source_offset != again.source_offset)
        abort();
    free(buf);
    sh_dlq_clear(&r);
    sh_dlq_clear(&again);
}

static void check_delta(const uint8_t *data, size_t size, sh_registry *reg)
{
    sh_delta_envelope d = {0}, again = {0};
    if (sh_delta_decode(data, size, reg, NULL, &d, NULL))
        return;
    uint8_t *buf;
    size_t len;
    if (sh_delta_encode(&d, reg, NULL, &buf, &len, NULL) ||
        sh_delta_decode(buf, len, reg, NULL, &again, NULL))
        abort();
    if (d.sequence != again.sequence || d.payload_len != again.payload_len)
        abort();
    free(buf);
    sh_delta_clear(&d);
    sh_delta_clear(&again);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    sh_registry *reg = registry();
    check_event(data, size, reg);
    check_dlq(data, size, reg);
    check_delta(data, size, reg);
    return 0;
}
