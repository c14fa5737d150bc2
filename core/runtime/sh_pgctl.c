/* sh_pgctl.c — private local PostgreSQL cluster: initdb, pg_ctl start/stop. See sh_pgctl.h. */
#include "sh_pgctl.h"

#include "sh_log.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <glob.h>
#include <grp.h>
#include <libpq-fe.h>
#include <limits.h>
#include <netinet/in.h>
#include <pwd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

#define SH_PG_PATH_MAX 1024
#define SH_PG_ROLE "soundhash"
#define SH_PG_DB "soundhash"

/* Everything resolved once per call: absolute paths and who runs the server. */
typedef struct sh_pgctx {
    char dir[SH_PG_PATH_MAX];
    char bin[SH_PG_PATH_MAX];
    char data[SH_PG_PATH_MAX];
    char pgversion[SH_PG_PATH_MAX]; /* DATA/PG_VERSION: exists once initdb has run */
    int as_other;                   /* caller is root: run binaries as uid/gid */
    uid_t uid;
    gid_t gid;
    char user[64];
    int timeout_s;
} sh_pgctx;

/* ---- small helpers --------------------------------------------------------------------------- */

static int sh_path(char *out, size_t cap, const char *dir, const char *name)
{
    int n = snprintf(out, cap, "%s/%s", dir, name);
    return n < 0 || (size_t)n >= cap ? SH_EINVAL : 0;
}

static int sh_write_file(const char *path, const char *text, mode_t mode, sh_err *e)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, mode);
    if (fd < 0)
        return sh_err_set(e, SH_EIO, "%s: %s", path, strerror(errno));
    size_t n = strlen(text);
    ssize_t w = write(fd, text, n);
    int rc = (w == (ssize_t)n) ? 0 : sh_err_set(e, SH_EIO, "%s: short write", path);
    if (fchmod(fd, mode) != 0 && !rc)
        rc = sh_err_set(e, SH_EIO, "%s: chmod: %s", path, strerror(errno));
    close(fd);
    return rc;
}

/* Reads a small text file (first line, newline stripped) into buf. */
static int sh_read_line(const char *path, char *buf, size_t cap)
{
    FILE *f = fopen(path, "re");
    if (!f)
        return SH_ENOTFOUND;
    int ok = fgets(buf, (int)cap, f) != NULL;
    fclose(f);
    if (!ok)
        return SH_EIO;
    buf[strcspn(buf, "\r\n")] = '\0';
    return 0;
}

/* Last non-empty line of a log, for error messages. */
static void sh_log_tail(const char *path, char *out, size_t cap)
{
    out[0] = '\0';
    FILE *f = fopen(path, "re");
    if (!f)
        return;
    char line[512];
    if (fseek(f, -4096, SEEK_END) != 0)
        rewind(f);
    while (fgets(line, sizeof line, f)) {
        line[strcspn(line, "\r\n")] = '\0';
        size_t n = strlen(line);
        if (n) {
            n = n < cap ? n : cap - 1; /* truncating is fine: it is a hint */
            memcpy(out, line, n);
            out[n] = '\0';
        }
    }
    fclose(f);
}

/* Highest-numbered /usr/lib/postgresql/N/bin holding initdb. */
static int sh_find_bin(const char *given, char *out, size_t cap, sh_err *e)
{
    const char *env = getenv("SOUNDHASH_PG_BIN");
    const char *dir = given && *given ? given : (env && *env ? env : NULL);
    if (dir) {
        snprintf(out, cap, "%s", dir);
        return 0;
    }
    glob_t g;
    if (glob("/usr/lib/postgresql/*/bin/initdb", 0, NULL, &g) != 0)
        return sh_err_set(e, SH_ENOTFOUND,
                          "no PostgreSQL server binaries in /usr/lib/postgresql/*/bin "
                          "(apt-get install postgresql, or set SOUNDHASH_PG_BIN)");
    long best = -1;
    for (size_t i = 0; i < g.gl_pathc; i++) {
        long v = strtol(g.gl_pathv[i] + strlen("/usr/lib/postgresql/"), NULL, 10);
        if (v > best) {
            best = v;
            snprintf(out, cap, "%.*s", (int)(strlen(g.gl_pathv[i]) - strlen("/initdb")),
                     g.gl_pathv[i]);
        }
    }
    globfree(&g);
    return 0;
}

/* ---- running binaries (as another user when root) -------------------------------------------- */

/* Runs argv[0] from the bin dir with output appended to DIR/ctl.log; returns its exit status
 * (0..255) or -1 if it could not run. */
