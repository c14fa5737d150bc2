#include "sh_opt.h"

#include "sh_log.h"
#include "sh_vec.h"

#include <jansson.h>

#include <ctype.h>
#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

enum { SH_OPT_LINE_MAX = 4096, SH_OPT_FILE_MAX = 1 << 20, SH_OPT_SECRET_MAX = 64 << 10 };

/* ---- small parsers ---------------------------------------------------------------------------- */

int sh_parse_long(const char *s, long *out)
{
    if (!s || !*s)
        return SH_EINVAL;
    char *end = NULL;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (errno || !end || *end != '\0')
        return SH_EINVAL;
    *out = v;
    return 0;
}

int sh_parse_double(const char *s, double *out)
{
    if (!s || !*s)
        return SH_EINVAL;
    char *end = NULL;
    errno = 0;
    double v = strtod(s, &end);
    if (errno || !end || *end != '\0' || !isfinite(v))
        return SH_EINVAL;
    *out = v;
    return 0;
}

int sh_parse_size(const char *s, size_t *out)
{
    if (!s || !*s || *s == '-')
        return SH_EINVAL;
    char *end = NULL;
    errno = 0;
    unsigned long long v = strtoull(s, &end, 10);
    if (errno || end == s)
        return SH_EINVAL;
    unsigned shift = 0;
    switch (toupper((unsigned char)*end)) {
    case '\0':
        break;
    case 'K':
        shift = 10;
        break;
    case 'M':
        shift = 20;
        break;
    case 'G':
        shift = 30;
        break;
    default:
        return SH_EINVAL;
    }
    if (*end) {
        end++;
        if (toupper((unsigned char)*end) == 'I')
            end++;
        if (toupper((unsigned char)*end) == 'B')
            end++;
        if (*end)
            return SH_EINVAL;
    }
    if (shift && v > (SIZE_MAX >> shift))
        return SH_EINVAL;
    *out = (size_t)(v << shift);
    return 0;
}

/* ---- string lists ----------------------------------------------------------------------------- */

int sh_strlist_push(sh_strlist *l, const char *s)
{
    if (sh_vec_reserve(&l->v, &l->cap, l->n + 1, SH_VEC_NOCAP))
        return SH_ENOMEM;
    char *copy = strdup(s);
    if (!copy)
        return SH_ENOMEM;
    l->v[l->n++] = copy;
    return 0;
}

void sh_strlist_clear(sh_strlist *l)
{
    for (size_t i = 0; i < l->n; i++)
        free(l->v[i]);
    free(l->v);
    l->v = NULL;
    l->n = l->cap = 0;
}

/* ---- option lookup and assignment ------------------------------------------------------------- */

static sh_opt *find_long(sh_opt *opts, const char *name, size_t len)
{
    for (sh_opt *o = opts; o->name; o++) {
        if (strlen(o->name) == len && !strncmp(o->name, name, len))
            return o;
    }
    return NULL;
}

static sh_opt *find_short(sh_opt *opts, char c)
{
    for (sh_opt *o = opts; o->name; o++) {
        if (o->short_name && o->short_name == c)
            return o;
    }
    return NULL;
}

static int parse_bool(const char *v, bool *out)
{
    static const char *const yes[] = {"1", "true", "yes", "on"};
    static const char *const no[] = {"0", "false", "no", "off"};
    for (size_t i = 0; i < 4; i++) {
        if (!strcasecmp(v, yes[i])) {
            *out = true;
            return 0;
        }
        if (!strcasecmp(v, no[i])) {
            *out = false;
            return 0;
        }
    }
    return SH_EINVAL;
}

/* Stores text `v` into the option's target. `src` names where it came from, for messages. A list
 * assigned from a lower-precedence source is replaced, not appended to, by a higher one: callers
 * clear lists when the source changes (see reset_list_once). */
