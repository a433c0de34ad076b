/*
 * engram http: HTTP/1.1 on top of eg_net_conn.
 *
 * Pure parts (no libuv): the request parser (llhttp with byte and count limits), path
 * normalisation, query decoding and the router. The server part owns connections: keep-alive,
 * pipelining (responses in request order, at most pipeline_max requests in flight per connection,
 * the parser paused beyond that), timers, Expect: 100-continue, HEAD, and error responses for
 * malformed input. All calls are loop-thread only.
 */
#ifndef EG_HTTP_H
#define EG_HTTP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include <llhttp.h>
#include <uv.h>

#include "engram/core.h"

/* ---- limits ------------------------------------------------------------------------------- */

/** Ceilings on what one request may make the server hold (RELIABILITY.md §4). */
struct eg_http_limits {
    size_t url_bytes;    /* request target; over it: 414 */
    size_t header_bytes; /* all header names and values together; over it: 431 */
    size_t header_count; /* over it: 431 */
    size_t body_bytes;   /* declared or received; over it: 413 */
    size_t arena_bytes;  /* per-request scratch memory */
};

#define EG_HTTP_LIMITS_DEFAULT                                                                     \
    ((struct eg_http_limits){.url_bytes = 8192,                                                    \
                             .header_bytes = 16384,                                                \
                             .header_count = 100,                                                  \
                             .body_bytes = 1048576,                                                \
                             .arena_bytes = 8u << 20})

/* ---- request ------------------------------------------------------------------------------ */

struct eg_http_header {
    const char *name; /* NUL-terminated, as received */
    const char *value;
    size_t name_len;
    size_t value_len;
};

#define EG_HTTP_MAX_PARAMS 4

struct eg_http_conn;

/**
 * One request and, once answered, its response. It lives in its own arena from the moment its
 * first byte is parsed until its response is written (or its connection closes, which runs the
 * arena's cleanups: handlers register cancellation of their async work there).
 */
struct eg_http_req {
    struct eg_arena arena; /* public: scratch memory freed with the request */
    /* parsed request, read-only for handlers */
    int method;              /* llhttp_method_t */
    const char *method_name; /* "GET", ... */
    char *target;            /* raw request target, NUL-terminated */
    size_t target_len;
    char *path;  /* normalised pathname (dot segments resolved, still %-encoded) */
    char *query; /* the part after '?', or NULL */
    struct eg_http_header *headers;
    size_t header_count;
    struct eg_buf body;
    bool is_head; /* HEAD: answered as GET without a body */
    bool keep_alive;
    bool expect_continue;
    char request_id[65]; /* X-Request-Id as received (sanitised) or generated */
    /* routing, filled by the application */
    int route_id;           /* -1 until routed */
    const char *route_name; /* pattern for metrics/logs; "unmatched" until routed */
    const char *params[EG_HTTP_MAX_PARAMS];
    size_t param_count;
    void *app;                   /* public: application pointer (set by the server) */
    void *user;                  /* public: per-request application data (arena memory) */
    void (*on_free)(void *data); /* private: eg_http_req_on_free */
    void *on_free_data;          /* private */
    char *path_owned;            /* private: path kept past the arena (long streams) */
    /* response, written by eg_http_respond*; private after respond */
    int status;
    const char *content_type;
    struct eg_buf resp_headers; /* extra "Name: value\r\n" lines */
    struct eg_buf resp_body;
    bool has_responded;
    bool is_held;             /* private: eg_http_hold; the response waits for release */
    bool is_streaming;        /* private: chunked response written over time */
    bool stream_head_sent;    /* private */
    bool stream_ended;        /* private */
    struct eg_buf stream_out; /* private: framed chunks not yet handed to the socket */
    void (*on_drain)(struct eg_http_req *r, void *data); /* private: eg_http_stream_on_drain */
    void *drain_data;                                    /* private */
    bool close_after;          /* private: close the connection once this response is out */
    uint64_t start_ns;         /* private: first byte seen */
    size_t bytes_out;          /* read-only after the response is written */
    struct eg_http_conn *conn; /* private */
    struct eg_http_req *next;  /* private: pipeline queue link */
    /* parser scratch, private */
    size_t header_bytes;
    size_t header_cap;
    struct eg_buf field;
    struct eg_buf value;
    bool last_was_value;
};

