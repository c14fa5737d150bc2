/* Fuzz target: ed_up_parse() (edge/upstream.c) on arbitrary bytes, as an upstream node's answer to
 * POST /v1/match would arrive. A refused answer leaves nothing behind; an accepted one holds at most
 * K candidates, each of a shard that was asked for and consulted, with a confidence in [0, 1], and
 * survives being written back as an answer and parsed again unchanged. */
#include "../../edge/edge.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

enum { NSHARDS = 8, K = 3 };
static const unsigned char ASK[NSHARDS] = {0, 1, 1, 0, 0, 1, 0, 1};

static void check(const ed_up_answer *a)
{
    size_t i;
    const json_t *c;
    if (json_array_size(a->candidates) > K)
        abort();
    json_array_foreach(a->candidates, i, c) {
        json_int_t s = json_integer_value(json_object_get(c, "shard"));
        double conf = json_number_value(json_object_get(c, "confidence"));
        if (s < 0 || s >= NSHARDS || !ASK[s] || conf < 0 || conf > 1 ||
            !json_is_string(json_object_get(c, "node")))
            abort();
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    ed_up_answer a, b;
    sh_err e = {0};
    if (ed_up_answer_init(&a))
        return 0;
    if (ed_up_parse((const char *)data, size, ASK, NSHARDS, K, &a, &e) != 0) {
        if (json_array_size(a.candidates) || json_array_size(a.shards))
            abort();
        ed_up_answer_clear(&a);
        return 0;
    }
    check(&a);
    json_t *again = json_pack("{s:s, s:O, s:n, s:O}", "node", a.node, "shards", a.shards, "match",
                              "candidates", a.candidates);
    char *s = again ? json_dumps(again, JSON_COMPACT) : NULL;
    if (s && ed_up_answer_init(&b) == 0) {
        if (ed_up_parse(s, strlen(s), ASK, NSHARDS, K, &b, &e) != 0 ||
            !json_equal(a.candidates, b.candidates) || !json_equal(a.shards, b.shards) ||
            strcmp(a.node, b.node) != 0)
            abort();
        ed_up_answer_clear(&b);
    }
    free(s);
    json_decref(again);
    ed_up_answer_clear(&a);
    return 0;
}