static int assign(sh_opt *o, const char *v, const char *src, sh_err *e)
{
    switch (o->type) {
    case SH_OPT_STR: {
        char *copy = strdup(v);
        if (!copy)
            return sh_err_set(e, SH_ENOMEM, "out of memory");
        free(*(char **)o->target);
        *(char **)o->target = copy;
        return 0;
    }
    case SH_OPT_INT: {
        long x;
        if (sh_parse_long(v, &x))
            return sh_err_set(e, SH_EUSAGE, "%s: --%s wants an integer, got '%s'", src, o->name, v);
        if (o->min != o->max && (x < o->min || x > o->max))
            return sh_err_set(e, SH_EUSAGE, "%s: --%s must be in %ld..%ld, got %ld", src, o->name,
                              o->min, o->max, x);
        *(long *)o->target = x;
        return 0;
    }
    case SH_OPT_DOUBLE:
        if (sh_parse_double(v, (double *)o->target))
            return sh_err_set(e, SH_EUSAGE, "%s: --%s wants a number, got '%s'", src, o->name, v);
        return 0;
    case SH_OPT_BOOL:
        if (parse_bool(v, (bool *)o->target))
            return sh_err_set(e, SH_EUSAGE, "%s: --%s wants true/false, got '%s'", src, o->name, v);
        return 0;
    case SH_OPT_SIZE:
        if (sh_parse_size(v, (size_t *)o->target))
            return sh_err_set(e, SH_EUSAGE, "%s: --%s wants a size (e.g. 900K, 5M), got '%s'", src,
                              o->name, v);
        return 0;
    case SH_OPT_LIST:
        if (sh_strlist_push((sh_strlist *)o->target, v))
            return sh_err_set(e, SH_ENOMEM, "out of memory");
        return 0;
    }
    return sh_err_set(e, SH_EINTERNAL, "option --%s has an unknown type", o->name);
}

int sh_secret_file_read(const char *path, char **out, sh_err *e)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return sh_err_set(e, SH_EUSAGE, "cannot open secret file %s: %s", path, strerror(errno));
    char *buf = malloc(SH_OPT_SECRET_MAX + 1);
    if (!buf) {
        fclose(f);
        return sh_err_set(e, SH_ENOMEM, "out of memory");
    }
    size_t n = fread(buf, 1, SH_OPT_SECRET_MAX + 1, f);
    fclose(f);
    if (n > SH_OPT_SECRET_MAX) {
        free(buf);
        return sh_err_set(e, SH_EUSAGE, "secret file %s is over %d bytes", path,
                          SH_OPT_SECRET_MAX);
    }
    while (n && (buf[n - 1] == '\n' || buf[n - 1] == '\r'))
        n--;
    buf[n] = '\0';
    *out = buf;
    return 0;
}

/* `src` names where the path came from (--NAME-file or SOUNDHASH_NAME_FILE), for the message. */
static int assign_secret_file(sh_opt *o, const char *path, const char *src, sh_err *e)
{
    char *secret = NULL;
    int rc = sh_secret_file_read(path, &secret, e);
    if (rc)
        return sh_err_wrap(e, rc, "%s", src);
    free(*(char **)o->target);
    *(char **)o->target = secret;
    return 0;
}

/* SOUNDHASH_<NAME> with '-' → '_' and upper case. */
static void env_name(const char *name, const char *suffix, char *buf, size_t len)
{
    size_t o = (size_t)snprintf(buf, len, "SOUNDHASH_");
    for (const char *p = name; *p && o + 1 < len; p++)
        buf[o++] = *p == '-' ? '_' : (char)toupper((unsigned char)*p);
    buf[o < len ? o : len - 1] = '\0';
    if (suffix) {
        size_t cur = strlen(buf);
        snprintf(buf + cur, len - cur, "%s", suffix);
    }
}

/* ---- passwords inside a DSN ------------------------------------------------------------------- */

static bool is_uri(const char *dsn)
{
    return !strncmp(dsn, "postgresql://", 13) || !strncmp(dsn, "postgres://", 11);
}

/* True when `s` has the keyword `password` at a parameter start followed by '=' (spaces allowed
 * around it in the key/value form). `uri`: parameters start after '?' or '&'. */
static bool has_password_kw(const char *s, bool uri)
{
    for (const char *p = s; (p = strstr(p, "password")) != NULL; p += 8) {
        bool start = p == s || (uri ? (p[-1] == '?' || p[-1] == '&') : isspace((unsigned char)p[-1]));
        const char *q = p + 8;
        while (!uri && isspace((unsigned char)*q))
            q++;
        if (start && *q == '=')
            return true;
    }
    return false;
}

