/* sh_primary_takeover.c — what a region takeover reads and writes in the primary: the worker
 * groups' offsets (RPO 0 for uploads) and the server's replication role and lag. See sh_primary.h,
 * "takeover", and ops/takeover.sh. */
#include "sh_primary.h"
#include "sh_primary_int.h"
#include "sh_pgutil.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Kafka topic names are [a-zA-Z0-9._-]: such a name needs no quoting inside an array literal. */
static int topic_ok(const char *t)
{
    size_t n = strlen(t);
    if (n == 0 || n > SH_PRIMARY_TOPIC_MAX)
        return 0;
    for (; *t; t++) {
        if (!((*t >= 'a' && *t <= 'z') || (*t >= 'A' && *t <= 'Z') || (*t >= '0' && *t <= '9') ||
              *t == '.' || *t == '_' || *t == '-'))
            return 0;
    }
    return 1;
}

/* Appends `s` to buf[cap] at *len; 0 or -1 when full. */
static int cat(char *buf, size_t cap, size_t *len, const char *s)
{
    size_t n = strlen(s);
    if (*len + n + 1 > cap)
        return -1;
    memcpy(buf + *len, s, n + 1);
    *len += n;
    return 0;
}

int sh_primary_offsets_save(sh_primary *db, const char *group, const sh_group_offset *v, size_t n,
                            sh_err *e)
{
    if (!group || !*group || strlen(group) > SH_PRIMARY_ID_MAX || n > SH_PRIMARY_OFFSETS_MAX ||
        (n && !v))
        return sh_err_set(e, SH_EINVAL, "offsets: bad group or count");
    if (n == 0)
        return 0;
    /* Three array literals, one statement: one round trip however many partitions moved. */
    const size_t cap = n * (SH_PRIMARY_TOPIC_MAX + 4) + 8;
    char *topics = malloc(cap), *parts = malloc(n * 12 + 8), *offs = malloc(n * 22 + 8);
    int rc = 0;
    size_t lt = 0, lp = 0, lo = 0;
    if (!topics || !parts || !offs) {
        rc = sh_err_set(e, SH_ENOMEM, "out of memory");
        goto out;
    }
    topics[0] = parts[0] = offs[0] = '\0';
    cat(topics, cap, &lt, "{");
    cat(parts, n * 12 + 8, &lp, "{");
    cat(offs, n * 22 + 8, &lo, "{");
    for (size_t i = 0; i < n; i++) {
        if (!topic_ok(v[i].topic) || v[i].partition < 0 || v[i].next_offset < 0) {
            rc = sh_err_set(e, SH_EINVAL, "offsets: bad entry %zu", i);
            goto out;
        }
        char num[32];
        const char *sep = i ? "," : "";
        cat(topics, cap, &lt, sep);
        cat(topics, cap, &lt, v[i].topic);
        snprintf(num, sizeof num, "%s%" PRId32, sep, v[i].partition);
        cat(parts, n * 12 + 8, &lp, num);
        snprintf(num, sizeof num, "%s%" PRId64, sep, v[i].next_offset);
        cat(offs, n * 22 + 8, &lo, num);
    }
    cat(topics, cap, &lt, "}");
    cat(parts, n * 12 + 8, &lp, "}");
    cat(offs, n * 22 + 8, &lo, "}");
    const char *p[4] = {group, topics, parts, offs};
    PGresult *r = NULL;
    rc = sh_query(db,
                  "INSERT INTO consumer_offsets AS c (group_id, topic, partition, next_offset) "
                  "SELECT $1, t, p, o FROM unnest($2::text[], $3::int4[], $4::int8[]) AS u(t, p, o) "
                  "ON CONFLICT (group_id, topic, partition) DO UPDATE SET "
                  "next_offset = EXCLUDED.next_offset, updated_at = now()",
                  4, p, NULL, NULL, &r, e, "save offsets");
    PQclear(r);
out:
    free(topics);
    free(parts);
    free(offs);
    return rc;
}

