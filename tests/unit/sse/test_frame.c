/*
 * Tests for src/sse/frame.c: the SSE frame encoder (eg_sse_frame) and the "<epoch>:<seq>" id
 * parser (eg_sse_parse_id).
 *
 * The round-trip tests decode with a small reference parser written from WHATWG HTML §9.2.6
 * ("Interpreting an event stream"): lines end in CRLF, LF or CR; "field: value" with one leading
 * space removed; data lines are joined with LF; a blank line dispatches. An encoded frame must
 * decode to exactly one event with the same id and name, and data equal to the input with every
 * CRLF and CR turned into LF (the stream format cannot carry a bare CR; the spec's parser turns
 * it into a line break either way).
 */
#include <engram/sse.h>

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <engram/core.h>

#include "../harness.h"

/* Encodes into a fresh buffer (max 64 KiB); returns the rc, the bytes in *b (caller frees). */
static int frame(struct eg_buf *b, const char *id, const char *event, const char *data, size_t len)
{
    eg_buf_init(b, 64 * 1024);
    return eg_sse_frame(b, id, event, data, len);
}

#define FRAME_EQ(id, event, data, lit)                                                             \
    do {                                                                                           \
        struct eg_buf fb_;                                                                         \
        int rc_ = frame(&fb_, (id), (event), (data), sizeof(data) - 1);                            \
        ASSERT_INT_EQ(0, rc_);                                                                     \
        ASSERT_MEM_EQ(fb_.base, fb_.len, lit);                                                     \
        eg_buf_fini(&fb_);                                                                         \
    } while (0)

/* ---- reference decoder (WHATWG) ------------------------------------------------------------ */

struct ref_event {
    int dispatched; /* events dispatched (blank lines after a non-empty data buffer) */
    char id[128];
    int has_id;
    char event[128];
    char data[4096];
    size_t data_len;
    int bad_field; /* a field other than id, event, data, retry or a comment */
};

static void ref_line(struct ref_event *e, const char *line, size_t n, char *data, size_t *dlen,
                     int *has_data)
{
    const char *colon = memchr(line, ':', n);
    size_t name_len = colon ? (size_t)(colon - line) : n;
    const char *value = colon ? colon + 1 : line + n;
    size_t vlen = colon ? n - name_len - 1 : 0;

    if (n == 0) { /* dispatch */
        if (*has_data) {
            e->dispatched++;
            memcpy(e->data, data, *dlen - 1); /* without the last LF */
            e->data_len = *dlen - 1;
        }
        *dlen = 0;
        *has_data = 0;
        return;
    }
    if (name_len == 0)
        return; /* comment */
    if (vlen > 0 && value[0] == ' ') {
        value++;
        vlen--;
    }
    if (name_len == 4 && memcmp(line, "data", 4) == 0) {
        memcpy(data + *dlen, value, vlen);
        *dlen += vlen;
        data[(*dlen)++] = '\n';
        *has_data = 1;
    } else if (name_len == 2 && memcmp(line, "id", 2) == 0) {
        if (memchr(value, '\0', vlen) == NULL && vlen < sizeof(e->id)) {
            memcpy(e->id, value, vlen);
            e->id[vlen] = '\0';
            e->has_id = 1;
        }
    } else if (name_len == 5 && memcmp(line, "event", 5) == 0) {
        if (vlen < sizeof(e->event)) {
            memcpy(e->event, value, vlen);
            e->event[vlen] = '\0';
        }
    } else if (!(name_len == 5 && memcmp(line, "retry", 5) == 0)) {
        e->bad_field++;
    }
}

static void ref_parse(struct ref_event *e, const char *s, size_t n)
{
    static char data[8192];
    size_t dlen = 0;
    int has_data = 0;
    size_t i = 0;

    memset(e, 0, sizeof(*e));
    while (i < n) {
        size_t j = i;

        while (j < n && s[j] != '\n' && s[j] != '\r')
            j++;
        if (j >= n)
            break; /* an incomplete last line is not processed */
        ref_line(e, s + i, j - i, data, &dlen, &has_data);
        if (s[j] == '\r' && j + 1 < n && s[j + 1] == '\n')
            j++;
        i = j + 1;
    }
}

/* ---- the encoder ---------------------------------------------------------------------------- */

TEST(frame_id_event_data)
{
    FRAME_EQ("1795383961583:3", "memory.created", "{\"id\":\"m\"}",
             "id: 1795383961583:3\nevent: memory.created\ndata: {\"id\":\"m\"}\n\n");
}

TEST(frame_without_id_or_event)
{
    FRAME_EQ(NULL, NULL, "x", "data: x\n\n");
    FRAME_EQ(NULL, "heartbeat", "{}", "event: heartbeat\ndata: {}\n\n");
    FRAME_EQ("7:1", NULL, "y", "id: 7:1\ndata: y\n\n");
}

