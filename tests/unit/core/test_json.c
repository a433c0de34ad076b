/*
 * Tests for src/core/json.c. Expected outputs were produced by node 20 (JSON.stringify,
 * String(x)), which is what CORE runs on.
 */
#include <engram/json.h>

#include <math.h>
#include <stdint.h>
#include <string.h>

#include <jansson.h>

#include <engram/core.h>

#include "../harness.h"

#define ASSERT_NUM(v, lit)                                                                         \
    do {                                                                                           \
        char out_[EG_JSON_NUMBER_MAX];                                                             \
        size_t n_ = eg_json_fmt_number(out_, (v));                                                 \
        ASSERT_MEM_EQ(out_, n_, lit);                                                              \
        ASSERT_EQ('\0', out_[n_]);                                                                 \
    } while (0)

/* ---- numbers ------------------------------------------------------------------------------ */

TEST(number_integral)
{
    ASSERT_NUM(0.0, "0");
    ASSERT_NUM(-0.0, "0");
    ASSERT_NUM(1.0, "1");
    ASSERT_NUM(-1.0, "-1");
    ASSERT_NUM(100.0, "100");
    ASSERT_NUM(9007199254740992.0, "9007199254740992");       /* 2^53 */
    ASSERT_NUM(9007199254740993.0, "9007199254740992");       /* 2^53+1 rounds to 2^53 */
    ASSERT_NUM(9223372036854775808.0, "9223372036854776000"); /* 2^63: shortest digits, padded */
    ASSERT_NUM(1e20, "100000000000000000000");
    ASSERT_NUM(123456789012345680000.0, "123456789012345680000");
    ASSERT_NUM(999999999999999900000.0, "999999999999999900000");
}

TEST(number_fraction)
{
    ASSERT_NUM(0.1, "0.1");
    ASSERT_NUM(0.5, "0.5");
    ASSERT_NUM(1.0 / 3.0, "0.3333333333333333");
    ASSERT_NUM(33.5, "33.5");
    ASSERT_NUM(-1234.5678, "-1234.5678");
    ASSERT_NUM(70.71067901583552, "70.71067901583552");
    ASSERT_NUM(85.17640740950131, "85.17640740950131");
    ASSERT_NUM(0.1 + 0.2, "0.30000000000000004");
    ASSERT_NUM(1e-6, "0.000001");
    ASSERT_NUM(0.000001234, "0.000001234");
}

TEST(number_exponent)
{
    ASSERT_NUM(1e21, "1e+21");
    ASSERT_NUM(1.5e21, "1.5e+21");
    ASSERT_NUM(1e-7, "1e-7");
    ASSERT_NUM(1.5e-7, "1.5e-7");
    ASSERT_NUM(-1.5e-7, "-1.5e-7");
    ASSERT_NUM(9.999999998999999e-8, "9.999999998999999e-8");
    ASSERT_NUM(123e-20, "1.23e-18");
    ASSERT_NUM(1e300, "1e+300");
    ASSERT_NUM(1.7976931348623157e308, "1.7976931348623157e+308");
    ASSERT_NUM(2.2250738585072014e-308, "2.2250738585072014e-308"); /* DBL_MIN */
    ASSERT_NUM(-2.5e-310, "-2.5e-310");                             /* subnormal */
    ASSERT_NUM(5e-324, "5e-324");                                   /* smallest subnormal */
    ASSERT_NUM(1.5e-323, "1.5e-323");
}

TEST(number_non_finite)
{
    ASSERT_NUM(NAN, "null");
    ASSERT_NUM(INFINITY, "null");
    ASSERT_NUM(-INFINITY, "null");
}

/* ---- strings ------------------------------------------------------------------------------ */

TEST(string_control_chars)
{
    struct eg_buf b;
    char in[32];
    int i;
    int rc;

    for (i = 0; i < 32; i++)
        in[i] = (char)i;
    eg_buf_init(&b, 4096);
    rc = eg_json_put_string(&b, in, sizeof(in));
    ASSERT_EQ(0, rc);
    ASSERT_MEM_EQ(b.base, b.len,
                  "\"\\u0000\\u0001\\u0002\\u0003\\u0004\\u0005\\u0006\\u0007\\b\\t\\n\\u000b\\f"
                  "\\r\\u000e\\u000f\\u0010\\u0011\\u0012\\u0013\\u0014\\u0015\\u0016\\u0017"
                  "\\u0018\\u0019\\u001a\\u001b\\u001c\\u001d\\u001e\\u001f\"");
    eg_buf_fini(&b);
}

