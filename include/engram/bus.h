/*
 * engram bus: how instances tell each other that the event log grew (ARCHITECTURE.md §6).
 *
 * The bus carries small notices only: "project P has seqs first..last in epoch E" after each
 * sequencer batch, and pokes from instances that committed outbox rows to the sequencer leader.
 * PostgreSQL holds the events themselves, so a lost notice costs latency (the hub's catch-up poll
 * finds the events), never events. Two backends behind one interface:
 *   - redis: a command connection (PUBLISH) and a subscriber connection with one channel per
 *     project that has local subscribers, plus a poke channel and a heartbeat channel;
 *   - postgres: LISTEN on a dedicated connection; the sequencer's NOTIFY is part of its batch
 *     transaction (never of a write), pokes are a NOTIFY of their own.
 * Redis is never required: its outage does not make an instance unready.
 *
 * Debian's hiredis 0.14.1 ships an adapters/libuv.h that swallows poll errors (a refused connect
 * never reports) and has no timeouts (INTEGRATION.md §1.4), so the adapter here treats a poll error
 * as readable+writable (hiredis then finds and reports the socket error itself), re-arms only on
 * mask changes, and every wait has a timer: connect, PING, reconnect backoff. Loop-thread only.
 */
#ifndef EG_BUS_H
#define EG_BUS_H

#include <stdbool.h>
#include <stdint.h>

#include <libpq-fe.h>
#include <uv.h>

#include "engram/core.h"

/** Where Redis is, from a redis:// URL. */
struct eg_redis_addr {
    char host[256];
    int port;
    int db;
    char password[256];
};

/** Parses redis://[[user]:password@]host[:port][/db]. Returns 0 or EG_ECONFIG. */
int eg_redis_addr_parse(const char *url, struct eg_redis_addr *out);

struct eg_redis;

struct eg_redis_stats {
    bool is_up;
    double last_ping_seconds;
    uint64_t reconnects_total;
    uint64_t messages_total; /* subscriber: messages received, heartbeats included */
    uint64_t commands_total; /* PUBLISH commands sent */
};

/** What a connection is for, and whom it tells. Every field may be zero/NULL. */
struct eg_redis_hooks {
    /* Liveness channel: a command connection probes with PUBLISH to it instead of PING; a
     * subscriber connection subscribes to it and is alive while heartbeats arrive. */
    const char *hb_channel;
    bool is_subscriber; /* needs hb_channel */
    void (*on_up)(void *data);
    void (*on_down)(void *data);
    void (*on_message)(const char *channel, size_t channel_len, const char *msg, size_t msg_len,
                       void *data);
    void (*on_subscribed)(const char *channel, size_t channel_len, void *data);
    void *data;
};

/** Starts connecting to addr (copied) and probing every ping_ms; never blocks the loop. hooks
 * (copied; may be NULL) chooses the role. */
struct eg_redis *eg_redis_new(uv_loop_t *loop, const struct eg_redis_addr *addr, uint64_t ping_ms,
                              const struct eg_redis_hooks *hooks);
void eg_redis_get_stats(const struct eg_redis *r, struct eg_redis_stats *out);
bool eg_redis_is_up(const struct eg_redis *r);
/** PUBLISH without waiting for the reply. Returns 0, or EG_EUNAVAIL while down. */
int eg_redis_publish(struct eg_redis *r, const char *channel, size_t channel_len, const char *msg,
                     size_t msg_len);
/** (UN)SUBSCRIBE on a subscriber connection. Returns 0, or EG_EUNAVAIL while down (the owner
 * subscribes again from on_up). */
int eg_redis_subscribe(struct eg_redis *r, const char *channel, size_t len, bool subscribe);
/** The outcome of a command whose reply is an integer: status 0 and value, or EG_EUNAVAIL. */
typedef void eg_redis_int_fn(int status, long long value, void *data);

/**
 * Sends a command (argv: argc NUL-terminated strings, copied) on the command connection.
 * Returns EG_EUNAVAIL at once, with no callback, while Redis is not up. Otherwise cb fires
 * exactly once, later: with the integer reply, or EG_EUNAVAIL for any other reply, a
 * disconnect or a close. No timeout of its own: a hung Redis answers when the PING deadline
 * drops the connection, so callers must not wait on it.
 */
int eg_redis_command_int(struct eg_redis *r, int argc, const char **argv, eg_redis_int_fn *cb,
                         void *data);
/** Disconnects and frees; on_closed(data) fires when every handle is closed. */
void eg_redis_close(struct eg_redis *r, void (*on_closed)(void *data), void *data);

/* ---- the bus ---------------------------------------------------------------------------- */

struct eg_bus;

/** What the bus tells its owner (the hub and the sequencer). */
struct eg_bus_hooks {
    /* project's log has seqs first..last in epoch (first may be beyond what the reader has:
     * a gap it fills from PostgreSQL). */
    void (*on_notice)(const char *project, int64_t epoch, int64_t first, int64_t last, void *data);
    /* Notices may have been missed: read the log of project (NULL: of every topic). */
    void (*on_resync)(const char *project, void *data);
    /* Another instance committed outbox rows (for the sequencer leader). */
    void (*on_poke)(void *data);
    void *data;
};

struct eg_bus_stats {
    const char *kind; /* "redis" or "postgres" */
    bool is_up;
    uint64_t notices_published_total;
    uint64_t notices_received_total;
    uint64_t pokes_sent_total;
    uint64_t pokes_received_total;
    uint64_t reconnects_total;
};

/** A Redis bus; instance_id names this instance's heartbeat channel. */
struct eg_bus *eg_bus_new_redis(uv_loop_t *loop, const struct eg_redis_addr *addr,
                                const char *instance_id, const struct eg_bus_hooks *hooks);
/** A PostgreSQL LISTEN/NOTIFY bus on its own connection. */
struct eg_bus *eg_bus_new_postgres(uv_loop_t *loop, const char *conninfo,
                                   const struct eg_bus_hooks *hooks);
/** The Redis command connection (for health and metrics), or NULL for the postgres bus. */
struct eg_redis *eg_bus_redis(const struct eg_bus *b);
/** Starts/stops receiving project's notices (the hub has subscribers for it / not any more). */
void eg_bus_watch(struct eg_bus *b, const char *project, bool watch);
/**
 * After a committed sequencer batch (rows: project_id, seq, ..., epoch in column 6, grouped by
 * project in seq order): tells the other instances. A no-op on the postgres bus, whose NOTIFY
 * was part of the batch's transaction.
 */
void eg_bus_announce(struct eg_bus *b, const PGresult *rows);
/** Tells the sequencer leader, wherever it runs, that outbox rows were committed. Coalesced. */
void eg_bus_poke(struct eg_bus *b);
void eg_bus_get_stats(const struct eg_bus *b, struct eg_bus_stats *out);
void eg_bus_close(struct eg_bus *b, void (*on_closed)(void *data), void *data);

/** Parses a notice "<epoch>:<first>:<last>" (redis) or "<epoch>:<first>:<last>:<project>"
 * (postgres; *project points into s). Returns 0 or EG_EPARSE. */
int eg_bus_parse_notice(const char *s, size_t n, bool with_project, int64_t *epoch, int64_t *first,
                        int64_t *last, const char **project);

#endif /* EG_BUS_H */
