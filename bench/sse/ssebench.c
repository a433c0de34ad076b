/* bench/sse/ssebench.c: SSE fan-out load tool (issue #4 benchmark).
 *
 * One coordinator process forks --procs workers (each holds at most ~19,000 sockets: the open-file
 * limit is 20,000 per process and cannot be raised). Each worker opens its share of --subs
 * subscribers at a bounded rate, each bound to one of --sources loopback source addresses before
 * connecting, and parses their streams incrementally (sseparse.h). The coordinator is also the
 * writer: it sends events at a set rate over keep-alive connections, one phase after another, and
 * after each phase collects every worker's counters and latency histogram over a socketpair.
 *
 *   coordinator                         worker (x procs)
 *   ----------- fork ------------------> connect subscribers at rate/procs
 *   <------------- progress (200 ms) --- ready, failed, closed, events received
 *   read server RSS before/after idle subscribers are up
 *   phase p: write rate x duration
 *   wait until received == expected (or --drain s)
 *   'R' p ----------------------------->
 *   <----------------- phase p report -- received, lost, dup, ooo, histogram
 *   ... next phase; 'Q' at the end ----> exit
 *
 * Latency is the subscriber's CLOCK_REALTIME at receipt minus the writer's CLOCK_REALTIME at send,
 * which the writer embeds in the event text (same host, same clock). Sequence: with --seq id the
 * number after the last ':' of each frame's "id:" must go up by exactly one (engram, baseline);
 * with --seq text the writer's own event number is checked instead (nchan, whose ids are not
 * contiguous; use one writer connection so sends are ordered).
 *
 * Output: one "SSEJSON {...}" line on stdout for the connect phase and one per write phase;
 * progress on stderr. Every loop here is bounded: connects by --subs and --connect-timeout, each
 * phase by its duration plus --drain. */
#define _GNU_SOURCE
#include "sseparse.h"

#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <uv.h>

#define MAX_PROCS            16
#define MAX_PHASES           64
#define MAX_WRITER_CONNS     64
#define MAX_PIDS             16
#define READ_BUF_BYTES       (256 * 1024)
#define CONNECT_INFLIGHT_MAX 256
#define PROGRESS_MS          200

#ifndef IP_BIND_ADDRESS_NO_PORT
#define IP_BIND_ADDRESS_NO_PORT 24
#endif

enum seq_mode { SEQ_ID, SEQ_TEXT };
enum ready_mode { READY_CONNECTED, READY_HEAD };

struct phase_spec {
    double rate;       /* events/s */
    double duration_s; /* seconds of writing */
    bool is_ramp;      /* part of the ramp: the ramp stops at its first failed phase */
};

#define MAX_TARGETS 8

struct opts {
    const char *kind;
    struct sockaddr_in sub_addr[MAX_TARGETS]; /* --target a,b,c: subscriber i uses i % ntargets */
    uint32_t ntargets;
    struct sockaddr_in pub_addr[MAX_TARGETS]; /* writer connection i uses i % npub */
    uint32_t npub;
    char sub_host[64];
    char pub_host[64];
    const char *sub_path;
    const char *pub_path;
    const char *project;
    const char *subject;
    uint32_t subs;
    uint32_t procs;
    uint32_t sources;
    uint32_t source_base;
    double connect_rate;
    double connect_timeout_s;
    double settle_s;
    double drain_s;
    double gap_s;
    double max_p99_ms;
    uint32_t writer_conns;
    enum seq_mode seq;
    enum ready_mode ready;
    uint32_t tag;
    struct phase_spec phases[MAX_PHASES];
    uint32_t nphases;
    int server_pids[MAX_PIDS];
    uint32_t nserver_pids;
    const char *label;
};

static struct opts O;

/* ------------------------------------------------------------------ messages */

enum { MSG_PROGRESS = 1, MSG_PHASE = 2 };

struct msg_progress {
    uint32_t type;
    uint32_t worker;
    uint64_t ready;    /* subscribers that became ready (ever) */
    uint64_t failed;   /* connect errors, non-200 heads, closes before ready */
    uint64_t closed;   /* ready subscribers whose stream ended */
    uint64_t received; /* marked events of this run, all phases */
    uint64_t parse_errors;
};

struct msg_phase {
    uint32_t type;
    uint32_t phase;
    uint64_t received;
    uint64_t lost;
    uint64_t dup;
    uint64_t ooo;
    uint64_t stray;
    uint64_t hist[SSB_HIST_N];
};

static uint64_t now_realtime_us(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_REALTIME, &ts);
    return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

static double now_mono_s(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void die(const char *what, int err)
{
    fprintf(stderr, "ssebench: %s: %s\n", what, err ? uv_strerror(err) : "failed");
    exit(1);
}

/* Writes all of buf to a blocking-free socketpair end from a loop; small messages only go through
 * uv_try_write, the phase report through uv_write with a heap copy. */
struct heap_write {
    uv_write_t req;
    char data[];
};

static void on_heap_write(uv_write_t *req, int status)
{
    (void)status;
    free(req->data);
}

static void send_msg(uv_stream_t *s, const void *msg, size_t len)
{
    struct heap_write *hw = malloc(sizeof(*hw) + len);
    uv_buf_t b;

    if (hw == NULL)
        abort();
    memcpy(hw->data, msg, len);
    hw->req.data = hw;
    b = uv_buf_init(hw->data, (unsigned)len);
    if (uv_write(&hw->req, s, &b, 1, on_heap_write) < 0)
        free(hw);
}

/* ------------------------------------------------------------------ worker: subscribers */

enum sub_state { SUB_IDLE, SUB_CONNECTING, SUB_HEAD, SUB_STREAM, SUB_CLOSED };

struct worker;

struct sub {
    uv_tcp_t tcp;
    uv_connect_t creq;
    uv_write_t wreq;
    struct worker *w;
    uint32_t index; /* global index: picks the source address */
    uint8_t state;
    bool is_ready;
    bool is_chunked;
    bool has_last;
    int head_matched;
    uint64_t last;
    struct ssb_chunked ch;
    struct ssb_sse sse;
};

struct worker {
    uv_loop_t loop;
    uv_pipe_t ctl;
    uv_timer_t tick;
    uint32_t id;
    struct sub *subs;
    uint32_t nsubs;
    uint32_t started;
    uint32_t inflight; /* connecting or waiting for the head */
    double t0;
    double rate;
    uint64_t now_us; /* receipt time of the read being parsed */
    struct sub *cur; /* the subscriber whose bytes are being parsed */
    struct msg_progress prog;
    struct msg_phase *ph; /* MAX_PHASES reports; the last one takes unattributed sequence errors */
    char ctlbuf[16];
    size_t ctllen;
    uv_buf_t req;
    uint64_t last_progress_ms;
};

static char g_read_buf[READ_BUF_BYTES];

static void sub_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
    (void)h;
    (void)suggested;
    /* One buffer per process: every read is parsed before the callback returns. */
    *buf = uv_buf_init(g_read_buf, sizeof(g_read_buf));
}

