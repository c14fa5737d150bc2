/* sh_file.h — small file helpers shared by the components (broker, ingest, ...).
 *
 * Who uses it: `soundhash broker --bootstrap-file` (tests poll for the file and must never read a
 * half-written list) and `soundhash ingest reindex` (its checkpoint must survive a crash as the old
 * or the new state, never an empty or torn file).
 */
#ifndef SH_FILE_H
#define SH_FILE_H

#include "sh_err.h"

#include <stddef.h>

/* Replaces the file `path` with the `len` bytes at `data`, atomically: writes a temporary file
 * next to it ("<path>.tmp.<pid>", mode 0644), fsyncs it, renames it over `path` and fsyncs the
 * directory, so that a reader or a crash sees either the previous content or all of the new one.
 * Returns 0, SH_EINVAL (path longer than PATH_MAX), SH_EIO (the message names the file and the
 * system's reason). On failure the temporary file is removed and `path` is left as it was. */
int sh_file_write_atomic(const char *path, const void *data, size_t len, sh_err *e);

/* Checks, before any work starts, that sh_file_write_atomic(path) can create its files: the
 * directory holding `path` exists and is writable. Lets a command reject a bad path option as a
 * usage error. Returns 0, or SH_EUSAGE with "<path>: directory <dir>: <reason>". */
int sh_file_check_writable_dir(const char *path, sh_err *e);

#endif
