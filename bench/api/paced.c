/* bench/api/paced.c: open-loop (fixed arrival rate) POST /api/v1/memories load for
 * bench/api/run.sh, optionally with one SSE subscriber on GET /api/v1/events/memories.
 *
 * Request i is due at start + i / rate whatever the server does (no coordinated omission): its
 * latency is measured from that scheduled time, and for information from the moment it was
 * written to a connection. At most --conns requests are in flight on keep-alive connections; a
 * due request waits in the client's queue for a free one, and that wait counts in the scheduled-
 * time latency. The schedule is kept with an absolute CLOCK_MONOTONIC timerfd, so the tool adds
 * microseconds, not a timer tick, to what it measures (the node generator it replaces lagged its
 * own schedule by up to 8-12 ms at p99 at 1,300 requests/s, and used a third of a CPU).
 *
 * Each request creates a memory in a new subject; its text carries the SSE load tool's mark
 * ("note ssb<tag>-0-<i>-0 about w w w", bench/sse/sseparse.h), so the subscriber (--sse) matches
 * every memory.created frame to its request without parsing JSON.
 *
 *   paced --url http://127.0.0.1:PORT --rate N --duration S [--project P] [--conns 16]
 *         [--api-key K] [--sse] [--csv FILE]
 *
 * --sse subscribes (project-wide) first and starts the schedule on its first frame.
 * --csv writes one line per created memory: id,sched_ms,sent_ms,resp_ms,sse_ms (epoch ms).
 * Prints one line "PACEDJSON {...}" (latencies in microseconds). Every wait is bounded: the run
 * ends at the latest 15 s after the last scheduled send. */
#define _GNU_SOURCE
#include "../sse/sseparse.h"

#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/timerfd.h>
#include <time.h>
#include <unistd.h>

#include <uv.h>

#define MAX_CONNS       256
#define REQ_MAX         1024
#define BODY_KEEP       2048 /* enough of a 201 body to find its "id" */
#define ID_MAX          64
#define CONNECT_WAIT_MS 5000
#define SSE_WAIT_MS     5000
#define TAIL_MS         15000
#define SSE_SETTLE_MS   300

/* One scheduled request. Times are CLOCK_MONOTONIC microseconds; 0 means "not yet". */
struct rec {
    uint64_t sent_us;
    uint64_t resp_us;
    uint64_t sse_us;
    char id[ID_MAX];
};

enum { C_CONNECTING, C_IDLE, C_BUSY, C_DEAD, C_CLOSED };

struct conn {
    uv_tcp_t tcp;
    uv_connect_t creq;
    uv_write_t wreq;
    int state;
    uint64_t idx; /* the request in flight (C_BUSY) */
    struct ssb_resp resp;
    size_t blen;
    char body[BODY_KEEP];
    char req[REQ_MAX];
};

static struct {
    struct sockaddr_in addr;
    char host[128];
    const char *project;
    const char *api_key;
    const char *csv;
    double rate;
    double duration_s;
    uint32_t conns;
    bool sse;
} O = {.project = "bench", .conns = 16};

static struct {
    uv_loop_t loop;
    uv_poll_t tick;
    int tfd;
    uv_timer_t guard;
    struct conn *c;
    uint32_t nconnected;
    struct rec *recs;
    uint64_t total;
    uint64_t sent;
    uint64_t done;
    uint64_t t0_us;   /* the schedule's start (monotonic) */
    uint64_t t0_real; /* CLOCK_REALTIME at t0, for --csv */
    bool started;
    bool reported;
    uint32_t tag;
    uint64_t ok, dup, other, neterr;
    /* the subscriber */
    uv_tcp_t stcp;
    uv_connect_t screq;
    uv_write_t swreq;
    char sreq[REQ_MAX];
    struct ssb_resp sresp;
    struct ssb_sse sse;
    uint64_t sse_frames;
} S;