static void sub_on_close(uv_handle_t *h)
{
    (void)h;
}

static void sub_close(struct sub *s)
{
    struct worker *w = s->w;

    if (s->state == SUB_CLOSED)
        return;
    if (s->state == SUB_CONNECTING || s->state == SUB_HEAD)
        w->inflight--;
    if (s->is_ready)
        w->prog.closed++;
    else
        w->prog.failed++;
    s->state = SUB_CLOSED;
    uv_close((uv_handle_t *)&s->tcp, sub_on_close);
}

static void sub_mark_ready(struct sub *s)
{
    if (s->is_ready)
        return;
    s->is_ready = true;
    s->w->prog.ready++;
}

static void sub_check_seq(struct sub *s, uint64_t v, struct msg_phase *ph)
{
    if (!s->has_last) {
        s->has_last = true;
        s->last = v;
        return;
    }
    if (v == s->last + 1) {
        s->last = v;
    } else if (v > s->last) {
        ph->lost += v - s->last - 1;
        s->last = v;
    } else if (v == s->last) {
        ph->dup++;
    } else {
        ph->ooo++;
    }
}

static void sub_on_event(void *arg, const struct ssb_sse_event *ev)
{
    struct sub *s = arg;
    struct worker *w = s->w;
    struct msg_phase *ph = &w->ph[MAX_PHASES - 1];
    bool is_ours = ev->has_mark && ev->mark.tag == O.tag;

    if (ev->is_connected) {
        if (ev->has_id && O.seq == SEQ_ID) {
            s->has_last = true;
            s->last = ev->id_seq;
        }
        if (O.ready == READY_CONNECTED)
            sub_mark_ready(s);
        return;
    }
    if (is_ours && ev->mark.phase < MAX_PHASES - 1)
        ph = &w->ph[ev->mark.phase];
    if (O.seq == SEQ_ID && ev->has_id)
        sub_check_seq(s, ev->id_seq, ph);
    else if (O.seq == SEQ_TEXT && is_ours)
        sub_check_seq(s, ev->mark.n, ph);
    if (!is_ours) {
        ph->stray++;
        return;
    }
    ph->received++;
    w->prog.received++;
    ph->hist[ssb_hist_bucket(w->now_us > ev->mark.send_us ? w->now_us - ev->mark.send_us : 0)]++;
}

static void sub_on_body(void *arg, const char *p, size_t len)
{
    struct sub *s = arg;

    ssb_sse_feed(&s->sse, p, len, sub_on_event, s);
}

static void sub_feed_body(struct sub *s, const char *p, size_t len)
{
    if (len == 0)
        return;
    if (s->is_chunked) {
        if (ssb_chunked_feed(&s->ch, p, len, sub_on_body, s) < 0) {
            s->w->prog.parse_errors++;
            sub_close(s);
        }
    } else {
        ssb_sse_feed(&s->sse, p, len, sub_on_event, s);
    }
}

static void sub_on_read(uv_stream_t *st, ssize_t nread, const uv_buf_t *buf)
{
    struct sub *s = st->data;
    struct worker *w = s->w;
    const char *p = buf->base;
    size_t len;

    if (nread < 0) {
        sub_close(s);
        return;
    }
    if (nread == 0)
        return;
    len = (size_t)nread;
    w->now_us = now_realtime_us();
    if (s->state == SUB_HEAD) {
        size_t n = ssb_head_end(&s->head_matched, p, len);
        size_t take = n > 0 ? n : len;
        struct ssb_head head;

        if (s->sse.line_len + take > SSB_LINE_MAX) {
            w->prog.parse_errors++;
            sub_close(s);
            return;
        }
        memcpy(s->sse.line + s->sse.line_len, p, take);
        s->sse.line_len += (uint32_t)take;
        if (n == 0)
            return;
        if (ssb_head_parse(s->sse.line, s->sse.line_len, &head) < 0 || head.status != 200) {
            if (head.status == 0)
                w->prog.parse_errors++;
            sub_close(s);
            return;
        }
        s->sse.line_len = 0;
        s->is_chunked = head.is_chunked;
        s->state = SUB_STREAM;
        w->inflight--;
        if (O.ready == READY_HEAD)
            sub_mark_ready(s);
        p += n;
        len -= n;
    }
    sub_feed_body(s, p, len);
    if (s->is_chunked && s->ch.is_done)
        sub_close(s);
}

static void sub_on_write(uv_write_t *req, int status)
{
    struct sub *s = req->data;

    if (status < 0)
        sub_close(s);
}

static void sub_on_connect(uv_connect_t *req, int status)
{
    struct sub *s = req->data;
    int rc;

    if (s->state != SUB_CONNECTING)
        return;
    if (status < 0) {
        sub_close(s);
        return;
    }
    s->state = SUB_HEAD;
    s->tcp.data = s;
    s->wreq.data = s;
    rc = uv_write(&s->wreq, (uv_stream_t *)&s->tcp, &s->w->req, 1, sub_on_write);
    if (rc == 0)
        rc = uv_read_start((uv_stream_t *)&s->tcp, sub_alloc, sub_on_read);
    if (rc < 0)
        sub_close(s);
}

static void sub_start(struct sub *s)
{
    struct worker *w = s->w;
    struct sockaddr_in src;
    uv_os_fd_t fd;
    int one = 1;
    int rc;

    memset(&src, 0, sizeof(src));
    src.sin_family = AF_INET;
    src.sin_addr.s_addr = htonl((127u << 24) | (O.source_base + s->index % O.sources));
    rc = uv_tcp_init_ex(&w->loop, &s->tcp, AF_INET);
    if (rc < 0) {
        w->prog.failed++;
        s->state = SUB_CLOSED;
        return;
    }
    s->state = SUB_CONNECTING;
    w->inflight++;
    s->creq.data = s;
    /* Let the kernel pick the port at connect time from the full 4-tuple, so each source address
     * is not limited to one ephemeral range shared by every destination. */
    if (uv_fileno((uv_handle_t *)&s->tcp, &fd) == 0)
        (void)setsockopt(fd, IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, &one, sizeof(one));
    rc = uv_tcp_bind(&s->tcp, (const struct sockaddr *)&src, 0);
    if (rc == 0)
        rc = uv_tcp_connect(&s->creq, &s->tcp,
                            (const struct sockaddr *)&O.sub_addr[s->index % O.ntargets],
                            sub_on_connect);
    if (rc < 0)
        sub_close(s);
}

static void worker_send_progress(struct worker *w)
{
    uv_buf_t b = uv_buf_init((char *)&w->prog, sizeof(w->prog));

    /* Best effort: a progress record that does not fit now is superseded by the next one. */
    (void)uv_try_write((uv_stream_t *)&w->ctl, &b, 1);
}

