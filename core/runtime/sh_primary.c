/* sh_primary.c — PostgreSQL primary over libpq. See sh_primary.h for the contract. */
#include "sh_primary.h"
#include "sh_primary_int.h"

#include "sh_clock.h"
#include "sh_log.h"
#include "sh_opt.h"
#include "sh_pgutil.h"

#include <ctype.h>
#include <errno.h>
#include <inttypes.h>
#include <libpq-fe.h>
#include <math.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- migrations ------------------------------------------------------------------------------ *
 * Each entry runs once, in its own transaction, and is recorded in schema_migrations. Never edit
 * an applied migration: append a new one. */

typedef struct sh_migration {
    int version;
    const char *name;
    const char *sql;
} sh_migration;

static const char MIGRATION_1[] =
    /* Tracks: one row per external id, live or tombstone. `version` is chosen by the writer (the
     * event's submitted-at ms or an explicit version); writes with version <= the stored one are
     * ignored, a delete leaves status 'deleted' with its version so older upserts stay out.
     * COLLATE "C": byte order, so the reindex cursor (external_id > $after) walks the index. */
    "CREATE TABLE tracks (\n"
    "  id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,\n"
    "  external_id text COLLATE \"C\" NOT NULL UNIQUE,\n"
    "  tenant      text COLLATE \"C\" NOT NULL,\n"
    "  metadata    jsonb NOT NULL DEFAULT '{}'::jsonb,\n"
    "  sha256      text CHECK (sha256 ~ '^[0-9a-f]{64}$'),\n"
    "  duration_s  double precision NOT NULL DEFAULT 0 CHECK (duration_s >= 0),\n"
    "  source_uri  text,\n"
    "  fp_version  integer NOT NULL DEFAULT 0,\n"
    "  n_hashes    bigint NOT NULL DEFAULT 0,\n"
    "  version     bigint NOT NULL CHECK (version > 0),\n"
    "  status      text NOT NULL CHECK (status IN ('active', 'deleted')),\n"
    "  created_at  timestamptz NOT NULL DEFAULT now(),\n"
    "  updated_at  timestamptz NOT NULL DEFAULT now()\n"
    ");\n"
    "CREATE INDEX tracks_tenant ON tracks (tenant, external_id);\n"
    "CREATE INDEX tracks_fp_version ON tracks (fp_version, external_id) WHERE status = 'active';\n"
    /* Fingerprints: ONE row per track holding the compressed posting blob (sh_fpblob.h). A row per
     * posting costs ~40 bytes of tuple header and an index entry per hash; bench/bench_primary.c
     * measures both layouts. The blob is already zstd-compressed: STORAGE EXTERNAL skips pglz. */
    "CREATE TABLE fingerprints (\n"
    "  external_id text COLLATE \"C\" PRIMARY KEY\n"
    "              REFERENCES tracks (external_id) ON DELETE CASCADE,\n"
    "  fp_version  integer NOT NULL,\n"
    "  n_hashes    bigint NOT NULL,\n"
    "  blob        bytea NOT NULL\n"
    ");\n"
    "ALTER TABLE fingerprints ALTER COLUMN blob SET STORAGE EXTERNAL;\n"
    /* Change log for the replicator. seq comes from change_counter, not from a sequence: a
     * sequence hands out numbers at call time, so concurrent transactions commit out of seq order
     * and a reader could see 6 before 5. Incrementing this single row as the last statement of
     * each write transaction holds its row lock until commit: appends serialize, seq = commit
     * order, gap-free (a rollback undoes its increment). */
    "CREATE TABLE change_counter (\n"
    "  id       integer PRIMARY KEY CHECK (id = 1),\n"
    "  last_seq bigint NOT NULL\n"
    ");\n"
    "INSERT INTO change_counter VALUES (1, 0);\n"
    "CREATE TABLE change_log (\n"
    "  seq          bigint PRIMARY KEY,\n"
    "  op           text NOT NULL CHECK (op IN ('upsert', 'delete')),\n"
    "  external_id  text COLLATE \"C\" NOT NULL,\n"
    "  tenant       text COLLATE \"C\" NOT NULL,\n"
    "  track_id     bigint NOT NULL,\n"
    "  version      bigint NOT NULL,\n"
    "  fp_version   integer NOT NULL,\n"
    "  committed_at timestamptz NOT NULL\n"
    ");\n";

static const char MIGRATION_2[] =
    /* Write functions: each call is one statement, hence one transaction when sent on its own
     * (or one per pipeline Sync), so a track is whole or absent. */
    "CREATE OR REPLACE FUNCTION sh_append_change(p_op text, p_id text, p_tenant text,\n"
    "    p_track bigint, p_ver bigint, p_fpv integer) RETURNS bigint\n"
    "LANGUAGE plpgsql AS $$\n"
    "DECLARE s bigint;\n"
    "BEGIN\n"
    "  -- Must be the last thing a write transaction does: the counter row lock is held until\n"
    "  -- commit, so commits that append changes serialize and seq follows commit order.\n"
    "  UPDATE change_counter SET last_seq = last_seq + 1 WHERE id = 1 RETURNING last_seq INTO s;\n"
    "  INSERT INTO change_log VALUES (s, p_op, p_id, p_tenant, p_track, p_ver, p_fpv,\n"
    "                                 clock_timestamp());\n"
    "  PERFORM pg_notify('sh_changes', s::text);\n"
    "  RETURN s;\n"
    "END $$;\n"
    "CREATE OR REPLACE FUNCTION sh_write_track(p_id text, p_tenant text, p_meta jsonb,\n"
    "    p_sha text, p_dur double precision, p_uri text, p_fpv integer, p_ver bigint,\n"
    "    p_nh bigint, p_blob bytea) RETURNS bigint\n"
    "LANGUAGE plpgsql AS $$\n"
    "DECLARE tid bigint;\n"
    "BEGIN\n"
    "  INSERT INTO tracks AS t (external_id, tenant, metadata, sha256, duration_s, source_uri,\n"
    "                           fp_version, n_hashes, version, status)\n"
    "  VALUES (p_id, p_tenant, coalesce(p_meta, '{}'::jsonb), p_sha, p_dur, p_uri, p_fpv, p_nh,\n"
    "          p_ver, 'active')\n"
    "  ON CONFLICT (external_id) DO UPDATE SET tenant = EXCLUDED.tenant,\n"
    "    metadata = EXCLUDED.metadata, sha256 = EXCLUDED.sha256,\n"
    "    duration_s = EXCLUDED.duration_s, source_uri = EXCLUDED.source_uri,\n"
    "    fp_version = EXCLUDED.fp_version, n_hashes = EXCLUDED.n_hashes,\n"
    "    version = EXCLUDED.version, status = 'active', updated_at = now()\n"
    "  WHERE t.version < EXCLUDED.version\n"
    "  RETURNING t.id INTO tid;\n"
    "  IF tid IS NULL THEN RETURN 0; END IF; -- stale: stored version >= p_ver\n"
    "  INSERT INTO fingerprints (external_id, fp_version, n_hashes, blob)\n"
    "  VALUES (p_id, p_fpv, p_nh, p_blob)\n"
    "  ON CONFLICT (external_id) DO UPDATE SET fp_version = EXCLUDED.fp_version,\n"
    "    n_hashes = EXCLUDED.n_hashes, blob = EXCLUDED.blob;\n"
    "  RETURN sh_append_change('upsert', p_id, p_tenant, tid, p_ver, p_fpv);\n"
    "END $$;\n"
    "CREATE OR REPLACE FUNCTION sh_delete_track(p_id text, p_tenant text, p_ver bigint)\n"
    "RETURNS bigint LANGUAGE plpgsql AS $$\n"
    "DECLARE tid bigint; ten text; fpv integer;\n"
    "BEGIN\n"
    "  -- An unknown track gets a tombstone too: an older upsert delivered later must stay out.\n"
    "  INSERT INTO tracks AS t (external_id, tenant, version, status)\n"
    "  VALUES (p_id, coalesce(p_tenant, ''), p_ver, 'deleted')\n"
    "  ON CONFLICT (external_id) DO UPDATE SET version = EXCLUDED.version, status = 'deleted',\n"
    "    n_hashes = 0, updated_at = now()\n"
    "  WHERE t.version < EXCLUDED.version\n"
    "  RETURNING t.id, t.tenant, t.fp_version INTO tid, ten, fpv;\n"
    "  IF tid IS NULL THEN RETURN 0; END IF;\n"
    "  DELETE FROM fingerprints WHERE external_id = p_id;\n"
    "  RETURN sh_append_change('delete', p_id, ten, tid, p_ver, fpv);\n"
    "END $$;\n";