TEST(string_quotes_and_raw)
{
    struct eg_buf b;
    static const char in[] = "q\"b\\s/\xc3\xa9\xe2\x80\xa8\xe2\x80\xa9\x7f\xf0\x9f\x98\x80";
    int rc;

    eg_buf_init(&b, 4096);
    rc = eg_json_put_string(&b, in, sizeof(in) - 1);
    ASSERT_EQ(0, rc);
    /* é, U+2028, U+2029, DEL and the emoji stay raw; '/' is not escaped. */
    ASSERT_MEM_EQ(b.base, b.len,
                  "\"q\\\"b\\\\s/\xc3\xa9\xe2\x80\xa8\xe2\x80\xa9\x7f\xf0\x9f\x98\x80\"");
    eg_buf_reset(&b);
    rc = eg_json_put_string(&b, "", 0);
    ASSERT_EQ(0, rc);
    ASSERT_MEM_EQ(b.base, b.len, "\"\"");
    eg_buf_fini(&b);
}

TEST(string_limit)
{
    struct eg_buf b;
    int rc;

    eg_buf_init(&b, 8);
    rc = eg_json_put_string(&b, "abcdef", 6);
    ASSERT_EQ(0, rc); /* exactly 8 bytes with the quotes */
    eg_buf_reset(&b);
    rc = eg_json_put_string(&b, "abcdefg", 7);
    ASSERT_INT_EQ(EG_ELIMIT, rc);
    eg_buf_reset(&b);
    rc = eg_json_put_string(&b, "a\n", 2);
    ASSERT_EQ(0, rc);
    eg_buf_reset(&b);
    rc = eg_json_put_string(&b, "\x01\x01", 2);
    ASSERT_INT_EQ(EG_ELIMIT, rc);
    eg_buf_fini(&b);
}

/* ---- writer ------------------------------------------------------------------------------- */

TEST(writer_nesting_and_commas)
{
    struct eg_buf b;
    struct eg_jw jw;

    eg_buf_init(&b, 4096);
    eg_jw_init(&jw, &b);
    eg_jw_obj_begin(&jw);
    eg_jw_key(&jw, "a");
    eg_jw_arr_begin(&jw);
    eg_jw_int(&jw, 1);
    eg_jw_num(&jw, 2.5);
    eg_jw_obj_begin(&jw);
    eg_jw_key(&jw, "b");
    eg_jw_null(&jw);
    eg_jw_key(&jw, "c\"");
    eg_jw_bool(&jw, true);
    eg_jw_obj_end(&jw);
    eg_jw_arr_begin(&jw);
    eg_jw_arr_end(&jw);
    eg_jw_bool(&jw, false);
    eg_jw_arr_end(&jw);
    eg_jw_key(&jw, "e");
    eg_jw_obj_begin(&jw);
    eg_jw_obj_end(&jw);
    eg_jw_key(&jw, "s");
    eg_jw_str(&jw, "x\ny", 3);
    eg_jw_key(&jw, "n");
    eg_jw_cstr(&jw, NULL);
    eg_jw_key(&jw, "t");
    eg_jw_cstr(&jw, "t");
    eg_jw_key(&jw, "r");
    eg_jw_raw(&jw, "[1,2]", 5);
    eg_jw_key(&jw, "min");
    eg_jw_int(&jw, INT64_MIN);
    eg_jw_key(&jw, "max");
    eg_jw_int(&jw, INT64_MAX);
    eg_jw_key(&jw, "nan");
    eg_jw_num(&jw, NAN);
    eg_jw_obj_end(&jw);
    ASSERT_EQ(0, eg_jw_finish(&jw));
    ASSERT_MEM_EQ(b.base, b.len,
                  "{\"a\":[1,2.5,{\"b\":null,\"c\\\"\":true},[],false],\"e\":{},\"s\":\"x\\ny\","
                  "\"n\":null,\"t\":\"t\",\"r\":[1,2],\"min\":-9223372036854775808,"
                  "\"max\":9223372036854775807,\"nan\":null}");
    eg_buf_fini(&b);
}