static void worker_on_tick(uv_timer_t *t)
{
    struct worker *w = t->data;
    double elapsed = now_mono_s() - w->t0;
    uint64_t allowed = (uint64_t)(elapsed * w->rate) + 1;
    uint64_t ms = uv_now(&w->loop);

    while (w->started < w->nsubs && w->started < allowed && w->inflight < CONNECT_INFLIGHT_MAX)
        sub_start(&w->subs[w->started++]);
    if (ms - w->last_progress_ms >= PROGRESS_MS) {
        w->last_progress_ms = ms;
        worker_send_progress(w);
    }
}

static void worker_ctl_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
    struct worker *w = h->data;

    (void)suggested;
    *buf = uv_buf_init(w->ctlbuf + w->ctllen, (unsigned)(sizeof(w->ctlbuf) - w->ctllen));
}

static void worker_on_ctl(uv_stream_t *st, ssize_t nread, const uv_buf_t *buf)
{
    struct worker *w = st->data;
    size_t i = 0;

    (void)buf;
    if (nread < 0) {
        /* The coordinator is gone: nothing left to report to. */
        _exit(0);
    }
    w->ctllen += (size_t)nread;
    while (i < w->ctllen) {
        if (w->ctlbuf[i] == 'Q') {
            worker_send_progress(w);
            _exit(0);
        }
        if (w->ctlbuf[i] == 'R') {
            uint32_t p;

            if (i + 1 >= w->ctllen)
                break;
            p = (uint8_t)w->ctlbuf[i + 1];
            if (p < MAX_PHASES) {
                w->ph[p].type = MSG_PHASE;
                w->ph[p].phase = p;
                /* Sequence errors no marked event could be tied to go with this report. */
                w->ph[p].lost += w->ph[MAX_PHASES - 1].lost;
                w->ph[p].dup += w->ph[MAX_PHASES - 1].dup;
                w->ph[p].ooo += w->ph[MAX_PHASES - 1].ooo;
                w->ph[p].stray += w->ph[MAX_PHASES - 1].stray;
                memset(&w->ph[MAX_PHASES - 1], 0, sizeof(w->ph[0]));
                worker_send_progress(w);
                send_msg((uv_stream_t *)&w->ctl, &w->ph[p], sizeof(w->ph[p]));
            }
            i += 2;
            continue;
        }
        i++;
    }
    memmove(w->ctlbuf, w->ctlbuf + i, w->ctllen - i);
    w->ctllen -= i;
}

static char *build_sub_request(void)
{
    char *r = malloc(2048);
    int n;

    if (r == NULL)
        abort();
    n = snprintf(r, 2048,
                 "GET %s HTTP/1.1\r\nHost: %s\r\nAccept: text/event-stream\r\n"
                 "Cache-Control: no-cache\r\n%s%s%s\r\n",
                 O.sub_path, O.sub_host, O.project ? "x-project-id: " : "",
                 O.project ? O.project : "", O.project ? "\r\n" : "");
    if (n < 0 || n >= 2048)
        die("subscriber request too long", 0);
    return r;
}

static int worker_main(uint32_t id, int fd, uint32_t first, uint32_t count)
{
    struct worker *w = calloc(1, sizeof(*w));
    char *req;
    uint32_t i;
    int rc;

    if (w == NULL)
        abort();
    w->ph = calloc(MAX_PHASES, sizeof(*w->ph));
    w->subs = calloc(count, sizeof(*w->subs));
    if (w->ph == NULL || (count > 0 && w->subs == NULL))
        abort();
    w->id = id;
    w->nsubs = count;
    w->prog.type = MSG_PROGRESS;
    w->prog.worker = id;
    w->rate = O.connect_rate / O.procs;
    req = build_sub_request();
    w->req = uv_buf_init(req, (unsigned)strlen(req));
    for (i = 0; i < count; i++) {
        w->subs[i].w = w;
        w->subs[i].index = first + i;
    }
    rc = uv_loop_init(&w->loop);
    if (rc < 0)
        die("uv_loop_init", rc);
    rc = uv_pipe_init(&w->loop, &w->ctl, 0);
    if (rc == 0)
        rc = uv_pipe_open(&w->ctl, fd);
    if (rc < 0)
        die("worker control pipe", rc);
    w->ctl.data = w;
    uv_read_start((uv_stream_t *)&w->ctl, worker_ctl_alloc, worker_on_ctl);
    uv_timer_init(&w->loop, &w->tick);
    w->tick.data = w;
    w->t0 = now_mono_s();
    uv_timer_start(&w->tick, worker_on_tick, 0, 5);
    uv_run(&w->loop, UV_RUN_DEFAULT);
    return 0;
}

/* ------------------------------------------------------------------ coordinator: writer */

enum wc_state { WC_DOWN, WC_CONNECTING, WC_IDLE, WC_BUSY };

struct coord;

struct wconn {
    uv_tcp_t tcp;
    uv_connect_t creq;
    uv_write_t wreq;
    uv_timer_t retry;
    struct coord *c;
    int state;
    bool is_open;
    uint32_t phase;
    uint64_t sent_us;
    struct ssb_resp resp;
    char req[1024];
};

struct wphase {
    uint64_t planned;
    uint64_t sent;
    uint64_t acked; /* 2xx */
    uint64_t status_err;
    uint64_t net_err;
    uint64_t max_backlog;
    uint64_t live_subs; /* subscribers live when the phase started */
    uint64_t expected;
    uint64_t post_hist[SSB_HIST_N];
    double t_start;
    double t_end;
    uint64_t srv_ticks0;
    uint64_t load_ticks0;
    uint64_t all_ticks0;
    char loadavg[64];
};

enum coord_state { C_CONNECTING, C_SETTLE, C_WRITING, C_DRAIN, C_REPORT, C_GAP, C_DONE };

struct coord {
    uv_loop_t loop;
    uv_timer_t tick;
    uv_timer_t wtick;
    uv_pipe_t ctl[MAX_PROCS];
    pid_t pids[MAX_PROCS];
    char *rbuf[MAX_PROCS];
    size_t rlen[MAX_PROCS];
    struct msg_progress prog[MAX_PROCS];
    struct msg_phase agg;
    uint32_t reports;
    struct wconn wc[MAX_WRITER_CONNS];
    struct wphase wp[MAX_PHASES];
    int state;
    uint32_t phase;
    double t_state;
    double t_connect0;
    double connect_s;
    uint64_t rss_before_kb;
    uint64_t rss_after_kb;
    uint64_t n; /* the writer's event counter, over all phases */
    uint64_t expected_total;
    uint64_t inflight;
    bool is_ramp_stopped;
    double last_print;
};

static struct coord C;

static uint64_t sum_received(void)
{
    uint64_t r = 0;
    uint32_t i;

    for (i = 0; i < O.procs; i++)
        r += C.prog[i].received;
    return r;
}

