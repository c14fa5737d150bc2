/* cmd_db.c — `soundhash db start|stop|promote|fence|migrate|status`: the primary's PostgreSQL.
 *
 *   soundhash db start --dir DIR [--port P]   private local cluster (initdb on first use); prints
 *                                            its DSN on stdout and writes DIR/dsn
 *   soundhash db start --dir DIR --follow DSN a follower of that primary (pg_basebackup, slot)
 *   soundhash db promote --dir DIR           the follower becomes a primary (takeover)
 *   soundhash db fence --dir DIR             the replaced old primary refuses soundhash clients
 *   soundhash db stop --dir DIR              stops it (exit 0 also if it was not running)
 *   soundhash db migrate --dsn DSN           applies pending migrations; one JSON line
 *                                            {"schema_version":N,"applied":[versions applied now]}
 *   soundhash db status --dsn DSN            one JSON line: schema_version, known_version,
 *                                            migrated, tracks_active, tracks_deleted,
 *                                            fingerprint_rows, hashes, changes, last_seq
 * The password comes from SOUNDHASH_DB_PASSWORD, --db-password-file F, PGPASSWORD or a passfile
 * named in the DSN — never from argv. Exit codes: 0 ok, 1 runtime error, 2 usage error (also a
 * --pg-bin without initdb).
 */
#include "sh_clock.h"
#include "sh_cmds.h"
#include "sh_opt.h"
#include "sh_pgctl.h"
#include "sh_primary.h"

#include <inttypes.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

typedef struct db_cfg {
    char *dir;
    long port;
    char *pg_bin;
    char *run_as;
    long timeout_s;
    char *dsn;
    char *password;
    long connect_timeout_s;
    long statement_timeout_ms;
    char *follow;
    char *slot;
} db_cfg;

static const char USAGE[] = "usage: soundhash db <start|stop|promote|fence|migrate|status> "
                            "[options]\n"
                            "  start --dir DIR [--port P]   create/start a private local cluster\n"
                            "  start --dir DIR --follow DSN ... as a streaming follower of DSN\n"
                            "  stop --dir DIR               stop it\n"
                            "  promote --dir DIR            make the follower a primary\n"
                            "  fence --dir DIR              fence a replaced old primary\n"
                            "  migrate --dsn DSN            create/upgrade the schema\n"
                            "  status --dsn DSN             schema version and counts\n"
                            "`soundhash db <sub> --help` lists each one's options.\n";

/* Parses the sub-command's options; returns -1 to go on or an exit code. */
static int db_parse(sh_cmd_spec *spec, int argc, char **argv)
{
    sh_err e = {0};
    int rc = sh_opt_parse(spec, argc, argv, &e);
    int code = sh_opt_exit_code(spec, rc, &e);
    if (code < 0 && spec->args.n) {
        fprintf(stderr, "soundhash %s: unexpected argument '%s'\n", spec->name, spec->args.v[0]);
        code = SH_EXIT_USAGE;
    }
    return code;
}

static int db_fail(const char *sub, const sh_err *e)
{
    fprintf(stderr, "soundhash db %s: %s (%s)\n", sub, sh_err_text(e), sh_err_name(e->code));
    return SH_EXIT_RUNTIME;
}

static sh_pgctl_opts db_pgctl_opts(const db_cfg *c)
{
    sh_pgctl_opts o = {.dir = c->dir,
                       .port = (int)c->port,
                       .bin_dir = c->pg_bin,
                       .run_as = c->run_as,
                       .timeout_s = (int)c->timeout_s,
                       .follow_dsn = c->follow,
                       .slot = c->slot};
    return o;
}

static int db_start(const db_cfg *c)
{
    sh_err e = {0};
    char dsn[SH_PGCTL_DSN_MAX];
    sh_pgctl_opts o = db_pgctl_opts(c);
    int rc = sh_pgctl_start(&o, dsn, sizeof dsn, &e);
    if (rc) {
        e.code = rc;
        return db_fail("start", &e);
    }
    printf("%s\n", dsn);
    return SH_EXIT_OK;
}

static int db_stop(const db_cfg *c)
{
    sh_err e = {0};
    sh_pgctl_opts o = db_pgctl_opts(c);
    int rc = sh_pgctl_stop(&o, &e);
    if (rc) {
        e.code = rc;
        return db_fail("stop", &e);
    }
    return SH_EXIT_OK;
}

static int db_promote(const db_cfg *c)
{
    sh_err e = {0};
    sh_pgctl_opts o = db_pgctl_opts(c);
    double t0 = sh_clock_mono_ms();
    int rc = sh_pgctl_promote(&o, &e);
    if (rc) {
        e.code = rc;
        return db_fail("promote", &e);
    }
    printf("{\"promoted\":true,\"ms\":%.0f}\n", sh_clock_mono_ms() - t0);
    return SH_EXIT_OK;
}