static const char MIGRATION_3[] =
    /* The publication lets a logical-replication subscriber (a secondary region's PostgreSQL) or
     * pg_recvlogical follow these tables. Logical decoding needs the SERVER started with
     * wal_level=logical and max_replication_slots/max_wal_senders > 0 (`soundhash db start` sets
     * them; for a managed server see ops/postgresql.md). Creating the publication itself works at
     * any wal_level (the server only warns). The replicator reads change_log by seq with plain
     * SQL and does not need a slot. */
    "DO $$ BEGIN\n"
    "  IF NOT EXISTS (SELECT 1 FROM pg_publication WHERE pubname = 'soundhash_pub') THEN\n"
    "    CREATE PUBLICATION soundhash_pub FOR TABLE tracks, fingerprints, change_log;\n"
    "  END IF;\n"
    "END $$;\n";

static const char MIGRATION_4[] =
    /* Reindex writes. A reindex re-fingerprints the audio the job saw at version p_base; the
     * version names the audio, fp_version the algorithm. So the write applies only while the
     * track is still active at exactly p_base (a re-upload or delete in between wins) and its
     * fingerprints are older than p_fpv (re-running the same reindex is a no-op); the version
     * stays p_base. The UPDATE's WHERE is re-checked against a concurrently committed row, so
     * a racing upsert either sees the reindex committed (and replaces it: its version is
     * newer) or makes the reindex match nothing. Same parameters as sh_write_track; tenant,
     * metadata and source URI are kept as stored. */
    "CREATE OR REPLACE FUNCTION sh_reindex_track(p_id text, p_tenant text, p_meta jsonb,\n"
    "    p_sha text, p_dur double precision, p_uri text, p_fpv integer, p_base bigint,\n"
    "    p_nh bigint, p_blob bytea) RETURNS bigint\n"
    "LANGUAGE plpgsql AS $$\n"
    "DECLARE tid bigint; ten text;\n"
    "BEGIN\n"
    "  UPDATE tracks AS t SET fp_version = p_fpv, n_hashes = p_nh, duration_s = p_dur,\n"
    "    sha256 = coalesce(p_sha, t.sha256), updated_at = now()\n"
    "  WHERE t.external_id = p_id AND t.status = 'active' AND t.version = p_base\n"
    "    AND t.fp_version < p_fpv\n"
    "  RETURNING t.id, t.tenant INTO tid, ten;\n"
    "  IF tid IS NULL THEN RETURN 0; END IF; -- stale: re-uploaded, deleted or already indexed\n"
    "  INSERT INTO fingerprints (external_id, fp_version, n_hashes, blob)\n"
    "  VALUES (p_id, p_fpv, p_nh, p_blob)\n"
    "  ON CONFLICT (external_id) DO UPDATE SET fp_version = EXCLUDED.fp_version,\n"
    "    n_hashes = EXCLUDED.n_hashes, blob = EXCLUDED.blob;\n"
    "  RETURN sh_append_change('upsert', p_id, ten, tid, p_base, p_fpv);\n"
    "END $$;\n";

static const char MIGRATION_5[] =
    /* The replication epoch: subscribers hold (epoch, seq) positions; a new epoch (shard count
     * changed, a region took over) makes every subscriber re-bootstrap from a snapshot. start_seq
     * is the change-log seq the epoch's delta streams start after. Read by the replicator (SELECT
     * only); changed by an operator procedure (README, "Epochs"). */
    "CREATE TABLE replication_epoch (\n"
    "  id         integer PRIMARY KEY CHECK (id = 1),\n"
    "  epoch      bigint NOT NULL CHECK (epoch >= 1),\n"
    "  start_seq  bigint NOT NULL DEFAULT 0 CHECK (start_seq >= 0),\n"
    "  changed_at timestamptz NOT NULL DEFAULT now()\n"
    ");\n"
    "INSERT INTO replication_epoch (id, epoch, start_seq) VALUES (1, 1, 0);\n"
    /* Prune keeps a tombstone while the log still holds its delete; this finds them. */
    "CREATE INDEX change_log_external_id ON change_log (external_id);\n";

static const char MIGRATION_6[] =
    /* Where each worker group's committed Kafka offsets stood, written by the workers after every
     * event below next_offset is committed here. A follower that replayed a row therefore holds
     * every write below it, so after a takeover the group rewinds to the promoted follower's rows
     * (`soundhash worker rewind`) and replays only what may have been lost (RPO 0 for uploads;
     * the version check makes the replay harmless). */
    "CREATE TABLE consumer_offsets (\n"
    "  group_id    text COLLATE \"C\" NOT NULL,\n"
    "  topic       text COLLATE \"C\" NOT NULL,\n"
    "  partition   integer NOT NULL CHECK (partition >= 0),\n"
    "  next_offset bigint NOT NULL CHECK (next_offset >= 0),\n"
    "  updated_at  timestamptz NOT NULL DEFAULT now(),\n"
    "  PRIMARY KEY (group_id, topic, partition)\n"
    ");\n";

static const sh_migration MIGRATIONS[] = {
    {1, "tracks, fingerprints, change log", MIGRATION_1},
    {2, "versioned write functions", MIGRATION_2},
    {3, "publication soundhash_pub", MIGRATION_3},
    {4, "reindex write function", MIGRATION_4},
    {5, "replication epoch", MIGRATION_5},
    {6, "worker offsets for takeover replay", MIGRATION_6},
};
#define N_MIGRATIONS (sizeof MIGRATIONS / sizeof MIGRATIONS[0])

