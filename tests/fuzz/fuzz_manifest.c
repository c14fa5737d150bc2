/* libFuzzer target: arbitrary bytes as an ingest manifest (CSV or JSON lines). The parser must
 * never crash, and its answer must be consistent: success ⇔ no bad line, every kept row complete
 * and within the caps. */
#include "../../ingest/manifest.h"

#include "sh_schema.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define CHECK(c)                                                                                  \
    do {                                                                                          \
        if (!(c))                                                                                 \
            __builtin_trap();                                                                     \
    } while (0)

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    ingest_manifest m = {0};
    sh_err e = {0};
    int rc = ingest_manifest_parse((const char *)data, size, &m, &e);
    CHECK(rc == 0 || rc == SH_EFORMAT || rc == SH_ETOOBIG || rc == SH_ENOMEM);
    CHECK((rc == SH_EFORMAT) == (m.bad_lines > 0) || rc == SH_ETOOBIG || rc == SH_ENOMEM);
    CHECK(m.errors.n <= INGEST_ERRORS_MAX && m.errors.n <= m.bad_lines);
    for (size_t i = 0; i < m.n; i++) {
        const ingest_row *r = &m.rows[i];
        CHECK(r->track_id && r->uri && r->line >= 1);
        size_t tl = strlen(r->track_id);
        CHECK(tl >= 1 && tl <= SH_TRACK_ID_MAX && sh_track_id_check(r->track_id, tl, NULL) == 0);
        CHECK(strlen(r->uri) >= 1 && strlen(r->uri) <= SH_URI_MAX);
        CHECK(!r->tenant || (strlen(r->tenant) >= 1 && strlen(r->tenant) <= SH_TENANT_MAX));
        CHECK(r->n_meta <= SH_META_MAX_ENTRIES);
        if (i > 0)
            CHECK(r->line > m.rows[i - 1].line);
    }
    ingest_manifest_free(&m);
    return 0;
}
