/* GET /metrics: Prometheus text format 0.0.4. No label carries a tenant id or a raw path. */
#include "engram/api.h"

#include <stdio.h>

#include "engram/net.h"

int eg_api_render_request_metrics(struct eg_app *app, struct eg_buf *b);

static int gauge(struct eg_buf *b, const char *name, const char *help, double v)
{
    int rc = eg_prom_header(b, name, "gauge", help);

    return rc == 0 ? eg_prom_sample(b, name, NULL, v) : rc;
}

static int counter(struct eg_buf *b, const char *name, const char *help, double v)
{
    int rc = eg_prom_header(b, name, "counter", help);

    return rc == 0 ? eg_prom_sample(b, name, NULL, v) : rc;
}

/* The HTTPS listener's handshakes; every failure reason is listed, zeros included. */
static int render_tls(const struct eg_net_tls *tls, struct eg_buf *b)
{
    struct eg_net_tls_stats ts;
    char labels[64];
    int rc;

    eg_net_tls_get_stats(tls, &ts);
    rc = counter(b, "tls_handshakes_total", "TLS handshakes completed.",
                 (double)ts.handshakes_total);
    if (rc == 0)
        rc = eg_prom_header(b, "tls_handshake_failures_total", "counter",
                            "TLS connections closed before their handshake completed, by reason.");
    for (int i = 0; i < EG_NET_TLS_FAIL_COUNT && rc == 0; i++) {
        snprintf(labels, sizeof(labels), "reason=\"%s\"",
                 eg_net_tls_failure_name((enum eg_net_tls_failure)i));
        rc =
            eg_prom_sample(b, "tls_handshake_failures_total", labels, (double)ts.failures_total[i]);
    }
    if (rc == 0)
        rc = gauge(b, "tls_connections_active", "Open HTTPS connections.",
                   (double)ts.connections_active);
    return rc;
}