static void sum_progress(struct msg_progress *t)
{
    uint32_t i;

    memset(t, 0, sizeof(*t));
    for (i = 0; i < O.procs; i++) {
        t->ready += C.prog[i].ready;
        t->failed += C.prog[i].failed;
        t->closed += C.prog[i].closed;
        t->received += C.prog[i].received;
        t->parse_errors += C.prog[i].parse_errors;
    }
}

/* VmRSS of the given processes, summed (kB). */
static uint64_t read_rss_kb(void)
{
    uint64_t total = 0;
    uint32_t i;

    for (i = 0; i < O.nserver_pids; i++) {
        char path[64];
        char line[256];
        FILE *f;

        snprintf(path, sizeof(path), "/proc/%d/status", O.server_pids[i]);
        f = fopen(path, "r");
        if (f == NULL)
            continue;
        while (fgets(line, sizeof(line), f) != NULL) {
            unsigned long long kb;

            if (sscanf(line, "VmRSS: %llu kB", &kb) == 1)
                total += kb;
        }
        fclose(f);
    }
    return total;
}

/* utime + stime of a process, in clock ticks. */
static uint64_t proc_ticks(int pid)
{
    char path[64];
    char buf[1024];
    FILE *f;
    size_t n;
    char *p;
    unsigned long long ut = 0;
    unsigned long long st = 0;

    snprintf(path, sizeof(path), "/proc/%d/stat", pid);
    f = fopen(path, "r");
    if (f == NULL)
        return 0;
    n = fread(buf, 1, sizeof(buf) - 1, f);
    fclose(f);
    buf[n] = '\0';
    p = strrchr(buf, ')');
    if (p == NULL)
        return 0;
    /* Fields after the command: state(3) ... utime(14) stime(15). */
    if (sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %llu %llu", &ut, &st) != 2)
        return 0;
    return ut + st;
}

static uint64_t server_ticks(void)
{
    uint64_t t = 0;
    uint32_t i;

    for (i = 0; i < O.nserver_pids; i++)
        t += proc_ticks(O.server_pids[i]);
    return t;
}

static uint64_t load_ticks(void)
{
    uint64_t t = proc_ticks(getpid());
    uint32_t i;

    for (i = 0; i < O.procs; i++)
        t += proc_ticks(C.pids[i]);
    return t;
}

/* Busy ticks of the whole machine (user, nice, system, irq, softirq, steal). */
static uint64_t machine_ticks(void)
{
    unsigned long long v[8] = {0};
    FILE *f = fopen("/proc/stat", "r");
    int n;

    if (f == NULL)
        return 0;
    n = fscanf(f, "cpu %llu %llu %llu %llu %llu %llu %llu %llu", &v[0], &v[1], &v[2], &v[3], &v[4],
               &v[5], &v[6], &v[7]);
    fclose(f);
    if (n != 8)
        return 0;
    return v[0] + v[1] + v[2] + v[5] + v[6] + v[7];
}

static void read_loadavg(char *out, size_t cap)
{
    FILE *f = fopen("/proc/loadavg", "r");

    out[0] = '\0';
    if (f == NULL)
        return;
    if (fgets(out, (int)cap, f) != NULL) {
        char *sp = out;
        int fields = 0;

        /* Keep the three averages. */
        while (*sp != '\0' && fields < 3) {
            if (*sp == ' ' && ++fields == 3)
                *sp = '\0';
            else
                sp++;
        }
    }
    fclose(f);
}

static void wc_connect(struct wconn *w);

static void wc_on_retry(uv_timer_t *t)
{
    wc_connect(t->data);
}

static void wc_on_close(uv_handle_t *h)
{
    struct wconn *w = h->data;

    w->is_open = false;
    w->state = WC_DOWN;
    if (C.state != C_DONE)
        uv_timer_start(&w->retry, wc_on_retry, 100, 0);
}

static void wc_fail(struct wconn *w)
{
    if (w->state == WC_BUSY) {
        C.wp[w->phase].net_err++;
        C.inflight--;
    }
    w->state = WC_DOWN;
    if (w->is_open && !uv_is_closing((uv_handle_t *)&w->tcp))
        uv_close((uv_handle_t *)&w->tcp, wc_on_close);
}

static void wc_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
    (void)h;
    (void)suggested;
    *buf = uv_buf_init(g_read_buf, sizeof(g_read_buf));
}

static void writer_pump(void);

static void wc_done(struct wconn *w, int status)
{
    struct wphase *wp = &C.wp[w->phase];
    uint64_t now = now_realtime_us();

    if (status >= 200 && status < 300)
        wp->acked++;
    else
        wp->status_err++;
    wp->post_hist[ssb_hist_bucket(now > w->sent_us ? now - w->sent_us : 0)]++;
    w->state = WC_IDLE;
    C.inflight--;
    writer_pump();
}

static void wc_noop_data(void *arg, const char *p, size_t len)
{
    (void)arg;
    (void)p;
    (void)len;
}

static void wc_on_read(uv_stream_t *st, ssize_t nread, const uv_buf_t *buf)
{
    struct wconn *w = st->data;
    const char *p = buf->base;
    size_t len;

    if (nread < 0) {
        wc_fail(w);
        return;
    }
    len = (size_t)nread;
    while (len > 0) {
        ssize_t n;

        if (w->state != WC_BUSY)
            return; /* bytes nobody asked for: ignore */
        n = ssb_resp_feed(&w->resp, p, len, wc_noop_data, NULL);
        if (n < 0) {
            wc_fail(w);
            return;
        }
        p += n;
        len -= (size_t)n;
        if (w->resp.is_done)
            wc_done(w, w->resp.head.status);
    }
}

static void wc_on_connect(uv_connect_t *req, int status)
{
    struct wconn *w = req->data;

    if (status < 0) {
        wc_fail(w);
        return;
    }
    uv_tcp_nodelay(&w->tcp, 1);
    w->state = WC_IDLE;
    uv_read_start((uv_stream_t *)&w->tcp, wc_alloc, wc_on_read);
    writer_pump();
}

static void wc_connect(struct wconn *w)
{
    int rc;

    if (C.state == C_DONE)
        return;
    rc = uv_tcp_init(&C.loop, &w->tcp);
    if (rc < 0)
        die("writer socket", rc);
    w->tcp.data = w;
    w->creq.data = w;
    w->is_open = true;
    w->state = WC_CONNECTING;
    rc = uv_tcp_connect(&w->creq, &w->tcp,
                        (const struct sockaddr *)&O.pub_addr[(uint32_t)(w - C.wc) % O.npub],
                        wc_on_connect);
    if (rc < 0)
        wc_fail(w);
}

static void wc_on_write(uv_write_t *req, int status)
{
    if (status < 0)
        wc_fail(req->data);
}