TEST(frame_empty_data_is_one_empty_data_line)
{
    /* The event still dispatches (a data field was present); its data is "". */
    FRAME_EQ(NULL, "e", "", "event: e\ndata: \n\n");
}

TEST(frame_multiline_lf)
{
    FRAME_EQ(NULL, NULL, "a\nb\nc", "data: a\ndata: b\ndata: c\n\n");
}

TEST(frame_crlf_is_one_break)
{
    FRAME_EQ(NULL, NULL, "a\r\nb", "data: a\ndata: b\n\n");
}

TEST(frame_bare_cr_is_a_break)
{
    FRAME_EQ(NULL, NULL, "a\rb", "data: a\ndata: b\n\n");
}

TEST(frame_mixed_and_empty_lines)
{
    /* a CR CR b LF CRLF c: a, "", b, "", c */
    FRAME_EQ(NULL, NULL, "a\r\rb\n\r\nc", "data: a\ndata: \ndata: b\ndata: \ndata: c\n\n");
    /* LF CR is two breaks (only CR LF is one) */
    FRAME_EQ(NULL, NULL, "a\n\rb", "data: a\ndata: \ndata: b\n\n");
}

TEST(frame_trailing_breaks_keep_a_last_empty_line)
{
    /* Data ending in a line break round-trips: the last data line is empty. */
    FRAME_EQ(NULL, NULL, "a\n", "data: a\ndata: \n\n");
    FRAME_EQ(NULL, NULL, "a\r\n", "data: a\ndata: \n\n");
    FRAME_EQ(NULL, NULL, "a\r", "data: a\ndata: \n\n");
    FRAME_EQ(NULL, NULL, "\r\n", "data: \ndata: \n\n");
    FRAME_EQ(NULL, NULL, "\n\n", "data: \ndata: \ndata: \n\n");
}

TEST(frame_data_cannot_inject_fields)
{
    /* Lines that look like fields, a blank line, a comment: all stay inside data: lines. */
    static const char evil[] = "x\n\nid: 9:9\nevent: reset\nretry: 1\n: c\r\ndata: y";
    struct eg_buf b;
    struct ref_event e;

    ASSERT_INT_EQ(0, frame(&b, "1:2", "memory.updated", evil, sizeof(evil) - 1));
    ASSERT_MEM_EQ(b.base, b.len,
                  "id: 1:2\nevent: memory.updated\ndata: x\ndata: \ndata: id: 9:9\n"
                  "data: event: reset\ndata: retry: 1\ndata: : c\ndata: data: y\n\n");
    ref_parse(&e, b.base, b.len);
    ASSERT_INT_EQ(1, e.dispatched);
    ASSERT_STR_EQ("1:2", e.id);
    ASSERT_STR_EQ("memory.updated", e.event);
    ASSERT_MEM_EQ(e.data, e.data_len, "x\n\nid: 9:9\nevent: reset\nretry: 1\n: c\ndata: y");
    eg_buf_fini(&b);
}

TEST(frame_rejects_breaks_in_id_and_event)
{
    static const char *const bad[] = {"1:2\n", "1\n:2", "\r", "1:2\r\nevent: x", "\n"};
    struct eg_buf b;

    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        eg_buf_init(&b, 1024);
        ASSERT_INT_EQ(0, eg_buf_puts(&b, "before"));
        ASSERT_INT_EQ(EG_EPARSE, eg_sse_frame(&b, bad[i], "e", "d", 1));
        ASSERT_MEM_EQ(b.base, b.len, "before"); /* nothing appended */
        ASSERT_INT_EQ(EG_EPARSE, eg_sse_frame(&b, "1:2", bad[i], "d", 1));
        ASSERT_MEM_EQ(b.base, b.len, "before");
        ASSERT_EQ('\0', b.base[b.len]);
        eg_buf_fini(&b);
    }
}

TEST(frame_rejects_nul_in_data)
{
    static const char data[] = "a\0b";
    struct eg_buf b;

    eg_buf_init(&b, 1024);
    ASSERT_INT_EQ(EG_EPARSE, eg_sse_frame(&b, "1:2", "e", data, sizeof(data) - 1));
    ASSERT_EQ((size_t)0, b.len);
    /* a NUL just past len is not looked at */
    ASSERT_INT_EQ(0, eg_sse_frame(&b, NULL, NULL, data, 1));
    ASSERT_MEM_EQ(b.base, b.len, "data: a\n\n");
    eg_buf_fini(&b);
}