int eg_api_metrics_render(struct eg_app *app, struct eg_buf *b)
{
    struct eg_http_server_stats hs;
    struct eg_db_pool_stats ds = {0};
    struct eg_proc_stats ps;
    char labels[160];
    int rc;

    eg_http_server_get_stats(app->http, &hs);
    if (app->db != NULL)
        eg_db_pool_get_stats(app->db, &ds);
    eg_proc_stats_read(&ps);

    rc = eg_prom_header(b, "engram_build_info", "gauge", "Build of this engramd (always 1).");
    if (rc == 0) {
        eg_buf_puts(b, "engram_build_info{version=\"");
        eg_prom_label_value(b, app->version);
        eg_buf_puts(b, "\",commit=\"");
        eg_prom_label_value(b, app->commit);
        rc = eg_buf_puts(b, "\"} 1\n");
    }
    if (rc == 0)
        rc = eg_api_render_request_metrics(app, b);
    if (rc == 0)
        rc = gauge(b, "http_requests_in_flight", "Requests received and not yet answered.",
                   (double)hs.requests_in_flight);
    if (rc == 0)
        rc = gauge(b, "http_connections_active", "Open client connections.",
                   (double)hs.connections_active);
    if (rc == 0)
        rc = counter(b, "http_connections_total", "Client connections accepted.",
                     (double)hs.connections_total);
    if (rc == 0)
        rc = counter(b, "http_connections_rejected_total",
                     "Connections refused with 503 (connection limit or draining).",
                     (double)hs.connections_rejected);
    if (rc == 0)
        rc = eg_prom_header(b, "db_pool_connections", "gauge",
                            "PostgreSQL pool connections by state.");
    if (rc == 0) {
        static const char *const names[] = {"idle", "busy", "connecting", "down"};
        const double vals[] = {(double)ds.idle, (double)ds.busy, (double)ds.connecting,
                               (double)ds.broken};

        for (size_t i = 0; i < EG_ARRAY_LEN(names) && rc == 0; i++) {
            snprintf(labels, sizeof(labels), "state=\"%s\"", names[i]);
            rc = eg_prom_sample(b, "db_pool_connections", labels, vals[i]);
        }
    }
    if (rc == 0)
        rc = gauge(b, "db_pool_waiting", "Queries waiting for a free connection.",
                   (double)ds.waiting);
    if (rc == 0)
        rc = counter(b, "db_pool_rejected_total",
                     "Queries refused: queue full, queue timeout or no live connection.",
                     (double)ds.rejected_total);
    if (rc == 0)
        rc = counter(b, "db_errors_total", "Queries that failed with a database error.",
                     (double)ds.errors_total);
    if (rc == 0)
        rc = counter(b, "db_reconnects_total", "Live database connections lost.",
                     (double)ds.reconnects_total);
    if (rc == 0)
        rc = gauge(b, "db_schema_version", "Applied schema version seen (-1 unknown).",
                   (double)ds.schema_version);
    if (rc == 0)
        rc = eg_prom_header(b, "db_query_duration_seconds", "histogram",
                            "Database round trips, from send to last result.");
    if (rc == 0 && app->db != NULL)
        rc = eg_prom_hist(b, "db_query_duration_seconds", NULL, eg_db_pool_query_hist(app->db));
    if (rc == 0 && app->redis != NULL) {
        struct eg_redis_stats rs;

        eg_redis_get_stats(app->redis, &rs);
        rc = gauge(b, "redis_up", "1 while Redis answers PING (not needed for readiness).",
                   rs.is_up ? 1 : 0);
        if (rc == 0)
            rc = counter(b, "redis_reconnects_total", "Redis connections lost.",
                         (double)rs.reconnects_total);
    }
    if (rc == 0 && app->sse != NULL) {
        struct eg_sse_hub_stats ss;

        eg_sse_hub_get_stats(app->sse, &ss);
        rc = gauge(b, "sse_subscribers", "Open event streams on this instance.",
                   (double)ss.subscribers);
        if (rc == 0)
            rc = gauge(b, "sse_topics", "Projects with local subscribers.", (double)ss.topics);
        if (rc == 0)
            rc = counter(b, "sse_events_delivered_total", "Event frames written live.",
                         (double)ss.delivered_total);
        if (rc == 0)
            rc = counter(b, "sse_events_caught_up_total",
                         "Event frames written from catch-up pages (resumed subscribers).",
                         (double)ss.caught_up_total);
        if (rc == 0)
            rc = counter(b, "sse_subscribers_behind_total",
                         "Subscribers that passed the pending-bytes cap and paged from the log.",
                         (double)ss.fell_behind_total);
        if (rc == 0)
            rc = counter(b, "sse_subscribers_dropped_total",
                         "Subscribers closed for staying behind too long (they resume).",
                         (double)ss.dropped_total);
        if (rc == 0)
            rc = counter(b, "sse_resets_total", "reset events sent for unusable positions.",
                         (double)ss.resets_total);
        if (rc == 0)
            rc = counter(b, "sse_log_reads_total", "Topic reads of the event log.",
                         (double)ss.log_reads_total);
        if (rc == 0)
            rc = counter(b, "sse_bus_notices_duplicate_total",
                         "Bus notices about events already delivered (dropped).",
                         (double)ss.notices_dup_total);
        if (rc == 0)
            rc = counter(b, "sse_bus_notices_gap_total",
                         "Bus notices that showed earlier notices were missed (log read).",
                         (double)ss.notices_gap_total);
        if (rc == 0)
            rc = eg_prom_header(b, "sse_delivery_lag_seconds", "histogram",
                                "Write transaction start to written to every live subscriber.");
        if (rc == 0)
            rc = eg_prom_hist(b, "sse_delivery_lag_seconds", NULL, ss.lag);
    }
    if (rc == 0 && app->bus != NULL) {
        struct eg_bus_stats bs;
        char kind[48];

        eg_bus_get_stats(app->bus, &bs);
        snprintf(kind, sizeof(kind), "kind=\"%s\"", bs.kind);
        rc = eg_prom_header(b, "bus_connected", "gauge",
                            "1 while the event bus receives notices (ENGRAM_BUS).");
        if (rc == 0)
            rc = eg_prom_sample(b, "bus_connected", kind, bs.is_up ? 1 : 0);
        if (rc == 0)
            rc = counter(b, "bus_notices_published_total", "Log notices this instance sent.",
                         (double)bs.notices_published_total);
        if (rc == 0)
            rc = counter(b, "bus_notices_received_total", "Log notices this instance received.",
                         (double)bs.notices_received_total);
        if (rc == 0)
            rc = counter(b, "bus_pokes_sent_total", "Pokes sent to the sequencer leader.",
                         (double)bs.pokes_sent_total);
        if (rc == 0)
            rc = counter(b, "bus_pokes_received_total", "Pokes received.",
                         (double)bs.pokes_received_total);
        if (rc == 0)
            rc = counter(b, "bus_reconnects_total", "Times the bus lost its connection.",
                         (double)bs.reconnects_total);
    }
    if (rc == 0 && app->seq != NULL) {
        struct eg_db_seq_stats qs;

        eg_db_seq_get_stats(app->seq, &qs);
        rc = gauge(b, "sequencer_leader", "1 while this instance sequences the event log.",
                   qs.is_leader ? 1 : 0);
        if (rc == 0)
            rc = counter(b, "sequencer_events_total", "Events this instance sequenced.",
                         (double)qs.events_total);
        if (rc == 0)
            rc = counter(b, "sequencer_batches_total", "Sequencer transactions that moved rows.",
                         (double)qs.batches_total);
        if (rc == 0)
            rc = counter(b, "events_pruned_total", "Events deleted by retention on this leader.",
                         (double)qs.pruned_total);
    }
    if (rc == 0 && app->tls != NULL)
        rc = render_tls(app->tls, b);
    if (rc == 0)
        rc = gauge(b, "engram_draining", "1 while the instance drains after SIGTERM.",
                   app->is_draining ? 1 : 0);
    if (rc == 0)
        rc = counter(b, "process_cpu_seconds_total", "User and system CPU time spent.",
                     ps.cpu_seconds);
    if (rc == 0)
        rc = gauge(b, "process_resident_memory_bytes", "Resident memory size.", ps.rss_bytes);
    if (rc == 0)
        rc = gauge(b, "process_open_fds", "Open file descriptors.", ps.open_fds);
    if (rc == 0)
        rc = gauge(b, "process_start_time_seconds", "Start time since the epoch.",
                   ps.start_time_seconds);
    return rc;
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
