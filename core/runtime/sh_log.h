/* sh_log.h — one line per event to stderr, logfmt: `ts=... level=info event=track_written k=v`.
 *
 * The level is process-wide and set once by main() before threads start (sh_log_set_level); it is
 * an atomic so that reading it from worker threads is safe. Nothing else is global.
 */
#ifndef SH_LOG_H
#define SH_LOG_H

enum sh_log_level { SH_LOG_DEBUG = 0, SH_LOG_INFO = 1, SH_LOG_WARN = 2, SH_LOG_ERROR = 3, SH_LOG_OFF = 4 };

/* Parses "debug"/"info"/"warn"/"error"/"off"; returns 0 or SH_EINVAL. */
int sh_log_level_parse(const char *s, int *out);
void sh_log_set_level(int level);
int sh_log_enabled(int level);

/* Writes `ts=<iso8601> level=<lvl> event=<event> <fmt...>\n` atomically (one write(2)).
 * `fmt` carries the remaining key=value pairs. Every value that is not a number or a fixed word
 * must go through sh_log_q / SH_Q (never `k=\"%s\"`): that is what keeps each line valid logfmt. */
void sh_log(int level, const char *event, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

/* Quotes a value for logfmt into `buf`: always a double-quoted string with `"` and `\` escaped as
 * `\"` and `\\` and control bytes as `?`, so spaces, `=` and quotes inside a value can never split
 * or end it. Always NUL-terminated; truncated to `len` (never inside an escape). Returns buf, or ""
 * when len < 3. NULL quotes as "". */
const char *sh_log_q(char *buf, unsigned len, const char *value);

/* sh_log_q into a temporary buffer that lives until the end of the enclosing block — for
 * arguments: SH_WARN("x", "path=%s", SH_Q(path)). Values longer than SH_LOG_Q_MAX are cut. */
enum { SH_LOG_Q_MAX = 512 };
#define SH_Q(value) sh_log_q((char[SH_LOG_Q_MAX]){0}, SH_LOG_Q_MAX, (value))

#define SH_DEBUG(ev, ...) sh_log(SH_LOG_DEBUG, ev, __VA_ARGS__)
#define SH_INFO(ev, ...) sh_log(SH_LOG_INFO, ev, __VA_ARGS__)
#define SH_WARN(ev, ...) sh_log(SH_LOG_WARN, ev, __VA_ARGS__)
#define SH_ERROR(ev, ...) sh_log(SH_LOG_ERROR, ev, __VA_ARGS__)

#endif
