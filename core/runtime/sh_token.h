/* sh_token.h — bearer tokens: loading one from a file or the environment (never from argv), and
 * checking an "Authorization" header against it in constant time. Used by the edge (its API routes,
 * the token it sends upstream and to the snapshot source) and the replicator (its snapshots).
 */
#ifndef SH_TOKEN_H
#define SH_TOKEN_H

#include "sh_err.h"

#define SH_TOKEN_MAX 4096 /* bytes, with the terminating NUL */

/* Loads a token into *out (malloc'ed, caller frees): the first line of `file` when file is
 * non-empty (`flag` names it in errors), else the environment variable `env`. *out stays NULL
 * when neither is set. A token travels in an HTTP header, so a control character, a NUL and a
 * space at either end are refused. Errors: SH_EUSAGE (unreadable or empty file, over
 * SH_TOKEN_MAX - 1 bytes, those characters), SH_ENOMEM. */
int sh_token_load(const char *file, const char *flag, const char *env, char **out, sh_err *e);

/* 1 when the "Authorization" header value `h` (NULL: absent) is "Bearer <token>" (scheme
 * case-insensitive, spaces after it skipped); every byte of `token` is compared whatever the
 * header holds, so the time taken does not tell how much of a guess was right. */
int sh_token_bearer_ok(const char *h, const char *token);

#endif