static int sh_run(const sh_pgctx *c, char *const argv[])
{
    char prog[SH_PG_PATH_MAX + 32], logp[SH_PG_PATH_MAX + 16];
    if (snprintf(prog, sizeof prog, "%s/%s", c->bin, argv[0]) >= (int)sizeof prog ||
        sh_path(logp, sizeof logp, c->dir, "ctl.log"))
        return -1;
    int logfd = open(logp, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
    pid_t pid = fork();
    if (pid < 0) {
        if (logfd >= 0)
            close(logfd);
        return -1;
    }
    if (pid == 0) {
        /* Child: only async-signal-safe calls until exec. */
        int nul = open("/dev/null", O_RDONLY);
        if (nul >= 0)
            dup2(nul, 0);
        if (logfd >= 0) {
            dup2(logfd, 1);
            dup2(logfd, 2);
        }
        closefrom(3); /* the postmaster must not inherit the caller's sockets */
        if (c->as_other && (setgroups(0, NULL) != 0 || setgid(c->gid) != 0 || setuid(c->uid) != 0))
            _exit(126);
        if (chdir(c->dir) != 0)
            _exit(126);
        execv(prog, argv);
        _exit(127);
    }
    if (logfd >= 0)
        close(logfd);
    int st;
    while (waitpid(pid, &st, 0) < 0) {
        if (errno != EINTR)
            return -1;
    }
    return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

/* When root: make sure c->uid can reach DIR. Ancestors it cannot search get o+x. */
static int sh_grant_traverse(const sh_pgctx *c, sh_err *e)
{
    char p[SH_PG_PATH_MAX];
    snprintf(p, sizeof p, "%s", c->dir);
    for (char *s = p + 1;; s++) {
        char saved = *s;
        if (saved != '/' && saved != '\0')
            continue;
        *s = '\0';
        struct stat st;
        int last = saved == '\0';
        if (!last && stat(p, &st) == 0) {
            mode_t need = st.st_uid == c->uid ? S_IXUSR : st.st_gid == c->gid ? S_IXGRP : S_IXOTH;
            if (!(st.st_mode & need)) {
                if (chmod(p, (st.st_mode & 07777) | S_IXOTH) != 0)
                    return sh_err_set(e, SH_EIO, "chmod o+x %s: %s", p, strerror(errno));
                char q[SH_PG_PATH_MAX + 8], why[128];
                snprintf(why, sizeof why, "postgres runs as %s", c->user);
                SH_WARN("db_dir_traverse", "path=%s granted=o+x reason=%s",
                        sh_log_q(q, sizeof q, p), SH_Q(why));
            }
        }
        *s = saved;
        if (last)
            return 0;
    }
}

static int sh_ctx_init(sh_pgctx *c, const sh_pgctl_opts *o, int create, sh_err *e)
{
    memset(c, 0, sizeof *c);
    if (!o || !o->dir || !*o->dir)
        return sh_err_set(e, SH_EINVAL, "db: --dir is required");
    if (create && mkdir(o->dir, 0700) != 0 && errno != EEXIST)
        return sh_err_set(e, SH_EIO, "mkdir %s: %s", o->dir, strerror(errno));
    char real[PATH_MAX];
    if (!realpath(o->dir, real))
        return sh_err_set(e, SH_ENOTFOUND, "%s: %s", o->dir, strerror(errno));
    if (strlen(real) > SH_PG_PATH_MAX - 64)
        return sh_err_set(e, SH_EINVAL, "%s: path too long", real);
    memcpy(c->dir, real, strlen(real) + 1); /* length checked above */
    if (sh_path(c->data, sizeof c->data, real, "data") ||
        sh_path(c->pgversion, sizeof c->pgversion, c->data, "PG_VERSION"))
        return sh_err_set(e, SH_EINVAL, "%s: path too long", real);
    c->timeout_s = o->timeout_s > 0 ? o->timeout_s : 60;
    int rc = sh_find_bin(o->bin_dir, c->bin, sizeof c->bin, e);
    if (rc)
        return rc;
    if (geteuid() != 0)
        return 0;
    const char *user = o->run_as && *o->run_as ? o->run_as : "postgres";
    struct passwd *pw = getpwnam(user);
    if (!pw)
        return sh_err_set(e, SH_ENOTFOUND,
                          "running as root: PostgreSQL refuses root and user '%s' does not exist "
                          "(create it: useradd --system postgres, or pass --run-as USER)",
                          user);
    c->as_other = 1;
    c->uid = pw->pw_uid;
    c->gid = pw->pw_gid;
    snprintf(c->user, sizeof c->user, "%s", user);
    if (create) {
        if (chown(c->dir, c->uid, c->gid) != 0 || chmod(c->dir, 0700) != 0)
            return sh_err_set(e, SH_EIO, "chown %s to %s: %s", c->dir, user, strerror(errno));
        return sh_grant_traverse(c, e);
    }
    return 0;
}

/* ---- init ------------------------------------------------------------------------------------ */

static int sh_random_hex(char *out, size_t nbytes)
{
    unsigned char raw[32];
    if (nbytes > sizeof raw || getrandom(raw, nbytes, 0) != (ssize_t)nbytes)
        return SH_EIO;
    for (size_t i = 0; i < nbytes; i++)
        snprintf(out + 2 * i, 3, "%02x", raw[i]);
    return 0;
}

/* Settings appended to postgresql.conf. wal_level=logical lets the publication be decoded (and is
 * more than the replica level a streaming follower needs); max_wal_senders/max_replication_slots
 * let followers stream (initdb's pg_hba.conf already allows replication connections from
 * 127.0.0.1 with scram-sha-256). hot_standby* apply only while this cluster is a follower: the
 * feedback keeps the primary from vacuuming rows a replicator's read on the follower still needs.
 * A follower gets this block appended after the primary's copied one, so its own socket wins.
 * fsync and friends stay at their (safe) defaults. */
static int sh_write_conf(const sh_pgctx *c, sh_err *e)
{
    char sock[SH_PG_PATH_MAX + 8], conf[SH_PG_PATH_MAX + 32], text[4096];
    snprintf(sock, sizeof sock, "%s/sock", c->dir);
    /* sun_path holds 108 bytes including "/.s.PGSQL.NNNNN": too long → TCP only. */
    int use_sock = strlen(sock) + 18 < 108;
    if (use_sock && mkdir(sock, 0700) != 0 && errno != EEXIST)
        return sh_err_set(e, SH_EIO, "mkdir %s: %s", sock, strerror(errno));
    if (use_sock && c->as_other && chown(sock, c->uid, c->gid) != 0)
        return sh_err_set(e, SH_EIO, "chown %s: %s", sock, strerror(errno));
    snprintf(text, sizeof text,
             "\n# --- soundhash db start ---\n"
             "listen_addresses = '127.0.0.1'\n"
             "unix_socket_directories = '%s'\n"
             "wal_level = logical\n"
             "max_wal_senders = 10\n"
             "max_replication_slots = 10\n"
             "max_connections = 100\n"
             "hot_standby = on\n"
             "hot_standby_feedback = on\n"
             "logging_collector = off\n",
             use_sock ? sock : "");
    snprintf(conf, sizeof conf, "%s/postgresql.conf", c->data);
    FILE *f = fopen(conf, "ae");
    if (!f)
        return sh_err_set(e, SH_EIO, "%s: %s", conf, strerror(errno));
    int ok = fputs(text, f) >= 0;
    ok &= fclose(f) == 0;
    return ok ? 0 : sh_err_set(e, SH_EIO, "%s: write failed", conf);
}

static int sh_initdb(const sh_pgctx *c, sh_err *e)
{
    char pw[65], pwfile[SH_PG_PATH_MAX + 16], pgpass[SH_PG_PATH_MAX + 16];
    char line[128], pwopt[SH_PG_PATH_MAX + 32], logp[SH_PG_PATH_MAX + 16];
    if (sh_random_hex(pw, 24))
        return sh_err_set(e, SH_EIO, "getrandom failed");
    sh_path(pwfile, sizeof pwfile, c->dir, "initdb.pw");
    sh_path(pgpass, sizeof pgpass, c->dir, "pgpass");
    sh_path(logp, sizeof logp, c->dir, "ctl.log");
    snprintf(line, sizeof line, "%s\n", pw);
    int rc = sh_write_file(pwfile, line, 0600, e);
    if (!rc && c->as_other && chown(pwfile, c->uid, c->gid) != 0)
        rc = sh_err_set(e, SH_EIO, "chown %s: %s", pwfile, strerror(errno));
    if (rc)
        return rc;
    snprintf(pwopt, sizeof pwopt, "--pwfile=%s", pwfile);
    char *argv[] = {"initdb",     "-D",  (char *)c->data,        "-U",
                    SH_PG_ROLE,   pwopt, "--auth=scram-sha-256", "--encoding=UTF8",
                    "--locale=C", NULL};
    SH_INFO("db_initdb", "dir=%s", SH_Q(c->dir));
    int st = sh_run(c, argv);
    unlink(pwfile);
    if (st != 0) {
        char tail[300];
        sh_log_tail(logp, tail, sizeof tail);
        return sh_err_set(e, SH_EIO, "initdb failed (status %d; see %s): %s", st, logp, tail);
    }
    snprintf(line, sizeof line, "*:*:*:%s:%s\n", SH_PG_ROLE, pw);
    rc = sh_write_file(pgpass, line, 0600, e);
    if (!rc)
        rc = sh_write_conf(c, e);
    return rc;
}

static void sh_quote_value(char *out, size_t cap, const char *v);

/* ---- follower (physical streaming standby) ---------------------------------------------------- */

static int sh_is_follower(const sh_pgctx *c)
{
    char sig[SH_PG_PATH_MAX + 32];
    snprintf(sig, sizeof sig, "%s/standby.signal", c->data);
    return access(sig, F_OK) == 0;
}

/* Appends `key='value'` (conninfo quoting) to out[cap] at *len. 0 or SH_EINVAL when too long. */
static int sh_conninfo_add(char *out, size_t cap, size_t *len, const char *key, const char *val)
{
    char q[2 * SH_PGCTL_DSN_MAX];
    sh_quote_value(q, sizeof q, val);
    int n = snprintf(out + *len, cap - *len, "%s%s=%s", *len ? " " : "", key, q);
    if (n < 0 || (size_t)n >= cap - *len)
        return SH_EINVAL;
    *len += (size_t)n;
    return 0;
}

/* The primary's DSN rewritten for replication: every option kept but the secrets, the database
 * (a physical replication connection has none) and the passfile, which becomes the follower's own
 * copy — the primary's file is in another region. */
int sh_pgctl_follow_conninfo(const char *dsn, const char *passfile, char *out, size_t cap,
                             sh_err *e)
{
    char *perr = NULL;
    PQconninfoOption *opts = PQconninfoParse(dsn, &perr);
    if (!opts) {
        int rc = sh_err_set(e, SH_EINVAL, "--follow: bad DSN: %s", perr ? perr : "out of memory");
        PQfreemem(perr);
        return rc;
    }
    size_t len = 0;
    int rc = 0;
    out[0] = '\0';
    for (PQconninfoOption *o = opts; o->keyword && !rc; o++) {
        if (!o->val || !*o->val || !strcmp(o->keyword, "passfile") ||
            !strcmp(o->keyword, "dbname") || !strcmp(o->keyword, "replication"))
            continue;
        /* every secret libpq knows (dispchar '*': password, sslpassword, ...) stays out of
         * pg_basebackup's argv (readable by every local user) and of primary_conninfo: the
         * password goes through the passfile; an encrypted SSL key cannot be used here */
        if (o->dispchar && o->dispchar[0] == '*') {
            if (strcmp(o->keyword, "password"))
                SH_WARN("follow_secret_dropped", "keyword=%s msg=%s", o->keyword,
                        SH_Q("a secret other than the password is not passed to pg_basebackup "
                             "(its argv is visible to every local user); use an unencrypted "
                             "key file readable only by the server's user"));
            continue;
        }
        rc = sh_conninfo_add(out, cap, &len, o->keyword, o->val);
    }
    if (!rc)
        rc = sh_conninfo_add(out, cap, &len, "passfile", passfile);
    PQconninfoFree(opts);
    return rc ? sh_err_set(e, SH_EINVAL, "--follow: DSN too long") : 0;
}

/* pgpass field: ':' and '\' escaped. */
static void sh_pgpass_field(char *out, size_t cap, const char *v)
{
    size_t o = 0;
    for (; *v && o + 3 < cap; v++) {
        if (*v == ':' || *v == '\\')
            out[o++] = '\\';
        out[o++] = *v;
    }
    out[o] = '\0';
}

/* Connects to the primary as the DSN says (password from the DSN's passfile, PGPASSWORD or
 * ~/.pgpass), writes the role and the password it used into DIR/pgpass (the follower is a copy of
 * the primary: the same role logs in to both) and drops an inactive slot of the same name left by
 * an earlier, failed attempt. */
static int sh_follow_prepare(const sh_pgctx *c, const char *dsn, const char *slot, sh_err *e)
{
    char tmo[16];
    snprintf(tmo, sizeof tmo, "%d", c->timeout_s < 30 ? c->timeout_s : 30);
    /* expand_dbname: "dbname" carries the whole DSN, whose own connect_timeout (if any) overrides
     * the bound given before it */
    const char *keys[] = {"connect_timeout", "dbname", NULL}, *vals[] = {tmo, dsn, NULL};
    PGconn *pc = PQconnectdbParams(keys, vals, 1);
    int rc = 0;
    if (PQstatus(pc) != CONNECTION_OK) {
        char msg[300];
        snprintf(msg, sizeof msg, "%s", PQerrorMessage(pc));
        msg[strcspn(msg, "\n")] = '\0';
        PQfinish(pc);
        return sh_err_set(e, SH_EDB, "--follow: cannot connect to the primary: %s", msg);
    }
    char user[256], pw[512], line[1024], pgpass[SH_PG_PATH_MAX + 16];
    sh_pgpass_field(user, sizeof user, PQuser(pc) ? PQuser(pc) : "");
    sh_pgpass_field(pw, sizeof pw, PQpass(pc) ? PQpass(pc) : "");
    snprintf(line, sizeof line, "*:*:*:%s:%s\n", user, pw);
    sh_path(pgpass, sizeof pgpass, c->dir, "pgpass");
    rc = sh_write_file(pgpass, line, 0600, e);
    explicit_bzero(line, sizeof line);
    explicit_bzero(pw, sizeof pw);
    char rolef[SH_PG_PATH_MAX + 16], rline[300];
    sh_path(rolef, sizeof rolef, c->dir, "role");
    snprintf(rline, sizeof rline, "%s\n", PQuser(pc) ? PQuser(pc) : SH_PG_ROLE);
    if (!rc)
        rc = sh_write_file(rolef, rline, 0644, e);
    /* walreceiver reads it as the server's user */
    if (!rc && c->as_other && chown(pgpass, c->uid, c->gid) != 0)
        rc = sh_err_set(e, SH_EIO, "chown %s: %s", pgpass, strerror(errno));
    const char *p[1] = {slot};
    PGresult *r = rc ? NULL
                     : PQexecParams(pc,
                                    "SELECT pg_drop_replication_slot(slot_name) FROM "
                                    "pg_replication_slots WHERE slot_name = $1 AND NOT active",
                                    1, NULL, p, NULL, NULL, 0);
    if (r && PQresultStatus(r) == PGRES_TUPLES_OK && PQntuples(r) > 0)
        SH_WARN("db_follow_slot_dropped", "slot=%s reason=%s", SH_Q(slot),
                SH_Q("an inactive slot of this name was left by an earlier follower"));
    PQclear(r);
    PQfinish(pc);
    return rc;
}

/* A new follower: pg_basebackup of the primary into DIR/data with a replication slot (the primary
 * keeps the WAL the follower has not received yet) and -R (standby.signal + primary_conninfo
 * naming DIR/pgpass), then this cluster's own settings. */
static int sh_basebackup(const sh_pgctx *c, const sh_pgctl_opts *o, sh_err *e)
{
    const char *slot = o->slot && *o->slot ? o->slot : "soundhash_follower";
    for (const char *s = slot; *s; s++) {
        if (!((*s >= 'a' && *s <= 'z') || (*s >= '0' && *s <= '9') || *s == '_') ||
            s - slot >= 63)
            return sh_err_set(e, SH_EINVAL, "--slot %s: lower-case letters, digits and _ only, "
                                            "at most 63", slot);
    }
    int rc = sh_follow_prepare(c, o->follow_dsn, slot, e);
    if (rc)
        return rc;
    char conn[2 * SH_PGCTL_DSN_MAX], pgpass[SH_PG_PATH_MAX + 16], logp[SH_PG_PATH_MAX + 16];
    sh_path(pgpass, sizeof pgpass, c->dir, "pgpass");
    sh_path(logp, sizeof logp, c->dir, "ctl.log");
    if ((rc = sh_pgctl_follow_conninfo(o->follow_dsn, pgpass, conn, sizeof conn, e)))
        return rc;
    char *argv[] = {"pg_basebackup", "-D", (char *)c->data, "-d", conn, "-X", "stream", "-R",
                    "-C", "-S", (char *)slot, "-c", "fast", "-w", NULL};
    SH_INFO("db_basebackup", "dir=%s slot=%s", SH_Q(c->dir), SH_Q(slot));
    int st = sh_run(c, argv);
    if (st != 0) {
        char tail[300];
        sh_log_tail(logp, tail, sizeof tail);
        return sh_err_set(e, SH_EIO, "pg_basebackup failed (status %d; see %s): %s", st, logp,
                          tail);
    }
    return sh_write_conf(c, e);
}

/* ---- port and DSN ---------------------------------------------------------------------------- */

/* Binds 127.0.0.1:port (0 = any) to test it is free; returns the port or -1. */
static int sh_free_port(int port)
{
    int s = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (s < 0)
        return -1;
    /* Like the postmaster's own listen socket: TIME_WAIT leftovers must not make a port look
     * taken (else a restart would move to another port and change the DSN). */
    int one = 1;
    setsockopt(s, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t len = sizeof a;
    int got = -1;
    if (bind(s, (struct sockaddr *)&a, sizeof a) == 0 &&
        getsockname(s, (struct sockaddr *)&a, &len) == 0)
        got = ntohs(a.sin_port);
    close(s);
    return got;
}

/* Conninfo value quoting: '...' with \ and ' escaped. */
static void sh_quote_value(char *out, size_t cap, const char *v)
{
    size_t o = 0;
    if (cap < 3)
        return;
    out[o++] = '\'';
    for (; *v && o + 3 < cap; v++) {
        if (*v == '\'' || *v == '\\')
            out[o++] = '\\';
        out[o++] = *v;
    }
    out[o++] = '\'';
    out[o] = '\0';
}

static int sh_make_dsn(const sh_pgctx *c, int port, const char *db, char *out, size_t cap)
{
    char pgpass[SH_PG_PATH_MAX + 16], q[2 * SH_PG_PATH_MAX + 40], rolef[SH_PG_PATH_MAX + 16];
    char role[128], qrole[300];
    sh_path(pgpass, sizeof pgpass, c->dir, "pgpass");
    sh_quote_value(q, sizeof q, pgpass);
    /* a follower logs in with the role it followed the primary as (DIR/role), else ours */
    sh_path(rolef, sizeof rolef, c->dir, "role");
    if (sh_read_line(rolef, role, sizeof role) != 0 || !*role)
        snprintf(role, sizeof role, "%s", SH_PG_ROLE);
    if (strspn(role, "abcdefghijklmnopqrstuvwxyz0123456789_") == strlen(role))
        snprintf(qrole, sizeof qrole, "%s", role); /* the usual case: the DSN as it always was */
    else
        sh_quote_value(qrole, sizeof qrole, role);
    int n = snprintf(out, cap, "host=127.0.0.1 port=%d dbname=%s user=%s passfile=%s", port, db,
                     qrole, q);
    return n < 0 || (size_t)n >= cap ? SH_EINVAL : 0;
}

/* Creates database "soundhash" if missing (CREATE DATABASE cannot run in a transaction or take
 * parameters; the name is our constant). */
static int sh_create_db(const sh_pgctx *c, int port, sh_err *e)
{
    char dsn[SH_PGCTL_DSN_MAX];
    if (sh_make_dsn(c, port, "postgres", dsn, sizeof dsn))
        return sh_err_set(e, SH_EINVAL, "DSN too long");
    PGconn *pc = PQconnectdb(dsn);
    int rc = 0;
    if (PQstatus(pc) != CONNECTION_OK) {
        rc = sh_err_set(e, SH_EDB, "connect to new cluster: %s", PQerrorMessage(pc));
    } else {
        const char *p[1] = {SH_PG_DB};
        PGresult *r = PQexecParams(pc, "SELECT 1 FROM pg_database WHERE datname = $1", 1, NULL, p,
                                   NULL, NULL, 0);
        int exists = PQresultStatus(r) == PGRES_TUPLES_OK && PQntuples(r) == 1;
        PQclear(r);
        if (!exists) {
            r = PQexec(pc, "CREATE DATABASE " SH_PG_DB " OWNER " SH_PG_ROLE);
            if (PQresultStatus(r) != PGRES_COMMAND_OK)
                rc = sh_err_set(e, SH_EDB, "create database: %s", PQresultErrorMessage(r));
            PQclear(r);
        }
    }
    PQfinish(pc);
    return rc;
}

/* ---- start / stop ---------------------------------------------------------------------------- */

/* 1 when the postmaster named in DATA/postmaster.pid is a zombie: SIGKILLed but not yet reaped.
 * pg_ctl status asks kill(pid, 0), which a zombie passes; a takeover that kills the old primary
 * where nothing reaps orphans quickly (some container inits) then took it for a running server
 * and failed to connect to it (84_takeover, fence). */
static int sh_postmaster_zombie(const sh_pgctx *c)
{
    char pf[SH_PG_PATH_MAX + 32], line[32], st[64];
    snprintf(pf, sizeof pf, "%s/postmaster.pid", c->data);
    if (sh_read_line(pf, line, sizeof line) != 0)
        return 0;
    long pid = strtol(line, NULL, 10);
    if (pid <= 0)
        return 0;
    snprintf(st, sizeof st, "/proc/%ld/stat", pid);
    FILE *f = fopen(st, "re");
    if (!f)
        return 0; /* gone, or no /proc: pg_ctl's answer stands */
    char buf[512];
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = '\0';
    const char *r = strrchr(buf, ')'); /* "pid (comm) S ...": comm may hold spaces */
    return r && r[1] == ' ' && (r[2] == 'Z' || r[2] == 'X');
}

static int sh_status(const sh_pgctx *c)
{
    char *argv[] = {"pg_ctl", "status", "-D", (char *)c->data, NULL};
    return sh_run(c, argv) == 0 && !sh_postmaster_zombie(c);
}

int sh_pgctl_running(const sh_pgctl_opts *o)
{
    sh_pgctx c;
    if (sh_ctx_init(&c, o, 0, NULL))
        return 0;
    return access(c.pgversion, F_OK) == 0 && sh_status(&c);
}

static int sh_pick_port(const sh_pgctx *c, int want, int attempt)
{
    if (want > 0)
        return want;
    char pf[SH_PG_PATH_MAX + 16], buf[32];
    sh_path(pf, sizeof pf, c->dir, "port");
    long prev = 0;
    if (attempt == 0 && sh_read_line(pf, buf, sizeof buf) == 0)
        prev = strtol(buf, NULL, 10);
    if (prev > 0 && prev < 65536 && sh_free_port((int)prev) == prev)
        return (int)prev;
    return sh_free_port(0);
}

static int sh_pg_start(const sh_pgctx *c, int port, sh_err *e)
{
    char logp[SH_PG_PATH_MAX + 16], popt[32], tmo[16], ctl[SH_PG_PATH_MAX + 16];
    sh_path(logp, sizeof logp, c->dir, "postgres.log");
    sh_path(ctl, sizeof ctl, c->dir, "ctl.log");
    snprintf(popt, sizeof popt, "-p %d", port);
    snprintf(tmo, sizeof tmo, "%d", c->timeout_s);
    char *argv[] = {"pg_ctl", "start", "-D", (char *)c->data, "-l", logp, "-w", "-t", tmo,
                    "-o",     popt,    NULL};
    int st = sh_run(c, argv);
    if (st == 0)
        return 0;
    char tail[300];
    sh_log_tail(logp, tail, sizeof tail);
    return sh_err_set(e, SH_EIO, "pg_ctl start failed (status %d; see %s): %s", st, logp, tail);
}

int sh_pgctl_start(const sh_pgctl_opts *o, char *dsn, size_t cap, sh_err *e)
{
    sh_pgctx c;
    int rc = sh_ctx_init(&c, o, 1, e);
    if (rc)
        return rc;
    char pf[SH_PG_PATH_MAX + 16], df[SH_PG_PATH_MAX + 16], buf[32];
    sh_path(pf, sizeof pf, c.dir, "port");
    sh_path(df, sizeof df, c.dir, "dsn");
    if (access(c.pgversion, F_OK) != 0) {
        rc = o->follow_dsn && *o->follow_dsn ? sh_basebackup(&c, o, e) : sh_initdb(&c, e);
        if (rc)
            return rc;
    } else if (o->follow_dsn && *o->follow_dsn && !sh_is_follower(&c)) {
        return sh_err_set(e, SH_EINVAL,
                          "%s already holds a cluster that is not a follower (a primary, or a "
                          "promoted follower): --follow only creates a new one; use an empty --dir",
                          c.dir);
    }
    int port = -1;
    if (sh_status(&c)) {
        /* Already running: its port is the one we recorded when starting it. */
        if (sh_read_line(pf, buf, sizeof buf) == 0)
            port = (int)strtol(buf, NULL, 10);
        if (port <= 0)
            return sh_err_set(e, SH_EIO, "server in %s is running but %s is unreadable", c.dir, pf);
    } else {
        /* An auto-picked port can be taken between the probe and the bind: retry a few. */
        for (int attempt = 0; attempt < 3; attempt++) {
            port = sh_pick_port(&c, o->port, attempt);
            if (port <= 0)
                return sh_err_set(e, SH_EIO, "no free loopback port");
            rc = sh_pg_start(&c, port, e);
            if (!rc || o->port > 0)
                break;
        }
        if (rc)
            return rc;
        snprintf(buf, sizeof buf, "%d\n", port);
        if ((rc = sh_write_file(pf, buf, 0644, e)) != 0)
            return rc;
    }
    if ((rc = sh_create_db(&c, port, e)) != 0)
        return rc;
    char line[SH_PGCTL_DSN_MAX + 2];
    if (sh_make_dsn(&c, port, SH_PG_DB, dsn, cap))
        return sh_err_set(e, SH_EINVAL, "DSN buffer too small");
    snprintf(line, sizeof line, "%s\n", dsn);
    rc = sh_write_file(df, line, 0644, e);
    if (!rc)
        SH_INFO("db_started", "dir=%s port=%d", SH_Q(c.dir), port);
    return rc;
}

int sh_pgctl_stop(const sh_pgctl_opts *o, sh_err *e)
{
    sh_pgctx c;
    int rc = sh_ctx_init(&c, o, 0, e);
    if (rc)
        return rc;
    char tmo[16];
    if (access(c.pgversion, F_OK) != 0)
        return sh_err_set(e, SH_ENOTFOUND, "%s holds no PostgreSQL cluster", c.dir);
    if (!sh_status(&c))
        return 0;
    snprintf(tmo, sizeof tmo, "%d", c.timeout_s);
    char *argv[] = {"pg_ctl", "stop", "-D", c.data, "-m", "fast", "-w", "-t", tmo, NULL};
    int st = sh_run(&c, argv);
    if (st != 0)
        return sh_err_set(e, SH_EIO, "pg_ctl stop failed (status %d; see %s/ctl.log)", st, c.dir);
    SH_INFO("db_stopped", "dir=%s", SH_Q(c.dir));
    return 0;
}

/* ---- promote / fence ------------------------------------------------------------------------- */

int sh_pgctl_promote(const sh_pgctl_opts *o, sh_err *e)
{
    sh_pgctx c;
    int rc = sh_ctx_init(&c, o, 0, e);
    if (rc)
        return rc;
    if (access(c.pgversion, F_OK) != 0)
        return sh_err_set(e, SH_ENOTFOUND, "%s holds no PostgreSQL cluster", c.dir);
    if (!sh_is_follower(&c))
        return sh_err_set(e, SH_EINVAL,
                          "%s is not a follower (no standby.signal): already a primary, or "
                          "promoted before", c.dir);
    if (!sh_status(&c))
        return sh_err_set(e, SH_EINVAL,
                          "the follower in %s is not running: start it (soundhash db start --dir "
                          "%s) and promote again",
                          c.dir, c.dir);
    char tmo[16];
    snprintf(tmo, sizeof tmo, "%d", c.timeout_s);
    char *argv[] = {"pg_ctl", "promote", "-D", c.data, "-w", "-t", tmo, NULL};
    int st = sh_run(&c, argv);
    if (st != 0)
        return sh_err_set(e, SH_EIO, "pg_ctl promote failed (status %d; see %s/ctl.log)", st,
                          c.dir);
    SH_INFO("db_promoted", "dir=%s", SH_Q(c.dir));
    return 0;
}

/* Ends every client session of the running server in DIR so that each reconnects and meets the
 * fence (a session keeps the settings it started with). */
static int sh_fence_sessions(const sh_pgctx *c, sh_err *e)
{
    char pf[SH_PG_PATH_MAX + 16], buf[32], dsn[SH_PGCTL_DSN_MAX];
    sh_path(pf, sizeof pf, c->dir, "port");
    if (sh_read_line(pf, buf, sizeof buf) != 0 ||
        sh_make_dsn(c, (int)strtol(buf, NULL, 10), SH_PG_DB, dsn, sizeof dsn))
        return sh_err_set(e, SH_EIO, "%s: unreadable", pf);
    PGconn *pc = PQconnectdb(dsn);
    int rc = 0;
    /* the reload is asynchronous: wait until a new session sees the fence (bounded) */
    for (int i = 0; i < 50 && PQstatus(pc) == CONNECTION_OK; i++) {
        PGresult *r = PQexec(pc, "SELECT current_setting('soundhash.fenced', true)");
        int on = PQresultStatus(r) == PGRES_TUPLES_OK && !strcmp(PQgetvalue(r, 0, 0), "on");
        PQclear(r);
        if (on)
            break;
        PQfinish(pc);
        usleep(100 * 1000);
        pc = PQconnectdb(dsn);
    }
    if (PQstatus(pc) != CONNECTION_OK) {
        rc = sh_err_set(e, SH_EDB, "fence: connect: %s", PQerrorMessage(pc));
    } else {
        PGresult *r = PQexec(pc, "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                                 "WHERE backend_type = 'client backend' AND pid <> "
                                 "pg_backend_pid()");
        if (PQresultStatus(r) != PGRES_TUPLES_OK)
            rc = sh_err_set(e, SH_EDB, "fence: end sessions: %s", PQresultErrorMessage(r));
        PQclear(r);
    }
    PQfinish(pc);
    return rc;
}

int sh_pgctl_fence(const sh_pgctl_opts *o, sh_err *e)
{
    sh_pgctx c;
    int rc = sh_ctx_init(&c, o, 0, e);
    if (rc)
        return rc;
    if (access(c.pgversion, F_OK) != 0)
        return sh_err_set(e, SH_ENOTFOUND, "%s holds no PostgreSQL cluster", c.dir);
    /* postgresql.auto.conf is read last and ALTER SYSTEM keeps unknown lines: the same place an
     * operator's ALTER SYSTEM SET would put them, and it works while the server is down. */
    char auto_conf[SH_PG_PATH_MAX + 32];
    snprintf(auto_conf, sizeof auto_conf, "%s/postgresql.auto.conf", c.data);
    FILE *f = fopen(auto_conf, "ae");
    if (!f)
        return sh_err_set(e, SH_EIO, "%s: %s", auto_conf, strerror(errno));
    int ok = fputs("# soundhash db fence: a takeover replaced this server (ops/takeover.sh)\n"
                   "soundhash.fenced = 'on'\n"
                   "default_transaction_read_only = 'on'\n",
                   f) >= 0;
    ok &= fclose(f) == 0;
    if (!ok)
        return sh_err_set(e, SH_EIO, "%s: write failed", auto_conf);
    if (sh_status(&c)) {
        char *argv[] = {"pg_ctl", "reload", "-D", c.data, NULL};
        if (sh_run(&c, argv) != 0)
            return sh_err_set(e, SH_EIO, "pg_ctl reload failed (see %s/ctl.log)", c.dir);
        if ((rc = sh_fence_sessions(&c, e)) != 0)
            return rc;
    }
    SH_WARN("db_fenced", "dir=%s", SH_Q(c.dir));
    return 0;
}
