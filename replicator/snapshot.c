/* snapshot.c — one shard's snapshot from one consistent read of the primary.
 *
 * A new or lagging subscriber must not need the whole history: Kafka's retention is finite and
 * the change log is pruned. The snapshot holds every active track of the shard as an upsert, at
 * the change-log seq S the read reflects (sh_snap.h); the subscriber then applies the delta
 * stream, skipping ops <= S. Reading every track and keeping those of the shard costs one pass
 * over the catalogue per snapshot (a shard column would avoid it; snapshots are rare next to
 * deltas). */
#include "replicator.h"

#include "sh_fp.h"
#include "sh_fpblob.h"
#include "sh_shardmap.h"
#include "sh_snap.h"

#include <stdlib.h>
#include <string.h>

#define SNAP_FETCH 64 /* tracks (with blobs) per FETCH */

static int add_track(sh_snap_writer *w, const sh_track *t, int64_t seq, sh_err *e)
{
    sh_hash *h = NULL;
    size_t n = 0;
    if (t->fp_blob_len) {
        int rc = sh_fpblob_decode(t->fp_blob, t->fp_blob_len, 0, &h, &n, e);
        if (rc)
            return sh_err_wrap(e, rc, "track %s has a bad posting blob", t->external_id);
    }
    sh_dop op;
    memset(&op, 0, sizeof op);
    op.seq = seq; /* the state as of S: every op of a snapshot is at S */
    op.kind = SH_DOP_UPSERT;
    op.track_id = t->external_id;
    op.tenant = t->tenant;
    op.version = t->version;
    op.fp_version = t->fp_version;
    op.duration_s = t->duration_s;
    op.metadata = t->metadata_json;
    op.postings = h;
    op.npostings = n;
    int rc = sh_snap_writer_add(w, &op, e);
    free(h);
    return rc;
}

static int copy_tracks(sh_primary *db, sh_snap_writer *w, const sh_snap_info *info, sh_err *e)
{
    for (;;) {
        sh_track_list l = {0};
        int rc = sh_primary_snap_next(db, SNAP_FETCH, &l, e);
        if (rc)
            return rc;
        if (l.n == 0)
            return 0;
        for (size_t i = 0; rc == 0 && i < l.n; i++) {
            const sh_track *t = &l.v[i];
            if (sh_shard_of(t->external_id, strlen(t->external_id), info->nshards) == info->shard)
                rc = add_track(w, t, info->seq, e);
        }
        sh_track_list_clear(&l);
        if (rc)
            return rc;
    }
}

/* The header lists the fp_versions present: those of the whole catalogue (a superset of the
 * shard's), or the current one for an empty catalogue. */
static int fill_info(sh_primary *db, int shard, int nshards, int64_t epoch, int64_t seq,
                     sh_snap_info *info, sh_err *e)
{
    memset(info, 0, sizeof *info);
    info->shard = (uint32_t)shard;
    info->nshards = (uint32_t)nshards;
    info->epoch = epoch;
    info->seq = seq;
    int rc = sh_primary_snap_fp_versions(db, info->fp_versions, SH_SNAP_FPV_MAX, &info->nfp, e);
    if (rc == 0 && info->nfp > SH_SNAP_FPV_MAX)
        rc = sh_err_set(e, SH_EUNSUPPORTED, "%zu fingerprint versions in the catalogue, over %d",
                        info->nfp, SH_SNAP_FPV_MAX);
    if (rc == 0 && info->nfp == 0) {
        info->nfp = 1;
        info->fp_versions[0] = SH_FP_VERSION;
    }
    return rc;
}

int rp_snapshot_write(sh_primary *db, int shard, int nshards, int64_t epoch, int fd,
                      int64_t *seq_out, uint64_t *tracks_out, sh_err *e)
{
    int64_t seq = 0;
    int rc = sh_primary_snap_begin(db, &seq, e);
    if (rc)
        return rc;
    sh_snap_info info;
    sh_snap_writer *w = NULL;
    rc = fill_info(db, shard, nshards, epoch, seq, &info, e);
    if (rc == 0)
        rc = sh_snap_writer_new(&info, 0, sh_snap_fd_write, &fd, &w, e);
    if (rc == 0)
        rc = copy_tracks(db, w, &info, e);
    if (rc == 0)
        rc = sh_snap_writer_finish(w, e);
    if (rc == 0 && seq_out)
        *seq_out = seq;
    if (rc == 0 && tracks_out)
        *tracks_out = sh_snap_writer_ops(w);
    sh_snap_writer_free(w);
    sh_primary_snap_end(db);
    return rc;
}
