/* sh_cmds.h — entry points of the `soundhash` subcommands. Each takes the argv that starts at the
 * subcommand name and returns the process exit code: 0 success, 1 runtime error, 2 usage error.
 * Each component folder defines its own; cli/main.c only dispatches. This is the dispatcher's
 * contract with every component, so it lives in core (components include core, never cli/).
 */
#ifndef SH_CMDS_H
#define SH_CMDS_H

/* Declared weak so the dispatcher links while a component is being built; every one is defined in
 * a complete build (tests check `soundhash help` lists no missing command). */
#define SH_CMD(fn) int fn(int argc, char **argv) __attribute__((weak))

SH_CMD(sh_cmd_fingerprint); /* cli/cmd_fingerprint.c */
SH_CMD(sh_cmd_index);       /* cli/cmd_index.c */
SH_CMD(sh_cmd_match);       /* cli/cmd_match.c */
SH_CMD(sh_cmd_broker);      /* broker/ */
SH_CMD(sh_cmd_ingest);      /* ingest/ */
SH_CMD(sh_cmd_db);          /* workers/ (the primary's schema belongs to the workers) */
SH_CMD(sh_cmd_worker);      /* workers/ */
SH_CMD(sh_cmd_dlq);         /* cli/cmd_dlq.c (reads the dead-letter topic) */
SH_CMD(sh_cmd_replicator);  /* replicator/ */
SH_CMD(sh_cmd_edge);        /* edge/ */
SH_CMD(sh_cmd_verify);      /* replicator/cmd_verify.c (primary vs edges) */
SH_CMD(sh_cmd_status);      /* cli/cmd_status.c (one view of a deployment) */

#undef SH_CMD
#endif