static void wc_send(struct wconn *w, uint32_t phase)
{
    struct ssb_mark m;
    char text[256];
    char body[512];
    int tn;
    int bn;
    int rn;
    uv_buf_t b;

    m.tag = O.tag;
    m.phase = phase;
    m.n = ++C.n;
    m.send_us = now_realtime_us();
    tn = ssb_mark_format(text, sizeof(text), &m);
    bn = snprintf(body, sizeof(body), "{\"subject_id\":\"%s\",\"text\":\"%s\"}", O.subject, text);
    if (tn < 0 || bn < 0 || (size_t)bn >= sizeof(body))
        die("event body too long", 0);
    rn = snprintf(w->req, sizeof(w->req),
                  "POST %s HTTP/1.1\r\nHost: %s\r\nContent-Type: application/json\r\n%s%s%s"
                  "Content-Length: %d\r\n\r\n%s",
                  O.pub_path, O.pub_host, O.project ? "x-project-id: " : "",
                  O.project ? O.project : "", O.project ? "\r\n" : "", bn, body);
    if (rn < 0 || (size_t)rn >= sizeof(w->req))
        die("writer request too long", 0);
    w->state = WC_BUSY;
    ssb_resp_reset(&w->resp);
    w->phase = phase;
    w->sent_us = m.send_us;
    w->wreq.data = w;
    C.inflight++;
    C.wp[phase].sent++;
    b = uv_buf_init(w->req, (unsigned)rn);
    if (uv_write(&w->wreq, (uv_stream_t *)&w->tcp, &b, 1, wc_on_write) < 0)
        wc_fail(w);
}

/* Sends every event that is due on an idle connection; the rest wait (open loop: the schedule
 * does not slow down when the server does, the backlog is reported). */
static void writer_pump(void)
{
    struct wphase *wp;
    double elapsed;
    uint64_t due;
    uint32_t i;

    if (C.state != C_WRITING)
        return;
    wp = &C.wp[C.phase];
    elapsed = now_mono_s() - wp->t_start;
    due = (uint64_t)(elapsed * O.phases[C.phase].rate) + 1;
    if (due > wp->planned)
        due = wp->planned;
    if (due > wp->sent && due - wp->sent > wp->max_backlog)
        wp->max_backlog = due - wp->sent;
    for (i = 0; i < O.writer_conns && wp->sent < due; i++)
        if (C.wc[i].state == WC_IDLE)
            wc_send(&C.wc[i], C.phase);
}

static void writer_on_tick(uv_timer_t *t)
{
    (void)t;
    writer_pump();
}

/* ------------------------------------------------------------------ coordinator: control */

static void coord_set_state(int s)
{
    C.state = s;
    C.t_state = now_mono_s();
}

static void coord_phase_start(void)
{
    struct wphase *wp = &C.wp[C.phase];
    struct msg_progress t;

    sum_progress(&t);
    wp->planned = (uint64_t)(O.phases[C.phase].rate * O.phases[C.phase].duration_s + 0.5);
    if (wp->planned == 0)
        wp->planned = 1;
    wp->live_subs = t.ready - t.closed;
    wp->t_start = now_mono_s();
    wp->srv_ticks0 = server_ticks();
    wp->load_ticks0 = load_ticks();
    wp->all_ticks0 = machine_ticks();
    read_loadavg(wp->loadavg, sizeof(wp->loadavg));
    coord_set_state(C_WRITING);
    fprintf(stderr, "ssebench: phase %u: %.2f events/s for %.0f s to %" PRIu64 " subscribers\n",
            C.phase, O.phases[C.phase].rate, O.phases[C.phase].duration_s, wp->live_subs);
    writer_pump();
}

static void coord_print_connect(void)
{
    struct msg_progress t;
    uint64_t live;
    double per_conn;

    sum_progress(&t);
    live = t.ready - t.closed;
    per_conn =
        live > 0 ? ((double)C.rss_after_kb - (double)C.rss_before_kb) * 1024.0 / (double)live : 0;
    printf("SSEJSON {\"label\":\"%s\",\"kind\":\"%s\",\"phase\":\"connect\",\"subs_target\":%u,"
           "\"procs\":%u,\"sources\":%u,\"ready\":%" PRIu64 ",\"failed\":%" PRIu64
           ",\"closed\":%" PRIu64 ",\"parse_errors\":%" PRIu64 ",\"connect_s\":%.2f,"
           "\"connect_rate\":%.0f,\"rss_before_kb\":%" PRIu64 ",\"rss_after_kb\":%" PRIu64
           ",\"rss_per_conn_bytes\":%.0f}\n",
           O.label, O.kind, O.subs, O.procs, O.sources, t.ready, t.failed, t.closed, t.parse_errors,
           C.connect_s, O.connect_rate, C.rss_before_kb, C.rss_after_kb, per_conn);
    fflush(stdout);
}

static void coord_print_phase(void)
{
    struct wphase *wp = &C.wp[C.phase];
    struct msg_phase *a = &C.agg;
    double dur = wp->t_end - wp->t_start;
    long clk = sysconf(_SC_CLK_TCK);
    double srv_s = (double)(server_ticks() - wp->srv_ticks0) / (double)clk;
    double load_s = (double)(load_ticks() - wp->load_ticks0) / (double)clk;
    double all_s = (double)(machine_ticks() - wp->all_ticks0) / (double)clk;
    double other_s = all_s - srv_s - load_s;
    double wall = now_mono_s() - wp->t_start;
    uint64_t p99 = ssb_hist_quantile(a->hist, 0.99);
    bool is_ok = a->received == wp->expected && a->lost == 0 && a->dup == 0 && a->ooo == 0
                 && wp->status_err == 0 && wp->net_err == 0 && wp->acked == wp->planned
                 && (O.max_p99_ms <= 0 || (double)p99 <= O.max_p99_ms * 1000.0);

    printf("SSEJSON {\"label\":\"%s\",\"kind\":\"%s\",\"phase\":%u,\"ramp\":%s,\"rate\":%.3f,"
           "\"duration_s\":%.3f,\"subs\":%" PRIu64 ",\"planned\":%" PRIu64 ",\"sent\":%" PRIu64
           ",\"acked\":%" PRIu64 ",\"status_err\":%" PRIu64 ",\"net_err\":%" PRIu64
           ",\"max_backlog\":%" PRIu64 ",\"expected\":%" PRIu64 ",\"delivered\":%" PRIu64
           ",\"lost\":%" PRIu64 ",\"dup\":%" PRIu64 ",\"ooo\":%" PRIu64 ",\"stray\":%" PRIu64
           ",\"deliveries_per_s\":%.1f,\"p50_us\":%" PRIu64 ",\"p90_us\":%" PRIu64
           ",\"p99_us\":%" PRIu64 ",\"max_us\":%" PRIu64 ",\"post_p50_us\":%" PRIu64
           ",\"post_p99_us\":%" PRIu64
           ",\"server_cpu_pct\":%.1f,\"server_cpu_us_per_delivery\":%.2f,"
           "\"load_cpu_pct\":%.1f,\"other_cpu_pct\":%.1f,\"loadavg\":\"%s\",\"ok\":%s}\n",
           O.label, O.kind, C.phase, O.phases[C.phase].is_ramp ? "true" : "false",
           O.phases[C.phase].rate, dur, wp->live_subs, wp->planned, wp->sent, wp->acked,
           wp->status_err, wp->net_err, wp->max_backlog, wp->expected, a->received, a->lost, a->dup,
           a->ooo, a->stray, dur > 0 ? (double)a->received / dur : 0,
           ssb_hist_quantile(a->hist, 0.50), ssb_hist_quantile(a->hist, 0.90), p99,
           ssb_hist_quantile(a->hist, 1.0), ssb_hist_quantile(wp->post_hist, 0.50),
           ssb_hist_quantile(wp->post_hist, 0.99), 100.0 * srv_s / wall,
           a->received > 0 ? srv_s * 1e6 / (double)a->received : 0, 100.0 * load_s / wall,
           other_s > 0 ? 100.0 * other_s / wall : 0.0, wp->loadavg, is_ok ? "true" : "false");
    fflush(stdout);
    fprintf(stderr,
            "ssebench: phase %u: delivered %" PRIu64 "/%" PRIu64 " (%.0f/s) lost %" PRIu64
            " dup %" PRIu64 " ooo %" PRIu64 " p50 %.1f ms p99 %.1f ms max %.1f ms %s\n",
            C.phase, a->received, wp->expected, dur > 0 ? (double)a->received / dur : 0, a->lost,
            a->dup, a->ooo, (double)ssb_hist_quantile(a->hist, 0.5) / 1000.0, (double)p99 / 1000.0,
            (double)ssb_hist_quantile(a->hist, 1.0) / 1000.0, is_ok ? "ok" : "FAIL");
    if (!is_ok && O.phases[C.phase].is_ramp)
        C.is_ramp_stopped = true;
}

