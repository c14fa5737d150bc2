/* offsets.h — which Kafka offsets a worker may commit, when events finish out of order.
 *
 * A worker hands events of one partition to N threads; they finish in any order. Committing the
 * offset of an event that finished while an earlier one is still running would lose the earlier one
 * if the worker died. So per (topic, partition) the tracker keeps the in-flight offsets in arrival
 * order and the commit point only advances over the contiguous prefix of finished ones: after
 * offsets 10, 11, 12 arrive and 12 and 10 finish, the committable offset is 11 (Kafka commits name
 * the NEXT offset to read); once 11 finishes it is 13.
 *
 * Pure logic: no Kafka, no threads, no clocks. Not thread-safe: one owner (the worker guards it with
 * its own mutex). Memory grows with the number of in-flight offsets, which the worker bounds.
 */
#ifndef SH_WORKER_OFFSETS_H
#define SH_WORKER_OFFSETS_H

#include "sh_err.h"

#include <stddef.h>
#include <stdint.h>

#define SH_OFFSETS_TOPIC_MAX 249 /* Kafka's limit on topic names */

typedef struct sh_offsets sh_offsets;

/* One commit to make: `offset` is the next offset to read (last finished + 1). */
typedef struct sh_offset_commit {
    char topic[SH_OFFSETS_TOPIC_MAX + 1];
    int32_t partition;
    int64_t offset;
} sh_offset_commit;

/* Creates an empty tracker. Errors: SH_ENOMEM. */
int sh_offsets_new(sh_offsets **out);
/* Frees everything; accepts NULL. */
void sh_offsets_free(sh_offsets *t);

/* Records that `offset` of (topic, partition) was handed out for processing. Offsets of one
 * partition must arrive strictly increasing (gaps are fine: compaction, control records).
 * Errors: SH_EINVAL (bad topic/partition/offset, or offset <= the last one added or committed for
 * that partition — a rewind: call sh_offsets_reset() first), SH_ENOMEM. */
int sh_offsets_add(sh_offsets *t, const char *topic, int32_t partition, int64_t offset);

/* Marks an in-flight offset finished (database committed or dead letter delivered). Returns 0,
 * SH_ENOTFOUND (not in flight: unknown partition — e.g. revoked and reset meanwhile — or not
 * added, or already done; harmless for the caller), SH_EINVAL. */
int sh_offsets_done(sh_offsets *t, const char *topic, int32_t partition, int64_t offset);

/* Fills up to `cap` commits for partitions whose commit point moved past what was last reported
 * as committed; returns how many. Nothing changes until sh_offsets_committed() confirms them, so a
 * failed commit is simply collected again later. */
size_t sh_offsets_collect(const sh_offsets *t, sh_offset_commit *out, size_t cap);

/* Confirms that `offset` was committed for (topic, partition): later collects only report
 * progress beyond it. Returns 0 or SH_ENOTFOUND (partition unknown). */
int sh_offsets_committed(sh_offsets *t, const char *topic, int32_t partition, int64_t offset);

/* Forgets a partition (revoked in a rebalance, or rewound): its in-flight offsets are dropped and
 * late sh_offsets_done() calls for them return SH_ENOTFOUND. Returns 0 or SH_ENOTFOUND. */
int sh_offsets_reset(sh_offsets *t, const char *topic, int32_t partition);

/* In-flight (added, not yet passed by the commit point) offsets: of one partition, or of all
 * partitions when topic is NULL. A finished offset behind an unfinished one still counts: it
 * cannot be committed yet. */
size_t sh_offsets_pending(const sh_offsets *t, const char *topic, int32_t partition);

/* The next offset to read that may be committed now for (topic, partition), or -1 when nothing
 * has finished since the partition became known. */
int64_t sh_offsets_commit_point(const sh_offsets *t, const char *topic, int32_t partition);

#endif