bool sh_dsn_has_password(const char *dsn)
{
    if (!dsn)
        return false;
    if (!is_uri(dsn))
        return has_password_kw(dsn, false);
    const char *auth = strstr(dsn, "://") + 3;
    size_t hostlen = strcspn(auth, "/?");
    const char *at = memchr(auth, '@', hostlen);
    if (at && memchr(auth, ':', (size_t)(at - auth)))
        return true;
    const char *query = strchr(auth, '?');
    return query && has_password_kw(query, true);
}

/* Where each password of `dsn` lies, as written: up to `max` spans (start, length). */
typedef struct pw_span {
    const char *p;
    size_t n;
} pw_span;

/* The value of a `password` keyword at `q` (just past the keyword) in the key/value form: a
 * quoted value up to the closing quote (backslash escapes skipped), else up to white space. */
static pw_span kv_value(const char *q)
{
    while (isspace((unsigned char)*q))
        q++;
    q++; /* '=' */
    while (isspace((unsigned char)*q))
        q++;
    pw_span s = {q, 0};
    if (*q == '\'') {
        const char *r = ++q;
        while (*r && *r != '\'')
            r += (*r == '\\' && r[1]) ? 2 : 1;
        s.p = q, s.n = (size_t)(r - q);
    } else {
        s.n = strcspn(q, " \t\r\n\f\v");
    }
    return s;
}

static size_t dsn_password_spans(const char *dsn, pw_span *out, size_t max)
{
    size_t k = 0;
    bool uri = is_uri(dsn);
    const char *params = dsn;
    if (uri) {
        const char *auth = strstr(dsn, "://") + 3;
        size_t hostlen = strcspn(auth, "/?");
        const char *at = memchr(auth, '@', hostlen);
        const char *colon = at ? memchr(auth, ':', (size_t)(at - auth)) : NULL;
        if (colon && k < max)
            out[k++] = (pw_span){colon + 1, (size_t)(at - colon - 1)};
        params = strchr(auth, '?');
        if (!params)
            return k;
    }
    for (const char *p = params; k < max && (p = strstr(p, "password")) != NULL; p += 8) {
        bool start = p == params ||
                     (uri ? (p[-1] == '?' || p[-1] == '&') : isspace((unsigned char)p[-1]));
        const char *q = p + 8;
        while (!uri && isspace((unsigned char)*q))
            q++;
        if (!start || *q != '=')
            continue;
        out[k++] = uri ? (pw_span){q + 1, strcspn(q + 1, "&#")} : kv_value(p + 8);
    }
    return k;
}

void sh_dsn_redact(const char *dsn, const char *text, char *out, size_t cap)
{
    if (!cap)
        return;
    pw_span spans[8];
    size_t ns = dsn ? dsn_password_spans(dsn, spans, 8) : 0;
    size_t o = 0;
    for (const char *t = text ? text : ""; *t && o + 1 < cap;) {
        size_t hit = 0;
        for (size_t i = 0; i < ns && !hit; i++)
            if (spans[i].n && !strncmp(t, spans[i].p, spans[i].n))
                hit = spans[i].n;
        if (!hit) {
            out[o++] = *t++;
            continue;
        }
        for (const char *m = "***"; *m && o + 1 < cap; m++)
            out[o++] = *m;
        t += hit;
    }
    out[o] = '\0';
}

static const char *const KAFKA_SECRET_PROPS[] = {
    "sasl.password", "ssl.key.password", "ssl.keystore.password", "ssl.key.pem",
    "sasl.oauthbearer.client.secret", NULL};

const char *const *sh_kafka_secret_props(void)
{
    return KAFKA_SECRET_PROPS;
}

bool sh_kafka_prop_is_secret(const char *kv)
{
    size_t klen = strcspn(kv, "=");
    while (klen && isspace((unsigned char)kv[klen - 1]))
        klen--;
    for (const char *const *k = KAFKA_SECRET_PROPS; *k; k++)
        if (strlen(*k) == klen && !strncmp(kv, *k, klen))
            return true;
    return false;
}

/* Secrets never come from argv or a config file (ps, /proc/PID/cmdline, shell history, files in
 * git): a password in --dsn or a secret -X property still works — refusing would break scripts
 * mid-flight — but says how to pass it. */