static void coord_finish(void)
{
    uint32_t i;

    coord_set_state(C_DONE);
    for (i = 0; i < O.procs; i++) {
        uv_buf_t b = uv_buf_init("Q", 1);

        (void)uv_try_write((uv_stream_t *)&C.ctl[i], &b, 1);
    }
    uv_stop(&C.loop);
}

static void coord_next_phase(void)
{
    C.phase++;
    while (C.phase < O.nphases && O.phases[C.phase].is_ramp && C.is_ramp_stopped)
        C.phase++;
    if (C.phase >= O.nphases) {
        coord_finish();
        return;
    }
    coord_set_state(C_GAP);
}

static void coord_on_msg(uint32_t worker, const char *p)
{
    uint32_t type;

    memcpy(&type, p, sizeof(type));
    if (type == MSG_PROGRESS) {
        memcpy(&C.prog[worker], p, sizeof(C.prog[worker]));
    } else if (type == MSG_PHASE) {
        const struct msg_phase *m = (const struct msg_phase *)p;
        unsigned b;

        C.agg.received += m->received;
        C.agg.lost += m->lost;
        C.agg.dup += m->dup;
        C.agg.ooo += m->ooo;
        C.agg.stray += m->stray;
        for (b = 0; b < SSB_HIST_N; b++)
            C.agg.hist[b] += m->hist[b];
        if (++C.reports == O.procs && C.state == C_REPORT) {
            coord_print_phase();
            coord_next_phase();
        }
    }
}

static void coord_ctl_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
    uint32_t i = (uint32_t)(uintptr_t)h->data;

    (void)suggested;
    *buf = uv_buf_init(C.rbuf[i] + C.rlen[i], (unsigned)(2 * sizeof(struct msg_phase) - C.rlen[i]));
}

static void coord_on_ctl(uv_stream_t *st, ssize_t nread, const uv_buf_t *buf)
{
    uint32_t i = (uint32_t)(uintptr_t)st->data;
    size_t off = 0;

    (void)buf;
    if (nread < 0) {
        if (C.state != C_DONE) {
            fprintf(stderr, "ssebench: worker %u exited early\n", i);
            exit(1);
        }
        uv_read_stop(st);
        return;
    }
    C.rlen[i] += (size_t)nread;
    for (;;) {
        uint32_t type;
        size_t need;

        if (C.rlen[i] - off < sizeof(type))
            break;
        memcpy(&type, C.rbuf[i] + off, sizeof(type));
        need = type == MSG_PROGRESS ? sizeof(struct msg_progress) : sizeof(struct msg_phase);
        if (C.rlen[i] - off < need)
            break;
        coord_on_msg(i, C.rbuf[i] + off);
        off += need;
    }
    memmove(C.rbuf[i], C.rbuf[i] + off, C.rlen[i] - off);
    C.rlen[i] -= off;
}

static void coord_on_tick(uv_timer_t *t)
{
    double now = now_mono_s();
    double in_state = now - C.t_state;
    struct msg_progress p;
    uint32_t i;

    (void)t;
    sum_progress(&p);
    if (now - C.last_print >= 1.0 && C.state != C_DONE) {
        C.last_print = now;
        fprintf(stderr,
                "ssebench: [%s] ready %" PRIu64 " failed %" PRIu64 " closed %" PRIu64
                " received %" PRIu64 "/%" PRIu64 "\n",
                O.label, p.ready, p.failed, p.closed, p.received,
                C.expected_total + (C.state == C_DRAIN ? C.wp[C.phase].expected : 0));
    }
    switch (C.state) {
    case C_CONNECTING:
        if (p.ready + p.failed + p.closed >= O.subs || in_state > O.connect_timeout_s) {
            C.connect_s = now - C.t_connect0;
            coord_set_state(C_SETTLE);
        }
        break;
    case C_SETTLE:
        if (in_state >= O.settle_s) {
            C.rss_after_kb = read_rss_kb();
            coord_print_connect();
            if (O.nphases == 0) {
                coord_finish();
                break;
            }
            C.phase = 0;
            coord_phase_start();
        }
        break;
    case C_WRITING: {
        struct wphase *wp = &C.wp[C.phase];
        double limit = O.phases[C.phase].duration_s + O.drain_s;

        if ((wp->sent >= wp->planned && C.inflight == 0) || in_state > limit) {
            wp->t_end = now;
            if (wp->t_end - wp->t_start < O.phases[C.phase].duration_s)
                wp->t_end = wp->t_start + O.phases[C.phase].duration_s;
            coord_set_state(C_DRAIN);
        }
        break;
    }
    case C_DRAIN: {
        struct wphase *wp = &C.wp[C.phase];

        /* Requests still in flight (a phase cut at its time limit) may yet be acknowledged:
         * expected follows the acknowledgements until the report. */
        wp->expected = wp->acked * wp->live_subs;
        if ((C.inflight == 0 && p.received >= C.expected_total + wp->expected)
            || in_state > O.drain_s) {
            C.expected_total += wp->expected;
            memset(&C.agg, 0, sizeof(C.agg));
            C.reports = 0;
            coord_set_state(C_REPORT);
            for (i = 0; i < O.procs; i++) {
                char cmd[2] = {'R', (char)C.phase};
                uv_buf_t b = uv_buf_init(cmd, 2);

                (void)uv_try_write((uv_stream_t *)&C.ctl[i], &b, 1);
            }
        }
        break;
    }
    case C_REPORT:
        if (in_state > 10.0) {
            fprintf(stderr, "ssebench: workers did not report phase %u\n", C.phase);
            exit(1);
        }
        break;
    case C_GAP:
        if (in_state >= O.gap_s) {
            /* Expected counts start over from what has been received, so a late event of an
             * earlier phase cannot make a later phase look complete. */
            C.expected_total = sum_received();
            coord_phase_start();
        }
        break;
    default: break;
    }
}

