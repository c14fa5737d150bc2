/* soundhash — one binary, many subcommands. main() only dispatches; every subcommand parses its
 * own options (core/sh_opt.h) and returns its exit code. */
#include "sh_cmds.h"
#include "sh_opt.h"

#include <stdio.h>
#include <string.h>

typedef struct sh_cmd_entry {
    const char *name;
    int (*fn)(int argc, char **argv);
    const char *summary;
} sh_cmd_entry;

static const sh_cmd_entry *commands(size_t *n)
{
    static const sh_cmd_entry table[] = {
        {"fingerprint", sh_cmd_fingerprint, "print landmark fingerprints of audio files (JSON)"},
        {"index", sh_cmd_index, "add/delete tracks in a local shard index; stats"},
        {"match", sh_cmd_match, "identify audio clips against a local shard index"},
        {"broker", sh_cmd_broker, "run a local Kafka-protocol broker (librdkafka mock; dev/test)"},
        {"ingest", sh_cmd_ingest, "publish audio events: publish, delete, reindex"},
        {"db", sh_cmd_db, "primary PostgreSQL: start, stop, migrate"},
        {"worker", sh_cmd_worker, "consume audio events, fingerprint, write the primary"},
        {"replicator", sh_cmd_replicator, "stream index deltas from the primary to Kafka"},
        {"edge", sh_cmd_edge, "apply index deltas to a local shard and serve /v1/match"},
    };
    *n = sizeof table / sizeof table[0];
    return table;
}

static void usage(FILE *out)
{
    size_t n;
    const sh_cmd_entry *t = commands(&n);
    fprintf(out, "usage: soundhash <command> [options] [args]\n\ncommands:\n");
    for (size_t i = 0; i < n; i++) {
        if (t[i].fn)
            fprintf(out, "  %-12s %s\n", t[i].name, t[i].summary);
    }
    fprintf(out, "  %-12s %s\n  %-12s %s\n\n", "help", "this list", "version", "print the version");
    fprintf(out, "`soundhash <command> --help` describes a command's options. Exit codes: 0 success,\n"
                 "1 runtime error (message on stderr), 2 usage error.\n");
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        usage(stderr);
        return SH_EXIT_USAGE;
    }
    const char *name = argv[1];
    if (!strcmp(name, "help") || !strcmp(name, "--help") || !strcmp(name, "-h")) {
        usage(stdout);
        return SH_EXIT_OK;
    }
    if (!strcmp(name, "version") || !strcmp(name, "--version")) {
        printf("soundhash %s\n", SH_VERSION);
        return SH_EXIT_OK;
    }
    size_t n;
    const sh_cmd_entry *t = commands(&n);
    for (size_t i = 0; i < n; i++) {
        if (!strcmp(t[i].name, name) && t[i].fn)
            return t[i].fn(argc - 1, argv + 1);
    }
    fprintf(stderr, "soundhash: unknown command '%s' (see `soundhash help`)\n", name);
    return SH_EXIT_USAGE;
}
