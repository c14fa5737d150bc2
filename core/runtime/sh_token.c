/* sh_token.c — bearer tokens from a file or the environment, checked in constant time. */
#include "sh_token.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

static int from_file(const char *file, const char *flag, char **out, sh_err *e)
{
    FILE *f = fopen(file, "r");
    if (!f)
        return sh_err_set(e, SH_EUSAGE, "%s %s: %s", flag, file, strerror(errno));
    char buf[SH_TOKEN_MAX + 1];
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = '\0';
    size_t line = 0;
    while (line < n && buf[line] != '\r' && buf[line] != '\n')
        line++;
    /* A NUL would silently cut the token short of what the operator wrote. */
    if (memchr(buf, '\0', line))
        return sh_err_set(e, SH_EUSAGE, "%s %s: the token holds a NUL byte", flag, file);
    buf[line] = '\0';
    if (!buf[0])
        return sh_err_set(e, SH_EUSAGE, "%s %s: empty", flag, file);
    if (strlen(buf) >= SH_TOKEN_MAX)
        return sh_err_set(e, SH_EUSAGE, "%s %s: the token is over %d bytes", flag, file,
                          SH_TOKEN_MAX - 1);
    *out = strdup(buf);
    return *out ? 0 : sh_err_set(e, SH_ENOMEM, "out of memory");
}

int sh_token_load(const char *file, const char *flag, const char *env, char **out, sh_err *e)
{
    *out = NULL;
    int rc;
    if (file && file[0]) {
        rc = from_file(file, flag, out, e);
    } else {
        const char *t = env ? getenv(env) : NULL;
        if (!t || !t[0])
            return 0;
        if (strlen(t) >= SH_TOKEN_MAX)
            return sh_err_set(e, SH_EUSAGE, "%s: over %d bytes", env, SH_TOKEN_MAX - 1);
        *out = strdup(t);
        rc = *out ? 0 : sh_err_set(e, SH_ENOMEM, "out of memory");
    }
    if (rc)
        return rc;
    /* The token goes into an HTTP header: a control character would inject header lines, and
     * a space at either end never matches (servers trim the header, "Bearer  t" skips it). */
    const char *why = NULL;
    for (const char *p = *out; *p && !why; p++)
        if ((unsigned char)*p < 0x20 || (unsigned char)*p == 0x7f)
            why = "holds a control character";
    size_t len = strlen(*out);
    if (!why && ((*out)[0] == ' ' || (*out)[len - 1] == ' '))
        why = "starts or ends with a space";
    if (why) {
        free(*out);
        *out = NULL;
        return sh_err_set(e, SH_EUSAGE, "%s: the token %s", file && file[0] ? flag : env, why);
    }
    return 0;
}

int sh_token_bearer_ok(const char *h, const char *token)
{
    /* The scheme is case-insensitive (RFC 9110 11.1): "bearer T" is the same credential. */
    if (!h || !token || strncasecmp(h, "Bearer ", 7) != 0)
        return 0;
    h += 7;
    while (*h == ' ')
        h++;
    /* Constant time in the credential's bytes: every byte of the token is compared. */
    size_t a = strlen(h), b = strlen(token);
    unsigned char diff = (unsigned char)(a != b);
    for (size_t i = 0; i < b; i++)
        diff |= (unsigned char)(token[i] ^ (i < a ? h[i] : 0));
    return diff == 0;
}