static int db_fence(const db_cfg *c)
{
    sh_err e = {0};
    sh_pgctl_opts o = db_pgctl_opts(c);
    int rc = sh_pgctl_fence(&o, &e);
    if (rc) {
        e.code = rc;
        return db_fail("fence", &e);
    }
    printf("{\"fenced\":true,\"running\":%s}\n", sh_pgctl_running(&o) ? "true" : "false");
    return SH_EXIT_OK;
}

static int db_connect(const db_cfg *c, sh_primary **db, sh_err *e)
{
    sh_primary_config pc;
    sh_primary_config_default(&pc);
    pc.dsn = c->dsn;
    pc.password = c->password;
    pc.connect_timeout_s = (int)c->connect_timeout_s;
    pc.statement_timeout_ms = (int)c->statement_timeout_ms;
    pc.application_name = "soundhash-db";
    pc.allow_fenced = 1; /* status must show a fenced server as such */
    int rc = sh_primary_new(&pc, db, e);
    e->code = rc;
    return rc;
}

static int db_migrate(const db_cfg *c)
{
    sh_err e = {0};
    sh_primary *db = NULL;
    if (db_connect(c, &db, &e))
        return db_fail("migrate", &e);
    int applied[64];
    size_t n = 0;
    int rc = sh_primary_migrate(db, applied, 64, &n, &e);
    sh_primary_free(db);
    if (rc) {
        e.code = rc;
        return db_fail("migrate", &e);
    }
    printf("{\"schema_version\":%d,\"applied\":[", sh_primary_schema_version());
    for (size_t i = 0; i < n; i++)
        printf("%s%d", i ? "," : "", applied[i]);
    printf("]}\n");
    return SH_EXIT_OK;
}

static int db_status(const db_cfg *c)
{
    sh_err e = {0};
    sh_primary *db = NULL;
    if (db_connect(c, &db, &e))
        return db_fail("status", &e);
    int v[64];
    size_t n = 0;
    sh_primary_counts k = {0};
    int rc = sh_primary_applied_versions(db, v, 64, &n, &e);
    /* No schema_migrations table (SQLSTATE 42P01 undefined_table): a database nobody migrated. */
    if (rc == SH_EDB && strstr(e.msg, "42P01")) {
        sh_primary_free(db);
        fprintf(stderr, "soundhash db status: not migrated: run `soundhash db migrate` with the "
                        "same --dsn first\n");
        return SH_EXIT_RUNTIME;
    }
    const int have = n ? v[n - 1] : 0, known = sh_primary_schema_version();
    if (!rc && have == known)
        rc = sh_primary_counts_get(db, &k, &e);
    sh_primary_role role;
    if (!rc)
        rc = sh_primary_role_get(db, &role, &e);
    sh_primary_free(db);
    if (rc) {
        e.code = rc;
        return db_fail("status", &e);
    }
    if (have != known) /* older: the counts' tables may not exist yet; newer: another build's */
        fprintf(stderr, "soundhash db status: schema version %d, this build knows %d: %s\n", have,
                known, have < known ? "run `soundhash db migrate`"
                                    : "this binary is older than the database's schema");
    printf("{\"schema_version\":%d,\"known_version\":%d,\"migrated\":%s", have, known,
           have == known ? "true" : "false");
    if (have == known)
        printf(",\"tracks_active\":%" PRId64 ",\"tracks_deleted\":%" PRId64
               ",\"fingerprint_rows\":%" PRId64 ",\"hashes\":%" PRId64 ",\"changes\":%" PRId64
               ",\"last_seq\":%" PRId64,
               k.tracks_active, k.tracks_deleted, k.fingerprint_rows, k.hashes, k.changes,
               k.last_seq);
    printf(",\"role\":\"%s\",\"fenced\":%s,\"read_only\":%s,\"timeline\":%" PRId64,
           role.follower ? "follower" : "primary", role.fenced ? "true" : "false",
           role.read_only ? "true" : "false", role.timeline);
    if (role.follower)
        printf(",\"replay_lag_bytes\":%" PRId64 ",\"replay_lag_s\":%.3f,\"last_replay_ms\":%" PRId64,
               role.lag_bytes, role.lag_s, role.replay_ms);
    else
        printf(",\"followers\":%" PRId64 ",\"followers_lag_bytes\":%" PRId64
               ",\"followers_lag_s\":%.3f",
               role.n_followers, role.followers_lag_bytes, role.followers_lag_s);
    printf("}\n");
    return SH_EXIT_OK;
}

