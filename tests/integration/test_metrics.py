"""GET /metrics: Prometheus text format 0.0.4, the expected families, route templates as labels
(never raw paths or ids), and a clean `promtool check metrics`."""
import re
import shutil
import subprocess

import pytest

REQUIRED = [
    'http_requests_total{method="GET",route="/health/live",status="200"}',
    "http_request_duration_seconds_bucket",
    "db_pool_connections",
    "db_query_duration_seconds",
    "process_resident_memory_bytes",
    "process_open_fds",
    "process_start_time_seconds",
    "engram_build_info",
    "http_connections_active",
]


def _metrics(srv):
    r = srv.get("/metrics")
    assert r.status == 200, r
    return r


def _sample_value(text, series):
    for line in text.splitlines():
        if line.startswith(series + " "):
            return float(line.split()[1])
    return None


def test_metrics_content_and_families(engram):
    srv = engram()
    for _ in range(3):
        assert srv.get("/health/live").status == 200
    srv.get("/api/v1/memories/abc123")
    srv.get("/api/v1/memories/zq9raw7idxq")
    srv.get("/no-such-route-qx81")
    r = _metrics(srv)
    assert r.header("content-type") == "text/plain; version=0.0.4; charset=utf-8", r
    text = r.body.decode("utf-8")
    missing = [m for m in REQUIRED if m not in text]
    assert not missing, "missing from /metrics: %r\n%s" % (missing, text[:3000])
    live = _sample_value(text, 'http_requests_total{method="GET",route="/health/live",status="200"}')
    assert live is not None and live >= 3, "GET /health/live counted %r times, expected >= 3" % live
    # route labels are templates
    assert 'route="/api/v1/memories/{id}"' in text, "no series for the {id} template"
    for raw in ("abc123", "zq9raw7idxq", "no-such-route-qx81"):
        assert raw not in text, "raw path/id %r leaked into /metrics (cardinality)" % raw
    # build info is an _info gauge of value 1 with a version label
    m = re.search(r'^engram_build_info\{[^}]*version="[^"]+"[^}]*\} 1$', text, re.M)
    assert m, "engram_build_info{version=...} 1 not found"
    assert srv.get("/health/live").status == 200


def test_metrics_histogram_is_well_formed(engram):
    srv = engram()
    srv.get("/health/live")
    text = _metrics(srv).body.decode()
    buckets = [l for l in text.splitlines()
               if l.startswith("http_request_duration_seconds_bucket{")]
    assert any('le="+Inf"' in l for l in buckets), "no +Inf bucket"
    assert re.search(r"^http_request_duration_seconds_sum\{", text, re.M)
    assert re.search(r"^http_request_duration_seconds_count\{", text, re.M)
    assert "# TYPE http_request_duration_seconds histogram" in text
    assert "# TYPE http_requests_total counter" in text


def test_promtool_check_metrics(engram):
    promtool = shutil.which("promtool") or "/usr/bin/promtool"
    if not shutil.which(promtool):
        pytest.skip("promtool not installed")
    srv = engram()
    srv.get("/health/live")
    srv.get("/api/v1/memories/abc123")
    srv.get("/nope")
    body = _metrics(srv).body
    r = subprocess.run([promtool, "check", "metrics"], input=body, stdout=subprocess.PIPE,
                       stderr=subprocess.STDOUT, timeout=30)
    assert r.returncode == 0, "promtool check metrics exited %d:\n%s" % (
        r.returncode, r.stdout.decode(errors="replace"))


def test_metrics_series_count_does_not_grow_with_paths(engram):
    srv = engram()
    srv.get("/nope-0")
    srv.get("/api/v1/memories/id-0")
    _metrics(srv)  # warm up: the /metrics route's own series appear after the first scrape
    n0 = len(_metrics(srv).body.splitlines())
    for i in range(1, 50):
        srv.get("/nope-%d" % i)
        srv.get("/api/v1/memories/id-%d" % i)
    n1 = len(_metrics(srv).body.splitlines())
    assert n1 - n0 <= 5, "series grew from %d to %d lines after 100 distinct paths" % (n0, n1)