/* Arbitrary key for pg_advisory_xact_lock: serializes concurrent `db migrate` runs. */
#define SH_MIGRATE_LOCK "7243001"

int sh_primary_schema_version(void)
{
    return MIGRATIONS[N_MIGRATIONS - 1].version;
}

/* ---- connection ------------------------------------------------------------------------------ */



void sh_primary_config_default(sh_primary_config *c)
{
    memset(c, 0, sizeof *c);
    c->connect_timeout_s = 5;
    c->statement_timeout_ms = 30000;
    c->application_name = "soundhash";
}

/* libpq quotes a malformed URI whole in its messages: no password of the DSN reaches a message
 * (they end up in logs, on stderr and in /health answers). */
static int redact_err(const char *dsn, sh_err *e, int rc)
{
    if (e && dsn && sh_dsn_has_password(dsn)) {
        char red[SH_ERR_MSG_MAX];
        sh_dsn_redact(dsn, e->msg, red, sizeof red);
        memcpy(e->msg, red, sizeof red);
    }
    return rc;
}

static int sh_connect(sh_primary *db, sh_err *e)
{
    char timeout[16];
    snprintf(timeout, sizeof timeout, "%d", db->connect_timeout_s);
    const char *keys[6], *vals[6];
    int k = 0;
    /* expand_dbname: the first "dbname" may be a full connection string; later keys override. */
    keys[k] = "dbname", vals[k++] = db->dsn;
    keys[k] = "fallback_application_name", vals[k++] = db->app_name;
    if (!db->dsn_has_timeout)
        keys[k] = "connect_timeout", vals[k++] = timeout;
    if (db->password)
        keys[k] = "password", vals[k++] = db->password;
    keys[k] = NULL, vals[k] = NULL;

    PGconn *c = PQconnectdbParams(keys, vals, 1);
    if (!c)
        return sh_err_set(e, SH_ENOMEM, "postgres connect: out of memory");
    if (PQstatus(c) != CONNECTION_OK) {
        int rc = redact_err(db->dsn, e, sh_pg_connect_error(c, e));
        PQfinish(c);
        return rc;
    }
    PQsetNoticeProcessor(c, sh_pg_notice_to_log, NULL);
    char st[24];
    snprintf(st, sizeof st, "%d", db->statement_timeout_ms);
    const char *p[1] = {st};
    /* The same round trip reads the takeover fence (ops/takeover.sh, `soundhash db fence`): an old
     * primary that a takeover replaced carries soundhash.fenced = on, and nobody writes to it or
     * replicates from it by mistake. */
    PGresult *r = PQexecParams(c,
                               "SELECT set_config('statement_timeout', $1, false), "
                               "coalesce(current_setting('soundhash.fenced', true), '')",
                               1, NULL, p, NULL, NULL, 0);
    int ok = PQresultStatus(r) == PGRES_TUPLES_OK && PQntuples(r) == 1;
    int fenced = ok && !strcmp(PQgetvalue(r, 0, 1), "on");
    PQclear(r);
    if (!ok) {
        int rc = sh_pg_connect_error(c, e);
        PQfinish(c);
        return rc;
    }
    if (fenced && !db->allow_fenced) {
        PQfinish(c);
        /* Transient: a worker pauses and a replicator retries until pointed at the new primary. */
        return sh_err_set(e, SH_ETRANSIENT,
                          "postgres connect: this server is fenced (soundhash.fenced = on): a "
                          "takeover replaced it; point --dsn at the new primary (ops/RUNBOOK.md, "
                          "\"Region takeover\")");
    }
    db->conn = c;
    db->listening = 0;
    return 0;
}

/* Drops a broken connection so that the next call reconnects. */
static void sh_disconnect(sh_primary *db)
{
    PQfinish(db->conn);
    db->conn = NULL;
    db->listening = 0;
}

int sh_ensure(sh_primary *db, sh_err *e)
{
    if (db->conn && PQstatus(db->conn) == CONNECTION_OK)
        return 0;
    if (db->conn)
        sh_disconnect(db);
    return sh_connect(db, e);
}

static char *sh_strdup_or_null(const char *s)
{
    return s ? strdup(s) : NULL;
}

/* Overwrites a secret before freeing it so it does not linger in freed heap. */
static void wipe_free(char *secret)
{
    if (!secret)
        return;
    volatile char *p = secret;
    while (*p)
        *p++ = 0;
    free(secret);
}

/* SOUNDHASH_DB_PASSWORD_FILE (e.g. a Docker secret): the file's first line, capped at 1 KiB.
 * No path: *out stays NULL and 0 is returned. */
static int read_password_file(const char *path, char **out, sh_err *e)
{
    *out = NULL;
    if (!path || !*path)
        return 0;
    FILE *f = fopen(path, "r");
    if (!f)
        return sh_err_set(e, SH_EIO, "postgres: cannot read SOUNDHASH_DB_PASSWORD_FILE %s: %s",
                          path, strerror(errno));
    char buf[1025];
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = '\0';
    buf[strcspn(buf, "\r\n")] = '\0';
    *out = strdup(buf);
    memset(buf, 0, sizeof buf);
    return *out ? 0 : sh_err_set(e, SH_ENOMEM, "postgres: out of memory");
}

int sh_primary_new(const sh_primary_config *c, sh_primary **out, sh_err *e)
{
    *out = NULL;
    if (!c || !c->dsn || !*c->dsn)
        return sh_err_set(e, SH_EINVAL, "postgres: no DSN given");
    char *perr = NULL;
    PQconninfoOption *opts = PQconninfoParse(c->dsn, &perr);
    if (!opts) {
        char msg[300];
        sh_pg_trim_copy(msg, sizeof msg, perr ? perr : "out of memory");
        PQfreemem(perr);
        return redact_err(c->dsn, e, sh_err_set(e, SH_EINVAL, "postgres: bad DSN: %s", msg));
    }
    int has_timeout = 0;
    for (PQconninfoOption *o = opts; o->keyword; o++) {
        if (!strcmp(o->keyword, "connect_timeout") && o->val && *o->val)
            has_timeout = 1;
    }
    PQconninfoFree(opts);

    sh_primary *db = calloc(1, sizeof *db);
    if (!db)
        return sh_err_set(e, SH_ENOMEM, "postgres: out of memory");
    const char *pw = c->password ? c->password : getenv("SOUNDHASH_DB_PASSWORD");
    char *file_pw = NULL;
    if (!(pw && *pw)) {
        int frc = read_password_file(getenv("SOUNDHASH_DB_PASSWORD_FILE"), &file_pw, e);
        if (frc) {
            free(db);
            return frc;
        }
        pw = file_pw;
    }
    db->dsn = strdup(c->dsn);
    db->password = sh_strdup_or_null(pw && *pw ? pw : NULL);
    const int pw_lost = pw && *pw && !db->password;
    wipe_free(file_pw); /* pw may point into it: not used past this line */
    pw = NULL;
    db->app_name = strdup(c->application_name ? c->application_name : "soundhash");
    db->connect_timeout_s = c->connect_timeout_s > 0 ? c->connect_timeout_s : 5;
    db->allow_fenced = c->allow_fenced;
    db->statement_timeout_ms = c->statement_timeout_ms > 0 ? c->statement_timeout_ms : 30000;
    db->dsn_has_timeout = has_timeout;
    if (!db->dsn || !db->app_name || pw_lost) {
        sh_primary_free(db);
        return sh_err_set(e, SH_ENOMEM, "postgres: out of memory");
    }
    int rc = sh_connect(db, e);
    if (rc) {
        sh_primary_free(db);
        return rc;
    }
    *out = db;
    return 0;
}