/**
 * Calls fn(data) when r is freed, before its arena (one hook per request). Unlike
 * eg_arena_defer it needs no arena memory, so a stream that registers nothing else in the arena
 * gives its arena back once its head is out: an idle stream then costs no request-phase memory.
 * After that point only path (copied), request_id, method and route stay readable; headers,
 * target, query, params and user are gone.
 */
void eg_http_req_on_free(struct eg_http_req *r, void (*fn)(void *data), void *data);
/** Returns the first header named name (case-insensitive), or NULL. *len gets its length. */
const char *eg_http_req_header(const struct eg_http_req *r, const char *name, size_t *len);

/* ---- parser ------------------------------------------------------------------------------- */

/** What the parser reports after feeding bytes. */
enum eg_http_parse_event {
    EG_HTTP_PARSE_MORE = 0,    /* consumed everything; need more bytes */
    EG_HTTP_PARSE_REQUEST = 1, /* a full request is ready (eg_http_parser_take) */
    EG_HTTP_PARSE_ERROR = 2,   /* malformed or over a limit: answer parser->error_status, close */
};

struct eg_http_parser;
typedef struct eg_http_req *eg_http_req_new_fn(void *data);
typedef void eg_http_head_fn(struct eg_http_parser *p, struct eg_http_req *r, void *data);

/** Wraps llhttp with limits. Private fields; embed it in the connection. */
struct eg_http_parser {
    llhttp_t ll;
    const struct eg_http_limits *limits;
    struct eg_http_req *cur;     /* request being parsed, or NULL between requests */
    struct eg_http_req *done;    /* completed request waiting for eg_http_parser_take */
    eg_http_req_new_fn *new_req; /* allocates the next request on its first byte */
    eg_http_head_fn *on_head;    /* headers complete and within limits (may be NULL) */
    void *data;
    int error_status;         /* 400/408/413/414/431 after EG_HTTP_PARSE_ERROR */
    const char *error_reason; /* short static text for logs */
    bool in_message;          /* bytes of a request seen, request not complete */
    const char *exec_start;   /* the buffer of the current feed call */
    const char *value_end;    /* end of the last header value chunk in that buffer */
    bool value_open;          /* a header value has started and not completed */
    bool value_at_buf_end;    /* the last value chunk ended exactly at its buffer's end */
    const char *field_end;    /* end of the last header name chunk in this buffer */
    bool nl_after_field;      /* a line break followed the last header name (earlier buffer) */
    bool await_value;         /* a header name is complete and its value has not started */
    const char *lf_scan;      /* bytes before this were checked for bare LF */
    char prev_byte;           /* last byte of the previous feed, for CRLF across buffers */
    size_t line_len;          /* header block pre-scan: bytes in the current line */
    bool head_scanned;        /* the current message's header block has been pre-scanned */
    bool line_seen;           /* a non-empty line of the current message was seen */
    bool head_done;           /* headers of the current request complete */
};

/** Initialises p. limits is borrowed for p's lifetime. new_req must return a fresh request. */
void eg_http_parser_init(struct eg_http_parser *p, const struct eg_http_limits *limits,
                         eg_http_req_new_fn *new_req, eg_http_head_fn *on_head, void *data);
/**
 * Feeds n bytes. Returns the event and sets *consumed to the bytes used. After
 * EG_HTTP_PARSE_REQUEST, call eg_http_parser_take and feed the rest (data + *consumed) later;
 * the parser stops after each request so the caller can apply backpressure.
 */
enum eg_http_parse_event eg_http_parser_feed(struct eg_http_parser *p, const char *data, size_t n,
                                             size_t *consumed);
/** Returns the completed request (ownership passes to the caller). */
struct eg_http_req *eg_http_parser_take(struct eg_http_parser *p);
/** Returns the partially parsed request, if any, and forgets it (the caller frees it). */
struct eg_http_req *eg_http_parser_abandon(struct eg_http_parser *p);

/** Creates a request with its arena (heap). Freed with eg_http_req_free. */
struct eg_http_req *eg_http_req_new(size_t arena_bytes, size_t body_max);
/** Runs the arena's cleanups and frees the request. */
void eg_http_req_free(struct eg_http_req *r);

/* ---- paths and queries -------------------------------------------------------------------- */

