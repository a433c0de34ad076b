/*
 * libFuzzer harness for engram's JSON decoder and writer (RELIABILITY.md §3.2, the decode and
 * re-encode part of fuzz_json_body): eg_json_parse with max_depth 64, then eg_jw_value.
 *
 * Invariants (abort on violation):
 * - a rejected input reports a known error code (and EG_JSON_EEMPTY exactly for empty or
 *   JSON-whitespace-only input);
 * - nothing nested deeper than 64 is accepted;
 * - accepted strings and keys hold valid UTF-8 and no NUL;
 * - an accepted value re-encodes (eg_jw_finish == 0), the encoding parses again to an equal
 *   value (json_equal), and
 *   re-encoding that gives identical bytes (encode . parse . encode == encode);
 * - every value is released with json_decref and every buffer freed (LeakSanitizer).
 */
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "engram/core.h"
#include "engram/json.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define MAX_DEPTH 64
#define OUT_MAX   (8u << 20)

#define CHECK(cond)                                                                                \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            fprintf(stderr, "fuzz_json: invariant failed at %s:%d: %s\n", __FILE__, __LINE__,      \
                    #cond);                                                                        \
            abort();                                                                               \
        }                                                                                          \
    } while (0)

/* Nesting depth of v ([] and {} count 1) and checks on every string; bounded by jansson's 2048. */
static int depth_and_strings(const json_t *v)
{
    int deepest = 0;

    switch (json_typeof(v)) {
    case JSON_OBJECT: {
        const char *key;
        size_t key_len;
        json_t *member;

        json_object_keylen_foreach((json_t *)v, key, key_len, member)
        {
            int d;

            CHECK(eg_utf8_valid(key, key_len));
            CHECK(memchr(key, '\0', key_len) == NULL);
            d = depth_and_strings(member);
            if (d > deepest)
                deepest = d;
        }
        return deepest + 1;
    }
    case JSON_ARRAY:
        for (size_t i = 0; i < json_array_size(v); i++) {
            int d = depth_and_strings(json_array_get(v, i));

            if (d > deepest)
                deepest = d;
        }
        return deepest + 1;
    case JSON_STRING: {
        const char *s = json_string_value(v);
        size_t n = json_string_length(v);

        CHECK(eg_utf8_valid(s, n));
        CHECK(memchr(s, '\0', n) == NULL);
        return 0;
    }
    case JSON_INTEGER:
        /* JSON_DECODE_INT_AS_REAL: the decoder never produces integers */
        CHECK(false);
        return 0;
    default: return 0;
    }
}

static void encode(const json_t *v, struct eg_buf *out)
{
    struct eg_jw jw;
    int rc;

    eg_jw_init(&jw, out);
    eg_jw_value(&jw, v);
    rc = eg_jw_finish(&jw);
    if (rc != 0) {
        fprintf(stderr, "fuzz_json: eg_jw_value failed (%d) on an accepted value\n", rc);
        abort();
    }
}

static bool only_ws(const uint8_t *s, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        if (s[i] != ' ' && s[i] != '\t' && s[i] != '\n' && s[i] != '\r')
            return false;
    }
    return true;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct eg_json_err err;
    struct eg_buf a;
    struct eg_buf b;
    json_t *v;
    json_t *v2;

    v = eg_json_parse((const char *)data, size, MAX_DEPTH, &err);
    if (v == NULL) {
        CHECK(err.code > EG_JSON_OK && err.code <= EG_JSON_EEMPTY);
        CHECK((err.code == EG_JSON_EEMPTY) == only_ws(data, size));
        CHECK(memchr(err.text, '\0', sizeof(err.text)) != NULL);
        return 0;
    }
    CHECK(!only_ws(data, size));
    CHECK(depth_and_strings(v) <= MAX_DEPTH);

    eg_buf_init(&a, OUT_MAX);
    eg_buf_init(&b, OUT_MAX);
    encode(v, &a);
    CHECK(a.len > 0);

    v2 = eg_json_parse(a.base, a.len, MAX_DEPTH, &err);
    if (v2 == NULL) {
        fprintf(stderr, "fuzz_json: re-parse of the encoding failed: code %d at %zu: %s\n",
                err.code, err.position, err.text);
        fprintf(stderr, "encoding (%zu bytes): %.*s\n", a.len, (int)(a.len > 4096 ? 4096 : a.len),
                a.base);
        abort();
    }
    CHECK(json_equal(v, v2));
    encode(v2, &b);
    if (a.len != b.len || memcmp(a.base, b.base, a.len) != 0) {
        fprintf(stderr, "fuzz_json: re-encoding differs\n first:  %.*s\n second: %.*s\n",
                (int)(a.len > 4096 ? 4096 : a.len), a.base, (int)(b.len > 4096 ? 4096 : b.len),
                b.base);
        abort();
    }
    json_decref(v2);
    json_decref(v);
    eg_buf_fini(&a);
    eg_buf_fini(&b);
    return 0;
}
