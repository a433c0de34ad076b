/* bench/sse/sseparse.h: the pure parsing core of the SSE load tool (no libuv).
 *
 * A subscriber's bytes go through three incremental stages, each of which accepts input split at
 * any point: the HTTP response head (ssb_head_*), the chunked transfer coding when the head says
 * so (ssb_chunked_feed; engram answers chunked, nchan and the baseline may not), and the SSE line
 * parser (ssb_sse_feed), which reports one ssb_sse_event per blank-line-terminated event.
 *
 * The writer marks every event it sends with "note ssb<tag>-<phase>-<n>-<send_us> about ...",
 * inside the memory text (engram) or the published body (baseline, nchan); ssb_mark_parse finds
 * that mark in a data line. */
#ifndef SSB_SSEPARSE_H
#define SSB_SSEPARSE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

/** Longest SSE line (or response head) a subscriber buffers across reads. */
#define SSB_LINE_MAX 1536

/** The mark the writer embeds: tag identifies the run, phase the rate step, n the writer's
 * event number (1, 2, ...), send_us the writer's CLOCK_REALTIME at send, in microseconds. */
struct ssb_mark {
    uint32_t tag;
    uint32_t phase;
    uint64_t n;
    uint64_t send_us;
};

/** Finds and parses the first mark in p[0..len). Returns true when one was found. */
bool ssb_mark_parse(const char *p, size_t len, struct ssb_mark *m);

/** Formats a mark as "note ssb<tag>-<phase>-<n>-<send_us> about apple river stone" (the words keep
 * engram's heuristic extractor from finding a claim). Returns the length, or -1 if cap is short. */
int ssb_mark_format(char *out, size_t cap, const struct ssb_mark *m);

/** What the response head says about the body. */
struct ssb_head {
    int status;
    bool is_chunked;
    bool has_length;
    uint64_t content_length;
};

/** Incremental search for the end of a response head ("\r\n\r\n"; bare "\n\n" too).
 * matched is the state across calls and starts at 0. Returns the number of bytes of p that belong
 * to the head when its end is in p, or 0 when all of p belongs to it and the head goes on. */
size_t ssb_head_end(int *matched, const char *p, size_t len);

/** Parses a complete head (status line and fields). Returns 0, or -1 when malformed. */
int ssb_head_parse(const char *p, size_t len, struct ssb_head *h);

/** State of the chunked decoder; zero-initialise. */
struct ssb_chunked {
    int state;
    uint64_t left;
    bool is_done; /* the last (zero-length) chunk was seen */
};

/** Receives decoded body bytes. */
typedef void ssb_data_fn(void *arg, const char *p, size_t len);

/** Decodes p[0..len) of chunked coding, calling fn with each run of body bytes (not copied).
 * Returns 0, or -1 on malformed coding (the stream cannot continue). */
int ssb_chunked_feed(struct ssb_chunked *c, const char *p, size_t len, ssb_data_fn *fn, void *arg);

/** Longest response head ssb_resp buffers. */
#define SSB_HEAD_MAX 4096

/** One HTTP/1.1 response read incrementally: its head, then its body by Content-Length, by
 * chunked coding, or (with neither) up to the end of the connection. ssb_resp_reset before each
 * response on a keep-alive connection (a zeroed struct is reset). */
struct ssb_resp {
    int head_matched;
    bool has_head; /* head is parsed and valid */
    bool is_done;  /* the whole body was read */
    size_t hlen;
    uint64_t body_left;
    struct ssb_head head;
    struct ssb_chunked ch;
    char hbuf[SSB_HEAD_MAX];
};

void ssb_resp_reset(struct ssb_resp *r);

/** Feeds p[0..len), passing body bytes to fn (not copied). Returns how many of the bytes belong
 * to this response (it stops at the response's end; the rest begins the next one), or -1 when
 * the head is malformed or longer than SSB_HEAD_MAX, or the chunked coding is malformed. */
ssize_t ssb_resp_feed(struct ssb_resp *r, const char *p, size_t len, ssb_data_fn *fn, void *arg);

/** One dispatched SSE event. */
struct ssb_sse_event {
    bool is_connected; /* event: connected */
    bool has_id;
    uint64_t id_seq; /* the number after the last ':' of "id:" */
    bool has_mark;
    struct ssb_mark mark;
};

typedef void ssb_event_fn(void *arg, const struct ssb_sse_event *ev);

/** SSE parser state; zero-initialise. Lines longer than SSB_LINE_MAX are dropped and counted. */
struct ssb_sse {
    uint32_t line_len;
    uint32_t overflows;
    bool has_fields; /* the current event has at least one field */
    struct ssb_sse_event ev;
    char line[SSB_LINE_MAX];
};

/** Feeds body bytes; fn is called once per complete event (blank line after fields). */
void ssb_sse_feed(struct ssb_sse *s, const char *p, size_t len, ssb_event_fn *fn, void *arg);

/* ---- latency histogram: log-linear buckets (6 significant bits: ~1.6 % resolution), 1 us to
 * ~2^40 us. Arrays of SSB_HIST_N counters merge by addition across processes. */
#define SSB_HIST_N 1152

static inline unsigned ssb_hist_bucket(uint64_t v)
{
    unsigned msb;
    unsigned shift;
    unsigned b;

    if (v < 64)
        return (unsigned)v;
    msb = 63u - (unsigned)__builtin_clzll(v);
    shift = msb - 5u;
    b = 64u + (shift - 1u) * 32u + (unsigned)((v >> shift) - 32u);
    return b < SSB_HIST_N ? b : SSB_HIST_N - 1;
}

/** The largest value that falls in bucket b (percentiles report the bucket's upper edge). */
uint64_t ssb_hist_upper(unsigned b);

/** The q-quantile (0..1) of a histogram; 0 when empty. */
uint64_t ssb_hist_quantile(const uint64_t *h, double q);

#endif
