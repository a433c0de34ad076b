/* GET /metrics: Prometheus text format 0.0.4. No label carries a tenant id or a raw path. */
#include "engram/api.h"

#include <stdio.h>

#include "engram/net.h"

int eg_api_render_request_metrics(struct eg_app *app, struct eg_buf *b);

/* A metric with one unlabelled sample; a block of them renders in the order given. */
struct metric {
    const char *name;
    const char *type; /* "gauge" or "counter" */
    const char *help;
    double value;
};

#define GAUGE(n, h, v)                                                                             \
    {                                                                                              \
        (n), "gauge", (h), (double)(v)                                                             \
    }
#define COUNTER(n, h, v)                                                                           \
    {                                                                                              \
        (n), "counter", (h), (double)(v)                                                           \
    }

static int render(struct eg_buf *b, const struct metric *m, size_t n)
{
    int rc = 0;

    for (size_t i = 0; i < n && rc == 0; i++) {
        rc = eg_prom_header(b, m[i].name, m[i].type, m[i].help);
        if (rc == 0)
            rc = eg_prom_sample(b, m[i].name, NULL, m[i].value);
    }
    return rc;
}

/* One metric with a sample per label value: name{label="values[i]"} counts[i]. */
static int render_labelled(struct eg_buf *b, const char *name, const char *type, const char *help,
                           const char *label, const char *const *values, const double *counts,
                           size_t n)
{
    char labels[160];
    int rc = eg_prom_header(b, name, type, help);

    for (size_t i = 0; i < n && rc == 0; i++) {
        snprintf(labels, sizeof(labels), "%s=\"%s\"", label, values[i]);
        rc = eg_prom_sample(b, name, labels, counts[i]);
    }
    return rc;
}

/* The HTTPS listener's handshakes; every failure reason is listed, zeros included. */
static int render_tls(const struct eg_net_tls *tls, struct eg_buf *b)
{
    struct eg_net_tls_stats ts;
    const char *reasons[EG_NET_TLS_FAIL_COUNT];
    double counts[EG_NET_TLS_FAIL_COUNT];
    int rc;

    eg_net_tls_get_stats(tls, &ts);
    for (int i = 0; i < EG_NET_TLS_FAIL_COUNT; i++) {
        reasons[i] = eg_net_tls_failure_name((enum eg_net_tls_failure)i);
        counts[i] = (double)ts.failures_total[i];
    }
    const struct metric before[] = {
        COUNTER("tls_handshakes_total", "TLS handshakes completed.", ts.handshakes_total),
    };
    const struct metric after[] = {
        GAUGE("tls_connections_active", "Open HTTPS connections.", ts.connections_active),
    };
    rc = render(b, before, EG_ARRAY_LEN(before));
    if (rc == 0)
        rc = render_labelled(b, "tls_handshake_failures_total", "counter",
                             "TLS connections closed before their handshake completed, by reason.",
                             "reason", reasons, counts, EG_NET_TLS_FAIL_COUNT);
    return rc == 0 ? render(b, after, EG_ARRAY_LEN(after)) : rc;
}

static int render_build(struct eg_app *app, struct eg_buf *b)
{
    int rc = eg_prom_header(b, "engram_build_info", "gauge", "Build of this engramd (always 1).");

    if (rc == 0) {
        eg_buf_puts(b, "engram_build_info{version=\"");
        eg_prom_label_value(b, app->version);
        eg_buf_puts(b, "\",commit=\"");
        eg_prom_label_value(b, app->commit);
        rc = eg_buf_puts(b, "\"} 1\n");
    }
    return rc;
}