static const char *const WORDS[] = {
    "apple",  "river",   "stone",  "cloud",  "maple",  "violet", "copper",  "harbor",
    "meadow", "lantern", "pepper", "silver", "garden", "window", "thunder", "orchid",
    "marble", "candle",  "forest", "pillow", "rocket", "saddle", "tunnel",  "velvet",
    "walnut", "yellow",  "zephyr", "basket", "cactus", "dragon", "falcon",  "glacier"};

static uint64_t now_us(clockid_t clk)
{
    struct timespec ts;

    clock_gettime(clk, &ts);
    return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

static void die(const char *what, int err)
{
    fprintf(stderr, "paced: %s: %s\n", what, err ? uv_strerror(err) : "failed");
    exit(1);
}

static uint64_t sched_us(uint64_t i)
{
    return S.t0_us + (uint64_t)((double)i * 1e6 / O.rate);
}

static void report(void);
static void pump(void);

/* ------------------------------------------------------------------ writers */

static void conn_open(struct conn *c);

static void on_guard(uv_timer_t *t)
{
    (void)t;
    report();
}

static void conn_on_closed(uv_handle_t *h)
{
    ((struct conn *)h->data)->state = C_CLOSED;
    pump();
}

static void finish_req(void)
{
    S.done++;
    if (S.done == S.total && !S.reported) {
        if (O.sse)
            uv_timer_start(&S.guard, on_guard, SSE_SETTLE_MS, 0);
        else
            report();
    }
}

/* The connection broke: its request (if any) is lost, and a new connection replaces it. */
static void conn_fail(struct conn *c)
{
    bool was_busy = c->state == C_BUSY;

    if (c->state == C_DEAD)
        return;
    c->state = C_DEAD;
    uv_close((uv_handle_t *)&c->tcp, conn_on_closed);
    if (was_busy) {
        S.neterr++;
        finish_req();
    }
}

/* The first "id":"..." string of a response body (a 201 from POST /memories puts the id first). */
static void take_id(struct rec *r, const char *p, size_t n)
{
    const char *s = memmem(p, n, "\"id\":\"", 6);
    const char *e;

    if (s == NULL)
        return;
    s += 6;
    e = memchr(s, '"', n - (size_t)(s - p));
    if (e != NULL && (size_t)(e - s) < sizeof(r->id)) {
        memcpy(r->id, s, (size_t)(e - s));
        r->id[e - s] = '\0';
    }
}

static void req_done(struct conn *c)
{
    struct rec *r = &S.recs[c->idx];

    r->resp_us = now_us(CLOCK_MONOTONIC);
    if (c->resp.head.status == 201) {
        S.ok++;
        take_id(r, c->body, c->blen);
    } else if (c->resp.head.status == 200) {
        S.dup++;
    } else {
        S.other++;
    }
    finish_req();
    c->state = C_IDLE;
    pump();
}

static void keep_body(void *arg, const char *p, size_t n)
{
    struct conn *c = arg;
    size_t room = sizeof(c->body) - c->blen;

    if (n > room)
        n = room;
    memcpy(c->body + c->blen, p, n);
    c->blen += n;
}

static void on_alloc(uv_handle_t *h, size_t hint, uv_buf_t *buf)
{
    static char rbuf[64 * 1024];

    (void)h;
    (void)hint;
    *buf = uv_buf_init(rbuf, sizeof(rbuf));
}

static void conn_on_read(uv_stream_t *st, ssize_t nread, const uv_buf_t *buf)
{
    struct conn *c = st->data;
    const char *p = buf->base;
    size_t len;

    if (nread < 0) {
        conn_fail(c);
        return;
    }
    len = (size_t)nread;
    while (len > 0) {
        ssize_t n;

        if (c->state != C_BUSY) {
            conn_fail(c); /* bytes nobody asked for */
            return;
        }
        n = ssb_resp_feed(&c->resp, p, len, keep_body, c);
        if (n < 0) {
            conn_fail(c);
            return;
        }
        p += n;
        len -= (size_t)n;
        if (c->resp.is_done)
            req_done(c);
    }
}

static void conn_on_write(uv_write_t *w, int status)
{
    if (status < 0)
        conn_fail(w->data);
}

static void conn_send(struct conn *c, uint64_t i)
{
    char body[256];
    int bn;
    int rn;
    uv_buf_t b;

    bn = snprintf(body, sizeof(body),
                  "{\"subject_id\":\"s-%u-%" PRIu64 "\",\"text\":\"note ssb%u-0-%" PRIu64
                  "-0 about %s %s %s\"}",
                  S.tag, i, S.tag, i, WORDS[rand() % 32], WORDS[rand() % 32], WORDS[rand() % 32]);
    rn = snprintf(c->req, sizeof(c->req),
                  "POST /api/v1/memories HTTP/1.1\r\nHost: %s\r\n"
                  "Content-Type: application/json\r\nx-project-id: %s\r\n%s%s%s"
                  "Content-Length: %d\r\n\r\n%s",
                  O.host, O.project, O.api_key ? "Authorization: Bearer " : "",
                  O.api_key ? O.api_key : "", O.api_key ? "\r\n" : "", bn, body);
    if (bn < 0 || (size_t)bn >= sizeof(body) || rn < 0 || (size_t)rn >= sizeof(c->req))
        die("request too long", 0);
    c->state = C_BUSY;
    c->idx = i;
    ssb_resp_reset(&c->resp);
    c->blen = 0;
    S.recs[i].sent_us = now_us(CLOCK_MONOTONIC);
    c->wreq.data = c;
    b = uv_buf_init(c->req, (unsigned)rn);
    if (uv_write(&c->wreq, (uv_stream_t *)&c->tcp, &b, 1, conn_on_write) < 0)
        conn_fail(c);
}

/* Arms the timerfd for the next scheduled send (absolute monotonic time). */
static void arm(uint64_t at_us)
{
    struct itimerspec it = {0};

    it.it_value.tv_sec = (time_t)(at_us / 1000000u);
    it.it_value.tv_nsec = (long)(at_us % 1000000u) * 1000;
    if (timerfd_settime(S.tfd, TFD_TIMER_ABSTIME, &it, NULL) < 0)
        die("timerfd_settime", uv_translate_sys_error(errno));
}

/* Sends every due request that has a free connection; dead connections are replaced first. */
static void pump(void)
{
    uint64_t now;
    uint32_t i;

    if (!S.started || S.reported)
        return;
    now = now_us(CLOCK_MONOTONIC);
    for (i = 0; i < O.conns && S.sent < S.total && sched_us(S.sent) <= now; i++) {
        if (S.c[i].state == C_CLOSED)
            conn_open(&S.c[i]);
        else if (S.c[i].state == C_IDLE)
            conn_send(&S.c[i], S.sent++);
    }
    /* The next request not yet due; a due one waiting for a connection goes when one frees. */
    if (S.sent < S.total && sched_us(S.sent) > now)
        arm(sched_us(S.sent));
}

static void on_tick(uv_poll_t *p, int status, int events)
{
    uint64_t n;

    (void)p;
    (void)events;
    if (status < 0)
        die("timerfd poll", status);
    if (read(S.tfd, &n, sizeof(n)) < 0 && errno != EAGAIN)
        die("timerfd read", uv_translate_sys_error(errno));
    pump();
}

static void begin(void)
{
    S.started = true;
    S.t0_us = now_us(CLOCK_MONOTONIC);
    S.t0_real = now_us(CLOCK_REALTIME);
    uv_timer_start(&S.guard, on_guard, (uint64_t)(O.duration_s * 1000.0) + TAIL_MS, 0);
    pump();
}

static void maybe_begin(void)
{
    if (!S.started && S.nconnected == O.conns && (!O.sse || S.sse_frames > 0))
        begin();
}

static void conn_on_connect(uv_connect_t *req, int status)
{
    struct conn *c = req->data;

    if (status < 0) {
        if (!S.started)
            die("connect", status);
        conn_fail(c);
        return;
    }
    uv_tcp_nodelay(&c->tcp, 1);
    uv_read_start((uv_stream_t *)&c->tcp, on_alloc, conn_on_read);
    c->state = C_IDLE;
    if (!S.started) {
        S.nconnected++;
        maybe_begin();
    } else {
        pump();
    }
}

static void conn_open(struct conn *c)
{
    int rc = uv_tcp_init(&S.loop, &c->tcp);

    if (rc < 0)
        die("socket", rc);
    c->tcp.data = c;
    c->creq.data = c;
    c->state = C_CONNECTING;
    rc = uv_tcp_connect(&c->creq, &c->tcp, (const struct sockaddr *)&O.addr, conn_on_connect);
    if (rc < 0)
        die("connect", rc);
}

/* ------------------------------------------------------------------ the subscriber */

static void on_sse_event(void *arg, const struct ssb_sse_event *ev)
{
    uint64_t now = now_us(CLOCK_MONOTONIC);

    (void)arg;
    if (S.sse_frames++ == 0) {
        maybe_begin();
        return;
    }
    if (ev->has_mark && ev->mark.tag == S.tag && ev->mark.n < S.total
        && S.recs[ev->mark.n].sse_us == 0)
        S.recs[ev->mark.n].sse_us = now;
}

static void sse_data(void *arg, const char *p, size_t n)
{
    ssb_sse_feed(&S.sse, p, n, on_sse_event, arg);
}

static void sse_on_read(uv_stream_t *st, ssize_t nread, const uv_buf_t *buf)
{
    bool had_head = S.sresp.has_head;

    (void)st;
    if (nread < 0) {
        if (!S.reported)
            die("SSE stream ended", (int)nread);
        return;
    }
    if (ssb_resp_feed(&S.sresp, buf->base, (size_t)nread, sse_data, NULL) < 0)
        die("SSE response", 0);
    if (!had_head && S.sresp.has_head && S.sresp.head.status != 200) {
        fprintf(stderr, "paced: SSE status %d\n", S.sresp.head.status);
        exit(1);
    }
}

static void sse_on_connect(uv_connect_t *req, int status)
{
    int n;
    uv_buf_t b;

    (void)req;
    if (status < 0)
        die("SSE connect", status);
    n = snprintf(S.sreq, sizeof(S.sreq),
                 "GET /api/v1/events/memories HTTP/1.1\r\nHost: %s\r\nAccept: text/event-stream\r\n"
                 "x-project-id: %s\r\n%s%s%s\r\n",
                 O.host, O.project, O.api_key ? "Authorization: Bearer " : "",
                 O.api_key ? O.api_key : "", O.api_key ? "\r\n" : "");
    if (n < 0 || (size_t)n >= sizeof(S.sreq))
        die("SSE request too long", 0);
    b = uv_buf_init(S.sreq, (unsigned)n);
    if (uv_write(&S.swreq, (uv_stream_t *)&S.stcp, &b, 1, NULL) < 0)
        die("SSE write", 0);
    uv_read_start((uv_stream_t *)&S.stcp, on_alloc, sse_on_read);
}

/* ------------------------------------------------------------------ the report */

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a;
    uint64_t y = *(const uint64_t *)b;

    return x < y ? -1 : x > y;
}