int sh_primary_offsets_load(sh_primary *db, const char *group, sh_group_offset *v, size_t cap,
                            size_t *n, sh_err *e)
{
    *n = 0;
    if (!group || !*group || (cap && !v))
        return sh_err_set(e, SH_EINVAL, "offsets: bad group");
    const char *p[1] = {group};
    PGresult *r = NULL;
    int rc = sh_query(db,
                      "SELECT topic::text, partition::int4, next_offset::int8 FROM consumer_offsets "
                      "WHERE group_id = $1 ORDER BY topic, partition",
                      1, p, NULL, NULL, &r, e, "load offsets");
    if (rc)
        return rc;
    int bad = 0;
    for (int i = 0; i < PQntuples(r) && !bad; i++) {
        if ((size_t)i >= cap) {
            bad = 2;
            break;
        }
        if (PQgetlength(r, i, 0) > SH_PRIMARY_TOPIC_MAX || PQgetisnull(r, i, 0)) {
            bad = 1;
            break;
        }
        snprintf(v[i].topic, sizeof v[i].topic, "%.*s", PQgetlength(r, i, 0), PQgetvalue(r, i, 0));
        v[i].partition = sh_pg_col_i32(r, i, 1, &bad);
        v[i].next_offset = sh_pg_col_i64(r, i, 2, &bad);
        *n = (size_t)i + 1;
    }
    PQclear(r);
    if (bad == 2)
        return sh_err_set(e, SH_ETOOBIG, "offsets: more than %zu rows for group %s", cap, group);
    return bad ? sh_err_set(e, SH_EDB, "postgres: unexpected consumer_offsets row") : 0;
}

int sh_primary_role_get(sh_primary *db, sh_primary_role *out, sh_err *e)
{
    memset(out, 0, sizeof *out);
    PGresult *r = NULL;
    /* Follower: receive/replay positions of its own WAL. Lag in seconds is only meaningful while
     * it is behind: an idle primary commits nothing, so "now - last replayed commit" would grow
     * without any lag. Primary: its followers as pg_stat_replication sees them (replay_lag is
     * measured by the server: WAL flushed here → replayed there). */
    int rc = sh_query(
        db,
        "SELECT pg_is_in_recovery(), "
        "coalesce(current_setting('soundhash.fenced', true), '') = 'on', "
        "current_setting('default_transaction_read_only') = 'on', "
        "CASE WHEN pg_is_in_recovery() THEN coalesce((SELECT received_tli FROM "
        "  pg_stat_wal_receiver), (SELECT timeline_id FROM pg_control_checkpoint())) "
        "ELSE ('x' || substr(pg_walfile_name(pg_current_wal_lsn()), 1, 8))::bit(32)::int END"
        "::int8, "
        "CASE WHEN pg_is_in_recovery() THEN coalesce(pg_wal_lsn_diff(pg_last_wal_receive_lsn(), "
        "  pg_last_wal_replay_lsn()), 0) ELSE 0 END::int8, "
        "CASE WHEN pg_is_in_recovery() AND pg_last_wal_receive_lsn() IS DISTINCT FROM "
        "  pg_last_wal_replay_lsn() THEN greatest(0, extract(epoch FROM now() - "
        "  pg_last_xact_replay_timestamp())) ELSE 0 END::float8, "
        "coalesce(" SH_PG_EPOCH_MS("pg_last_xact_replay_timestamp()") ", 0)::int8, "
        "(SELECT count(*) FROM pg_stat_replication)::int8, "
        "(SELECT coalesce(max(pg_wal_lsn_diff(pg_current_wal_lsn(), replay_lsn)), 0) FROM "
        "  pg_stat_replication WHERE NOT pg_is_in_recovery())::int8, "
        "(SELECT coalesce(max(extract(epoch FROM replay_lag)), 0) FROM pg_stat_replication)"
        "::float8",
        0, NULL, NULL, NULL, &r, e, "replication role");
    if (rc)
        return rc;
    int bad = PQntuples(r) != 1;
    if (!bad) {
        out->follower = sh_pg_col_bool(r, 0, 0, &bad);
        out->fenced = sh_pg_col_bool(r, 0, 1, &bad);
        out->read_only = sh_pg_col_bool(r, 0, 2, &bad);
        out->timeline = sh_pg_col_i64(r, 0, 3, &bad);
        out->lag_bytes = sh_pg_col_i64(r, 0, 4, &bad);
        out->lag_s = sh_pg_col_f64(r, 0, 5, &bad);
        out->replay_ms = sh_pg_col_i64(r, 0, 6, &bad);
        out->n_followers = sh_pg_col_i64(r, 0, 7, &bad);
        out->followers_lag_bytes = sh_pg_col_i64(r, 0, 8, &bad);
        out->followers_lag_s = sh_pg_col_f64(r, 0, 9, &bad);
    }
    PQclear(r);
    return bad ? sh_err_set(e, SH_EDB, "postgres: unexpected replication role row") : 0;
}