static void warn_dsn_secret(const sh_opt *o, const char *v, const char *src)
{
    if (o->type == SH_OPT_LIST && !strcmp(o->name, "property") && sh_kafka_prop_is_secret(v)) {
        char key[64];
        snprintf(key, sizeof key, "%.*s", (int)strcspn(v, "="), v);
        SH_WARN("secret_on_command_line", "option=-X property=%s source=%s msg=%s", key,
                SH_Q(src),
                SH_Q("a secret librdkafka property is visible to every user in the process list "
                     "and kept in shell history; pass it with SOUNDHASH_KAFKA_<PROPERTY> or "
                     "SOUNDHASH_KAFKA_<PROPERTY>_FILE (e.g. SOUNDHASH_KAFKA_SASL_PASSWORD_FILE) "
                     "instead"));
        return;
    }
    if (o->type != SH_OPT_STR || !(o->flags & SH_OPT_DSN) || !sh_dsn_has_password(v))
        return;
    SH_WARN("secret_on_command_line", "option=--%s source=%s msg=%s", o->name, SH_Q(src),
            SH_Q("the DSN holds a password, visible to every user in the process list and kept "
                 "in shell history; pass it with SOUNDHASH_DB_PASSWORD or "
                 "SOUNDHASH_DB_PASSWORD_FILE (--db-password-file F), PGPASSFILE or the DSN's "
                 "passfile= instead"));
}

/* ---- the layers --------------------------------------------------------------------------------- */

static int apply_defaults(sh_cmd_spec *spec, sh_err *e)
{
    for (sh_opt *o = spec->opts; o->name; o++) {
        if (o->def) {
            int rc = assign(o, o->def, "default", e);
            if (rc)
                return rc;
        }
    }
    return 0;
}

static char *trim(char *s)
{
    while (isspace((unsigned char)*s))
        s++;
    char *end = s + strlen(s);
    while (end > s && isspace((unsigned char)end[-1]))
        *--end = '\0';
    return s;
}

/* Config file: `key = value` per line, '#' comments. Secrets are refused here. */
static int apply_config_file(sh_cmd_spec *spec, const char *path, sh_err *e)
{
    FILE *f = fopen(path, "r");
    if (!f)
        return sh_err_set(e, SH_EUSAGE, "cannot open config file %s: %s", path, strerror(errno));
    char line[SH_OPT_LINE_MAX];
    int lineno = 0, rc = 0;
    bool list_reset[256] = {false};
    while (!rc && fgets(line, sizeof line, f)) {
        lineno++;
        if (!strchr(line, '\n') && !feof(f)) {
            rc = sh_err_set(e, SH_EUSAGE, "%s:%d: line too long", path, lineno);
            break;
        }
        char *s = trim(line);
        if (!*s || *s == '#')
            continue;
        char *eq = strchr(s, '=');
        if (!eq) {
            rc = sh_err_set(e, SH_EUSAGE, "%s:%d: expected 'key = value'", path, lineno);
            break;
        }
        *eq = '\0';
        char *key = trim(s), *val = trim(eq + 1);
        sh_opt *o = find_long(spec->opts, key, strlen(key));
        if (!o) {
            rc = sh_err_set(e, SH_EUSAGE, "%s:%d: unknown key '%s'", path, lineno, key);
            break;
        }
        if (o->flags & SH_OPT_SECRET) {
            rc = sh_err_set(e, SH_EUSAGE,
                            "%s:%d: '%s' is a secret: give it via SOUNDHASH_* environment or a file",
                            path, lineno, key);
            break;
        }
        size_t idx = (size_t)(o - spec->opts);
        if (o->type == SH_OPT_LIST && idx < 256 && !list_reset[idx]) {
            sh_strlist_clear((sh_strlist *)o->target);
            list_reset[idx] = true;
        }
        char src[300];
        snprintf(src, sizeof src, "%.250s:%d", path, lineno);
        rc = assign(o, val, src, e);
        if (!rc)
            warn_dsn_secret(o, val, src);
    }
    fclose(f);
    return rc;
}