TEST(writer_scalar_top_level)
{
    struct eg_buf b;
    struct eg_jw jw;

    eg_buf_init(&b, 64);
    eg_jw_init(&jw, &b);
    eg_jw_num(&jw, 1e21);
    ASSERT_EQ(0, eg_jw_finish(&jw));
    ASSERT_MEM_EQ(b.base, b.len, "1e+21");
    eg_buf_fini(&b);
}

TEST(writer_depth_limit)
{
    struct eg_buf b;
    struct eg_jw jw;
    int i;

    eg_buf_init(&b, 4096);
    eg_jw_init(&jw, &b);
    for (i = 0; i < EG_JW_MAX_DEPTH; i++)
        eg_jw_arr_begin(&jw);
    for (i = 0; i < EG_JW_MAX_DEPTH; i++)
        eg_jw_arr_end(&jw);
    ASSERT_EQ(0, eg_jw_finish(&jw));
    ASSERT_EQ((size_t)2 * EG_JW_MAX_DEPTH, b.len);

    eg_buf_reset(&b);
    eg_jw_init(&jw, &b);
    for (i = 0; i < EG_JW_MAX_DEPTH + 1; i++)
        eg_jw_obj_begin(&jw);
    ASSERT_INT_EQ(EG_ELIMIT, eg_jw_finish(&jw));
    eg_buf_fini(&b);
}

TEST(writer_buffer_limit_is_sticky)
{
    struct eg_buf b;
    struct eg_jw jw;

    eg_buf_init(&b, 10);
    eg_jw_init(&jw, &b);
    eg_jw_arr_begin(&jw);
    eg_jw_cstr(&jw, "0123456789");
    eg_jw_int(&jw, 1); /* ignored after the error */
    eg_jw_arr_end(&jw);
    ASSERT_INT_EQ(EG_ELIMIT, eg_jw_finish(&jw));
    eg_buf_fini(&b);
}

TEST(writer_misuse)
{
    struct eg_buf b;
    struct eg_jw jw;

    eg_buf_init(&b, 64);
    eg_jw_init(&jw, &b);
    eg_jw_obj_begin(&jw);
    ASSERT_INT_EQ(EG_EPARSE, eg_jw_finish(&jw)); /* still open */
    eg_jw_init(&jw, &b);
    eg_jw_arr_end(&jw);
    ASSERT_INT_EQ(EG_EPARSE, eg_jw_finish(&jw)); /* closed too often */
    eg_jw_init(&jw, &b);
    eg_jw_obj_begin(&jw);
    eg_jw_key(&jw, "a");
    eg_jw_obj_end(&jw);
    ASSERT_INT_EQ(EG_EPARSE, eg_jw_finish(&jw)); /* key without value */
    eg_buf_fini(&b);
}

/* ---- jansson values ----------------------------------------------------------------------- */

TEST(writer_value_round_trip)
{
    static const char in[] = "{\"b\":[1,2.5,[true,false,null]],\"a\":{\"x\":\"y\\n\"},\"n\":-0,"
                             "\"big\":1e21,\"s\":\"\\u00e9\",\"a2\":[],\"o\":{}, \"e\":1E2,"
                             " \"f\":2.50}";
    struct eg_json_err err;
    struct eg_buf b;
    struct eg_jw jw;
    json_t *v = eg_json_parse(in, sizeof(in) - 1, 64, &err);

    ASSERT_TRUE(v != NULL);
    eg_buf_init(&b, 4096);
    eg_jw_init(&jw, &b);
    eg_jw_value(&jw, v);
    ASSERT_EQ(0, eg_jw_finish(&jw));
    ASSERT_MEM_EQ(b.base, b.len,
                  "{\"b\":[1,2.5,[true,false,null]],\"a\":{\"x\":\"y\\n\"},\"n\":0,\"big\":1e+21,"
                  "\"s\":\"\xc3\xa9\",\"a2\":[],\"o\":{},\"e\":100,\"f\":2.5}");
    json_decref(v);
    eg_buf_fini(&b);
}

TEST(writer_value_built)
{
    struct eg_buf b;
    struct eg_jw jw;
    json_t *v = json_pack("{s:I,s:f,s:s#,s:o}", "i", (json_int_t)42, "r", 0.1, "k", "a\0b", 3, "z",
                          json_null());

    ASSERT_TRUE(v != NULL);
    eg_buf_init(&b, 4096);
    eg_jw_init(&jw, &b);
    eg_jw_arr_begin(&jw);
    eg_jw_value(&jw, v);
    eg_jw_value(&jw, NULL);
    eg_jw_arr_end(&jw);
    ASSERT_EQ(0, eg_jw_finish(&jw));
    ASSERT_MEM_EQ(b.base, b.len, "[{\"i\":42,\"r\":0.1,\"k\":\"a\\u0000b\",\"z\":null},null]");
    json_decref(v);
    eg_buf_fini(&b);
}

