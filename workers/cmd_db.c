/* cmd_db.c — `soundhash db start|stop|migrate|status`: the primary's PostgreSQL.
 *
 *   soundhash db start --dir DIR [--port P]   private local cluster (initdb on first use); prints
 *                                            its DSN on stdout and writes DIR/dsn
 *   soundhash db stop --dir DIR              stops it (exit 0 also if it was not running)
 *   soundhash db migrate --dsn DSN           applies pending migrations; prints each applied
 *                                            version ("applied N name"), then "schema version N"
 *   soundhash db status --dsn DSN            schema version, counts, last change seq
 * The password comes from SOUNDHASH_DB_PASSWORD, --db-password-file F, PGPASSWORD or a passfile
 * named in the DSN — never from argv. Exit codes: 0 ok, 1 runtime error, 2 usage error.
 */
#include "sh_cmds.h"
#include "sh_opt.h"
#include "sh_pgctl.h"
#include "sh_primary.h"

#include <inttypes.h>
#include <stdio.h>
#include <string.h>

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
} db_cfg;

static const char USAGE[] = "usage: soundhash db <start|stop|migrate|status> [options]\n"
                            "  start --dir DIR [--port P]   create/start a private local cluster\n"
                            "  stop --dir DIR               stop it\n"
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
                       .timeout_s = (int)c->timeout_s};
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

static int db_connect(const db_cfg *c, sh_primary **db, sh_err *e)
{
    sh_primary_config pc;
    sh_primary_config_default(&pc);
    pc.dsn = c->dsn;
    pc.password = c->password;
    pc.connect_timeout_s = (int)c->connect_timeout_s;
    pc.statement_timeout_ms = (int)c->statement_timeout_ms;
    pc.application_name = "soundhash-db";
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
    for (size_t i = 0; i < n; i++)
        printf("applied %d\n", applied[i]);
    printf("schema version %d\n", sh_primary_schema_version());
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
    if (!rc)
        rc = sh_primary_counts_get(db, &k, &e);
    sh_primary_free(db);
    if (rc) {
        e.code = rc;
        return db_fail("status", &e);
    }
    printf("schema_version=%d known=%d\n", n ? v[n - 1] : 0, sh_primary_schema_version());
    printf("tracks_active=%" PRId64 " tracks_deleted=%" PRId64 " fingerprint_rows=%" PRId64
           " hashes=%" PRId64 " changes=%" PRId64 " last_seq=%" PRId64 "\n",
           k.tracks_active, k.tracks_deleted, k.fingerprint_rows, k.hashes, k.changes, k.last_seq);
    return SH_EXIT_OK;
}

int sh_cmd_db(int argc, char **argv)
{
    if (argc < 2 || !strcmp(argv[1], "--help") || !strcmp(argv[1], "-h")) {
        fputs(USAGE, argc < 2 ? stderr : stdout);
        return argc < 2 ? SH_EXIT_USAGE : SH_EXIT_OK;
    }
    const char *sub = argv[1];
    db_cfg c = {0};
    sh_opt dir_opts[] = {
        {"dir", 0, SH_OPT_STR, &c.dir, NULL, "cluster directory (created if missing)",
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
        {NULL, 0, 0, NULL, NULL, NULL, 0, 0, 0},
    };
    sh_opt dsn_opts[] = {
        {"dsn", 0, SH_OPT_STR, &c.dsn, NULL, "libpq connection string or URI", SH_OPT_REQUIRED, 0,
         0},
        {"db-password", 0, SH_OPT_STR, &c.password, NULL,
         "password (secret: env SOUNDHASH_DB_PASSWORD or --db-password-file F)", SH_OPT_SECRET, 0,
         0},
        {"connect-timeout", 0, SH_OPT_INT, &c.connect_timeout_s, "5",
         "seconds to wait for a connection", 0, 1, 600},
        {"statement-timeout-ms", 0, SH_OPT_INT, &c.statement_timeout_ms, "300000",
         "server-side limit per statement", 0, 1, 86400000},
        {NULL, 0, 0, NULL, NULL, NULL, 0, 0, 0},
    };
    sh_cmd_spec spec = {0};
    int (*run)(const db_cfg *) = NULL;
    if (!strcmp(sub, "start") || !strcmp(sub, "stop")) {
        spec.name = !strcmp(sub, "start") ? "db start" : "db stop";
        spec.usage = "--dir DIR";
        spec.summary = !strcmp(sub, "start")
                           ? "Starts a private local PostgreSQL cluster for development and "
                             "tests in DIR (initdb on first use, wal_level=logical, 127.0.0.1 "
                             "only) and prints its DSN (also written to DIR/dsn)."
                           : "Stops the private cluster in DIR (fast shutdown); exit 0 also when "
                             "it was not running (exit 1 when DIR holds no cluster).";
        spec.opts = dir_opts;
        run = !strcmp(sub, "start") ? db_start : db_stop;
    } else if (!strcmp(sub, "migrate") || !strcmp(sub, "status")) {
        spec.name = !strcmp(sub, "migrate") ? "db migrate" : "db status";
        spec.usage = "--dsn DSN";
        spec.summary = !strcmp(sub, "migrate")
                           ? "Applies pending schema migrations (idempotent; each in a "
                             "transaction, recorded in schema_migrations)."
                           : "Prints the schema version and row counts.";
        spec.opts = dsn_opts;
        run = !strcmp(sub, "migrate") ? db_migrate : db_status;
    } else {
        fprintf(stderr, "soundhash db: unknown subcommand '%s'\n%s", sub, USAGE);
        return SH_EXIT_USAGE;
    }
    int code = db_parse(&spec, argc - 1, argv + 1);
    if (code < 0)
        code = run(&c);
    sh_opt_free(&spec);
    return code;
}