void sh_primary_free(sh_primary *db)
{
    if (!db)
        return;
    PQfinish(db->conn);
    wipe_free(db->password);
    free(db->dsn);
    free(db->app_name);
    free(db);
}

/* ---- errors ---------------------------------------------------------------------------------- */

/* Translates a failed result (or NULL) into SH_ETRANSIENT / SH_EDB with PostgreSQL's text. A lost
 * connection is dropped so that the next call reconnects. */
static int sh_pg_fail(sh_primary *db, const PGresult *r, sh_err *e, const char *what)
{
    int rc = sh_pg_result_error(db->conn, r, what, e);
    if (sh_pg_conn_lost(db->conn))
        sh_disconnect(db);
    return rc;
}

/* Runs a statement with text parameters and binary results (NULL params are SQL NULL). On success
 * *out owns the result (PQclear it). */
int sh_query(sh_primary *db, const char *sql, int n, const char *const *vals,
                    const int *lens, const int *fmts, PGresult **out, sh_err *e, const char *what)
{
    *out = NULL;
    int rc = sh_ensure(db, e);
    if (rc)
        return rc;
    PGresult *r = PQexecParams(db->conn, sql, n, NULL, vals, lens, fmts, 1);
    ExecStatusType s = PQresultStatus(r);
    if (s != PGRES_TUPLES_OK && s != PGRES_COMMAND_OK) {
        rc = sh_pg_fail(db, r, e, what);
        PQclear(r);
        return rc;
    }
    *out = r;
    return 0;
}

/* Simple statement without parameters (only the embedded migration texts and BEGIN/COMMIT). */
int sh_exec(sh_primary *db, const char *sql, sh_err *e, const char *what)
{
    PGresult *r = PQexec(db->conn, sql);
    ExecStatusType s = PQresultStatus(r);
    int rc = 0;
    if (s != PGRES_TUPLES_OK && s != PGRES_COMMAND_OK)
        rc = sh_pg_fail(db, r, e, what);
    PQclear(r);
    return rc;
}

/* ---- migrations ------------------------------------------------------------------------------ */

int sh_rollback(sh_primary *db, int rc)
{
    if (db->conn && PQstatus(db->conn) == CONNECTION_OK)
        PQclear(PQexec(db->conn, "ROLLBACK"));
    return rc;
}

static int sh_migration_apply(sh_primary *db, const sh_migration *m, int *did, sh_err *e)
{
    *did = 0;
    int rc = sh_exec(db, "BEGIN", e, "migrate begin");
    if (!rc)
        rc = sh_exec(db, "SELECT pg_advisory_xact_lock(" SH_MIGRATE_LOCK ")", e, "migrate lock");
    if (rc)
        return sh_rollback(db, rc);
    char ver[16];
    snprintf(ver, sizeof ver, "%d", m->version);
    const char *p[2] = {ver, m->name};
    PGresult *r;
    rc = sh_query(db, "SELECT 1 FROM schema_migrations WHERE version = $1::int", 1, p, NULL, NULL,
                  &r, e, "migrate check");
    if (rc)
        return sh_rollback(db, rc);
    int present = PQntuples(r) > 0;
    PQclear(r);
    if (present)
        return sh_exec(db, "COMMIT", e, "migrate commit");
    rc = sh_exec(db, m->sql, e, "migration");
    if (rc) {
        sh_err_wrap(e, rc, "migration %d (%s)", m->version, m->name);
        return sh_rollback(db, rc);
    }
    rc = sh_query(db, "INSERT INTO schema_migrations (version, name) VALUES ($1::int, $2)", 2, p,
                  NULL, NULL, &r, e, "migrate record");
    if (rc)
        return sh_rollback(db, rc);
    PQclear(r);
    rc = sh_exec(db, "COMMIT", e, "migrate commit");
    *did = rc == 0;
    return rc;
}

int sh_primary_migrate(sh_primary *db, int *applied, size_t cap, size_t *n_applied, sh_err *e)
{
    if (n_applied)
        *n_applied = 0;
    int rc = sh_ensure(db, e);
    if (rc)
        return rc;
    /* The bookkeeping table itself, under the same lock so two first-time migrators do not race
     * on CREATE TABLE IF NOT EXISTS. */
    rc = sh_exec(db, "BEGIN", e, "migrate begin");
    if (!rc)
        rc = sh_exec(db, "SELECT pg_advisory_xact_lock(" SH_MIGRATE_LOCK ")", e, "migrate lock");
    if (!rc)
        rc = sh_exec(db,
                     "CREATE TABLE IF NOT EXISTS schema_migrations (\n"
                     "  version    integer PRIMARY KEY,\n"
                     "  name       text NOT NULL,\n"
                     "  applied_at timestamptz NOT NULL DEFAULT now())",
                     e, "migrate bootstrap");
    if (!rc)
        rc = sh_exec(db, "COMMIT", e, "migrate commit");
    if (rc)
        return sh_rollback(db, rc);
    for (size_t i = 0; i < N_MIGRATIONS; i++) {
        int did;
        rc = sh_migration_apply(db, &MIGRATIONS[i], &did, e);
        if (rc)
            return rc;
        if (did) {
            SH_INFO("db_migrated", "version=%d", MIGRATIONS[i].version);
            if (applied && n_applied && *n_applied < cap)
                applied[(*n_applied)++] = MIGRATIONS[i].version;
        }
    }
    return 0;
}

int sh_primary_applied_versions(sh_primary *db, int *versions, size_t cap, size_t *n, sh_err *e)
{
    *n = 0;
    PGresult *r;
    int rc = sh_query(db, "SELECT version::int4 FROM schema_migrations ORDER BY version", 0, NULL,
                      NULL, NULL, &r, e, "schema_migrations");
    if (rc)
        return rc;
    int bad = 0;
    for (int i = 0; i < PQntuples(r) && *n < cap; i++)
        versions[(*n)++] = sh_pg_col_i32(r, i, 0, &bad);
    PQclear(r);
    return bad ? sh_err_set(e, SH_EDB, "postgres: unexpected column format") : 0;
}

int sh_primary_ping(sh_primary *db, sh_err *e)
{
    PGresult *r;
    int rc = sh_query(db, "SELECT 1", 0, NULL, NULL, NULL, &r, e, "ping");
    PQclear(r);
    return rc;
}

