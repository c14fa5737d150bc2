/* sh_vec.c — capped growable arrays (see sh_vec.h). */
#include "sh_vec.h"

#include <stdlib.h>
#include <string.h>

enum { SH_VEC_FIRST_BYTES = 4096, SH_VEC_FIRST_MIN = 16 };

int sh_vec_reserve_elem(void *pp, size_t *cap, size_t elem, size_t need, size_t max)
{
    if (elem == 0)
        return SH_EINVAL;
    if (max > SIZE_MAX / elem)
        max = SIZE_MAX / elem;
    if (need <= *cap)
        return 0;
    if (need > max)
        return SH_ETOOBIG;
    size_t nc = *cap;
    if (nc == 0) {
        nc = SH_VEC_FIRST_BYTES / elem;
        nc = nc < SH_VEC_FIRST_MIN ? SH_VEC_FIRST_MIN : nc;
    }
    while (nc < need)
        nc = nc > max / 2 ? max : nc * 2;
    if (nc > max)
        nc = max;
    /* The array pointer is read and written as bytes: pp points to a T *, not to a void *. */
    void *old;
    memcpy(&old, pp, sizeof old);
    void *nv = realloc(old, nc * elem);
    if (!nv)
        return SH_ENOMEM;
    memcpy(pp, &nv, sizeof nv);
    *cap = nc;
    return 0;
}
