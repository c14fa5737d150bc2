/* sh_vec.h — growable arrays with a hard cap: one helper instead of a hand-rolled realloc loop per
 * array.
 *
 * A vector stays the caller's own pointer and capacity (T *v; size_t n, cap; zeroed to start, the
 * caller counts n and frees v). Before writing past the end, reserve room:
 *
 *     int rc = sh_vec_reserve(&v, &cap, n + 1, MAX_ITEMS);   // SH_ETOOBIG past MAX_ITEMS
 *     if (rc)
 *         return rc;
 *     v[n++] = item;
 *
 * Growth is geometric (the capacity doubles; the first allocation holds ~4 KiB and at least 16
 * elements) and never exceeds `max`, so an array fed from outside has a hard cap without the
 * caller checking sizes twice. Element counts are checked against SIZE_MAX / element size, so a
 * size computation cannot overflow.
 */
#ifndef SH_VEC_H
#define SH_VEC_H

#include "sh_err.h"

#include <stddef.h>
#include <stdint.h>

/* `max` for an array with no cap of its own (then only size_t overflow bounds it). */
#define SH_VEC_NOCAP SIZE_MAX

/* Ensures *cap >= need for the array *pp of `elem`-byte elements (pp: the address of the array
 * pointer, e.g. &b->items; *pp may be NULL with *cap 0). On success *pp and *cap may have changed
 * (realloc: the contents are kept; pointers into the old array are invalid). Errors, with *pp
 * and *cap unchanged: SH_ETOOBIG when need > max (or need elements would overflow size_t),
 * SH_ENOMEM. Prefer the sh_vec_reserve macro, which supplies `elem`. */
int sh_vec_reserve_elem(void *pp, size_t *cap, size_t elem, size_t need, size_t max);

#define sh_vec_reserve(pp, cap, need, max)                                                         \
    sh_vec_reserve_elem((pp), (cap), sizeof **(pp), (need), (max))

#endif