/* ---- writes ---------------------------------------------------------------------------------- */

static int sh_check_str(const char *s, size_t max, int required, const char *what, sh_err *e)
{
    if (!s)
        return required ? sh_err_set(e, SH_EINVAL, "%s is required", what) : 0;
    size_t n = strnlen(s, max + 1);
    if (required && n == 0)
        return sh_err_set(e, SH_EINVAL, "%s is empty", what);
    if (n > max)
        return sh_err_set(e, SH_EINVAL, "%s longer than %zu bytes", what, max);
    return 0;
}

static int sh_track_write_check(const sh_track_write *tw, sh_err *e)
{
    int rc = sh_check_str(tw->external_id, SH_PRIMARY_ID_MAX, 1, "external_id", e);
    if (!rc)
        rc = sh_check_str(tw->tenant, SH_PRIMARY_TENANT_MAX, 1, "tenant", e);
    if (!rc)
        rc = sh_check_str(tw->metadata_json, SH_PRIMARY_META_MAX, 0, "metadata", e);
    if (!rc)
        rc = sh_check_str(tw->source_uri, SH_PRIMARY_URI_MAX, 0, "source_uri", e);
    if (rc)
        return rc;
    if (tw->sha256_hex) {
        size_t n = strnlen(tw->sha256_hex, 65);
        for (size_t i = 0; i < n; i++) {
            if (!isxdigit((unsigned char)tw->sha256_hex[i]))
                n = 0;
        }
        if (n != 64)
            return sh_err_set(e, SH_EINVAL, "sha256 must be 64 hex digits");
    }
    if (!(tw->duration_s >= 0) || !isfinite(tw->duration_s))
        return sh_err_set(e, SH_EINVAL, "duration must be finite and >= 0");
    if (tw->fp_version < 1)
        return sh_err_set(e, SH_EINVAL, "fp_version must be >= 1");
    if (tw->is_reindex ? tw->base_version <= 0 : tw->version <= 0)
        return sh_err_set(e, SH_EINVAL, "%s must be > 0",
                          tw->is_reindex ? "base_version" : "version");
    if (tw->fp_blob_len > SH_PRIMARY_BLOB_MAX || (tw->fp_blob_len && !tw->fp_blob))
        return sh_err_set(e, SH_EINVAL, "fingerprint blob missing or over %u bytes",
                          SH_PRIMARY_BLOB_MAX);
    return 0;
}

/* Text forms of one write's parameters, alive while the query is sent. */
typedef struct sh_write_params {
    char sha[65], dur[32], fpv[16], ver[24], nh[16];
    const char *vals[10];
    int lens[10], fmts[10];
} sh_write_params;

static const char SQL_WRITE[] =
    "SELECT sh_write_track($1, $2, $3::jsonb, $4, $5::float8, $6, $7::int4, $8::int8, $9::int8,"
    " $10::bytea)::int8";
static const char SQL_REINDEX[] =
    "SELECT sh_reindex_track($1, $2, $3::jsonb, $4, $5::float8, $6, $7::int4, $8::int8, $9::int8,"
    " $10::bytea)::int8";

static void sh_write_params_fill(sh_write_params *p, const sh_track_write *tw)
{
    memset(p, 0, sizeof *p);
    if (tw->sha256_hex) {
        for (int i = 0; i < 64; i++)
            p->sha[i] = (char)tolower((unsigned char)tw->sha256_hex[i]);
    }
    snprintf(p->dur, sizeof p->dur, "%.17g", tw->duration_s);
    snprintf(p->fpv, sizeof p->fpv, "%d", tw->fp_version);
    snprintf(p->ver, sizeof p->ver, "%" PRId64, tw->is_reindex ? tw->base_version : tw->version);
    snprintf(p->nh, sizeof p->nh, "%" PRIu32, tw->n_hashes);
    const char *v[10] = {tw->external_id,
                         tw->tenant,
                         tw->metadata_json,
                         tw->sha256_hex ? p->sha : NULL,
                         p->dur,
                         tw->source_uri,
                         p->fpv,
                         p->ver,
                         p->nh,
                         tw->fp_blob ? (const char *)tw->fp_blob : ""};
    memcpy(p->vals, v, sizeof v);
    p->lens[9] = (int)tw->fp_blob_len;
    p->fmts[9] = 1; /* the blob goes binary: no hex escaping, half the bytes on the wire */
}

/* Reads the int8 seq a write function returned: > 0 written, 0 stale. */
static int sh_seq_result(const PGresult *r, int64_t *seq, sh_err *e)
{
    int bad = 0;
    *seq = PQntuples(r) == 1 ? sh_pg_col_i64(r, 0, 0, &bad) : 0;
    if (bad || PQntuples(r) != 1)
        return sh_err_set(e, SH_EDB, "postgres: unexpected write result");
    return *seq > 0 ? 0 : SH_ESTALE;
}

/* Pipeline chunk: small enough that the server's replies (~150 bytes each) never fill the socket
 * buffers while we are still sending, which would deadlock a blocking pipeline. */
#define SH_PIPE_CHUNK 64

/* Reads the replies of one sent query up to its Sync. The implicit transaction commits when the
 * Sync is processed, so only a received Sync proves the outcome: without it the result is
 * SH_ETRANSIENT (unknown; retrying is safe because the version check makes it idempotent). */
static int sh_pipe_read_one(sh_primary *db, int64_t *seq, sh_err *e)
{
    int rc = sh_err_set(e, SH_EINTERNAL, "postgres write: no result");
    int synced = 0;
    /* Expected: the query's result, NULL, the Sync marker; the guard bounds anything odd. */
    for (int guard = 0; guard < 8 && db->conn && !synced; guard++) {
        PGresult *r = PQgetResult(db->conn);
        if (!r) {
            if (PQstatus(db->conn) != CONNECTION_OK)
                break;
            continue;
        }
        ExecStatusType s = PQresultStatus(r);
        if (s == PGRES_PIPELINE_SYNC)
            synced = 1;
        else if (s == PGRES_TUPLES_OK)
            rc = sh_seq_result(r, seq, e);
        else
            rc = sh_pg_fail(db, r, e, "write");
        PQclear(r);
    }
    if (synced)
        return rc;
    *seq = 0;
    if (db->conn)
        sh_disconnect(db); /* the pipeline state is unknown: start afresh */
    if (rc == SH_ETRANSIENT)
        return rc;
    return sh_err_set(e, SH_ETRANSIENT, "postgres write: connection lost before commit");
}

/* Validates and sends up to SH_PIPE_CHUNK writes, each followed by a Sync (= its own implicit
 * transaction), then collects the replies in order. results[i]/seqs[i] are always set. Returns 0,
 * or SH_ETRANSIENT when the connection broke (it is then dropped). */
