/* sh_shardmap.h — which shard a track belongs to. PART OF THE WIRE CONTRACT.
 *
 * The replicator (partition = shard of the index-delta topic), the edge (which shards it holds),
 * `soundhash verify` and the tests must all agree on this function forever, so it is defined once
 * here and pinned by fixed test vectors (tests/unit/test_shardmap.c):
 *
 *   shard = FNV-1a-64(external_id bytes) mod nshards
 *
 * FNV-1a 64-bit: h = 0xcbf29ce484222325; for each byte b: h ^= b; h *= 0x100000001b3 (mod 2^64).
 * The input is the track's external id exactly as stored (UTF-8 bytes, no terminator, no case
 * folding or normalisation). FNV-1a is not keyed: shard assignment needs stability across
 * processes, versions and languages, not resistance to an adversary choosing ids (a skewed
 * tenant only makes one shard bigger).
 *
 * Changing the shard count moves almost every track to another shard, so it is a NEW EPOCH of
 * every shard: stop the replicator, create the topic with the new partition count (or a new
 * topic), restart the replicator with the new count and a higher epoch; every subscriber sees
 * the epoch change and re-bootstraps from a snapshot (see schemas/README.md). Never change this
 * function in place: a new assignment would be a new epoch AND a new function name.
 */
#ifndef SH_SHARDMAP_H
#define SH_SHARDMAP_H

#include <stddef.h>
#include <stdint.h>

/* The topic's partition count by default (soundhash.index.deltas). */
#define SH_SHARDS_DEFAULT 8u
/* Most shards a deployment may have (bounds per-shard tables in the replicator and the edge). */
#define SH_SHARDS_MAX 4096u

/* FNV-1a 64-bit of len bytes at p (p may be NULL when len is 0). */
uint64_t sh_fnv1a64(const void *p, size_t len);

/* The shard of a track: sh_fnv1a64(external_id, len) % nshards, in [0, nshards). nshards 0 is a
 * caller bug and returns 0 (like one shard). external_id may be NULL when len is 0. */
uint32_t sh_shard_of(const char *external_id, size_t len, uint32_t nshards);

#endif