TEST(writer_value_too_deep)
{
    char in[130];
    struct eg_buf b;
    struct eg_jw jw;
    json_t *v;

    memset(in, '[', 65);
    memset(in + 65, ']', 65);
    v = eg_json_parse(in, sizeof(in), 100, NULL);
    ASSERT_TRUE(v != NULL);
    eg_buf_init(&b, 4096);
    eg_jw_init(&jw, &b);
    eg_jw_value(&jw, v);
    ASSERT_INT_EQ(EG_ELIMIT, eg_jw_finish(&jw));
    json_decref(v);
    eg_buf_fini(&b);
}

/* ---- parsing ------------------------------------------------------------------------------ */

#define ASSERT_PARSE_FAILS(lit, max_depth, want_code)                                              \
    do {                                                                                           \
        struct eg_json_err e_;                                                                     \
        json_t *v_ = eg_json_parse(lit, sizeof(lit) - 1, max_depth, &e_);                          \
        ASSERT_TRUE(v_ == NULL);                                                                   \
        ASSERT_INT_EQ(want_code, e_.code);                                                         \
        ASSERT_TRUE(e_.text[0] != '\0' || want_code == EG_JSON_OK);                                \
    } while (0)

TEST(parse_errors_by_class)
{
    ASSERT_PARSE_FAILS("{\"a\":}", 64, EG_JSON_ESYNTAX);
    ASSERT_PARSE_FAILS("[1,]", 64, EG_JSON_ESYNTAX);
    ASSERT_PARSE_FAILS("{} x", 64, EG_JSON_ESYNTAX);
    ASSERT_PARSE_FAILS("{\"a\":1}}", 64, EG_JSON_ESYNTAX);
    ASSERT_PARSE_FAILS("NaN", 64, EG_JSON_ESYNTAX);
    ASSERT_PARSE_FAILS("\"\\u0000\"", 64, EG_JSON_ENUL);
    ASSERT_PARSE_FAILS("{\"a\\u0000\":1}", 64, EG_JSON_ENUL);
    ASSERT_PARSE_FAILS("\"\xff\"", 64, EG_JSON_EUTF8);
    ASSERT_PARSE_FAILS("\"\xc0\xaf\"", 64, EG_JSON_EUTF8);
    ASSERT_PARSE_FAILS("\"\xed\xa0\x80\"", 64, EG_JSON_EUTF8); /* raw surrogate */
    ASSERT_PARSE_FAILS("\"\\ud800\"", 64, EG_JSON_EUTF8);      /* JSON.parse would accept */
    ASSERT_PARSE_FAILS("\"\\udc00x\"", 64, EG_JSON_EUTF8);
    ASSERT_PARSE_FAILS("1e400", 64, EG_JSON_ERANGE);
    ASSERT_PARSE_FAILS("[-1e400]", 64, EG_JSON_ERANGE);
    ASSERT_PARSE_FAILS("", 64, EG_JSON_EEMPTY);
    ASSERT_PARSE_FAILS(" \t\r\n", 64, EG_JSON_EEMPTY);
    ASSERT_PARSE_FAILS("\f{}", 64, EG_JSON_ESYNTAX); /* not JSON whitespace */
}

TEST(parse_error_details)
{
    struct eg_json_err err;
    json_t *v = eg_json_parse("{} x", 4, 64, &err);

    ASSERT_TRUE(v == NULL);
    ASSERT_EQ((size_t)4, err.position);
    ASSERT_STR_EQ("end of file expected near 'x'", err.text);
    v = eg_json_parse("\"\\ud800\"", 8, 64, &err);
    ASSERT_TRUE(v == NULL);
    ASSERT_STR_EQ("invalid Unicode '\\uD800' near '\"\\ud800\"'", err.text);
    v = eg_json_parse("  ", 2, 64, NULL); /* err is optional */
    ASSERT_TRUE(v == NULL);
}