static int apply_env(sh_cmd_spec *spec, sh_err *e)
{
    char name[128];
    for (sh_opt *o = spec->opts; o->name; o++) {
        if (o->flags & SH_OPT_SECRET) {
            env_name(o->name, "_FILE", name, sizeof name);
            const char *path = getenv(name);
            if (path && *path) {
                int rc = assign_secret_file(o, path, name, e);
                if (rc)
                    return rc;
            }
        }
        env_name(o->name, NULL, name, sizeof name);
        const char *v = getenv(name);
        if (!v)
            continue;
        if (o->type == SH_OPT_LIST) {
            /* A list from the environment is comma-separated and replaces lower layers. */
            sh_strlist_clear((sh_strlist *)o->target);
            char *copy = strdup(v), *save = NULL;
            if (!copy)
                return sh_err_set(e, SH_ENOMEM, "out of memory");
            int rc = 0;
            for (char *tok = strtok_r(copy, ",", &save); tok && !rc; tok = strtok_r(NULL, ",", &save))
                rc = assign(o, trim(tok), name, e);
            free(copy);
            if (rc)
                return rc;
            continue;
        }
        int rc = assign(o, v, name, e);
        if (rc)
            return rc;
    }
    return 0;
}

/* Looks for --config / SOUNDHASH_CONFIG before anything else so the layers apply in order. */
static const char *find_config_path(int argc, char **argv)
{
    const char *path = getenv("SOUNDHASH_CONFIG");
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--"))
            break;
        if (!strcmp(argv[i], "--config") && i + 1 < argc)
            path = argv[i + 1];
        else if (!strncmp(argv[i], "--config=", 9))
            path = argv[i] + 9;
    }
    return path && *path ? path : NULL;
}

typedef struct flag_state {
    bool list_reset[256]; /* a list given on the command line replaces lower layers */
} flag_state;

static int apply_flag_value(sh_cmd_spec *spec, sh_opt *o, const char *v, flag_state *fs, sh_err *e)
{
    size_t idx = (size_t)(o - spec->opts);
    if (o->type == SH_OPT_LIST && idx < 256 && !fs->list_reset[idx]) {
        sh_strlist_clear((sh_strlist *)o->target);
        fs->list_reset[idx] = true;
    }
    int rc = assign(o, v, "command line", e);
    if (!rc)
        warn_dsn_secret(o, v, "command line");
    return rc;
}

enum { BUILTIN_NONE, BUILTIN_HELP, BUILTIN_VERSION, BUILTIN_PRINT };

/* Handles one `--name[=value]` argument; may consume argv[*i + 1]. */
static int parse_long_flag(sh_cmd_spec *spec, int argc, char **argv, int *i, flag_state *fs,
                           int *builtin, sh_err *e)
{
    const char *arg = argv[*i] + 2;
    const char *eq = strchr(arg, '=');
    size_t len = eq ? (size_t)(eq - arg) : strlen(arg);
    if (!eq && !strcmp(arg, "help"))
        return *builtin = BUILTIN_HELP, 0;
    if (!eq && !strcmp(arg, "version"))
        return *builtin = BUILTIN_VERSION, 0;
    if (!eq && !strcmp(arg, "print-config"))
        return *builtin = BUILTIN_PRINT, 0;
    if (len == 6 && !strncmp(arg, "config", 6)) {
        if (!eq)
            (*i)++; /* already applied by find_config_path */
        return 0;
    }
    if (len == 9 && !strncmp(arg, "log-level", 9)) {
        const char *v = eq ? eq + 1 : (*i + 1 < argc ? argv[++*i] : NULL);
        int level;
        if (!v || sh_log_level_parse(v, &level))
            return sh_err_set(e, SH_EUSAGE, "--log-level wants debug|info|warn|error|off");
        sh_log_set_level(level);
        return 0;
    }
    sh_opt *o = find_long(spec->opts, arg, len);
    bool secret_file = false;
    if (!o && len > 5 && !strncmp(arg + len - 5, "-file", 5)) {
        o = find_long(spec->opts, arg, len - 5);
        secret_file = o && (o->flags & SH_OPT_SECRET);
        if (!secret_file)
            o = NULL;
    }
    if (!o && len > 3 && !strncmp(arg, "no-", 3)) {
        sh_opt *b = find_long(spec->opts, arg + 3, len - 3);
        if (b && b->type == SH_OPT_BOOL && !eq) {
            *(bool *)b->target = false;
            return 0;
        }
    }
    if (!o)
        return sh_err_set(e, SH_EUSAGE, "unknown option --%.*s", (int)len, arg);
    if (o->type == SH_OPT_BOOL && !eq) {
        *(bool *)o->target = true;
        return 0;
    }
    const char *v = eq ? eq + 1 : (*i + 1 < argc ? argv[++*i] : NULL);
    if (!v)
        return sh_err_set(e, SH_EUSAGE, "--%s needs a value", o->name);
    if (secret_file) {
        char src[96];
        snprintf(src, sizeof src, "--%s-file", o->name);
        return assign_secret_file(o, v, src, e);
    }
    if (o->flags & SH_OPT_SECRET)
        return sh_err_set(e, SH_EUSAGE,
                          "--%s is a secret: use SOUNDHASH_* environment or --%s-file FILE",
                          o->name, o->name);
    return apply_flag_value(spec, o, v, fs, e);
}