static int sh_pipe_chunk(sh_primary *db, const sh_track_write *tws, size_t n, int *results,
                         int64_t *seqs, sh_err *e)
{
    int first = 0;
    int sent[SH_PIPE_CHUNK] = {0};
    for (size_t i = 0; i < n; i++) {
        sh_err ve;
        seqs[i] = 0;
        results[i] = sh_track_write_check(&tws[i], &ve);
        if (results[i] && !first)
            first = results[i], *e = ve;
    }
    if (!PQenterPipelineMode(db->conn))
        return sh_pg_fail(db, NULL, e, "pipeline");
    for (size_t i = 0; i < n; i++) {
        if (results[i])
            continue;
        sh_write_params p;
        sh_write_params_fill(&p, &tws[i]);
        const char *sql = tws[i].is_reindex ? SQL_REINDEX : SQL_WRITE;
        if (!PQsendQueryParams(db->conn, sql, 10, NULL, p.vals, p.lens, p.fmts, 1) ||
            !PQpipelineSync(db->conn))
            break;
        sent[i] = 1;
    }
    for (size_t i = 0; i < n; i++) {
        if (results[i])
            continue;
        sh_err qe;
        sh_err_clear(&qe);
        if (!sent[i] || !db->conn)
            results[i] = sh_err_set(&qe, SH_ETRANSIENT, "postgres write: not sent");
        else
            results[i] = sh_pipe_read_one(db, &seqs[i], &qe);
        if (results[i] && results[i] != SH_ESTALE && !first)
            first = results[i], *e = qe;
    }
    if (db->conn && !PQexitPipelineMode(db->conn))
        sh_disconnect(db);
    return db->conn ? 0 : SH_ETRANSIENT;
}

int sh_primary_write_tracks(sh_primary *db, const sh_track_write *tws, size_t n, int *results,
                            int64_t *seqs, sh_err *e)
{
    sh_err local;
    if (!e)
        e = &local;
    sh_err_clear(e);
    if (!tws || !results || n > SH_PRIMARY_LIST_MAX)
        return sh_err_set(e, SH_EINVAL, "write_tracks: bad arguments");
    int64_t chunk_seqs[SH_PIPE_CHUNK];
    for (size_t off = 0; off < n; off += SH_PIPE_CHUNK) {
        size_t m = n - off < SH_PIPE_CHUNK ? n - off : SH_PIPE_CHUNK;
        int rc = sh_ensure(db, e);
        if (rc) {
            for (size_t i = off; i < n; i++) {
                results[i] = rc;
                if (seqs)
                    seqs[i] = 0;
            }
            return rc;
        }
        rc = sh_pipe_chunk(db, tws + off, m, results + off, chunk_seqs, e);
        if (seqs)
            memcpy(seqs + off, chunk_seqs, m * sizeof *seqs);
        if (rc) {
            for (size_t i = off + m; i < n; i++) {
                results[i] = rc;
                if (seqs)
                    seqs[i] = 0;
            }
            return rc;
        }
    }
    return 0;
}

int sh_primary_write_track(sh_primary *db, const sh_track_write *tw, int64_t *seq_out, sh_err *e)
{
    int result = 0;
    int64_t seq = 0;
    sh_err local;
    if (!e)
        e = &local;
    int rc = sh_primary_write_tracks(db, tw, 1, &result, &seq, e);
    if (seq_out)
        *seq_out = seq;
    if (rc)
        return rc;
    if (result == SH_ESTALE && tw->is_reindex)
        sh_err_set(e, SH_ESTALE,
                   "track %.64s: no longer at version %" PRId64 " or already at fp_version >= %d",
                   tw->external_id, tw->base_version, tw->fp_version);
    else if (result == SH_ESTALE)
        sh_err_set(e, SH_ESTALE, "track %.64s: stored version is newer or equal", tw->external_id);
    return result;
}

int sh_primary_delete_track(sh_primary *db, const char *external_id, const char *tenant,
                            int64_t version, int64_t *seq_out, sh_err *e)
{
    if (seq_out)
        *seq_out = 0;
    int rc = sh_check_str(external_id, SH_PRIMARY_ID_MAX, 1, "external_id", e);
    if (!rc)
        rc = sh_check_str(tenant, SH_PRIMARY_TENANT_MAX, 0, "tenant", e);
    if (rc)
        return rc;
    if (version <= 0)
        return sh_err_set(e, SH_EINVAL, "version must be > 0");
    char ver[24];
    snprintf(ver, sizeof ver, "%" PRId64, version);
    const char *p[3] = {external_id, tenant, ver};
    PGresult *r;
    rc = sh_query(db, "SELECT sh_delete_track($1, $2, $3::int8)::int8", 3, p, NULL, NULL, &r, e,
                  "delete");
    if (rc)
        return rc;
    int64_t seq;
    rc = sh_seq_result(r, &seq, e);
    PQclear(r);
    if (seq_out)
        *seq_out = seq;
    if (rc == SH_ESTALE)
        sh_err_set(e, SH_ESTALE, "track %.64s: stored version is newer or equal", external_id);
    return rc;
}

/* ---- reads ----------------------------------------------------------------------------------- */

void sh_track_clear(sh_track *t)
{
    if (!t)
        return;
    free(t->external_id);
    free(t->tenant);
    free(t->metadata_json);
    free(t->source_uri);
    free(t->fp_blob);
    memset(t, 0, sizeof *t);
}

void sh_track_list_clear(sh_track_list *l)
{
    if (!l)
        return;
    for (size_t i = 0; i < l->n; i++)
        sh_track_clear(&l->v[i]);
    free(l->v);
    l->v = NULL;
    l->n = 0;
}

/* Columns 0..12 of every track query, in this order. */
int sh_track_from_row(const PGresult *r, int row, sh_track *t, int blob_col)
{
    int bad = 0;
    memset(t, 0, sizeof *t);
    t->id = sh_pg_col_i64(r, row, 0, &bad);
    t->external_id = sh_pg_col_str(r, row, 1, &bad);
    t->tenant = sh_pg_col_str(r, row, 2, &bad);
    t->metadata_json = sh_pg_col_str(r, row, 3, &bad);
    t->source_uri = sh_pg_col_str(r, row, 4, &bad);
    sh_pg_col_fixed(r, row, 5, t->sha256_hex, 64);
    t->duration_s = sh_pg_col_f64(r, row, 6, &bad);
    t->fp_version = sh_pg_col_i32(r, row, 7, &bad);
    t->version = sh_pg_col_i64(r, row, 8, &bad);
    t->deleted = sh_pg_col_bool(r, row, 9, &bad);
    t->n_hashes = (uint32_t)sh_pg_col_i64(r, row, 10, &bad);
    t->created_ms = sh_pg_col_i64(r, row, 11, &bad);
    t->updated_ms = sh_pg_col_i64(r, row, 12, &bad);
    if (blob_col >= 0)
        t->fp_blob = sh_pg_col_bytes(r, row, blob_col, &t->fp_blob_len, &bad);
    if (bad || !t->external_id || !t->tenant) {
        sh_track_clear(t);
        return SH_EDB;
    }
    return 0;
}

