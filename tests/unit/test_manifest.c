/* Unit tests for ingest/manifest: both formats, every malformed line reported with its number. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include "../../ingest/manifest.h"
#include "sh_schema.h"

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int parse(const char *text, ingest_manifest *m)
{
    memset(m, 0, sizeof *m);
    return ingest_manifest_parse(text, strlen(text), m, NULL);
}

static bool has_error(const ingest_manifest *m, const char *needle)
{
    for (size_t i = 0; i < m->errors.n; i++) {
        if (strstr(m->errors.v[i], needle))
            return true;
    }
    return false;
}

static void test_csv_good(void **state)
{
    (void)state;
    ingest_manifest m;
    const char *text = "\xEF\xBB\xBFtenant,uri,track_id,metadata\r\n"
                       "acme,file:///srv/a.ogg,t1,\"{\"\"title\"\":\"\"A, b\"\"}\"\r\n"
                       "\n"
                       ",https://example.com/b.flac,t2,\n";
    assert_int_equal(parse(text, &m), 0);
    assert_int_equal(m.n, 2);
    assert_int_equal(m.bad_lines, 0);
    assert_string_equal(m.rows[0].track_id, "t1");
    assert_string_equal(m.rows[0].uri, "file:///srv/a.ogg");
    assert_string_equal(m.rows[0].tenant, "acme");
    assert_int_equal(m.rows[0].line, 2);
    assert_int_equal(m.rows[0].n_meta, 1);
    assert_string_equal(m.rows[0].meta[0], "title");
    assert_string_equal(m.rows[0].meta[1], "A, b");
    assert_null(m.rows[1].tenant); /* empty: the command's --tenant */
    assert_int_equal(m.rows[1].n_meta, 0);
    assert_int_equal(m.rows[1].line, 4);
    ingest_manifest_free(&m);
}

static void test_jsonl_good(void **state)
{
    (void)state;
    ingest_manifest m;
    const char *text = "{\"track_id\":\"t1\",\"uri\":\"u1\",\"metadata\":{\"a\":\"1\",\"b\":\"2\"}}\n"
                       "  {\"uri\":\"u2\",\"track_id\":\"t2\",\"tenant\":\"x\"}";
    assert_int_equal(parse(text, &m), 0);
    assert_int_equal(m.n, 2);
    assert_int_equal(m.rows[0].n_meta, 2);
    assert_string_equal(m.rows[1].tenant, "x");
    assert_int_equal(m.rows[1].line, 2);
    ingest_manifest_free(&m);
}

static void test_csv_every_bad_line_reported(void **state)
{
    (void)state;
    ingest_manifest m;
    char longid[300];
    memset(longid, 'x', 257);
    longid[257] = '\0';
    char text[1024];
    snprintf(text, sizeof text,
             "track_id,uri\n"
             "ok1,u\n"          /* 2: good */
             "t,\"open\n"       /* 3: unterminated quote */
             "t,a\"b\n"         /* 4: quote inside unquoted field */
             ",u\n"             /* 5: empty track id */
             "t,u,extra\n"      /* 6: too many fields */
             "%s,u\n"           /* 7: track id over 256 bytes */
             "t\x01z,u\n"       /* 8: control character */
             "t,\n"             /* 9: empty uri */
             "ok2,u\n",         /* 10: good */
             longid);
    assert_int_equal(parse(text, &m), SH_EFORMAT);
    assert_int_equal(m.bad_lines, 7);
    assert_int_equal(m.n, 2); /* the good rows are parsed, but the caller publishes nothing */
    assert_true(has_error(&m, "line 3: unterminated quoted field"));
    assert_true(has_error(&m, "line 4: quote inside an unquoted field"));
    assert_true(has_error(&m, "line 5: empty track id"));
    assert_true(has_error(&m, "line 6: 3 fields, the header has 2"));
    assert_true(has_error(&m, "line 7: track id is 257 bytes"));
    assert_true(has_error(&m, "line 8: track id contains control character 0x"));
    assert_true(has_error(&m, "line 9: empty uri"));
    ingest_manifest_free(&m);
}

static void test_csv_bad_header(void **state)
{
    (void)state;
    ingest_manifest m;
    assert_int_equal(parse("track_id,path\nt,u\n", &m), SH_EFORMAT);
    assert_true(has_error(&m, "line 1: unknown column 'path'"));
    ingest_manifest_free(&m);
    assert_int_equal(parse("track_id,uri,track_id\n", &m), SH_EFORMAT);
    assert_true(has_error(&m, "appears twice"));
    ingest_manifest_free(&m);
    assert_int_equal(parse("tenant,uri\n", &m), SH_EFORMAT);
    assert_true(has_error(&m, "must name the columns track_id and uri"));
    ingest_manifest_free(&m);
    /* A header alone is an empty, valid manifest. */
    assert_int_equal(parse("track_id,uri\n", &m), 0);
    assert_int_equal(m.n, 0);
    ingest_manifest_free(&m);
}

