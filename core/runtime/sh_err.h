/* sh_err.h — the one error convention of SoundHash.
 *
 * Every function that can fail returns int: 0 on success or a negative SH_E* code from the table
 * below. Functions that can say more take an optional `sh_err *` as their last parameter and fill
 * it with a human-readable message (NULL is accepted: then only the code is returned).
 * Errors of librdkafka, libpq, LMDB, zstd and avro-c are translated to these codes at the boundary;
 * their own text goes into the message.
 */
#ifndef SH_ERR_H
#define SH_ERR_H

#include <stddef.h>

/* X(name, value, short text). Values are stable: they appear in logs and dead-letter records. */
#define SH_ERR_TABLE(X)                                                                            \
    X(SH_OK, 0, "success")                                                                         \
    X(SH_EINVAL, -1, "invalid argument")                                                           \
    X(SH_ENOMEM, -2, "out of memory")                                                              \
    X(SH_EIO, -3, "input/output error")                                                            \
    X(SH_EUSAGE, -4, "usage error")                                                                \
    X(SH_ENOTFOUND, -5, "not found")                                                               \
    X(SH_EEXIST, -6, "already exists")                                                             \
    X(SH_ETOOBIG, -7, "input over size limit")                                                     \
    X(SH_ETOOLONG, -8, "audio over duration limit")                                                \
    X(SH_ETOOSHORT, -9, "audio too short")                                                         \
    X(SH_EDECODE, -10, "cannot decode audio")                                                      \
    X(SH_EFORMAT, -11, "malformed input")                                                          \
    X(SH_EUNSUPPORTED, -12, "unsupported")                                                         \
    X(SH_EPATH, -13, "path outside media root")                                                    \
    X(SH_ECHECKSUM, -14, "checksum mismatch")                                                      \
    X(SH_ESCHEMA, -15, "unknown or incompatible schema")                                           \
    X(SH_EAVRO, -16, "avro error")                                                                 \
    X(SH_EKAFKA, -17, "kafka error")                                                               \
    X(SH_EDB, -18, "database error")                                                               \
    X(SH_ELMDB, -19, "index store error")                                                          \
    X(SH_EZSTD, -20, "compression error")                                                          \
    X(SH_EHTTP, -21, "http error")                                                                 \
    X(SH_ETIMEOUT, -22, "timed out")                                                               \
    X(SH_ETRANSIENT, -23, "transient failure, retry later")                                        \
    X(SH_ESTALE, -24, "stale version")                                                             \
    X(SH_EGAP, -25, "sequence gap")                                                                \
    X(SH_ECANCELED, -26, "canceled")                                                               \
    X(SH_EINTERNAL, -27, "internal error")

enum sh_errcode {
#define SH_ERR_ENUM(name, value, text) name = value,
    SH_ERR_TABLE(SH_ERR_ENUM)
#undef SH_ERR_ENUM
};

#define SH_ERR_MSG_MAX 512

/* A code plus a message. Caller-owned (usually on the stack); no cleanup needed. */
typedef struct sh_err {
    int code;
    char msg[SH_ERR_MSG_MAX];
} sh_err;

/* Short text for a code ("invalid argument"); never NULL, "unknown error" for unknown codes. */
const char *sh_strerror(int code);

/* Symbolic name for a code ("SH_EINVAL"); never NULL. */
const char *sh_err_name(int code);

/* Fills `e` (if non-NULL) with `code` and a printf-formatted message; returns `code`, so that
 * `return sh_err_set(e, SH_EINVAL, "bad rate %d", r);` reads naturally. */
int sh_err_set(sh_err *e, int code, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

/* Prepends context to an existing message: "ctx: old message". Returns e->code (or `code` if e is
 * NULL). */
int sh_err_wrap(sh_err *e, int code, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

/* Message for humans: e->msg if set, else sh_strerror(e->code). */
const char *sh_err_text(const sh_err *e);

/* Resets to SH_OK with an empty message. */
void sh_err_clear(sh_err *e);

#endif
