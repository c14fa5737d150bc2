#include "sh_avro_check.h"

#include "sh_schema.h"

#include <inttypes.h>
#include <string.h>

typedef struct cursor {
    const uint8_t *buf;
    size_t len;
    size_t pos;
    size_t container_max;
    size_t budget; /* items left to visit: bounds the work on zero-size elements */
    sh_err *e;
} cursor;

static int walk(cursor *c, avro_schema_t s, int depth);

static int truncated(cursor *c, const char *what)
{
    return sh_err_set(c->e, SH_EFORMAT, "avro: truncated %s at byte %zu of %zu", what, c->pos,
                      c->len);
}

/* Zig-zag varint, as avro-c reads it (at most 10 bytes), but rejecting bits beyond 64. */
static int read_long(cursor *c, int64_t *out, const char *what)
{
    uint64_t v = 0;
    for (int i = 0; i < 10; i++) {
        if (c->pos >= c->len)
            return truncated(c, what);
        uint8_t b = c->buf[c->pos++];
        if (i == 9 && (b & 0xfe))
            return sh_err_set(c->e, SH_EFORMAT, "avro: varint too long in %s at byte %zu", what,
                              c->pos - 1);
        v |= (uint64_t)(b & 0x7f) << (7 * i);
        if (!(b & 0x80)) {
            *out = (int64_t)(v >> 1) ^ -(int64_t)(v & 1);
            return 0;
        }
    }
    return sh_err_set(c->e, SH_EFORMAT, "avro: varint too long in %s", what);
}

static int skip(cursor *c, uint64_t n, const char *what)
{
    if (n > c->len - c->pos)
        return sh_err_set(c->e, SH_EFORMAT, "avro: truncated %s: %llu bytes at byte %zu, %zu left",
                          what, (unsigned long long)n, c->pos, c->len - c->pos);
    c->pos += (size_t)n;
    return 0;
}

static int check_length(cursor *c, const char *what)
{
    int64_t n;
    int rc = read_long(c, &n, what);
    if (rc)
        return rc;
    if (n < 0)
        return sh_err_set(c->e, SH_EFORMAT, "avro: negative %s length %" PRId64, what, n);
    return skip(c, (uint64_t)n, what);
}

/* avro-c keeps map keys as C strings: a NUL inside a key would silently truncate it. */
static int check_key(cursor *c)
{
    int64_t n;
    int rc = read_long(c, &n, "map key");
    if (rc)
        return rc;
    if (n < 0)
        return sh_err_set(c->e, SH_EFORMAT, "avro: negative map key length %" PRId64, n);
    if ((uint64_t)n > c->len - c->pos)
        return truncated(c, "map key");
    if (memchr(c->buf + c->pos, 0, (size_t)n))
        return sh_err_set(c->e, SH_EFORMAT, "avro: NUL byte inside a map key");
    c->pos += (size_t)n;
    return 0;
}

static int take_budget(cursor *c, uint64_t n)
{
    if (n > c->budget)
        return sh_err_set(c->e, SH_EFORMAT, "avro: more items than input bytes");
    c->budget -= (size_t)n;
    return 0;
}

/* Maps and arrays: blocks of `count` items, a negative count followed by the block's byte size,
 * ended by a zero count. */
static int walk_blocks(cursor *c, avro_schema_t items, int is_map, int depth)
{
    uint64_t total = 0;
    for (;;) {
        int64_t count;
        int rc = read_long(c, &count, "block count");
        if (rc)
            return rc;
        if (count == 0)
            return 0;
        if (count < 0) {
            if (count == INT64_MIN)
                return sh_err_set(c->e, SH_EFORMAT, "avro: invalid block count");
            count = -count;
            int64_t size;
            if ((rc = read_long(c, &size, "block size")))
                return rc;
            if (size < 0 || (uint64_t)size > c->len - c->pos)
                return sh_err_set(c->e, SH_EFORMAT, "avro: bad block size %" PRId64, size);
        }
        total += (uint64_t)count;
        if (total > c->container_max)
            return sh_err_set(c->e, SH_ETOOBIG, "avro: %s with more than %zu items",
                              is_map ? "map" : "array", c->container_max);
        if ((rc = take_budget(c, (uint64_t)count)))
            return rc;
        for (int64_t i = 0; i < count; i++) {
            if (is_map && (rc = check_key(c)))
                return rc;
            if ((rc = walk(c, items, depth + 1)))
                return rc;
        }
    }
}

