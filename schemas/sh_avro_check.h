/* sh_avro_check.h — a bounded pre-pass over untrusted Avro binary (internal to schemas/).
 *
 * avro-c trusts lengths and counts it reads: a corrupted varint makes it try to allocate up to
 * 2^63 bytes or loop for 2^63 items. sh_avro_check() walks the bytes with the writer's schema
 * first and accepts only data that avro-c can read with allocations bounded by the input size:
 * every string/bytes/fixed length fits in the remaining input, every map/array block has at most
 * `container_max` items in total, union branches and enum indexes are in range, ints fit in 32
 * bits, booleans are 0 or 1, varints are at most 10 bytes, the schema nests at most
 * SH_SCHEMA_DEPTH_MAX deep, and the datum ends exactly at `len`.
 */
#ifndef SH_AVRO_CHECK_H
#define SH_AVRO_CHECK_H

#include "sh_err.h"

#include <avro.h>
#include <stddef.h>
#include <stdint.h>

/* Returns 0, SH_EFORMAT (malformed or trailing bytes; message says where), SH_ETOOBIG (a map or
 * array over `container_max` items), SH_ESCHEMA (schema too deep or of an unsupported type). */
int sh_avro_check(avro_schema_t schema, const uint8_t *buf, size_t len, size_t container_max,
                  sh_err *e);

#endif