static int parse_short_flag(sh_cmd_spec *spec, int argc, char **argv, int *i, flag_state *fs,
                            int *builtin, sh_err *e)
{
    const char *arg = argv[*i];
    if (!strcmp(arg, "-h"))
        return *builtin = BUILTIN_HELP, 0;
    sh_opt *o = find_short(spec->opts, arg[1]);
    if (!o)
        return sh_err_set(e, SH_EUSAGE, "unknown option %s", arg);
    if (o->type == SH_OPT_BOOL && !arg[2]) {
        *(bool *)o->target = true;
        return 0;
    }
    const char *v = arg[2] ? arg + 2 : (*i + 1 < argc ? argv[++*i] : NULL);
    if (!v)
        return sh_err_set(e, SH_EUSAGE, "-%c needs a value", o->short_name);
    return apply_flag_value(spec, o, v, fs, e);
}

static int apply_flags(sh_cmd_spec *spec, int argc, char **argv, int *builtin, sh_err *e)
{
    flag_state fs = {{false}};
    bool only_args = false;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        int rc = 0;
        if (only_args || a[0] != '-' || !a[1])
            rc = sh_strlist_push(&spec->args, a) ? sh_err_set(e, SH_ENOMEM, "out of memory") : 0;
        else if (!strcmp(a, "--"))
            only_args = true;
        else if (a[1] == '-')
            rc = parse_long_flag(spec, argc, argv, &i, &fs, builtin, e);
        else
            rc = parse_short_flag(spec, argc, argv, &i, &fs, builtin, e);
        if (rc)
            return rc;
    }
    return 0;
}

static bool is_set(const sh_opt *o)
{
    switch (o->type) {
    case SH_OPT_STR:
        return *(char *const *)o->target != NULL;
    case SH_OPT_LIST:
        return ((const sh_strlist *)o->target)->n > 0;
    default:
        return true;
    }
}

static int check_required(const sh_cmd_spec *spec, sh_err *e)
{
    char env[128];
    for (const sh_opt *o = spec->opts; o->name; o++) {
        if ((o->flags & SH_OPT_REQUIRED) && !is_set(o)) {
            env_name(o->name, NULL, env, sizeof env);
            return sh_err_set(e, SH_EUSAGE, "--%s is required (or set %s)", o->name, env);
        }
    }
    return 0;
}

int sh_opt_parse(sh_cmd_spec *spec, int argc, char **argv, sh_err *e)
{
    sh_err_clear(e);
    int rc = apply_defaults(spec, e);
    const char *cfg = find_config_path(argc, argv);
    if (!rc && cfg)
        rc = apply_config_file(spec, cfg, e);
    if (!rc)
        rc = apply_env(spec, e);
    int builtin = BUILTIN_NONE;
    if (!rc)
        rc = apply_flags(spec, argc, argv, &builtin, e);
    if (rc)
        return rc;
    switch (builtin) {
    case BUILTIN_HELP:
        sh_opt_usage(spec, stdout);
        return SH_OPT_HANDLED;
    case BUILTIN_VERSION:
        printf("soundhash %s\n", SH_VERSION);
        return SH_OPT_HANDLED;
    case BUILTIN_PRINT:
        sh_opt_print(spec, stdout);
        return SH_OPT_HANDLED;
    }
    return check_required(spec, e);
}

/* ---- output ----------------------------------------------------------------------------------- */