TEST(frame_nul_in_id_cannot_reach_the_wire)
{
    /* id and event are C strings: a NUL ends them, so whatever follows is never written. (The
     * spec would ignore an id line containing NUL; the encoder cannot produce one.) */
    static const char id[] = "1:2\0\nevent: x";
    struct eg_buf b;

    ASSERT_INT_EQ(0, frame(&b, id, "e", "d", 1));
    ASSERT_MEM_EQ(b.base, b.len, "id: 1:2\nevent: e\ndata: d\n\n");
    ASSERT_TRUE(memchr(b.base, '\0', b.len) == NULL);
    eg_buf_fini(&b);
}

TEST(frame_appends_and_rolls_back_at_the_limit)
{
    struct eg_buf b;
    size_t full;

    eg_buf_init(&b, 40);
    ASSERT_INT_EQ(0, eg_buf_puts(&b, "retry: 3000\n\n"));
    ASSERT_INT_EQ(0, eg_sse_frame(&b, "1:1", NULL, "x", 1));
    ASSERT_MEM_EQ(b.base, b.len, "retry: 3000\n\nid: 1:1\ndata: x\n\n");
    full = b.len;
    /* does not fit: EG_ELIMIT, and the buffer is exactly as before (no half frame) */
    ASSERT_INT_EQ(EG_ELIMIT, eg_sse_frame(&b, "1:2", "memory.created", "yyyyyyyy", 8));
    ASSERT_EQ(full, b.len);
    ASSERT_MEM_EQ(b.base, b.len, "retry: 3000\n\nid: 1:1\ndata: x\n\n");
    ASSERT_EQ('\0', b.base[b.len]);
    /* fails in the middle of the data lines too */
    ASSERT_INT_EQ(EG_ELIMIT, eg_sse_frame(&b, NULL, NULL, "a\nb", 3));
    ASSERT_EQ(full, b.len);
    eg_buf_fini(&b);
    /* from an empty, never-allocated buffer */
    eg_buf_init(&b, 4);
    ASSERT_INT_EQ(EG_ELIMIT, eg_sse_frame(&b, NULL, NULL, "abc", 3));
    ASSERT_EQ((size_t)0, b.len);
    eg_buf_fini(&b);
}