TEST(parse_depth)
{
    char in[200];
    struct eg_json_err err;
    json_t *v;

    memset(in, '[', 64);
    memset(in + 64, ']', 64);
    v = eg_json_parse(in, 128, 64, &err);
    ASSERT_TRUE(v != NULL);
    json_decref(v);

    memset(in, '{', 1);
    memset(in + 1, '[', 64);
    v = eg_json_parse(in, 129, 64, &err);
    ASSERT_TRUE(v == NULL);
    ASSERT_INT_EQ(EG_JSON_EDEPTH, err.code);
    ASSERT_EQ((size_t)64, err.position);

    /* Brackets inside strings, including after an escaped quote, do not count. */
    v = eg_json_parse("[\"[[\\\"[{\"]", 10, 1, &err);
    ASSERT_TRUE(v != NULL);
    json_decref(v);

    /* max_depth above jansson's own 2048 still fails cleanly. */
    {
        static char deep[2 * 3000];

        memset(deep, '[', 3000);
        memset(deep + 3000, ']', 3000);
        v = eg_json_parse(deep, sizeof(deep), 5000, &err);
        ASSERT_TRUE(v == NULL);
        ASSERT_INT_EQ(EG_JSON_EDEPTH, err.code);
    }
}

TEST(parse_numbers_are_doubles)
{
    json_t *v =
        eg_json_parse("[9223372036854775808, 18446744073709551616, 1, -0, 1e-400]", 58, 64, NULL);

    ASSERT_TRUE(v != NULL);
    ASSERT_TRUE(json_is_real(json_array_get(v, 0)));
    ASSERT_EQ(9223372036854775808.0, json_real_value(json_array_get(v, 0)));
    ASSERT_EQ(18446744073709551616.0, json_real_value(json_array_get(v, 1)));
    ASSERT_TRUE(json_is_real(json_array_get(v, 2)));
    ASSERT_TRUE(signbit(json_real_value(json_array_get(v, 3))));
    ASSERT_EQ(0.0, json_real_value(json_array_get(v, 4))); /* underflow is 0, as in JS */
    json_decref(v);
}

TEST(parse_any_value_and_whitespace)
{
    /* The input need not be NUL-terminated: the length excludes the trailing garbage. */
    static const char in[] = " \r\n\t\"x\" \n garbage";
    json_t *v = eg_json_parse(in, 9, 64, NULL);

    ASSERT_TRUE(v != NULL);
    ASSERT_STR_EQ("x", json_string_value(v));
    json_decref(v);
    v = eg_json_parse("null", 4, 64, NULL);
    ASSERT_TRUE(json_is_null(v));
    json_decref(v);
}

TEST(parse_duplicates_last_wins_first_position)
{
    struct eg_buf b;
    struct eg_jw jw;
    json_t *v = eg_json_parse("{\"a\":1,\"b\":2,\"a\":3}", 19, 64, NULL);

    ASSERT_TRUE(v != NULL);
    eg_buf_init(&b, 64);
    eg_jw_init(&jw, &b);
    eg_jw_value(&jw, v);
    ASSERT_EQ(0, eg_jw_finish(&jw));
    ASSERT_MEM_EQ(b.base, b.len, "{\"a\":3,\"b\":2}"); /* same as JSON.parse then stringify */
    json_decref(v);
    eg_buf_fini(&b);
}

/* ---- UTF-8 -------------------------------------------------------------------------------- */

#define UTF8_VALID(lit) eg_utf8_valid(lit, sizeof(lit) - 1)

TEST(utf8_valid)
{
    ASSERT_TRUE(UTF8_VALID(""));
    ASSERT_TRUE(UTF8_VALID("plain ascii"));
    ASSERT_TRUE(UTF8_VALID("a\0b"));
    ASSERT_TRUE(UTF8_VALID("\xc2\x80"));         /* U+0080 */
    ASSERT_TRUE(UTF8_VALID("\xdf\xbf"));         /* U+07FF */
    ASSERT_TRUE(UTF8_VALID("\xe0\xa0\x80"));     /* U+0800 */
    ASSERT_TRUE(UTF8_VALID("\xed\x9f\xbf"));     /* U+D7FF */
    ASSERT_TRUE(UTF8_VALID("\xee\x80\x80"));     /* U+E000 */
    ASSERT_TRUE(UTF8_VALID("\xe2\x80\xa8"));     /* U+2028 */
    ASSERT_TRUE(UTF8_VALID("\xef\xbf\xbf"));     /* U+FFFF */
    ASSERT_TRUE(UTF8_VALID("\xf0\x90\x80\x80")); /* U+10000 */
    ASSERT_TRUE(UTF8_VALID("\xf4\x8f\xbf\xbf")); /* U+10FFFF */
}

