/* soundhash — one binary, many subcommands. main() only dispatches; every subcommand parses its
 * own options (core/runtime/sh_opt.h) and returns its exit code.
 *
 *   soundhash help                 every command and subcommand, one line each
 *   soundhash help CMD [SUB]       that command's --help (same as `soundhash CMD [SUB] --help`)
 */
#include "sh_cmds.h"
#include "sh_opt.h"

#include <stdio.h>
#include <string.h>

typedef struct sh_cmd_entry {
    const char *name;
    int (*fn)(int argc, char **argv);
} sh_cmd_entry;

/* One line of `soundhash help` per (sub)command a user can run. */
typedef struct sh_help_line {
    const char *cmd;
    const char *sub; /* NULL: the command itself */
    const char *summary;
} sh_help_line;

static const sh_cmd_entry *commands(size_t *n)
{
    static const sh_cmd_entry table[] = {
        {"fingerprint", sh_cmd_fingerprint}, {"index", sh_cmd_index},
        {"match", sh_cmd_match},             {"broker", sh_cmd_broker},
        {"ingest", sh_cmd_ingest},           {"db", sh_cmd_db},
        {"worker", sh_cmd_worker},           {"dlq", sh_cmd_dlq},
        {"replicator", sh_cmd_replicator},   {"edge", sh_cmd_edge},
        {"verify", sh_cmd_verify},           {"status", sh_cmd_status},
    };
    *n = sizeof table / sizeof table[0];
    return table;
}

static const sh_help_line help_lines[] = {
    {"fingerprint", NULL, "print landmark fingerprints of audio files (JSON lines)"},
    {"index", "add", "fingerprint audio files into a local shard index (JSON lines)"},
    {"index", "delete", "delete tracks from a local shard index by id"},
    {"index", "stats", "counts and sizes of a local shard index (JSON)"},
    {"index", "compact", "repack a local shard index and shrink its file (JSON)"},
    {"match", NULL, "identify audio clips against a local shard index (JSON lines)"},
    {"broker", NULL, "run a local Kafka-protocol broker (librdkafka mock; dev/test)"},
    {"broker", "topics", "check (or --create) the SoundHash topics on a Kafka cluster"},
    {"ingest", "publish", "publish audio events for files, URLs or a manifest"},
    {"ingest", "delete", "publish delete events for track ids"},
    {"ingest", "reindex", "re-fingerprint tracks of the primary at a controlled rate"},
    {"db", "start", "start a private local PostgreSQL cluster (dev/test)"},
    {"db", "stop", "stop it"},
    {"db", "promote", "make a follower (db start --follow) the primary (takeover)"},
    {"db", "fence", "fence an old primary a takeover replaced"},
    {"db", "migrate", "create/upgrade the primary's schema (JSON)"},
    {"db", "status", "schema version, row counts, role and replay lag (JSON)"},
    {"worker", NULL, "consume audio events, fingerprint, write the primary"},
    {"worker", "rewind", "after a takeover: the group's offsets back to the recorded ones"},
    {"dlq", "show", "print the dead letters as JSON lines and exit"},
    {"dlq", "tail", "follow the dead letters as JSON lines until stopped"},
    {"replicator", NULL, "stream index deltas from the primary to Kafka"},
    {"replicator", "snapshot", "write one shard's snapshot from the primary to a file"},
    {"replicator", "prune", "delete change-log rows every shard's delta stream has passed"},
    {"edge", NULL, "apply index deltas to a local shard and serve /v1/match"},
    {"verify", NULL, "compare each edge shard's checksum with the primary's (JSON lines)"},
    {"status", NULL, "one table of a deployment: primary, consumer-group lag, nodes"},
};

static int (*command_fn(const char *name))(int, char **)
{
    size_t n;
    const sh_cmd_entry *t = commands(&n);
    for (size_t i = 0; i < n; i++) {
        if (!strcmp(t[i].name, name))
            return t[i].fn; /* NULL while the component is not built */
    }
    return NULL;
}

static void usage(FILE *out)
{
    fprintf(out, "usage: soundhash <command> [subcommand] [options] [args]\n\ncommands:\n");
    char name[64];
    for (size_t i = 0; i < sizeof help_lines / sizeof help_lines[0]; i++) {
        const sh_help_line *h = &help_lines[i];
        if (!command_fn(h->cmd))
            continue;
        snprintf(name, sizeof name, "%s%s%s", h->cmd, h->sub ? " " : "", h->sub ? h->sub : "");
        fprintf(out, "  %-20s %s\n", name, h->summary);
    }
    fprintf(out, "  %-20s %s\n  %-20s %s\n\n", "help [CMD [SUB]]", "this list, or a command's help",
            "version", "print the version");
    fprintf(out, "`soundhash help CMD [SUB]` or `soundhash CMD [SUB] --help` describes a command's\n"
                 "options. Exit codes: 0 success, 1 runtime error (message on stderr), 2 usage\n"
                 "error (bad or missing option, bad value, missing path).\n");
}

/* `soundhash help CMD [SUB]`: runs CMD [SUB] --help. */
static int help_for(int argc, char **argv)
{
    int (*fn)(int, char **) = command_fn(argv[0]);
    if (!fn) {
        fprintf(stderr, "soundhash help: unknown command '%s' (see `soundhash help`)\n", argv[0]);
        return SH_EXIT_USAGE;
    }
    char help[] = "--help";
    char *args[4] = {argv[0], argc > 1 ? argv[1] : help, argc > 1 ? help : NULL, NULL};
    return fn(argc > 1 ? 3 : 2, args);
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        usage(stderr);
        return SH_EXIT_USAGE;
    }
    const char *name = argv[1];
    if (!strcmp(name, "help") || !strcmp(name, "--help") || !strcmp(name, "-h")) {
        if (argc > 4) {
            fprintf(stderr, "soundhash help: expected CMD [SUB]\n");
            return SH_EXIT_USAGE;
        }
        if (argc > 2)
            return help_for(argc - 2, argv + 2);
        usage(stdout);
        return SH_EXIT_OK;
    }
    if (!strcmp(name, "version") || !strcmp(name, "--version")) {
        printf("soundhash %s\n", SH_VERSION);
        return SH_EXIT_OK;
    }
    int (*fn)(int, char **) = command_fn(name);
    if (fn)
        return fn(argc - 1, argv + 1);
    fprintf(stderr, "soundhash: unknown command '%s' (see `soundhash help`)\n", name);
    return SH_EXIT_USAGE;
}