/* ------------------------------------------------------------------ options and main */

static int parse_hostport(const char *s, struct sockaddr_in *a, char *host, size_t cap)
{
    const char *colon = strrchr(s, ':');
    char ip[64];
    size_t n;

    if (colon == NULL)
        return -1;
    n = (size_t)(colon - s);
    if (n == 0 || n >= sizeof(ip))
        return -1;
    memcpy(ip, s, n);
    ip[n] = '\0';
    snprintf(host, cap, "%s", s);
    return uv_ip4_addr(ip, (int)strtol(colon + 1, NULL, 10), a);
}

/* "a:p,b:p,...": up to MAX_TARGETS addresses; host gets the first (for the Host header). */
static int parse_targets(const char *s, struct sockaddr_in *a, uint32_t *n, char *host, size_t cap)
{
    char one[80];
    char scratch[80];

    *n = 0;
    while (*s != '\0') {
        const char *comma = strchr(s, ',');
        size_t len = comma != NULL ? (size_t)(comma - s) : strlen(s);

        if (*n >= MAX_TARGETS || len == 0 || len >= sizeof(one))
            return -1;
        memcpy(one, s, len);
        one[len] = '\0';
        if (parse_hostport(one, &a[*n], *n == 0 ? host : scratch, *n == 0 ? cap : sizeof(scratch))
            < 0)
            return -1;
        (*n)++;
        s = comma != NULL ? comma + 1 : s + len;
    }
    return *n > 0 ? 0 : -1;
}

/* "1x20,1x20" (rate x seconds). */
static void parse_phases(const char *s, bool is_ramp)
{
    while (*s != '\0') {
        char *end;
        double rate = strtod(s, &end);
        double dur;

        if (end == s || *end != 'x')
            die("bad --phases/--ramp (want RATExSECONDS,...)", 0);
        dur = strtod(end + 1, &end);
        if (O.nphases >= MAX_PHASES - 1 || rate <= 0 || dur <= 0)
            die("bad or too many phases", 0);
        O.phases[O.nphases].rate = rate;
        O.phases[O.nphases].duration_s = dur;
        O.phases[O.nphases].is_ramp = is_ramp;
        O.nphases++;
        s = *end == ',' ? end + 1 : end;
        if (*end != ',' && *end != '\0')
            die("bad --phases/--ramp separator", 0);
    }
}

static void parse_pids(const char *s)
{
    while (*s != '\0' && O.nserver_pids < MAX_PIDS) {
        char *end;
        long pid = strtol(s, &end, 10);

        if (end == s)
            die("bad --server-pids", 0);
        O.server_pids[O.nserver_pids++] = (int)pid;
        s = *end == ',' ? end + 1 : end;
        if (*end != ',' && *end != '\0')
            die("bad --server-pids", 0);
    }
}

static void usage(void)
{
    fputs(
        "usage: ssebench --kind engram|baseline|nchan --target HOST:PORT[,HOST:PORT...] [options]\n"
        "  (several targets: subscriber i connects to target i % n; so do writer connections)\n"
        "  --pub-target HOST:PORT[,...]  writer's servers (default: --target)\n"
        "  --sub-path P --pub-path P --project ID (x-project-id; nchan: channel)\n"
        "  --subs N (1000) --procs K (auto: <= 19000 sockets each) --sources S (8)\n"
        "  --source-base B (11: sources 127.0.0.B ...) --connect-rate R/s (2000)\n"
        "  --connect-timeout S (60) --settle S (3) --drain S (5) --gap S (1)\n"
        "  --phases RATExSECS,... --ramp RATExSECS,... (stops at the first failed step)\n"
        "  --max-p99-ms MS (0: none; a phase over it counts as failed)\n"
        "  --writer-conns C (4; nchan 1) --seq id|text --ready connected|head\n"
        "  --server-pids PID,... (RSS and CPU of the server) --label NAME --tag N\n",
        stderr);
    exit(2);
}