static void test_jsonl_bad_lines(void **state)
{
    (void)state;
    ingest_manifest m;
    const char *text = "{\"track_id\":\"t1\",\"uri\":\"u\",\"bogus\":1}\n"  /* 1 */
                       "{\"track_id\":5,\"uri\":\"u\"}\n"                   /* 2 */
                       "[1]\n"                                             /* 3 */
                       "{\"uri\":\"u\"}\n"                                 /* 4 */
                       "{\"track_id\":\"t\",\"uri\":\"u\",\"metadata\":{\"k\":1}}\n" /* 5 */
                       "{nope\n"                                           /* 6 */
                       "{\"track_id\":\"t\",\"track_id\":\"u\",\"uri\":\"u\"}\n" /* 7 */
                       "{\"track_id\":\"good\",\"uri\":\"u\"}\n";          /* 8 */
    assert_int_equal(parse(text, &m), SH_EFORMAT);
    assert_int_equal(m.bad_lines, 7);
    assert_int_equal(m.n, 1);
    assert_true(has_error(&m, "line 1: unknown key 'bogus'"));
    assert_true(has_error(&m, "line 2: 'track_id' must be a string"));
    assert_true(has_error(&m, "line 3: expected a JSON object"));
    assert_true(has_error(&m, "line 4: missing track_id"));
    assert_true(has_error(&m, "line 5: metadata value of 'k' is not a string"));
    assert_true(has_error(&m, "line 6: invalid JSON"));
    assert_true(has_error(&m, "line 7: invalid JSON")); /* duplicate key */
    ingest_manifest_free(&m);
    /* Messages quote the input; control characters in it never reach the terminal. */
    text = "{\"track_id\":\"t\",\"uri\":\"u\",\"k\\u001b[2J\\n\":1}\n";
    assert_int_equal(parse(text, &m), SH_EFORMAT);
    assert_true(has_error(&m, "line 1: unknown key 'k?[2J?'"));
    ingest_manifest_free(&m);
}

static void test_caps(void **state)
{
    (void)state;
    ingest_manifest m;
    /* 65 metadata entries: over the schema's 64. */
    size_t cap = 4096;
    char *text = malloc(cap);
    assert_non_null(text);
    size_t o = (size_t)snprintf(text, cap, "{\"track_id\":\"t\",\"uri\":\"u\",\"metadata\":{");
    for (int i = 0; i < 65; i++)
        o += (size_t)snprintf(text + o, cap - o, "%s\"k%d\":\"v\"", i ? "," : "", i);
    snprintf(text + o, cap - o, "}}\n");
    assert_int_equal(parse(text, &m), SH_EFORMAT);
    assert_true(has_error(&m, "65 entries"));
    ingest_manifest_free(&m);
    free(text);

    /* A line over 64 KiB is refused without parsing it. */
    size_t big = INGEST_LINE_MAX + 10;
    text = malloc(big + 1);
    assert_non_null(text);
    memset(text, 'a', big);
    text[big] = '\0';
    assert_int_equal(parse(text, &m), SH_EFORMAT);
    assert_true(has_error(&m, "line 1: line is"));
    ingest_manifest_free(&m);
    free(text);

    /* NUL bytes inside a line. */
    memset(&m, 0, sizeof m);
    assert_int_equal(ingest_manifest_parse("track_id,uri\nt\0x,u\n", 19, &m, NULL), SH_EFORMAT);
    assert_true(has_error(&m, "line 2: NUL byte"));
    ingest_manifest_free(&m);
}

static void test_error_list_is_capped(void **state)
{
    (void)state;
    ingest_manifest m;
    size_t n = 250, cap = 16 + n * 4;
    char *text = malloc(cap);
    assert_non_null(text);
    size_t o = (size_t)snprintf(text, cap, "track_id,uri\n");
    for (size_t i = 0; i < n; i++)
        o += (size_t)snprintf(text + o, cap - o, ",u\n");
    assert_int_equal(parse(text, &m), SH_EFORMAT);
    assert_int_equal(m.bad_lines, n);
    assert_int_equal(m.errors.n, INGEST_ERRORS_MAX);
    ingest_manifest_free(&m);
    free(text);
}

static void test_check_track_id(void **state)
{
    (void)state;
    sh_err e = {0};
    assert_int_equal(sh_track_id_check("a", 1, &e), 0);
    assert_int_equal(sh_track_id_check("", 0, &e), SH_EINVAL);
    assert_int_equal(sh_track_id_check("a\x7f", 2, &e), SH_EINVAL);
    char id[257];
    memset(id, 'i', sizeof id);
    assert_int_equal(sh_track_id_check(id, 256, &e), 0);
    assert_int_equal(sh_track_id_check(id, 257, &e), SH_EINVAL);
    assert_non_null(strstr(e.msg, "257 bytes"));
    /* Unicode is fine; C1 controls (NEL U+0085, CSI U+009B) and broken UTF-8 are not. */
    const char *uni = "caf\xc3\xa9 \xe2\x80\x94 \xf0\x9f\x8e\xb5";
    assert_int_equal(sh_track_id_check(uni, strlen(uni), &e), 0);
    assert_int_equal(sh_track_id_check("nel\xc2\x85", 5, &e), SH_EINVAL);
    assert_non_null(strstr(e.msg, "control character 0x85 at byte 3"));
    assert_int_equal(sh_track_id_check("\xc2\x9b" "31m", 5, &e), SH_EINVAL);
    assert_int_equal(sh_track_id_check("\xc2\xa0nbsp", 6, &e), 0); /* U+00A0 is not a control */
    assert_int_equal(sh_track_id_check("bad\xff", 4, &e), SH_EINVAL);
    assert_non_null(strstr(e.msg, "UTF-8"));
    assert_int_equal(sh_track_id_check("a\0b", 3, &e), SH_EINVAL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_csv_good),
        cmocka_unit_test(test_jsonl_good),
        cmocka_unit_test(test_csv_every_bad_line_reported),
        cmocka_unit_test(test_csv_bad_header),
        cmocka_unit_test(test_jsonl_bad_lines),
        cmocka_unit_test(test_caps),
        cmocka_unit_test(test_error_list_is_capped),
        cmocka_unit_test(test_check_track_id),
    };
    return cmocka_run_group_tests_name("ingest manifest", tests, NULL, NULL);
}