/* What each subcommand takes and says in --help. */
typedef struct db_sub {
    const char *name;
    int (*run)(const db_cfg *);
    bool dsn;           /* takes the DSN options, else the cluster options */
    unsigned dir_opts;  /* bit i: the i-th cluster option applies */
    const char *usage;
    const char *summary;
    const char *examples;
} db_sub;

static const db_sub subs[] = {
    {"start", db_start, false, 0x7f, "--dir DIR [--port P] [--pg-bin DIR] [--follow DSN]",
     "Starts a private local PostgreSQL cluster for development and tests in DIR (initdb on "
     "first use, wal_level=logical, 127.0.0.1 only) and prints its DSN (also written to DIR/dsn; "
     "the password is in a passfile the DSN names, never in the DSN). With --follow DSN and an "
     "empty DIR: a follower of that primary instead — pg_basebackup with a replication slot "
     "(--slot), a hot standby streaming its WAL (read-only; `db status` shows its replay lag, "
     "`db promote` makes it a primary).",
     "soundhash db start --dir /tmp/sh-pg\n"
     "soundhash db start --dir /tmp/sh-pg --port 5433 --pg-bin /usr/lib/postgresql/15/bin\n"
     "soundhash db start --dir /tmp/sh-pg-b --follow \"$(cat /tmp/sh-pg/dsn)\""},
    {"promote", db_promote, false, 0x1d, "--dir DIR",
     "Promotes the follower in DIR (made by `db start --follow`) to a primary: pg_ctl promote, "
     "waiting until it accepts writes. Prints {\"promoted\":true,\"ms\":N}. Exit 1 when DIR is not "
     "a follower (already a primary) or the follower is not running. The takeover procedure "
     "around it: ops/takeover.sh and ops/RUNBOOK.md.",
     "soundhash db promote --dir /srv/sh-pg-b"},
    {"fence", db_fence, false, 0x1d, "--dir DIR",
     "Fences the cluster in DIR, an old primary a takeover replaced: sets soundhash.fenced = on "
     "and default_transaction_read_only = on in postgresql.auto.conf (also while it is down, so "
     "it comes back fenced), reloads and ends client sessions when running. Workers, the "
     "replicator and the other soundhash clients then refuse to connect to it (they wait as for a "
     "database that is down); psql gets read-only transactions.",
     "soundhash db fence --dir /srv/sh-pg-a"},
    {"stop", db_stop, false, 0x1d, "--dir DIR",
     "Stops the private cluster in DIR (fast shutdown); exit 0 also when it was not running "
     "(exit 1 when DIR holds no cluster).",
     "soundhash db stop --dir /tmp/sh-pg"},
    {"migrate", db_migrate, true, 0, "--dsn DSN",
     "Applies pending schema migrations (idempotent; each in a transaction, recorded in "
     "schema_migrations). Prints one JSON line: {\"schema_version\":N,\"applied\":[versions "
     "applied by this run]}.",
     "soundhash db migrate --dsn \"$(cat /tmp/sh-pg/dsn)\"\n"
     "SOUNDHASH_DB_PASSWORD_FILE=/run/secrets/pg soundhash db migrate --dsn 'host=db user=sh'"},
    {"status", db_status, true, 0, "--dsn DSN",
     "Prints one JSON line: schema_version, known_version (this build's), migrated, and when "
     "migrated tracks_active, tracks_deleted, fingerprint_rows, hashes, changes, last_seq. An "
     "unmigrated database is an error that says to run `soundhash db migrate`.",
     "soundhash db status --dsn \"$(cat /tmp/sh-pg/dsn)\""},
};

static void db_usage(FILE *out)
{
    fputs(USAGE, out);
}

/* A replication slot name as PostgreSQL accepts it. */
static bool slot_ok(const char *s)
{
    size_t n = s ? strlen(s) : 0;
    if (n == 0 || n > 63)
        return false;
    for (; *s; s++) {
        if (!((*s >= 'a' && *s <= 'z') || (*s >= '0' && *s <= '9') || *s == '_'))
            return false;
    }
    return true;
}

/* `--pg-bin DIR` must hold initdb: say so now, not as an empty reason from a failed spawn. */
static int check_pg_bin(const db_cfg *c, const char *cmd, const char *prog)
{
    if (!c->pg_bin || !*c->pg_bin)
        return -1;
    char path[4096];
    snprintf(path, sizeof path, "%s/%s", c->pg_bin, prog);
    if (access(path, X_OK) == 0)
        return -1;
    fprintf(stderr, "soundhash %s: --pg-bin %s: no %s in %s (want PostgreSQL's bin directory, "
                    "e.g. /usr/lib/postgresql/15/bin)\n", cmd, c->pg_bin, prog, c->pg_bin);
    return SH_EXIT_USAGE;
}