static int render_http_db(struct eg_app *app, struct eg_buf *b)
{
    static const char *const states[] = {"idle", "busy", "connecting", "down"};
    struct eg_http_server_stats hs;
    struct eg_db_pool_stats ds = {0};
    int rc;

    eg_http_server_get_stats(app->http, &hs);
    if (app->db != NULL)
        eg_db_pool_get_stats(app->db, &ds);
    const struct metric http[] = {
        GAUGE("http_requests_in_flight", "Requests received and not yet answered.",
              hs.requests_in_flight),
        GAUGE("http_connections_active", "Open client connections.", hs.connections_active),
        COUNTER("http_connections_total", "Client connections accepted.", hs.connections_total),
        COUNTER("http_connections_rejected_total",
                "Connections refused with 503 (connection limit or draining).",
                hs.connections_rejected),
    };
    const double by_state[] = {(double)ds.idle, (double)ds.busy, (double)ds.connecting,
                               (double)ds.broken};
    const struct metric db[] = {
        GAUGE("db_pool_waiting", "Queries waiting for a free connection.", ds.waiting),
        COUNTER("db_pool_rejected_total",
                "Queries refused: queue full, queue timeout or no live connection.",
                ds.rejected_total),
        COUNTER("db_errors_total", "Queries that failed with a database error.", ds.errors_total),
        COUNTER("db_reconnects_total", "Live database connections lost.", ds.reconnects_total),
        GAUGE("db_schema_version", "Applied schema version seen (-1 unknown).", ds.schema_version),
    };

    rc = render(b, http, EG_ARRAY_LEN(http));
    if (rc == 0)
        rc = render_labelled(b, "db_pool_connections", "gauge",
                             "PostgreSQL pool connections by state.", "state", states, by_state,
                             EG_ARRAY_LEN(states));
    if (rc == 0)
        rc = render(b, db, EG_ARRAY_LEN(db));
    if (rc == 0)
        rc = eg_prom_header(b, "db_query_duration_seconds", "histogram",
                            "Database round trips, from send to last result.");
    if (rc == 0 && app->db != NULL)
        rc = eg_prom_hist(b, "db_query_duration_seconds", NULL, eg_db_pool_query_hist(app->db));
    return rc;
}

static int render_redis(struct eg_redis *redis, struct eg_buf *b)
{
    struct eg_redis_stats rs;

    eg_redis_get_stats(redis, &rs);
    const struct metric m[] = {
        GAUGE("redis_up", "1 while Redis answers PING (not needed for readiness).",
              rs.is_up ? 1 : 0),
        COUNTER("redis_reconnects_total", "Redis connections lost.", rs.reconnects_total),
    };
    return render(b, m, EG_ARRAY_LEN(m));
}

static int render_sse(struct eg_sse_hub *sse, struct eg_buf *b)
{
    struct eg_sse_hub_stats ss;
    int rc;

    eg_sse_hub_get_stats(sse, &ss);
    const struct metric m[] = {
        GAUGE("sse_subscribers", "Open event streams on this instance.", ss.subscribers),
        GAUGE("sse_topics", "Projects with local subscribers.", ss.topics),
        COUNTER("sse_events_delivered_total", "Event frames written live.", ss.delivered_total),
        COUNTER("sse_events_caught_up_total",
                "Event frames written from catch-up pages (resumed subscribers).",
                ss.caught_up_total),
        COUNTER("sse_subscribers_behind_total",
                "Subscribers that passed the pending-bytes cap and paged from the log.",
                ss.fell_behind_total),
        COUNTER("sse_subscribers_dropped_total",
                "Subscribers closed for staying behind too long (they resume).", ss.dropped_total),
        COUNTER("sse_resets_total", "reset events sent for unusable positions.", ss.resets_total),
        COUNTER("sse_log_reads_total", "Topic reads of the event log.", ss.log_reads_total),
        COUNTER("sse_bus_notices_duplicate_total",
                "Bus notices about events already delivered (dropped).", ss.notices_dup_total),
        COUNTER("sse_bus_notices_gap_total",
                "Bus notices that showed earlier notices were missed (log read).",
                ss.notices_gap_total),
    };

    rc = render(b, m, EG_ARRAY_LEN(m));
    if (rc == 0)
        rc = eg_prom_header(b, "sse_delivery_lag_seconds", "histogram",
                            "Write transaction start to written to every live subscriber.");
    return rc == 0 ? eg_prom_hist(b, "sse_delivery_lag_seconds", NULL, ss.lag) : rc;
}