int sh_primary_get_track(sh_primary *db, const char *external_id, unsigned flags, sh_track *out,
                         sh_err *e)
{
    int rc = sh_check_str(external_id, SH_PRIMARY_ID_MAX, 1, "external_id", e);
    if (rc)
        return rc;
    const char *p[2] = {external_id, (flags & SH_PRIMARY_WITH_BLOB) ? "t" : "f"};
    PGresult *r;
    rc = sh_query(db,
                  "SELECT " SQL_TRACK_COLS ", CASE WHEN $2::bool THEN f.blob END::bytea "
                  "FROM tracks t LEFT JOIN fingerprints f ON f.external_id = t.external_id "
                  "WHERE t.external_id = $1",
                  2, p, NULL, NULL, &r, e, "get track");
    if (rc)
        return rc;
    if (PQntuples(r) == 0)
        rc = sh_err_set(e, SH_ENOTFOUND, "track %.64s not found", external_id);
    else if (sh_track_from_row(r, 0, out, 13))
        rc = sh_err_set(e, SH_EDB, "postgres: unexpected track row");
    PQclear(r);
    return rc;
}

static int track_row(const PGresult *r, int row, void *item)
{
    return sh_track_from_row(r, row, item, -1);
}

/* The filter of sh_primary_list_tracks / sh_primary_count_tracks as SQL over parameters $1..$4,
 * so that listing and counting can never disagree about which tracks are selected. */
#define SQL_TRACK_FILTER                                                                           \
    "WHERE ($1::text IS NULL OR t.tenant = $1) "                                                   \
    "AND ($2::int4 = 0 OR t.fp_version < $2::int4) "                                               \
    "AND ($3::text IS NULL OR t.external_id > $3) "                                                \
    "AND ($4::bool OR t.status = 'active') "

typedef struct filter_params {
    char fpv[16];
    const char *v[5]; /* $1..$4 of SQL_TRACK_FILTER, then a free slot */
} filter_params;

/* Checks `f` (NULL = everything) and fills the parameters of SQL_TRACK_FILTER. */
static int filter_params_make(const sh_track_filter *f, filter_params *fp, sh_err *e)
{
    static const sh_track_filter all = {0};
    if (!f)
        f = &all;
    int rc = sh_check_str(f->tenant, SH_PRIMARY_TENANT_MAX, 0, "tenant", e);
    if (!rc)
        rc = sh_check_str(f->after_id, SH_PRIMARY_ID_MAX, 0, "after_id", e);
    if (rc)
        return rc;
    snprintf(fp->fpv, sizeof fp->fpv, "%d", f->fp_version_below);
    fp->v[0] = f->tenant;
    fp->v[1] = fp->fpv;
    fp->v[2] = f->after_id;
    fp->v[3] = f->include_deleted ? "t" : "f";
    fp->v[4] = NULL;
    return 0;
}

int sh_primary_count_tracks(sh_primary *db, const sh_track_filter *f, int64_t *n, sh_err *e)
{
    *n = 0;
    filter_params fp;
    int rc = filter_params_make(f, &fp, e);
    if (rc)
        return rc;
    PGresult *r;
    rc = sh_query(db, "SELECT count(*)::int8 FROM tracks t " SQL_TRACK_FILTER, 4, fp.v, NULL,
                  NULL, &r, e, "count tracks");
    if (rc)
        return rc;
    int bad = PQntuples(r) != 1;
    if (!bad)
        *n = sh_pg_col_i64(r, 0, 0, &bad);
    PQclear(r);
    return bad ? sh_err_set(e, SH_EDB, "postgres: unexpected count row") : 0;
}

int sh_primary_list_tracks(sh_primary *db, const sh_track_filter *f, sh_track_list *out, sh_err *e)
{
    size_t limit = f && f->limit ? f->limit : 1000;
    if (limit > SH_PRIMARY_LIST_MAX)
        return sh_err_set(e, SH_EINVAL, "list limit over %d", SH_PRIMARY_LIST_MAX);
    filter_params fp;
    int rc = filter_params_make(f, &fp, e);
    if (rc)
        return rc;
    char lim[24];
    snprintf(lim, sizeof lim, "%zu", limit);
    fp.v[4] = lim;
    PGresult *r;
    rc = sh_query(db,
                  "SELECT " SQL_TRACK_COLS " FROM tracks t " SQL_TRACK_FILTER
                  "ORDER BY t.external_id LIMIT $5::int8",
                  5, fp.v, NULL, NULL, &r, e, "list tracks");
    if (rc)
        return rc;
    void *v = NULL;
    rc = sh_pg_rows_decode(r, sizeof *out->v, track_row, &v, &out->n, "track", e);
    out->v = v;
    PQclear(r);
    if (rc)
        sh_track_list_clear(out);
    return rc;
}

/* ---- change log ------------------------------------------------------------------------------ */

void sh_change_list_clear(sh_change_list *l)
{
    if (!l)
        return;
    for (size_t i = 0; i < l->n; i++) {
        free(l->v[i].external_id);
        free(l->v[i].tenant);
        free(l->v[i].fp_blob);
        free(l->v[i].metadata_json);
    }
    free(l->v);
    l->v = NULL;
    l->n = 0;
}

static int sh_change_from_row(const PGresult *r, int row, sh_change *c)
{
    int bad = 0;
    memset(c, 0, sizeof *c);
    c->seq = sh_pg_col_i64(r, row, 0, &bad);
    c->op = sh_pg_col_bool(r, row, 1, &bad) ? SH_CHANGE_DELETE : SH_CHANGE_UPSERT;
    c->external_id = sh_pg_col_str(r, row, 2, &bad);
    c->tenant = sh_pg_col_str(r, row, 3, &bad);
    c->track_id = sh_pg_col_i64(r, row, 4, &bad);
    c->version = sh_pg_col_i64(r, row, 5, &bad);
    c->fp_version = sh_pg_col_i32(r, row, 6, &bad);
    c->committed_ms = sh_pg_col_i64(r, row, 7, &bad);
    c->superseded = sh_pg_col_bool(r, row, 8, &bad);
    c->n_hashes = (uint32_t)sh_pg_col_i64(r, row, 9, &bad);
    c->fp_blob = sh_pg_col_bytes(r, row, 10, &c->fp_blob_len, &bad);
    c->metadata_json = sh_pg_col_str(r, row, 11, &bad);
    c->duration_s = sh_pg_col_f64(r, row, 12, &bad);
    if (bad || !c->external_id || !c->tenant) {
        free(c->external_id);
        free(c->tenant);
        free(c->fp_blob);
        free(c->metadata_json);
        memset(c, 0, sizeof *c);
        return SH_EDB;
    }
    return 0;
}

static int change_row(const PGresult *r, int row, void *item)
{
    return sh_change_from_row(r, row, item);
}