/**
 * Writes into out the pathname of target as WHATWG URL parsing would (CORE uses new URL()):
 * the query and fragment removed, "." and ".." segments (also %2e forms) resolved. Percent
 * escapes stay encoded. out must hold target_len + 2 bytes. Returns the length.
 */
size_t eg_http_path_normalize(const char *target, size_t target_len, char *out);
/**
 * decodeURIComponent: decodes %XX escapes; when any escape is malformed or the result is not
 * valid UTF-8, returns a copy of the raw text (CORE keeps raw text when decoding throws). '+'
 * stays '+'. Returns new arena memory, or NULL at the arena ceiling.
 */
char *eg_http_decode_component(struct eg_arena *a, const char *s, size_t n, size_t *out_len);

/**
 * Form-urlencoded query lookup (URLSearchParams.get): the first parameter named name, with '+'
 * as space and %XX decoded (a malformed escape stays literal). Returns arena memory, or NULL when
 * absent. *len gets the decoded length when len is non-NULL.
 */
char *eg_http_query_get(struct eg_arena *a, const char *query, const char *name, size_t *len);
/** Calls fn for every parameter named name, in order (URLSearchParams.getAll). Returns count. */
size_t eg_http_query_get_all(struct eg_arena *a, const char *query, const char *name,
                             void (*fn)(const char *v, size_t len, void *data), void *data);

/* ---- router ------------------------------------------------------------------------------- */

/** One route. pattern segments in braces ("{id}") match one non-empty path segment. */
struct eg_http_route {
    int method;          /* llhttp_method_t; HEAD requests match GET routes */
    const char *pattern; /* e.g. "/api/v1/memories/{id}/claims" */
    int id;              /* the application's handler id */
};

enum eg_http_match {
    EG_HTTP_MATCH_OK = 0,
    EG_HTTP_MATCH_NOT_FOUND = 1,  /* no pattern matches the path */
    EG_HTTP_MATCH_BAD_METHOD = 2, /* patterns match, none with this method: 405 */
};

/**
 * Finds the first route in table order whose method and pattern match. Params are pointers into
 * the raw (still encoded) path, copied into the request's arena. On BAD_METHOD, allow (NUL-
 * terminated, e.g. "GET, HEAD, PATCH") lists the methods of every route whose pattern matches.
 */
enum eg_http_match eg_http_route_match(const struct eg_http_route *table, size_t n,
                                       struct eg_http_req *r, const struct eg_http_route **out,
                                       char *allow, size_t allow_len);

/* ---- responses ---------------------------------------------------------------------------- */

/** The reason phrase for status ("Not Found"). */
const char *eg_http_reason(int status);
/** Adds a response header line. name and value must not contain CR or LF. Returns 0/EG_ELIMIT. */
int eg_http_add_header(struct eg_http_req *r, const char *name, const char *value);
/**
 * Sends r->resp_body with status and content_type (static string; NULL means JSON). Exactly one
 * respond call per request; the server writes responses in request order.
 */
void eg_http_respond(struct eg_http_req *r, int status, const char *content_type);
/**
 * Holds r's response: eg_http_respond records it but nothing is written until eg_http_release
 * (a write whose stored response must commit first). Responses behind it wait too, in order.
 */
void eg_http_hold(struct eg_http_req *r);
/** Writes a held response (if there is one yet). r may be freed before this returns. */
void eg_http_release(struct eg_http_req *r);
/** Forgets a held response so the next eg_http_respond replaces it (the commit failed). */
void eg_http_discard_held(struct eg_http_req *r);
/** Responds with the JSON text json (copied). */
void eg_http_respond_json(struct eg_http_req *r, int status, const char *json, size_t len);
/** Responds with CORE's error envelope {"error":"<code>"} (code is a JSON-safe identifier). */
void eg_http_respond_error(struct eg_http_req *r, int status, const char *code);
/**
 * Starts a streaming response (Transfer-Encoding: chunked): the head goes out now, r stays in
 * flight (ahead of any pipelined request) until eg_http_stream_end or the connection closes.
 * Closing is signalled to the owner through r's arena cleanups, which run when r is freed.
 */
