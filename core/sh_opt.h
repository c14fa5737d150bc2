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
 * --print-config masks them.
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

/* Parses a size such as "900K", "5M", "1073741824"; returns 0 or SH_EINVAL. */
int sh_parse_size(const char *s, size_t *out);
/* Parses a base-10 long strictly (whole string, range-checked); returns 0 or SH_EINVAL. */
int sh_parse_long(const char *s, long *out);
int sh_parse_double(const char *s, double *out);

/* Standard exit codes of every subcommand. */
enum { SH_EXIT_OK = 0, SH_EXIT_RUNTIME = 1, SH_EXIT_USAGE = 2 };

/* Maps the result of sh_opt_parse to a process exit code after printing the error (if any) as
 * "soundhash <cmd>: <message>" on stderr. Returns -1 when parsing succeeded and the command should
 * run. */
int sh_opt_exit_code(const sh_cmd_spec *spec, int rc, const sh_err *err);

#define SH_VERSION "0.1.0"

#endif