static void parse_opts(int argc, char **argv)
{
    static const struct option lo[] = {
        {"kind", 1, 0, 'k'},         {"target", 1, 0, 't'},       {"pub-target", 1, 0, 'T'},
        {"sub-path", 1, 0, 's'},     {"pub-path", 1, 0, 'P'},     {"project", 1, 0, 'j'},
        {"subs", 1, 0, 'n'},         {"procs", 1, 0, 'K'},        {"sources", 1, 0, 'S'},
        {"source-base", 1, 0, 'B'},  {"connect-rate", 1, 0, 'r'}, {"connect-timeout", 1, 0, 'o'},
        {"settle", 1, 0, 'e'},       {"drain", 1, 0, 'd'},        {"gap", 1, 0, 'g'},
        {"phases", 1, 0, 'p'},       {"ramp", 1, 0, 'R'},         {"max-p99-ms", 1, 0, 'm'},
        {"writer-conns", 1, 0, 'w'}, {"seq", 1, 0, 'q'},          {"ready", 1, 0, 'y'},
        {"server-pids", 1, 0, 'i'},  {"label", 1, 0, 'l'},        {"tag", 1, 0, 'a'},
        {"subject", 1, 0, 'u'},      {"help", 0, 0, 'h'},         {0, 0, 0, 0}};
    const char *target = NULL;
    const char *pub_target = NULL;
    int writer_conns = -1;
    int seq = -1;
    int ready = -1;
    int procs = 0;
    int c;

    O.subs = 1000;
    O.sources = 8;
    O.source_base = 11;
    O.connect_rate = 2000;
    O.connect_timeout_s = 60;
    O.settle_s = 3;
    O.drain_s = 5;
    O.gap_s = 1;
    O.subject = "ssb";
    O.label = "";
    O.tag = (uint32_t)((unsigned)getpid() * 2654435761u ^ (unsigned)time(NULL)) % 1000000000u;
    while ((c = getopt_long(argc, argv, "", lo, NULL)) != -1) {
        switch (c) {
        case 'k': O.kind = optarg; break;
        case 't': target = optarg; break;
        case 'T': pub_target = optarg; break;
        case 's': O.sub_path = optarg; break;
        case 'P': O.pub_path = optarg; break;
        case 'j': O.project = optarg; break;
        case 'n': O.subs = (uint32_t)strtoul(optarg, NULL, 10); break;
        case 'K': procs = (int)strtol(optarg, NULL, 10); break;
        case 'S': O.sources = (uint32_t)strtoul(optarg, NULL, 10); break;
        case 'B': O.source_base = (uint32_t)strtoul(optarg, NULL, 10); break;
        case 'r': O.connect_rate = strtod(optarg, NULL); break;
        case 'o': O.connect_timeout_s = strtod(optarg, NULL); break;
        case 'e': O.settle_s = strtod(optarg, NULL); break;
        case 'd': O.drain_s = strtod(optarg, NULL); break;
        case 'g': O.gap_s = strtod(optarg, NULL); break;
        case 'p': parse_phases(optarg, false); break;
        case 'R': parse_phases(optarg, true); break;
        case 'm': O.max_p99_ms = strtod(optarg, NULL); break;
        case 'w': writer_conns = (int)strtol(optarg, NULL, 10); break;
        case 'q': seq = strcmp(optarg, "text") == 0 ? SEQ_TEXT : SEQ_ID; break;
        case 'y': ready = strcmp(optarg, "head") == 0 ? READY_HEAD : READY_CONNECTED; break;
        case 'i': parse_pids(optarg); break;
        case 'l': O.label = optarg; break;
        case 'a': O.tag = (uint32_t)strtoul(optarg, NULL, 10); break;
        case 'u': O.subject = optarg; break;
        default: usage();
        }
    }
    if (O.kind == NULL || target == NULL)
        usage();
    if (parse_targets(target, O.sub_addr, &O.ntargets, O.sub_host, sizeof(O.sub_host)) < 0
        || parse_targets(pub_target ? pub_target : target, O.pub_addr, &O.npub, O.pub_host,
                         sizeof(O.pub_host))
               < 0)
        die("bad --target/--pub-target (want IPv4:PORT[,IPv4:PORT...])", 0);
    if (strcmp(O.kind, "engram") == 0) {
        if (O.sub_path == NULL)
            O.sub_path = "/api/v1/events/memories";
        if (O.pub_path == NULL)
            O.pub_path = "/api/v1/memories";
        if (O.project == NULL)
            O.project = "ssebench";
    } else if (strcmp(O.kind, "baseline") == 0) {
        if (O.sub_path == NULL)
            O.sub_path = "/sub";
        if (O.pub_path == NULL)
            O.pub_path = "/pub";
    } else if (strcmp(O.kind, "nchan") == 0) {
        /* nchan's ids are <time>:<tag>, not contiguous, and it sends no connected event. */
        if (O.sub_path == NULL)
            O.sub_path = "/sub/ssebench";
        if (O.pub_path == NULL)
            O.pub_path = "/pub/ssebench";
        if (seq < 0)
            seq = SEQ_TEXT;
        if (ready < 0)
            ready = READY_HEAD;
        if (writer_conns < 0)
            writer_conns = 1;
    } else {
        usage();
    }
    O.seq = seq < 0 ? SEQ_ID : (enum seq_mode)seq;
    O.ready = ready < 0 ? READY_CONNECTED : (enum ready_mode)ready;
    O.writer_conns = writer_conns < 0 ? 4 : (uint32_t)writer_conns;
    if (O.writer_conns < 1 || O.writer_conns > MAX_WRITER_CONNS)
        die("--writer-conns out of range", 0);
    if (procs <= 0)
        procs = (int)((O.subs + 18999) / 19000);
    if (procs < 1)
        procs = 1;
    if (procs > MAX_PROCS || O.subs / (uint32_t)procs > 19500)
        die("--procs out of range (each process holds at most ~19,000 sockets)", 0);
    O.procs = (uint32_t)procs;
    if (O.sources < 1 || O.source_base + O.sources > 255)
        die("--sources/--source-base out of range", 0);
    if (O.connect_rate <= 0)
        die("--connect-rate must be positive", 0);
}

int main(int argc, char **argv)
{
    uint32_t i;
    uint32_t first = 0;
    int rc;

    signal(SIGPIPE, SIG_IGN);
    parse_opts(argc, argv);
    C.rss_before_kb = read_rss_kb();
    for (i = 0; i < O.procs; i++) {
        uint32_t count = O.subs / O.procs + (i < O.subs % O.procs ? 1 : 0);
        int sv[2];
        pid_t pid;

        if (socketpair(AF_UNIX, SOCK_STREAM, 0, sv) < 0)
            die("socketpair", uv_translate_sys_error(errno));
        fflush(stdout);
        fflush(stderr);
        pid = fork();
        if (pid < 0)
            die("fork", uv_translate_sys_error(errno));
        if (pid == 0) {
            uint32_t j;

            close(sv[0]);
            /* The coordinator's ends for earlier workers: an inherited copy would keep their
             * pipes open after they exit. */
            for (j = 0; j < i; j++)
                close((int)C.rlen[j]);
            _exit(worker_main(i, sv[1], first, count));
        }
        close(sv[1]);
        C.pids[i] = pid;
        C.rbuf[i] = malloc(2 * sizeof(struct msg_phase));
        if (C.rbuf[i] == NULL)
            abort();
        /* Stash the fd in ctl until the loop exists. */
        C.rlen[i] = (size_t)sv[0];
        first += count;
    }
    rc = uv_loop_init(&C.loop);
    if (rc < 0)
        die("uv_loop_init", rc);
    for (i = 0; i < O.procs; i++) {
        int fd = (int)C.rlen[i];

        C.rlen[i] = 0;
        uv_pipe_init(&C.loop, &C.ctl[i], 0);
        rc = uv_pipe_open(&C.ctl[i], fd);
        if (rc < 0)
            die("control pipe", rc);
        C.ctl[i].data = (void *)(uintptr_t)i;
        uv_read_start((uv_stream_t *)&C.ctl[i], coord_ctl_alloc, coord_on_ctl);
    }
    for (i = 0; i < O.writer_conns; i++) {
        C.wc[i].c = &C;
        uv_timer_init(&C.loop, &C.wc[i].retry);
        C.wc[i].retry.data = &C.wc[i];
        wc_connect(&C.wc[i]);
    }
    uv_timer_init(&C.loop, &C.tick);
    uv_timer_init(&C.loop, &C.wtick);
    C.t_connect0 = now_mono_s();
    coord_set_state(C_CONNECTING);
    uv_timer_start(&C.tick, coord_on_tick, 100, 100);
    uv_timer_start(&C.wtick, writer_on_tick, 1, 1);
    uv_run(&C.loop, UV_RUN_DEFAULT);
    for (i = 0; i < O.procs; i++) {
        int st;

        waitpid(C.pids[i], &st, 0);
    }
    return 0;
}