static const char *type_hint(sh_opt_type t)
{
    static const char *const hints[] = {"STR", "N", "X", "", "SIZE", "VALUE"};
    return (unsigned)t < sizeof hints / sizeof hints[0] ? hints[t] : "";
}

void sh_opt_usage(const sh_cmd_spec *spec, void *out)
{
    FILE *f = out;
    fprintf(f, "usage: soundhash %s %s\n\n", spec->name, spec->usage ? spec->usage : "[options]");
    if (spec->summary)
        fprintf(f, "%s\n\n", spec->summary);
    fprintf(f, "options (precedence: flags > SOUNDHASH_* environment > --config file > default):\n");
    char env[128], flag[96];
    for (const sh_opt *o = spec->opts; o->name; o++) {
        env_name(o->name, (o->flags & SH_OPT_SECRET) ? "[_FILE]" : NULL, env, sizeof env);
        if (o->flags & SH_OPT_SECRET)
            snprintf(flag, sizeof flag, "--%s-file FILE", o->name);
        else if (o->short_name)
            snprintf(flag, sizeof flag, "-%c, --%s %s", o->short_name, o->name, type_hint(o->type));
        else
            snprintf(flag, sizeof flag, "--%s %s", o->name, type_hint(o->type));
        fprintf(f, "  %-30s %s", flag, o->help ? o->help : "");
        if (o->def)
            fprintf(f, " (default: %s)", o->def);
        if (o->flags & SH_OPT_REQUIRED)
            fprintf(f, " (required)");
        fprintf(f, " [%s]\n", env);
    }
    fprintf(f, "  %-30s %s\n", "--config FILE", "config file of `key = value` lines [SOUNDHASH_CONFIG]");
    fprintf(f, "  %-30s %s\n", "--log-level L", "debug|info|warn|error|off (default: info)");
    fprintf(f, "  %-30s %s\n", "--print-config", "print the effective configuration and exit");
    fprintf(f, "  %-30s %s\n", "-h, --help / --version", "this help / the version");
    if (spec->examples && *spec->examples) {
        fprintf(f, "\nexamples:\n");
        for (const char *p = spec->examples; *p;) {
            size_t n = strcspn(p, "\n");
            fprintf(f, "  %.*s\n", (int)n, p);
            p += n + (p[n] == '\n');
        }
    }
}

void sh_opt_print(const sh_cmd_spec *spec, void *out)
{
    FILE *f = out;
    for (const sh_opt *o = spec->opts; o->name; o++) {
        if (o->flags & SH_OPT_SECRET) {
            fprintf(f, "%s = %s\n", o->name, *(char *const *)o->target ? "(set, hidden)" : "(unset)");
            continue;
        }
        switch (o->type) {
        case SH_OPT_STR: {
            const char *s = *(char *const *)o->target;
            if (s && (o->flags & SH_OPT_DSN)) {
                char red[SH_OPT_LINE_MAX];
                sh_dsn_redact(s, s, red, sizeof red);
                fprintf(f, "%s = %s\n", o->name, red);
                break;
            }
            fprintf(f, "%s = %s\n", o->name, s ? s : "");
            break;
        }
        case SH_OPT_INT:
            fprintf(f, "%s = %ld\n", o->name, *(const long *)o->target);
            break;
        case SH_OPT_DOUBLE:
            fprintf(f, "%s = %g\n", o->name, *(const double *)o->target);
            break;
        case SH_OPT_BOOL:
            fprintf(f, "%s = %s\n", o->name, *(const bool *)o->target ? "true" : "false");
            break;
        case SH_OPT_SIZE:
            fprintf(f, "%s = %zu\n", o->name, *(const size_t *)o->target);
            break;
        case SH_OPT_LIST: {
            const sh_strlist *l = o->target;
            for (size_t i = 0; i < l->n; i++) {
                if (!strcmp(o->name, "property") && sh_kafka_prop_is_secret(l->v[i]))
                    fprintf(f, "%s = %.*s=(set, hidden)\n", o->name,
                            (int)strcspn(l->v[i], "="), l->v[i]);
                else
                    fprintf(f, "%s = %s\n", o->name, l->v[i]);
            }
            if (!l->n)
                fprintf(f, "%s =\n", o->name);
            break;
        }
        }
    }
}

