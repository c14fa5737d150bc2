/* sh_shardmap.c — see sh_shardmap.h: the shard assignment is part of the wire contract. */
#include "sh_shardmap.h"

uint64_t sh_fnv1a64(const void *p, size_t len)
{
    const unsigned char *b = p;
    uint64_t h = 0xcbf29ce484222325ull;
    for (size_t i = 0; i < len; i++) {
        h ^= b[i];
        h *= 0x100000001b3ull;
    }
    return h;
}

uint32_t sh_shard_of(const char *external_id, size_t len, uint32_t nshards)
{
    if (!nshards)
        return 0;
    return (uint32_t)(sh_fnv1a64(external_id, len) % nshards);
}