int sh_primary_changes_since(sh_primary *db, int64_t after_seq, size_t limit, unsigned flags,
                             sh_change_list *out, sh_err *e)
{
    limit = limit ? limit : 1000;
    if (limit > SH_PRIMARY_LIST_MAX || after_seq < 0)
        return sh_err_set(e, SH_EINVAL, "changes_since: bad seq or limit");
    char seq[24], lim[24];
    snprintf(seq, sizeof seq, "%" PRId64, after_seq);
    snprintf(lim, sizeof lim, "%zu", limit);
    const char *p[3] = {seq, lim, (flags & SH_PRIMARY_WITH_BLOB) ? "t" : "f"};
    PGresult *r;
    /* One statement = one snapshot: the blob belongs to exactly the state compared. A track's
     * state is named by (version, fp_version): a reindex keeps the version and raises the
     * fp_version, so comparing the version alone would hand an upload's change the reindexed
     * blob. An upsert is current only while the track is active at both; a delete only while the
     * tombstone has its version. Superseded changes carry nothing: a later change does. */
    int rc = sh_query(
        db,
        "SELECT c.seq::int8, (c.op = 'delete')::bool, c.external_id::text, c.tenant::text, "
        "c.track_id::int8, c.version::int8, c.fp_version::int4, "
        "(extract(epoch FROM c.committed_at) * 1000)::int8, "
        "(NOT coalesce(t.version = c.version AND CASE WHEN c.op = 'upsert' "
        "  THEN t.status = 'active' AND t.fp_version = c.fp_version "
        "  ELSE t.status = 'deleted' END, false))::bool, "
        "coalesce(f.n_hashes, 0)::int8, f.blob::bytea, "
        "CASE WHEN c.op = 'upsert' AND t.version = c.version AND t.fp_version = c.fp_version "
        "  AND t.status = 'active' THEN t.metadata::text END, "
        "coalesce(CASE WHEN c.op = 'upsert' THEN t.duration_s END, 0)::float8 "
        "FROM change_log c LEFT JOIN tracks t ON t.external_id = c.external_id "
        "LEFT JOIN fingerprints f ON $3::bool AND c.op = 'upsert' AND t.version = c.version "
        "AND t.fp_version = c.fp_version AND t.status = 'active' "
        "AND f.external_id = c.external_id AND f.fp_version = c.fp_version "
        "WHERE c.seq > $1::int8 ORDER BY c.seq LIMIT $2::int8",
        3, p, NULL, NULL, &r, e, "changes");
    if (rc)
        return rc;
    void *v = NULL;
    rc = sh_pg_rows_decode(r, sizeof *out->v, change_row, &v, &out->n, "change", e);
    out->v = v;
    PQclear(r);
    if (rc)
        sh_change_list_clear(out);
    return rc;
}

/* Drains pending notifications; returns how many there were. */
static int sh_drain_notifies(PGconn *c)
{
    int n = 0;
    PGnotify *nt;
    while ((nt = PQnotifies(c)) != NULL) {
        PQfreemem(nt);
        n++;
    }
    return n;
}

int sh_primary_wait_changes(sh_primary *db, int timeout_ms, sh_err *e)
{
    int rc = sh_ensure(db, e);
    if (rc)
        return rc;
    const double deadline = sh_clock_mono_ms() + (timeout_ms > 0 ? timeout_ms : 0);
    if (db->listening < 0 && sh_clock_mono_ms() >= db->listen_retry_ms)
        db->listening = 0; /* promoted meanwhile? try again */
    if (!db->listening) {
        rc = sh_exec(db, "LISTEN sh_changes", e, "listen");
        if (rc == SH_ETRANSIENT && db->conn && PQstatus(db->conn) == CONNECTION_OK &&
            strstr(e->msg, "25006")) {
            /* A hot standby (the follower a replicator may read, ops/takeover.sh) cannot LISTEN:
             * notifications are a hint, so the caller's timeout becomes a plain poll. */
            db->listening = -1;
            db->listen_retry_ms = sh_clock_mono_ms() + 10000;
        } else if (rc) {
            return rc;
        } else {
            db->listening = 1;
        }
    }
    if (db->listening < 0) {
        sh_clock_sleep_ms(deadline - sh_clock_mono_ms(), NULL, NULL);
        return sh_err_set(e, SH_ETIMEOUT, "no change within %d ms (polling a standby)", timeout_ms);
    }
    for (;;) {
        if (!PQconsumeInput(db->conn))
            return sh_pg_fail(db, NULL, e, "wait for changes");
        if (sh_drain_notifies(db->conn))
            return 0;
        const double left = deadline - sh_clock_mono_ms();
        if (left <= 0)
            return sh_err_set(e, SH_ETIMEOUT, "no change within %d ms", timeout_ms);
        struct pollfd pfd = {.fd = PQsocket(db->conn), .events = POLLIN};
        if (pfd.fd < 0)
            return sh_pg_fail(db, NULL, e, "wait for changes");
        if (poll(&pfd, 1, (int)left) < 0 && errno != EINTR)
            return sh_err_set(e, SH_EIO, "poll: %s", strerror(errno));
    }
}

/* ---- counts ---------------------------------------------------------------------------------- */

int sh_primary_counts_get(sh_primary *db, sh_primary_counts *out, sh_err *e)
{
    PGresult *r;
    int rc = sh_query(db,
                      "SELECT (SELECT count(*) FROM tracks WHERE status = 'active')::int8, "
                      "(SELECT count(*) FROM tracks WHERE status = 'deleted')::int8, "
                      "(SELECT count(*) FROM fingerprints)::int8, "
                      "(SELECT coalesce(sum(n_hashes), 0) FROM fingerprints)::int8, "
                      "(SELECT count(*) FROM change_log)::int8, "
                      "(SELECT last_seq FROM change_counter WHERE id = 1)::int8",
                      0, NULL, NULL, NULL, &r, e, "counts");
    if (rc)
        return rc;
    int bad = PQntuples(r) != 1;
    if (!bad) {
        out->tracks_active = sh_pg_col_i64(r, 0, 0, &bad);
        out->tracks_deleted = sh_pg_col_i64(r, 0, 1, &bad);
        out->fingerprint_rows = sh_pg_col_i64(r, 0, 2, &bad);
        out->hashes = sh_pg_col_i64(r, 0, 3, &bad);
        out->changes = sh_pg_col_i64(r, 0, 4, &bad);
        out->last_seq = sh_pg_col_i64(r, 0, 5, &bad);
    }
    PQclear(r);
    return bad ? sh_err_set(e, SH_EDB, "postgres: unexpected counts row") : 0;
}

int sh_primary_dsn_check(const char *dsn, sh_err *e)
{
    if (!dsn || !*dsn)
        return sh_err_set(e, SH_EINVAL, "postgres: no DSN given");
    char *perr = NULL;
    PQconninfoOption *opts = PQconninfoParse(dsn, &perr);
    if (opts) {
        PQconninfoFree(opts);
        return 0;
    }
    if (!perr) /* libpq's documented sign of an allocation failure */
        return sh_err_set(e, SH_ENOMEM, "postgres: out of memory");
    char msg[300];
    sh_pg_trim_copy(msg, sizeof msg, perr);
    PQfreemem(perr);
    return redact_err(dsn, e, sh_err_set(e, SH_EINVAL, "postgres: bad DSN: %s", msg));
}