int sh_cmd_db(int argc, char **argv)
{
    if (argc < 2 || !strcmp(argv[1], "--help") || !strcmp(argv[1], "-h")) {
        db_usage(argc < 2 ? stderr : stdout);
        return argc < 2 ? SH_EXIT_USAGE : SH_EXIT_OK;
    }
    const db_sub *sub = NULL;
    for (size_t i = 0; i < sizeof subs / sizeof subs[0]; i++) {
        if (!strcmp(argv[1], subs[i].name))
            sub = &subs[i];
    }
    if (!sub) {
        fprintf(stderr, "soundhash db: unknown subcommand '%s'\n", argv[1]);
        db_usage(stderr);
        return SH_EXIT_USAGE;
    }
    db_cfg c = {0};
    const sh_opt dir_opts[] = {
        {"dir", 0, SH_OPT_STR, &c.dir, NULL, "cluster directory (start creates it)",
         SH_OPT_REQUIRED, 0, 0},
        {"port", 0, SH_OPT_INT, &c.port, "0",
         "TCP port on 127.0.0.1 (0: the previous one if free, else any free port)", 0, 0, 65535},
        {"pg-bin", 0, SH_OPT_STR, &c.pg_bin, NULL,
         "PostgreSQL bin dir (default: SOUNDHASH_PG_BIN or highest /usr/lib/postgresql/*/bin)", 0,
         0, 0},
        {"run-as", 0, SH_OPT_STR, &c.run_as, "postgres",
         "when root: the unprivileged user that runs the server", 0, 0, 0},
        {"timeout", 0, SH_OPT_INT, &c.timeout_s, "60", "seconds to wait for initdb/start/stop", 0,
         1, 3600},
        {"follow", 0, SH_OPT_STR, &c.follow, NULL,
         "create DIR as a streaming follower of this primary DSN (role with REPLICATION)",
         SH_OPT_DSN, 0, 0},
        {"slot", 0, SH_OPT_STR, &c.slot, "soundhash_follower",
         "with --follow: the replication slot on the primary", 0, 0, 0},
        {NULL, 0, 0, NULL, NULL, NULL, 0, 0, 0},
    };
    sh_opt dsn_opts[] = {
        {"dsn", 0, SH_OPT_STR, &c.dsn, NULL, "libpq connection string or URI",
         SH_OPT_REQUIRED | SH_OPT_DSN, 0, 0},
        {"db-password", 0, SH_OPT_STR, &c.password, NULL,
         "password (secret: env SOUNDHASH_DB_PASSWORD or --db-password-file F)", SH_OPT_SECRET, 0,
         0},
        {"connect-timeout", 0, SH_OPT_INT, &c.connect_timeout_s, "5",
         "seconds to wait for a connection", 0, 1, 600},
        {"statement-timeout-ms", 0, SH_OPT_INT, &c.statement_timeout_ms, "300000",
         "server-side limit per statement", 0, 1, 86400000},
        {NULL, 0, 0, NULL, NULL, NULL, 0, 0, 0},
    };
    sh_opt chosen[sizeof dir_opts / sizeof dir_opts[0]];
    size_t n = 0;
    for (size_t i = 0; dir_opts[i].name; i++) {
        if (sub->dir_opts & (1u << i))
            chosen[n++] = dir_opts[i];
    }
    memset(&chosen[n], 0, sizeof chosen[n]);
    char name[32];
    snprintf(name, sizeof name, "db %s", sub->name);
    sh_cmd_spec spec = {.name = name, .usage = sub->usage, .summary = sub->summary,
                        .examples = sub->examples, .opts = sub->dsn ? dsn_opts : chosen};
    int code = db_parse(&spec, argc - 1, argv + 1);
    sh_err e = {0};
    if (code < 0 && sub->dsn && sh_primary_dsn_check(c.dsn, &e)) /* malformed: usage, exit 2 */
        code = sh_opt_exit_code(&spec, sh_err_wrap(&e, SH_EUSAGE, "--dsn"), &e);
    if (code < 0 && !sub->dsn)
        code = check_pg_bin(&c, spec.name, sub->run == db_start ? "initdb" : "pg_ctl");
    if (code < 0 && c.follow && sh_primary_dsn_check(c.follow, &e)) /* before DIR is created */
        code = sh_opt_exit_code(&spec, sh_err_wrap(&e, SH_EUSAGE, "--follow"), &e);
    if (code < 0 && c.follow && !slot_ok(c.slot)) {
        sh_err_set(&e, SH_EUSAGE, "--slot %s: lower-case letters, digits and _ only, 1..63",
                   c.slot ? c.slot : "");
        code = sh_opt_exit_code(&spec, SH_EUSAGE, &e);
    }
    if (code < 0)
        code = sub->run(&c);
    sh_opt_free(&spec);
    return code;
}
