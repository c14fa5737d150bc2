/* sh_opt.h — one configuration convention for every `soundhash` subcommand.
 *
 * A command describes its configuration as a table of sh_opt entries pointing into its own config
 * struct. sh_opt_parse() fills the struct with, in increasing precedence:
 *   defaults (sh_opt.def) < config file (--config F or SOUNDHASH_CONFIG; lines `key = value`)
 *   < environment (SOUNDHASH_<NAME>, '-' → '_', upper case) < command-line flags.
 * Flags: `--name value`, `--name=value`, `-c value` for entries with a short name, `--flag` /
 * `--no-flag` for booleans, `--` ends options. Built in: --help, --version, --print-config,
 * --config F, --log-level L.
 *
 * Secrets (SH_OPT_SECRET) are taken only from the environment or from a file named by the
 * `<name>-file` form (flag or env SOUNDHASH_<NAME>_FILE); never from argv or the config file, and
 * --print-config masks them. An option named "dsn" given on the command line or in the config file
 * that holds a password (sh_dsn_has_password) is accepted with one warning line saying how to pass
 * the password instead — every command that takes --dsn gets this check here.
 *
 * Exit codes (sh_opt_exit_code): every usage error — unknown flag, bad value, missing required
 * option, unreadable --config or secret file — is SH_EUSAGE and exit 2.
 *
 * Ownership: strings and lists stored into the targets are owned by the parser and released by
 * sh_opt_free(spec). Targets must be zero-initialised before parsing.
 */
#ifndef SH_OPT_H
#define SH_OPT_H

#include "sh_err.h"

#include <stdbool.h>
#include <stddef.h>

typedef enum sh_opt_type {
    SH_OPT_STR,    /* target: char **            */
    SH_OPT_INT,    /* target: long *             */
    SH_OPT_DOUBLE, /* target: double *           */
    SH_OPT_BOOL,   /* target: bool *             */
    SH_OPT_SIZE,   /* target: size_t *; accepts suffixes K, M, G (binary) */
    SH_OPT_LIST,   /* target: sh_strlist *; repeatable (e.g. -X key=value, --meta k=v) */
} sh_opt_type;

enum {
    SH_OPT_SECRET = 1u << 0,   /* env or file only; masked in --print-config */
    SH_OPT_REQUIRED = 1u << 1, /* parse fails with SH_EUSAGE when absent */
    SH_OPT_DSN = 1u << 2,      /* a libpq DSN (STR): its password is masked in --print-config and
                                * warned about when it comes from argv or a config file */
};

/* A growable list of owned strings. */
typedef struct sh_strlist {
    char **v;
    size_t n;
    size_t cap;
} sh_strlist;

/* Appends a copy of `s`; returns 0 or SH_ENOMEM. */
int sh_strlist_push(sh_strlist *l, const char *s);
void sh_strlist_clear(sh_strlist *l);

typedef struct sh_opt {
    const char *name; /* long flag without "--"; also the config-file key and env suffix */
    char short_name;  /* 0 or e.g. 'X' */
    sh_opt_type type;
    void *target;
    const char *def;  /* default as text, or NULL */
    const char *help; /* one line */
    unsigned flags;
    long min, max;    /* bounds for INT (ignored when min == max) */
} sh_opt;

typedef struct sh_cmd_spec {
    const char *name;    /* "worker", "ingest publish" */
    const char *usage;   /* "[options] FILE..." */
    const char *summary; /* one paragraph shown by --help */
    const char *examples; /* NULL or example command lines separated by '\n', shown by --help */
    sh_opt *opts;        /* terminated by an entry with name == NULL */
    sh_strlist args;     /* filled: positional arguments, in order */
} sh_cmd_spec;

/* Parse result codes besides SH_OK / negative errors. */
enum { SH_OPT_HANDLED = 1 }; /* --help/--version/--print-config were printed: exit 0 */

/* Parses argv (argv[0] is the subcommand name and is skipped). Returns SH_OK, SH_OPT_HANDLED, or
 * SH_EUSAGE / SH_EINVAL / SH_EIO with a message in `err`. */
int sh_opt_parse(sh_cmd_spec *spec, int argc, char **argv, sh_err *err);