void eg_http_stream_begin(struct eg_http_req *r, int status, const char *content_type);
/**
 * Queues data as one chunk. Returns 0; EG_ELIMIT when the unsent bytes would pass
 * EG_HTTP_STREAM_MAX (nothing queued: the caller should end the stream); EG_ECANCELED when the
 * connection is closing.
 */
int eg_http_stream_write(struct eg_http_req *r, const char *data, size_t len);
/**
 * Writes the concatenation of bufs as one chunk. When nothing is queued the bytes go straight to
 * the socket from the caller's buffers (one writev; a frame shared by many subscribers is never
 * copied for them); only what the socket does not take is copied into the stream's queue.
 * Returns as eg_http_stream_write.
 */
int eg_http_stream_writev(struct eg_http_req *r, const uv_buf_t *bufs, unsigned int nbufs);
/**
 * Calls fn(r, data) each time a queued write of the stream completes (its pending bytes went
 * down). fn must not end or write the stream synchronously; it may start asynchronous work.
 */
void eg_http_stream_on_drain(struct eg_http_req *r, void (*fn)(struct eg_http_req *r, void *data),
                             void *data);
/** Bytes queued on the stream and not yet accepted by the socket. */
size_t eg_http_stream_pending(const struct eg_http_req *r);
/** Ends the stream (terminating chunk) and closes the connection after it. Idempotent. */
void eg_http_stream_end(struct eg_http_req *r);

#define EG_HTTP_STREAM_MAX (4u << 20)
/** Most buffers one eg_http_stream_writev takes. */
#define EG_HTTP_WRITEV_MAX 64

/**
 * Renders the status line and headers for r into out (server use; exposed for tests). date is the
 * cached IMF-fixdate. keep_alive chooses the Connection header.
 */
int eg_http_render_head(const struct eg_http_req *r, const char *date, bool keep_alive,
                        struct eg_buf *out);

/* ---- server ------------------------------------------------------------------------------- */

struct eg_http_server;

/** Called once per complete request, in arrival order. The handler must respond exactly once. */
typedef void eg_http_handler_fn(struct eg_http_req *r, void *data);
/** Called once per response after it was written (or failed): the access log and metrics hook. */
typedef void eg_http_done_fn(struct eg_http_req *r, void *data);

struct eg_http_server_config {
    struct eg_http_limits limits;
    uint64_t header_timeout_ms;    /* whole header phase (slowloris) */
    uint64_t body_timeout_ms;      /* idle gap while reading a body */
    uint64_t keepalive_timeout_ms; /* idle connection between requests */
    uint64_t write_timeout_ms;     /* a response not drained by the client */
    size_t pipeline_max;           /* requests in flight per connection */
    size_t max_connections;
};

struct eg_http_server_stats {
    uint64_t connections_active;
    uint64_t connections_total;
    uint64_t connections_rejected;
    uint64_t requests_in_flight;
};

/** Creates a server bound to loop. cfg is copied. handler/done are called on the loop. */
struct eg_http_server *eg_http_server_new(uv_loop_t *loop, const struct eg_http_server_config *cfg,
                                          eg_http_handler_fn *handler, eg_http_done_fn *done,
                                          void *data);
/** Accept callback for eg_net_listeners_start (data is the server). */
void eg_http_server_accept(uv_stream_t *listener, void *server);
/** How long a drain leaves idle keep-alive connections open for one last request. */
#define EG_HTTP_DRAIN_IDLE_GRACE_MS 1000
/**
 * Starts draining: busy connections close after their in-flight responses (Connection: close)
 * and read no further requests; idle keep-alive connections may still bring one request, which
 * is answered with Connection: close, and are closed EG_HTTP_DRAIN_IDLE_GRACE_MS from now.
 */
void eg_http_server_drain(struct eg_http_server *s);
/** Force-closes every connection (drain deadline passed). */
void eg_http_server_close_all(struct eg_http_server *s);
/** Returns the client's "ip:port" for r, or NULL once its connection is gone. */
const char *eg_http_req_peer(const struct eg_http_req *r);
/** Returns the current connection count. */
size_t eg_http_server_connections(const struct eg_http_server *s);
void eg_http_server_get_stats(const struct eg_http_server *s, struct eg_http_server_stats *out);
/** Frees the server; every connection must be closed (eg_http_server_connections() == 0). */
void eg_http_server_free(struct eg_http_server *s);

#endif /* EG_HTTP_H */
