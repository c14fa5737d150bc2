#include "sh_err.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

const char *sh_strerror(int code)
{
    switch (code) {
#define SH_ERR_TEXT(name, value, text)                                                             \
    case value:                                                                                    \
        return text;
        SH_ERR_TABLE(SH_ERR_TEXT)
#undef SH_ERR_TEXT
    }
    return "unknown error";
}

const char *sh_err_name(int code)
{
    switch (code) {
#define SH_ERR_NAME(name, value, text)                                                             \
    case value:                                                                                    \
        return #name;
        SH_ERR_TABLE(SH_ERR_NAME)
#undef SH_ERR_NAME
    }
    return "SH_EUNKNOWN";
}

int sh_err_set(sh_err *e, int code, const char *fmt, ...)
{
    if (!e)
        return code;
    e->code = code;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(e->msg, sizeof e->msg, fmt, ap);
    va_end(ap);
    return code;
}

int sh_err_wrap(sh_err *e, int code, const char *fmt, ...)
{
    if (!e)
        return code;
    char prefix[SH_ERR_MSG_MAX];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(prefix, sizeof prefix, fmt, ap);
    va_end(ap);
    char old[SH_ERR_MSG_MAX];
    memcpy(old, e->msg, sizeof old);
    /* Context first, then the original message; both bounded so the result always fits. */
    const char *tail = old[0] ? old : sh_strerror(code);
    snprintf(e->msg, sizeof e->msg, "%.200s: %.300s", prefix, tail);
    e->code = code;
    return code;
}

const char *sh_err_text(const sh_err *e)
{
    if (!e)
        return "";
    return e->msg[0] ? e->msg : sh_strerror(e->code);
}

void sh_err_clear(sh_err *e)
{
    if (!e)
        return;
    e->code = SH_OK;
    e->msg[0] = '\0';
}