static int render_bus(struct eg_bus *bus, struct eg_buf *b)
{
    struct eg_bus_stats bs;
    const char *kind[1];
    double up[1];
    int rc;

    eg_bus_get_stats(bus, &bs);
    kind[0] = bs.kind;
    up[0] = bs.is_up ? 1 : 0;
    const struct metric m[] = {
        COUNTER("bus_notices_published_total", "Log notices this instance sent.",
                bs.notices_published_total),
        COUNTER("bus_notices_received_total", "Log notices this instance received.",
                bs.notices_received_total),
        COUNTER("bus_pokes_sent_total", "Pokes sent to the sequencer leader.", bs.pokes_sent_total),
        COUNTER("bus_pokes_received_total", "Pokes received.", bs.pokes_received_total),
        COUNTER("bus_reconnects_total", "Times the bus lost its connection.", bs.reconnects_total),
    };

    rc = render_labelled(b, "bus_connected", "gauge",
                         "1 while the event bus receives notices (ENGRAM_BUS).", "kind", kind, up,
                         1);
    return rc == 0 ? render(b, m, EG_ARRAY_LEN(m)) : rc;
}

static int render_sequencer(struct eg_db_seq *seq, struct eg_buf *b)
{
    struct eg_db_seq_stats qs;

    eg_db_seq_get_stats(seq, &qs);
    const struct metric m[] = {
        GAUGE("sequencer_leader", "1 while this instance sequences the event log.",
              qs.is_leader ? 1 : 0),
        COUNTER("sequencer_events_total", "Events this instance sequenced.", qs.events_total),
        COUNTER("sequencer_batches_total", "Sequencer transactions that moved rows.",
                qs.batches_total),
        COUNTER("events_pruned_total", "Events deleted by retention on this leader.",
                qs.pruned_total),
    };
    return render(b, m, EG_ARRAY_LEN(m));
}

int eg_api_metrics_render(struct eg_app *app, struct eg_buf *b)
{
    struct eg_proc_stats ps;
    int rc;

    eg_proc_stats_read(&ps);
    const struct metric process[] = {
        GAUGE("engram_draining", "1 while the instance drains after SIGTERM.",
              app->is_draining ? 1 : 0),
        COUNTER("process_cpu_seconds_total", "User and system CPU time spent.", ps.cpu_seconds),
        GAUGE("process_resident_memory_bytes", "Resident memory size.", ps.rss_bytes),
        GAUGE("process_open_fds", "Open file descriptors.", ps.open_fds),
        GAUGE("process_start_time_seconds", "Start time since the epoch.", ps.start_time_seconds),
    };

    rc = render_build(app, b);
    if (rc == 0)
        rc = eg_api_render_request_metrics(app, b);
    if (rc == 0)
        rc = render_http_db(app, b);
    if (rc == 0 && app->redis != NULL)
        rc = render_redis(app->redis, b);
    if (rc == 0 && app->sse != NULL)
        rc = render_sse(app->sse, b);
    if (rc == 0 && app->bus != NULL)
        rc = render_bus(app->bus, b);
    if (rc == 0 && app->seq != NULL)
        rc = render_sequencer(app->seq, b);
    if (rc == 0 && app->tls != NULL)
        rc = render_tls(app->tls, b);
    return rc == 0 ? render(b, process, EG_ARRAY_LEN(process)) : rc;
}

void eg_api_metrics(struct eg_app *app, struct eg_http_req *r)
{
    eg_buf_reset(&r->resp_body);
    if (eg_api_metrics_render(app, &r->resp_body) < 0) {
        eg_http_respond_error(r, 500, "server_error");
        return;
    }
    eg_http_respond(r, 200, "text/plain; version=0.0.4; charset=utf-8");
}
