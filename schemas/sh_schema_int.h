/* sh_schema_int.h — helpers shared by the record codecs of schemas/ (internal, not installed).
 *
 * Text rules, Avro generic-value accessors that map fields by NAME (so any backward-compatible
 * writer schema decodes), and the Confluent framing around them.
 */
#ifndef SH_SCHEMA_INT_H
#define SH_SCHEMA_INT_H

#include "sh_schema.h"

#include <avro.h>

/* ---- text rules ------------------------------------------------------------------------------ */
enum {
    SH_TXT_NONEMPTY = 1u << 0, /* at least one byte */
    SH_TXT_NOCTRL = 1u << 1,   /* no bytes < 0x20 nor 0x7f */
};

/* Checks `n` bytes of text: no NUL, valid UTF-8, length <= max, and `rules`. Violations are
 * SH_EINVAL with a message naming `field`; `toobig` (SH_EINVAL or SH_ETOOBIG) is the code for
 * length over `max`. */
int sh_txt_check(const char *field, const char *s, size_t n, size_t max, unsigned rules,
                 int toobig, sh_err *e);

/* Same for a NUL-terminated string stored in a char array of `cap` bytes (max = cap - 1). */
int sh_txt_check_array(const char *field, const char *s, size_t cap, unsigned rules, sh_err *e);

/* Copies `n` bytes into a char array of `cap` bytes (NUL-terminated). SH_EINVAL when it does not
 * fit. */
int sh_txt_copy(const char *field, char *dst, size_t cap, const char *s, size_t n, sh_err *e);

/* 1 when s[0..n) is well-formed UTF-8 (no overlongs, surrogates or code points > U+10FFFF). */
int sh_utf8_valid(const char *s, size_t n);

/* Resolves NULL to the defaults and clamps to the hard ceilings. */
void sh_limits_resolve(const sh_schema_limits *in, sh_schema_limits *out);

/* ---- reading a decoded generic record by field name ------------------------------------------ */
enum {
    SH_AV_OPTIONAL = 1u << 0, /* the writer may lack the field: reported as absent */
    SH_AV_NULLABLE = 1u << 1, /* the value may be null (a union with "null"): reported as absent */
};

/* Each getter returns 0 (value set, *present = 1), 0 with *present = 0 (absent per flags), or
 * SH_ESCHEMA (missing required field, null where not allowed, wrong type). `present` may be NULL
 * when neither flag is given. Unions are unwrapped to their current branch. */
int sh_av_get_str(const avro_value_t *rec, const char *name, unsigned flags, const char **s,
                  size_t *n, int *present, sh_err *e);
int sh_av_get_bytes(const avro_value_t *rec, const char *name, unsigned flags,
                    const uint8_t **p, size_t *n, int *present, sh_err *e);
int sh_av_get_long(const avro_value_t *rec, const char *name, unsigned flags, int64_t *v,
                   int *present, sh_err *e);
int sh_av_get_int(const avro_value_t *rec, const char *name, unsigned flags, int32_t *v,
                  int *present, sh_err *e);
/* The enum's symbol name (schema order may differ between versions, names may not). */
int sh_av_get_enum(const avro_value_t *rec, const char *name, unsigned flags, const char **sym,
                   int *present, sh_err *e);
int sh_av_get_fixed(const avro_value_t *rec, const char *name, unsigned flags, size_t size,
                    const uint8_t **p, int *present, sh_err *e);
/* The field's value, unwrapped from a union; *present = 0 when null (if allowed) or absent. */
int sh_av_get_value(const avro_value_t *rec, const char *name, unsigned flags, avro_value_t *out,
                    int *present, sh_err *e);
/* Copies a string field into a char array of `cap` bytes; absent → "". */
int sh_av_copy_str(const avro_value_t *rec, const char *name, unsigned flags, char *dst,
                   size_t cap, sh_err *e);
/* Copies a bytes field into a malloc()ed buffer (*out NULL when empty); SH_ETOOBIG over max. */
int sh_av_dup_bytes(const avro_value_t *rec, const char *name, unsigned flags, size_t max,
                    uint8_t **out, size_t *n, sh_err *e);

/* ---- writing a generic record of our current schema ----------------------------------------- */
/* Each setter finds field `name` (choosing the union branch of the needed type) and sets it.
 * Errors: SH_EAVRO (schema mismatch, a defect) or SH_ENOMEM. */
int sh_av_set_null(avro_value_t *rec, const char *name, sh_err *e);
int sh_av_set_str(avro_value_t *rec, const char *name, const char *s, sh_err *e);
/* Sets a string, or null when s is NULL or "" (for ["null","string"] fields). */
int sh_av_set_opt_str(avro_value_t *rec, const char *name, const char *s, sh_err *e);
/* Without copying: `p` must stay valid until the record is written. */
int sh_av_set_bytes(avro_value_t *rec, const char *name, const uint8_t *p, size_t n, sh_err *e);
int sh_av_set_long(avro_value_t *rec, const char *name, int64_t v, sh_err *e);
int sh_av_set_int(avro_value_t *rec, const char *name, int32_t v, sh_err *e);
int sh_av_set_enum(avro_value_t *rec, const char *name, const char *sym, sh_err *e);
int sh_av_set_fixed(avro_value_t *rec, const char *name, const uint8_t *p, size_t n, sh_err *e);
/* Selects the union branch that is a record named `record_name` (or the field itself when it is
 * that record) and returns it in *out for filling. */
int sh_av_set_record(avro_value_t *rec, const char *name, const char *record_name,
                     avro_value_t *out, sh_err *e);
/* Returns the map value of a map field, for sh_av_map_put. */
int sh_av_field_map(avro_value_t *rec, const char *name, avro_value_t *out, sh_err *e);
int sh_av_map_put(avro_value_t *map, const char *key, const char *value, sh_err *e);

/* ---- framing ---------------------------------------------------------------------------------- */
typedef int (*sh_fill_fn)(avro_value_t *rec, const void *obj, sh_err *e);
typedef int (*sh_map_fn)(const avro_value_t *rec, void *obj, const sh_schema_limits *lim,
                         sh_err *e);

/* Builds a record of the registry's current schema of `kind` with `fill`, and frames it. */
int sh_frame_encode(sh_registry *reg, sh_schema_kind kind, sh_fill_fn fill, const void *obj,
                    uint8_t **out, size_t *len, sh_err *e);

/* Checks the frame, looks up the writer schema, pre-checks the body (sh_avro_check), reads it
 * with avro-c and calls `map` to fill `obj`. */
int sh_frame_decode(const uint8_t *buf, size_t len, sh_registry *reg, sh_schema_kind kind,
                    size_t container_max, sh_map_fn map, void *obj, const sh_schema_limits *lim,
                    sh_err *e);

#endif
