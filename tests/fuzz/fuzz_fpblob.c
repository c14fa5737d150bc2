/* Fuzz target: sh_fpblob_decode() on arbitrary bytes. Anything accepted must re-encode to a blob
 * that decodes to the same postings (the decoder only accepts canonical order), within the caps. */
#include "sh_fpblob.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

enum { FUZZ_MAX_POSTINGS = 1 << 16 };

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    sh_hash *h = NULL;
    size_t n = 0, cnt = 0;
    sh_err e = {0};
    (void)sh_fpblob_count(data, size, &cnt, &e);
    if (sh_fpblob_decode(data, size, FUZZ_MAX_POSTINGS, &h, &n, &e) != 0)
        return 0;
    if (n > FUZZ_MAX_POSTINGS || cnt != n)
        abort();
    uint8_t *blob = NULL;
    size_t len = 0;
    if (sh_fpblob_encode(h, n, 1, &blob, &len, &e) != 0)
        abort();
    sh_hash *h2 = NULL;
    size_t n2 = 0;
    if (sh_fpblob_decode(blob, len, FUZZ_MAX_POSTINGS, &h2, &n2, &e) != 0 || n2 != n ||
        (n && memcmp(h, h2, n * sizeof *h) != 0))
        abort();
    free(h2);
    free(blob);
    free(h);
    return 0;
}
