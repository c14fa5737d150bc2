-- ops/sql/roles.sql — least-privilege roles for SoundHash's services (ops/SECURITY.md, "Roles").
--
-- Run once per database as the role that owns the schema (the one that ran `soundhash db migrate`),
-- after the migrations; re-running it is harmless (idempotent). Passwords are not set here: give
-- each login role one afterwards without putting it in argv or shell history, e.g. `\password
-- soundhash_worker` in psql, or ALTER ROLE ... PASSWORD fed on stdin; the services then read it from
-- SOUNDHASH_DB_PASSWORD_FILE / SOUNDHASH_DB_PASSWORD or a passfile.
--
--   psql "$OWNER_DSN" -X -v ON_ERROR_STOP=1 -f ops/sql/roles.sql
--
-- Roles (all LOGIN, none superuser, CREATEDB, CREATEROLE or REPLICATION, none owns anything):
--   soundhash_worker      workers: writes tracks and fingerprints through sh_write_track /
--                         sh_reindex_track / sh_delete_track, which append to the change log in the
--                         same transaction. The functions run with the caller's rights, so the role
--                         has exactly the table rights they use: no DELETE on tracks or change_log,
--                         no TRUNCATE, nothing on replication_epoch, no DDL.
--   soundhash_replicator  the replicator (deltas, snapshots, /v1/snapshot), `soundhash verify`,
--                         `soundhash status`, `ingest reindex` and `ingest delete --dsn`: reads only,
--                         and LISTENs on sh_changes (LISTEN needs no grant).
--   soundhash_pruner      `soundhash replicator prune` (cron): reads, and deletes change-log rows and
--                         old tombstones.
-- Edges need no database role at all: they never connect to PostgreSQL.
-- A secondary region subscribing to the publication soundhash_pub needs a role with REPLICATION
-- (ops/postgresql.md); none of the above has it.

DO $$
DECLARE r text;
BEGIN
  FOREACH r IN ARRAY ARRAY['soundhash_worker', 'soundhash_replicator', 'soundhash_pruner'] LOOP
    IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = r) THEN
      EXECUTE format('CREATE ROLE %I LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION', r);
    END IF;
    EXECUTE format('ALTER ROLE %I NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION NOBYPASSRLS', r);
    -- a runaway statement or an abandoned transaction must not hold the change-log counter lock
    EXECUTE format('ALTER ROLE %I SET idle_in_transaction_session_timeout = %L', r, '60s');
  END LOOP;
  -- Only these roles (and the owner) may connect; PUBLIC's default CONNECT and TEMP go.
  EXECUTE format('REVOKE ALL ON DATABASE %I FROM PUBLIC', current_database());
  EXECUTE format('GRANT CONNECT ON DATABASE %I TO soundhash_worker, soundhash_replicator, '
                 'soundhash_pruner', current_database());
END $$;

-- PostgreSQL < 15 lets PUBLIC create objects in schema public.
REVOKE CREATE ON SCHEMA public FROM PUBLIC;
GRANT USAGE ON SCHEMA public TO soundhash_worker, soundhash_replicator, soundhash_pruner;

-- Start from nothing, so a re-run after an edit takes rights away too.
REVOKE ALL ON tracks, fingerprints, change_log, change_counter, replication_epoch,
  schema_migrations, consumer_offsets FROM soundhash_worker, soundhash_replicator, soundhash_pruner;

-- Workers. sh_write_track upserts tracks and fingerprints; sh_delete_track keeps the track row as a
-- tombstone (UPDATE) and deletes its fingerprints; sh_append_change increments change_counter and
-- inserts into change_log. The startup check reads schema_migrations.
GRANT SELECT, INSERT, UPDATE ON tracks TO soundhash_worker;
GRANT SELECT, INSERT, UPDATE, DELETE ON fingerprints TO soundhash_worker;
GRANT INSERT ON change_log TO soundhash_worker;
GRANT SELECT, UPDATE ON change_counter TO soundhash_worker;
GRANT SELECT ON schema_migrations TO soundhash_worker;
-- Workers record their committed Kafka offsets (migration 6); `soundhash worker rewind` reads them
-- after a takeover, run as this role.
GRANT SELECT, INSERT, UPDATE ON consumer_offsets TO soundhash_worker;

-- The replicator and the read-only tools.
GRANT SELECT ON tracks, fingerprints, change_log, change_counter, replication_epoch,
  schema_migrations TO soundhash_replicator;

-- Change-log retention.
GRANT SELECT ON tracks, fingerprints, change_log, change_counter, replication_epoch,
  schema_migrations TO soundhash_pruner;
GRANT DELETE ON change_log, tracks TO soundhash_pruner;

-- The write functions: only the worker role (and the owner) may call them.
REVOKE EXECUTE ON ALL FUNCTIONS IN SCHEMA public FROM PUBLIC;
GRANT EXECUTE ON ALL FUNCTIONS IN SCHEMA public TO soundhash_worker;