static int walk_record(cursor *c, avro_schema_t s, int depth)
{
    size_t n = avro_schema_record_size(s);
    for (size_t i = 0; i < n; i++) {
        int rc = walk(c, avro_schema_record_field_get_by_index(s, (int)i), depth + 1);
        if (rc)
            return rc;
    }
    return 0;
}

static int walk_index(cursor *c, int64_t n, const char *what, int64_t *idx)
{
    int rc = read_long(c, idx, what);
    if (rc)
        return rc;
    if (*idx < 0 || *idx >= n)
        return sh_err_set(c->e, SH_EFORMAT, "avro: %s index %" PRId64 " out of range 0..%" PRId64,
                          what, *idx, n - 1);
    return 0;
}

static int walk(cursor *c, avro_schema_t s, int depth)
{
    if (depth > SH_SCHEMA_DEPTH_MAX || !s)
        return sh_err_set(c->e, SH_ESCHEMA, "avro: writer schema nests deeper than %d",
                          SH_SCHEMA_DEPTH_MAX);
    int64_t v;
    int rc;
    switch (avro_typeof(s)) {
    case AVRO_NULL:
        return 0;
    case AVRO_BOOLEAN:
        if (c->pos >= c->len)
            return truncated(c, "boolean");
        if (c->buf[c->pos] > 1)
            return sh_err_set(c->e, SH_EFORMAT, "avro: boolean byte %u", c->buf[c->pos]);
        c->pos++;
        return 0;
    case AVRO_INT32:
        if ((rc = read_long(c, &v, "int")))
            return rc;
        if (v < INT32_MIN || v > INT32_MAX)
            return sh_err_set(c->e, SH_EFORMAT, "avro: int out of range");
        return 0;
    case AVRO_INT64:
        return read_long(c, &v, "long");
    case AVRO_FLOAT:
        return skip(c, 4, "float");
    case AVRO_DOUBLE:
        return skip(c, 8, "double");
    case AVRO_STRING:
        return check_length(c, "string");
    case AVRO_BYTES:
        return check_length(c, "bytes");
    case AVRO_FIXED: {
        int64_t n = avro_schema_fixed_size(s);
        return n < 0 ? sh_err_set(c->e, SH_ESCHEMA, "avro: bad fixed size")
                     : skip(c, (uint64_t)n, "fixed");
    }
    case AVRO_ENUM:
        return walk_index(c, avro_schema_enum_number_of_symbols(s), "enum", &v);
    case AVRO_UNION:
        if ((rc = walk_index(c, (int64_t)avro_schema_union_size(s), "union", &v)))
            return rc;
        return walk(c, avro_schema_union_branch(s, (int)v), depth + 1);
    case AVRO_RECORD:
        return walk_record(c, s, depth);
    case AVRO_MAP:
        return walk_blocks(c, avro_schema_map_values(s), 1, depth);
    case AVRO_ARRAY:
        return walk_blocks(c, avro_schema_array_items(s), 0, depth);
    case AVRO_LINK:
        return walk(c, avro_schema_link_target(s), depth + 1);
    }
    return sh_err_set(c->e, SH_ESCHEMA, "avro: unsupported schema type");
}

int sh_avro_check(avro_schema_t schema, const uint8_t *buf, size_t len, size_t container_max,
                  sh_err *e)
{
    cursor c = {.buf = buf, .len = len, .container_max = container_max, .budget = len + 1,
                .e = e};
    int rc = walk(&c, schema, 0);
    if (rc)
        return rc;
    if (c.pos != len)
        return sh_err_set(e, SH_EFORMAT, "avro: %zu trailing bytes after the record",
                          len - c.pos);
    return 0;
}