/* The p-th percentile as the node tool computed it: element ceil(p/100 * n) - 1 of the sorted
 * values. Prints "null" for no values. */
static void pct(FILE *f, const char *name, const uint64_t *v, size_t n, double p)
{
    size_t k;
    double r = p / 100.0 * (double)n;

    if (n == 0) {
        fprintf(f, ",\"%s\":null", name);
        return;
    }
    k = (size_t)r;
    if ((double)k < r)
        k++;
    k = k == 0 ? 0 : k - 1;
    if (k >= n)
        k = n - 1;
    fprintf(f, ",\"%s\":%" PRIu64, name, v[k]);
}

static double epoch_ms(uint64_t mono_us)
{
    return ((double)S.t0_real + (double)mono_us - (double)S.t0_us) / 1000.0;
}

static void write_csv(void)
{
    FILE *f = fopen(O.csv, "w");
    uint64_t i;

    if (f == NULL) {
        perror("paced: --csv");
        exit(1);
    }
    fputs("id,sched_ms,sent_ms,resp_ms,sse_ms\n", f);
    for (i = 0; i < S.total; i++) {
        const struct rec *r = &S.recs[i];

        if (r->id[0] == '\0')
            continue;
        fprintf(f, "%s,%.3f,%.3f,%.3f,", r->id, epoch_ms(sched_us(i)),
                epoch_ms(r->sent_us ? r->sent_us : sched_us(i)), epoch_ms(r->resp_us));
        if (r->sse_us)
            fprintf(f, "%.3f", epoch_ms(r->sse_us));
        fputc('\n', f);
    }
    if (fclose(f) != 0) {
        perror("paced: --csv");
        exit(1);
    }
}