void sh_opt_free(sh_cmd_spec *spec)
{
    for (sh_opt *o = spec->opts; o && o->name; o++) {
        if (o->type == SH_OPT_STR) {
            free(*(char **)o->target);
            *(char **)o->target = NULL;
        } else if (o->type == SH_OPT_LIST) {
            sh_strlist_clear((sh_strlist *)o->target);
        }
    }
    sh_strlist_clear(&spec->args);
}

int sh_opt_exit_code(const sh_cmd_spec *spec, int rc, const sh_err *e)
{
    if (rc == SH_OK)
        return -1;
    if (rc == SH_OPT_HANDLED)
        return SH_EXIT_OK;
    fprintf(stderr, "soundhash %s: %s\n", spec->name, sh_err_text(e));
    if (rc == SH_EUSAGE)
        fprintf(stderr, "(see `soundhash %s --help`)\n", spec->name);
    return rc == SH_EUSAGE ? SH_EXIT_USAGE : SH_EXIT_RUNTIME;
}

/* ---- --meta ----------------------------------------------------------------------------------- */

static int meta_push(sh_strlist *out, const char *k, size_t klen, const char *v, sh_err *e)
{
    if (out->n / 2 >= SH_OPT_META_MAX)
        return sh_err_set(e, SH_EUSAGE, "--meta: more than %d keys", SH_OPT_META_MAX);
    char *key = strndup(k, klen);
    int rc = key && !sh_strlist_push(out, key) && !sh_strlist_push(out, v) ? 0 : SH_ENOMEM;
    free(key);
    return rc ? sh_err_set(e, SH_ENOMEM, "out of memory") : 0;
}

/* One JSON object entry: scalar values only (metadata is a string map wherever it is stored). */
static int meta_json(const char *entry, sh_strlist *out, sh_err *e)
{
    json_error_t je;
    json_t *o = json_loads(entry, JSON_REJECT_DUPLICATES, &je);
    if (!o || !json_is_object(o)) {
        json_decref(o);
        return sh_err_set(e, SH_EUSAGE, "--meta '%.80s': not a JSON object (%s)", entry,
                          o ? "another JSON value" : je.text);
    }
    const char *k;
    json_t *v;
    int rc = 0;
    json_object_foreach(o, k, v)
    {
        if (rc)
            break;
        if (!*k) {
            rc = sh_err_set(e, SH_EUSAGE, "--meta: empty key in '%.80s'", entry);
        } else if (json_is_string(v)) {
            rc = meta_push(out, k, strlen(k), json_string_value(v), e);
        } else if (json_is_number(v) || json_is_boolean(v)) {
            char *text = json_dumps(v, JSON_ENCODE_ANY | JSON_COMPACT);
            rc = text ? meta_push(out, k, strlen(k), text, e) : sh_err_set(e, SH_ENOMEM, "out of memory");
            free(text);
        } else {
            rc = sh_err_set(e, SH_EUSAGE, "--meta: value of '%.64s' must be a string, number or "
                                          "boolean", k);
        }
    }
    json_decref(o);
    return rc;
}

int sh_opt_meta_pairs(const sh_strlist *in, sh_strlist *out, sh_err *e)
{
    for (size_t i = 0; in && i < in->n; i++) {
        const char *entry = in->v[i];
        if (strlen(entry) > SH_OPT_META_ENTRY_MAX)
            return sh_err_set(e, SH_EUSAGE, "--meta: an entry is over %d bytes",
                              SH_OPT_META_ENTRY_MAX);
        const char *s = entry;
        while (isspace((unsigned char)*s))
            s++;
        int rc;
        if (*s == '{') {
            rc = meta_json(s, out, e);
        } else {
            const char *eq = strchr(entry, '=');
            if (!eq || eq == entry)
                return sh_err_set(e, SH_EUSAGE, "--meta '%.80s': expected key=value or a JSON "
                                                "object", entry);
            rc = meta_push(out, entry, (size_t)(eq - entry), eq + 1, e);
        }
        if (rc)
            return rc;
    }
    return 0;
}

int sh_opt_usage_error(sh_err *e, const char *flag)
{
    char why[SH_ERR_MSG_MAX];
    snprintf(why, sizeof why, "%s", e ? sh_err_text(e) : "invalid");
    return sh_err_set(e, SH_EUSAGE, "%s: %s", flag, why);
}