/* Prints --help text to `out` (a FILE *). */
void sh_opt_usage(const sh_cmd_spec *spec, void *out);

/* Effective configuration as `name = value` lines (secrets masked). */
void sh_opt_print(const sh_cmd_spec *spec, void *out);

/* Frees every string/list the parser stored and the positional list; targets are zeroed. */
void sh_opt_free(sh_cmd_spec *spec);

/* True when the libpq connection string holds a password: a `password=` keyword (key/value form
 * or a URI query parameter) or a URI user-info `user:pw@`. */
bool sh_dsn_has_password(const char *dsn);

/* Copies `text` into `out` (`cap` bytes, always NUL-terminated when cap > 0, truncated to fit)
 * with every password the connection string `dsn` holds (sh_dsn_has_password's three forms, as
 * written in the DSN) replaced by "***". For messages that may quote the DSN (libpq echoes a
 * malformed URI whole) and for --print-config. `dsn` may be NULL (a plain copy). */
void sh_dsn_redact(const char *dsn, const char *text, char *out, size_t cap);

/* True when the librdkafka property of `kv` ("key=value" or "key") holds a secret:
 * sasl.password, ssl.key.password, ssl.keystore.password, ssl.key.pem,
 * sasl.oauthbearer.client.secret. Such a -X on the command line or in a config file works but is
 * warned about (event=secret_on_command_line); --print-config shows it as "key=(set, hidden)".
 * The secret belongs in SOUNDHASH_KAFKA_<KEY> or a file named by SOUNDHASH_KAFKA_<KEY>_FILE
 * (key upper-cased, '.' → '_', e.g. SOUNDHASH_KAFKA_SASL_PASSWORD_FILE); see sh_kafka_conf_new. */
bool sh_kafka_prop_is_secret(const char *kv);

/* The secret properties sh_kafka_prop_is_secret knows, NULL-terminated (static storage). */
const char *const *sh_kafka_secret_props(void);

/* Reads a secret from the file `path`: the whole content with trailing newlines stripped, at most
 * 64 KiB. On success *out is a malloc'd string the caller frees (after wiping it). Errors:
 * SH_EUSAGE (cannot open, over the cap; the message names the path), SH_ENOMEM. */
int sh_secret_file_read(const char *path, char **out, sh_err *e);

/* The --meta convention of every command that records metadata (`ingest publish`, `index add`):
 * each entry of `in` is `key=value` or a JSON object of scalar values ({"k":"v","n":3}; numbers and
 * booleans are kept as their JSON text). Appends key, value, key, value... to `out` in order (a
 * later key overrides an earlier one where the metadata is stored). Errors: SH_EUSAGE naming
 * --meta and the entry (no '=', empty key, bad JSON, a nested or null value, over
 * SH_OPT_META_MAX pairs or an entry over SH_OPT_META_ENTRY_MAX bytes); SH_ENOMEM. */
enum { SH_OPT_META_MAX = 1024, SH_OPT_META_ENTRY_MAX = 64 << 10 };
int sh_opt_meta_pairs(const sh_strlist *in, sh_strlist *out, sh_err *e);

/* Parses a size such as "900K", "5M", "1073741824"; returns 0 or SH_EINVAL. */
int sh_parse_size(const char *s, size_t *out);
/* Parses a base-10 long strictly (whole string, range-checked); returns 0 or SH_EINVAL. */
int sh_parse_long(const char *s, long *out);
int sh_parse_double(const char *s, double *out);

/* Standard exit codes of every subcommand. */
enum { SH_EXIT_OK = 0, SH_EXIT_RUNTIME = 1, SH_EXIT_USAGE = 2 };

/* Turns the error in `e` into a usage error naming `flag` ("--dsn: <the message>"); returns
 * SH_EUSAGE. For checks a command makes after parsing (a malformed DSN, address or -X). */
int sh_opt_usage_error(sh_err *e, const char *flag);

/* Maps the result of sh_opt_parse to a process exit code after printing the error (if any) as
 * "soundhash <cmd>: <message>" on stderr. Returns -1 when parsing succeeded and the command should
 * run. */
int sh_opt_exit_code(const sh_cmd_spec *spec, int rc, const sh_err *err);

#define SH_VERSION "0.1.0"

#endif
