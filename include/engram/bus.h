/*
 * engram bus: Redis on the loop (hiredis async with our own libuv adapter).
 *
 * Today this module keeps one command connection to Redis alive and reports whether Redis
 * answers (the readiness check and redis_up); the event fan-out over Redis pub/sub builds on the
 * same connection code (issue #4). Redis is never required: its outage does not make an instance
 * unready, because events flow through PostgreSQL.
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
};

/** Starts connecting to addr (copied) and pinging every ping_ms; never blocks the loop. */
struct eg_redis *eg_redis_new(uv_loop_t *loop, const struct eg_redis_addr *addr, uint64_t ping_ms);
void eg_redis_get_stats(const struct eg_redis *r, struct eg_redis_stats *out);
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

#endif /* EG_BUS_H */