TEST(utf8_invalid)
{
    ASSERT_TRUE(!UTF8_VALID("\x80")); /* lone continuation */
    ASSERT_TRUE(!UTF8_VALID("\xbf"));
    ASSERT_TRUE(!UTF8_VALID("\xc0\xaf")); /* overlong '/' */
    ASSERT_TRUE(!UTF8_VALID("\xc1\xbf"));
    ASSERT_TRUE(!UTF8_VALID("\xe0\x80\xaf")); /* overlong 3-byte */
    ASSERT_TRUE(!UTF8_VALID("\xe0\x9f\xbf"));
    ASSERT_TRUE(!UTF8_VALID("\xf0\x80\x80\xaf")); /* overlong 4-byte */
    ASSERT_TRUE(!UTF8_VALID("\xf0\x8f\xbf\xbf"));
    ASSERT_TRUE(!UTF8_VALID("\xed\xa0\x80"));     /* U+D800 */
    ASSERT_TRUE(!UTF8_VALID("\xed\xbf\xbf"));     /* U+DFFF */
    ASSERT_TRUE(!UTF8_VALID("\xf4\x90\x80\x80")); /* U+110000 */
    ASSERT_TRUE(!UTF8_VALID("\xf5\x80\x80\x80"));
    ASSERT_TRUE(!UTF8_VALID("\xff"));
    ASSERT_TRUE(!UTF8_VALID("\xfe"));
    ASSERT_TRUE(!UTF8_VALID("\xe2\x82")); /* truncated */
    ASSERT_TRUE(!UTF8_VALID("\xf0\x9f\x98"));
    ASSERT_TRUE(!UTF8_VALID("\xc3"));
    ASSERT_TRUE(!UTF8_VALID("\xc3\x28")); /* bad continuation */
    ASSERT_TRUE(!UTF8_VALID("\xe2\x28\xa1"));
    ASSERT_TRUE(!UTF8_VALID("\xe2\x82\x28"));
    ASSERT_TRUE(!UTF8_VALID("\xf0\x9f\x98\x28"));
    ASSERT_TRUE(!UTF8_VALID("ok\xc3"));
}

TEST(utf16_len)
{
    ASSERT_EQ((size_t)0, eg_utf16_len("", 0));
    ASSERT_EQ((size_t)3, eg_utf16_len("abc", 3));
    ASSERT_EQ((size_t)1, eg_utf16_len("\xc3\xa9", 2));         /* é */
    ASSERT_EQ((size_t)1, eg_utf16_len("\xe2\x82\xac", 3));     /* € */
    ASSERT_EQ((size_t)2, eg_utf16_len("\xf0\x9f\x98\x80", 4)); /* emoji: a pair */
    ASSERT_EQ((size_t)6, eg_utf16_len("a\xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80\0", 11));
}

int main(void)
{
    static const struct test_case tests[] = {
        TEST_CASE(number_integral),
        TEST_CASE(number_fraction),
        TEST_CASE(number_exponent),
        TEST_CASE(number_non_finite),
        TEST_CASE(string_control_chars),
        TEST_CASE(string_quotes_and_raw),
        TEST_CASE(string_limit),
        TEST_CASE(writer_nesting_and_commas),
        TEST_CASE(writer_scalar_top_level),
        TEST_CASE(writer_depth_limit),
        TEST_CASE(writer_buffer_limit_is_sticky),
        TEST_CASE(writer_misuse),
        TEST_CASE(writer_value_round_trip),
        TEST_CASE(writer_value_built),
        TEST_CASE(writer_value_too_deep),
        TEST_CASE(parse_errors_by_class),
        TEST_CASE(parse_error_details),
        TEST_CASE(parse_depth),
        TEST_CASE(parse_numbers_are_doubles),
        TEST_CASE(parse_any_value_and_whitespace),
        TEST_CASE(parse_duplicates_last_wins_first_position),
        TEST_CASE(utf8_valid),
        TEST_CASE(utf8_invalid),
        TEST_CASE(utf16_len),
    };

    return RUN_TESTS(tests);
}