static void report(void)
{
    uint64_t *lat = calloc(S.total + 1, sizeof(*lat));
    uint64_t *svc = calloc(S.total + 1, sizeof(*svc));
    uint64_t *sse = calloc(S.total + 1, sizeof(*sse));
    size_t nl = 0;
    size_t ns = 0;
    uint64_t last = S.t0_us;
    uint64_t i;
    double elapsed;

    if (S.reported)
        return;
    S.reported = true;
    if (lat == NULL || svc == NULL || sse == NULL)
        die("out of memory", 0);
    if (S.done < S.total)
        fprintf(stderr, "paced: %" PRIu64 " of %" PRIu64 " requests unanswered at the deadline\n",
                S.total - S.done, S.total);
    for (i = 0; i < S.total; i++) {
        const struct rec *r = &S.recs[i];

        if (r->resp_us == 0)
            continue;
        lat[nl] = r->resp_us - sched_us(i);
        svc[nl] = r->resp_us - (r->sent_us ? r->sent_us : sched_us(i));
        nl++;
        if (r->resp_us > last)
            last = r->resp_us;
        if (r->sse_us)
            sse[ns++] = r->sse_us > r->resp_us ? r->sse_us - r->resp_us : 0;
    }
    qsort(lat, nl, sizeof(*lat), cmp_u64);
    qsort(svc, nl, sizeof(*svc), cmp_u64);
    qsort(sse, ns, sizeof(*sse), cmp_u64);
    elapsed = (double)(last - S.t0_us) / 1e6;
    printf("PACEDJSON {\"target_rate\":%g,\"requests\":%" PRIu64 ",\"completed\":%zu,"
           "\"duration_s\":%.3f,\"rps\":%.1f,\"status_201\":%" PRIu64 ",\"status_200\":%" PRIu64
           ",\"status_other\":%" PRIu64 ",\"err_net\":%" PRIu64 ",\"conns\":%u",
           O.rate, S.total, nl, elapsed, elapsed > 0 ? (double)nl / elapsed : 0.0, S.ok, S.dup,
           S.other, S.neterr, O.conns);
    pct(stdout, "p50_us", lat, nl, 50);
    pct(stdout, "p90_us", lat, nl, 90);
    pct(stdout, "p99_us", lat, nl, 99);
    pct(stdout, "max_us", lat, nl, 100);
    pct(stdout, "svc_p50_us", svc, nl, 50);
    pct(stdout, "svc_p99_us", svc, nl, 99);
    if (O.sse) {
        printf(",\"sse_frames\":%" PRIu64 ",\"sse_matched\":%zu", S.sse_frames, ns);
        pct(stdout, "sse_p50_us", sse, ns, 50);
        pct(stdout, "sse_p90_us", sse, ns, 90);
        pct(stdout, "sse_p99_us", sse, ns, 99);
        pct(stdout, "sse_max_us", sse, ns, 100);
    }
    printf("}\n");
    fflush(stdout);
    if (O.csv)
        write_csv();
    free(lat);
    free(svc);
    free(sse);
    exit(0);
}

