/*
 * engram sse: Server-Sent Events. A pure frame encoder, and the hub that delivers the durable
 * event log (PostgreSQL `events`) to SSE subscribers (ARCHITECTURE.md §6).
 *
 * The hub keeps one topic per project with local subscribers. A topic tracks the highest seq it
 * has delivered and reads newer events from PostgreSQL when told they exist (the local
 * sequencer's batches) and on a periodic catch-up poll (events sequenced by another instance), so
 * a missed notification costs latency, never events. Each subscriber has a cursor: a subscriber
 * that resumes (Last-Event-ID) pages forward from PostgreSQL until it is current, then goes live.
 * Event ids are "<epoch>:<seq>". Loop-thread only.
 */
#ifndef EG_SSE_H
#define EG_SSE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "engram/core.h"
#include "engram/db.h"
#include "engram/http.h"

/**
 * Appends one SSE frame to b: optional "id:", optional "event:", the data split into "data:"
 * lines at LF, CRLF or CR, and the blank line. id and event must not contain CR, LF or NUL
 * (returns EG_EPARSE and appends nothing); data may contain anything but NUL. Returns 0,
 * EG_EPARSE or EG_ELIMIT.
 */
int eg_sse_frame(struct eg_buf *b, const char *id, const char *event, const char *data, size_t len);

/** Parses an "<epoch>:<seq>" event id. Returns 0 or EG_EPARSE. */
int eg_sse_parse_id(const char *s, size_t n, int64_t *epoch, int64_t *seq);

/* ---- the topic/cursor state machine's decisions (pure) -------------------------------------- */

/** What a bus notice "epoch, first..last" means to a topic that has delivered up to last. */
enum eg_sse_notice {
    EG_SSE_NOTICE_NEW,   /* continues the topic's log: read it */
    EG_SSE_NOTICE_GAP,   /* starts beyond last + 1: notices were missed, the read fills the gap */
    EG_SSE_NOTICE_DUP,   /* nothing new: drop */
    EG_SSE_NOTICE_EPOCH, /* another epoch: the log was restored, positions are void */
};
enum eg_sse_notice eg_sse_classify_notice(int64_t topic_epoch, int64_t topic_last, int64_t epoch,
                                          int64_t first, int64_t last);

/** How a new subscriber starts. */
enum eg_sse_start {
    EG_SSE_START_LIVE,     /* at the head: take live events */
    EG_SSE_START_CATCH_UP, /* behind: page forward from the log first */
    EG_SSE_START_READ_LOG, /* ahead of what this instance has read: read the log, then decide */
    EG_SSE_START_RESET,    /* another epoch, or ahead of the log: `reset`, then live */
};
enum eg_sse_start eg_sse_classify_resume(bool has_resume, int64_t resume_epoch, int64_t resume_seq,
                                         int64_t topic_epoch, int64_t topic_last, bool rechecked);

/** True when events after cursor were pruned (oldest: lowest seq kept, or last_seq + 1). */
bool eg_sse_is_pruned(int64_t cursor, int64_t oldest);

struct eg_sse_hub;

struct eg_sse_hub_config {
    uint64_t keepalive_ms;    /* comment lines that keep proxies from timing out (15 s) */
    uint64_t heartbeat_ms;    /* CORE's `heartbeat` event (30 s) */
    uint64_t catchup_poll_ms; /* how often topics look for events from other instances */
    size_t max_pending_bytes; /* unsent bytes past which a subscriber stops taking live events */
    uint64_t max_behind_ms;   /* a subscriber behind longer than this is closed (it resumes) */
    uint64_t retry_ms;        /* the `retry:` hint sent to clients */
    /* The bus, seen through hooks (sse sits beside bus, not above it; main wires them). May be
     * NULL. watch: start/stop receiving a project's notices; notices_flowing: the bus is up, so
     * the catch-up poll only has to cover lost notices. */
    void (*watch)(const char *project, bool on, void *data);
    bool (*notices_flowing)(void *data);
    void *bus_data;
};

struct eg_sse_hub_stats {
    uint64_t subscribers;
    uint64_t topics;
    uint64_t delivered_total;   /* event frames written to subscribers */
    uint64_t caught_up_total;   /* event frames written from catch-up pages */
    uint64_t fell_behind_total; /* subscribers that passed the pending cap and paged instead */
    uint64_t dropped_total;     /* subscribers closed for staying behind too long */
    uint64_t resets_total;      /* `reset` events sent for unusable resume positions */
    uint64_t notices_dup_total; /* bus notices about events already delivered */
    uint64_t notices_gap_total; /* bus notices that showed missed notices (log read) */
    uint64_t log_reads_total;   /* topic reads of the event log */
    const struct eg_hist *lag;  /* commit to written to every live subscriber, seconds */
};

/** Creates a hub reading events through db (borrowed; must outlive the hub). */
struct eg_sse_hub *eg_sse_hub_new(uv_loop_t *loop, struct eg_db_pool *db,
                                  const struct eg_sse_hub_config *cfg);
/**
 * Turns r into a subscriber of project's events (subject NULL: every subject). last_event_id is
 * the resume position from the Last-Event-ID header or query (NULL for none). Writes the stream
 * head and CORE's `connected` frame once the project's position is known. The subscription ends
 * when r ends (its arena cleanup), the hub drains, or eg_sse_hub_end_key(key_id) is called.
 * key_id (copied; NULL when auth is off) is the API key that opened the stream.
 */
void eg_sse_subscribe(struct eg_sse_hub *h, struct eg_http_req *r, const char *project,
                      const char *subject, const char *last_event_id, bool include_claims,
                      const char *key_id);
/**
 * Ends every started stream opened with key_id (a revoked or expired key), as a drain does but
 * without a retry hint. Streams still waiting for their first frame are left to the caller's next
 * call. Returns how many were ended. Safe to call from any loop callback.
 */
size_t eg_sse_hub_end_key(struct eg_sse_hub *h, const char *key_id);
/**
 * Tells the hub about rows the local sequencer just committed (columns project_id, seq,
 * subject_id, event_type, payload, created_ms, epoch). Topics deliver them, or read the log if
 * they have a gap.
 */
void eg_sse_hub_publish(struct eg_sse_hub *h, const PGresult *rows);
/** A bus notice: project's log has seqs first..last in epoch. */
void eg_sse_hub_notice(struct eg_sse_hub *h, const char *project, int64_t epoch, int64_t first,
                       int64_t last);
/** Notices may have been missed: topics read the log (project NULL: every topic). */
void eg_sse_hub_resync(struct eg_sse_hub *h, const char *project);
/** Ends every stream with a retry hint (clients resume elsewhere) and refuses new ones. */
void eg_sse_hub_drain(struct eg_sse_hub *h);
void eg_sse_hub_get_stats(const struct eg_sse_hub *h, struct eg_sse_hub_stats *out);
/** Stops timers; on_closed(data) fires when done. All subscriptions must have ended. */
void eg_sse_hub_close(struct eg_sse_hub *h, void (*on_closed)(void *data), void *data);

#endif /* EG_SSE_H */