TEST(frame_round_trips_through_a_spec_parser)
{
    static const struct {
        const char *in;
        const char *want; /* CR and CRLF normalised to LF */
    } cases[] = {
        {"", ""},
        {"plain", "plain"},
        {"{\"text\":\"caf\xc3\xa9 \xe2\x9c\x93\"}", "{\"text\":\"caf\xc3\xa9 \xe2\x9c\x93\"}"},
        {"a\nb", "a\nb"},
        {"a\r\nb\r\n", "a\nb\n"},
        {"\r\r\n\n", "\n\n\n"},
        {" leading space", " leading space"},
        {":colon first", ":colon first"},
        {"data: x", "data: x"},
        {"\n", "\n"},
        {"x\r", "x\n"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        struct eg_buf b;
        struct ref_event e;

        ASSERT_INT_EQ(0, frame(&b, "12:34", "memory.created", cases[i].in, strlen(cases[i].in)));
        ref_parse(&e, b.base, b.len);
        ASSERT_INT_EQ(1, e.dispatched);
        ASSERT_INT_EQ(0, e.bad_field);
        ASSERT_INT_EQ(1, e.has_id);
        ASSERT_STR_EQ("12:34", e.id);
        ASSERT_STR_EQ("memory.created", e.event);
        ASSERT_INT_EQ((long long)strlen(cases[i].want), (long long)e.data_len);
        ASSERT_TRUE(memcmp(cases[i].want, e.data, e.data_len) == 0);
        eg_buf_fini(&b);
    }
}

TEST(frame_round_trips_every_byte_pattern)
{
    /* Every string of length 1..4 over {a, CR, LF, ':'} (4^1 + ... + 4^4 = 340 cases). */
    static const char alpha[] = {'a', '\r', '\n', ':'};
    char in[8];
    char want[8];

    for (int len = 1; len <= 4; len++) {
        int total = 1;

        for (int k = 0; k < len; k++)
            total *= 4;
        for (int code = 0; code < total; code++) {
            struct eg_buf b;
            struct ref_event e;
            size_t wl = 0;
            int c = code;

            for (int k = 0; k < len; k++) {
                in[k] = alpha[c % 4];
                c /= 4;
            }
            for (int k = 0; k < len; k++) {
                if (in[k] == '\r') {
                    want[wl++] = '\n';
                    if (k + 1 < len && in[k + 1] == '\n')
                        k++;
                } else {
                    want[wl++] = in[k];
                }
            }
            ASSERT_INT_EQ(0, frame(&b, "1:1", "e", in, (size_t)len));
            ref_parse(&e, b.base, b.len);
            ASSERT_INT_EQ(1, e.dispatched);
            ASSERT_INT_EQ(0, e.bad_field);
            ASSERT_INT_EQ((long long)wl, (long long)e.data_len);
            ASSERT_TRUE(memcmp(want, e.data, wl) == 0);
            eg_buf_fini(&b);
        }
    }
}

/* ---- ids ------------------------------------------------------------------------------------ */

static int parse(const char *s, int64_t *epoch, int64_t *seq)
{
    return eg_sse_parse_id(s, strlen(s), epoch, seq);
}

TEST(parse_id_accepts_epoch_colon_seq)
{
    int64_t e = -1;
    int64_t q = -1;

    ASSERT_INT_EQ(0, parse("1795383961583:10", &e, &q));
    ASSERT_INT_EQ(1795383961583LL, e);
    ASSERT_INT_EQ(10, q);
    ASSERT_INT_EQ(0, parse("0:0", &e, &q));
    ASSERT_INT_EQ(0, e);
    ASSERT_INT_EQ(0, q);
    ASSERT_INT_EQ(0, parse("007:08", &e, &q));
    ASSERT_INT_EQ(7, e);
    ASSERT_INT_EQ(8, q);
    ASSERT_INT_EQ(0, parse("9223372036854775807:9223372036854775807", &e, &q));
    ASSERT_INT_EQ(INT64_MAX, e);
    ASSERT_INT_EQ(INT64_MAX, q);
    /* n bounds the input: only "1:2" of "1:23" */
    ASSERT_INT_EQ(0, eg_sse_parse_id("1:23", 3, &e, &q));
    ASSERT_INT_EQ(2, q);
}

TEST(parse_id_rejects_everything_else)
{
    static const char *const bad[] = {
        "",
        ":",
        "1",
        "1:",
        ":2",
        "a:1",
        "1:a",
        "1:2:3",
        "-1:2",
        "1:-2",
        "+1:2",
        "1:+2",
        " 1:2",
        "1:2 ",
        "1 :2",
        "1: 2",
        "1:2\n",
        "0x1:2",
        "1.0:2",
        "1:2e3",
        "9223372036854775808:1",     /* epoch overflows int64 */
        "1:9223372036854775808",     /* seq overflows int64 */
        "99999999999999999999999:1", /* far over */
    };
    char longest[64];
    int64_t e;
    int64_t q;

    /* 47 bytes (leading zeros) is the longest accepted; 48 is over the length cap */
    memset(longest, '0', sizeof(longest));
    memcpy(longest, "1:", 2);
    longest[46] = '5';
    longest[47] = '\0';
    ASSERT_INT_EQ(0, parse(longest, &e, &q));
    ASSERT_INT_EQ(5, q);
    longest[46] = '0';
    longest[47] = '5';
    longest[48] = '\0';
    ASSERT_INT_EQ(EG_EPARSE, parse(longest, &e, &q));

    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        if (parse(bad[i], &e, &q) != EG_EPARSE) {
            printf("# accepted %s\n", bad[i]);
            ASSERT_TRUE(!"a malformed id was accepted");
        }
    }
    ASSERT_INT_EQ(EG_EPARSE, eg_sse_parse_id("1:2", 0, &e, &q));
    /* a NUL inside the given length never separates epoch and seq */
    ASSERT_INT_EQ(EG_EPARSE, eg_sse_parse_id("1\0:2", 4, &e, &q));
    ASSERT_INT_EQ(EG_EPARSE, eg_sse_parse_id("1:\0"
                                             "2",
                                             4, &e, &q));
}

int main(void)
{
    static const struct test_case t[] = {
        TEST_CASE(frame_id_event_data),
        TEST_CASE(frame_without_id_or_event),
        TEST_CASE(frame_empty_data_is_one_empty_data_line),
        TEST_CASE(frame_multiline_lf),
        TEST_CASE(frame_crlf_is_one_break),
        TEST_CASE(frame_bare_cr_is_a_break),
        TEST_CASE(frame_mixed_and_empty_lines),
        TEST_CASE(frame_trailing_breaks_keep_a_last_empty_line),
        TEST_CASE(frame_data_cannot_inject_fields),
        TEST_CASE(frame_rejects_breaks_in_id_and_event),
        TEST_CASE(frame_rejects_nul_in_data),
        TEST_CASE(frame_nul_in_id_cannot_reach_the_wire),
        TEST_CASE(frame_appends_and_rolls_back_at_the_limit),
        TEST_CASE(frame_round_trips_through_a_spec_parser),
        TEST_CASE(frame_round_trips_every_byte_pattern),
        TEST_CASE(parse_id_accepts_epoch_colon_seq),
        TEST_CASE(parse_id_rejects_everything_else),
    };
    return RUN_TESTS(t);
}