static void on_startup_timeout(uv_timer_t *t)
{
    (void)t;
    if (!S.started) {
        fprintf(stderr, "paced: not ready within %d ms (%u of %u connections%s)\n", CONNECT_WAIT_MS,
                S.nconnected, O.conns, O.sse && S.sse_frames == 0 ? ", no SSE frame" : "");
        exit(1);
    }
}

/* ------------------------------------------------------------------ main */

static void usage(void)
{
    fprintf(stderr, "usage: paced --url http://127.0.0.1:PORT --rate N --duration S [--project P]\n"
                    "             [--conns C (16)] [--api-key K] [--sse] [--csv FILE]\n");
    exit(2);
}

static void parse_url(const char *url)
{
    const char *hp;
    const char *colon;
    char ip[64];
    long port;
    int rc;

    if (strncmp(url, "http://", 7) != 0)
        usage();
    hp = url + 7;
    colon = strchr(hp, ':');
    if (colon == NULL || (size_t)(colon - hp) >= sizeof(ip))
        usage();
    memcpy(ip, hp, (size_t)(colon - hp));
    ip[colon - hp] = '\0';
    port = strtol(colon + 1, NULL, 10);
    if (port <= 0 || port > 65535)
        usage();
    rc = uv_ip4_addr(ip, (int)port, &O.addr);
    if (rc < 0)
        die("--url must name an IPv4 address", rc);
    snprintf(O.host, sizeof(O.host), "%s:%ld", ip, port);
}

int main(int argc, char **argv)
{
    static const struct option opts[] = {
        {"url", 1, 0, 'u'},     {"rate", 1, 0, 'r'},  {"duration", 1, 0, 'd'},
        {"project", 1, 0, 'p'}, {"conns", 1, 0, 'c'}, {"api-key", 1, 0, 'k'},
        {"sse", 0, 0, 's'},     {"csv", 1, 0, 'o'},   {0, 0, 0, 0}};
    bool have_url = false;
    uv_timer_t startup;
    uint32_t i;
    int opt;
    int rc;

    while ((opt = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        switch (opt) {
        case 'u':
            parse_url(optarg);
            have_url = true;
            break;
        case 'r': O.rate = strtod(optarg, NULL); break;
        case 'd': O.duration_s = strtod(optarg, NULL); break;
        case 'p': O.project = optarg; break;
        case 'c': O.conns = (uint32_t)strtoul(optarg, NULL, 10); break;
        case 'k': O.api_key = optarg; break;
        case 's': O.sse = true; break;
        case 'o': O.csv = optarg; break;
        default: usage();
        }
    }
    if (!have_url || !(O.rate > 0) || !(O.duration_s > 0) || O.conns < 1 || O.conns > MAX_CONNS)
        usage();
    S.total = (uint64_t)(O.rate * O.duration_s);
    if (S.total == 0)
        usage();
    S.tag = (uint32_t)(now_us(CLOCK_REALTIME) % 1000000000u) ^ (uint32_t)getpid();
    srand(S.tag);
    S.recs = calloc(S.total, sizeof(*S.recs));
    S.c = calloc(O.conns, sizeof(*S.c));
    if (S.recs == NULL || S.c == NULL)
        die("out of memory", 0);

    rc = uv_loop_init(&S.loop);
    if (rc < 0)
        die("uv_loop_init", rc);
    S.tfd = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC);
    if (S.tfd < 0)
        die("timerfd_create", uv_translate_sys_error(errno));
    uv_poll_init(&S.loop, &S.tick, S.tfd);
    uv_poll_start(&S.tick, UV_READABLE, on_tick);
    uv_timer_init(&S.loop, &S.guard);
    uv_timer_init(&S.loop, &startup);
    uv_timer_start(&startup, on_startup_timeout, O.sse ? SSE_WAIT_MS : CONNECT_WAIT_MS, 0);
    uv_unref((uv_handle_t *)&startup);

    for (i = 0; i < O.conns; i++)
        conn_open(&S.c[i]);
    if (O.sse) {
        rc = uv_tcp_init(&S.loop, &S.stcp);
        if (rc < 0)
            die("SSE socket", rc);
        rc = uv_tcp_connect(&S.screq, &S.stcp, (const struct sockaddr *)&O.addr, sse_on_connect);
        if (rc < 0)
            die("SSE connect", rc);
    }
    uv_run(&S.loop, UV_RUN_DEFAULT);
    report(); /* the loop ran dry: report what completed */
    return 0;
}
