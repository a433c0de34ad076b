"""Logs: one JSON object per line on stdout, access lines with the agreed keys, no secrets."""
import json
import re
import time

from rawhttp import request_bytes

ACCESS_KEYS = {"ts", "level", "msg", "request_id", "method", "route", "status", "duration_ms",
               "bytes"}
SECRET = "secret-xyz"
TS_RE = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?(Z|[+-]\d{2}:?\d{2})$")


def _json_lines(text):
    out = []
    for i, line in enumerate(text.splitlines()):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except ValueError:
            raise AssertionError("stdout line %d is not JSON: %r" % (i + 1, line[:300]))
        assert isinstance(obj, dict), "stdout line %d is not an object: %r" % (i + 1, line[:300])
        out.append(obj)
    return out


def _wait_for_line(srv, pred, timeout=3.0):
    deadline = time.monotonic() + timeout
    while True:
        for obj in _json_lines(srv.stdout_text()):
            if pred(obj):
                return obj
        if time.monotonic() > deadline:
            raise AssertionError("no matching log line within %.0fs; stdout:\n%s"
                                 % (timeout, srv.stdout_text()[-3000:]))
        time.sleep(0.1)


def test_access_log_line(engram):
    srv = engram()
    r = srv.get("/health/live", {"X-Request-Id": "log-test-1"})
    assert r.status == 200
    line = _wait_for_line(srv, lambda o: o.get("request_id") == "log-test-1")
    missing = ACCESS_KEYS - set(line)
    assert not missing, "access line lacks %s: %r" % (sorted(missing), line)
    assert line["method"] == "GET"
    assert line["route"] == "/health/live"
    assert line["status"] == 200 and isinstance(line["status"], int)
    assert isinstance(line["duration_ms"], (int, float)) and line["duration_ms"] >= 0
    assert isinstance(line["bytes"], int) and line["bytes"] >= len(r.body)
    assert isinstance(line["level"], str) and line["level"]
    assert isinstance(line["ts"], str) and TS_RE.match(line["ts"]), line["ts"]


def test_access_log_uses_route_template(engram):
    srv = engram()
    srv.get("/api/v1/memories/abc123", {"X-Request-Id": "log-tmpl"})
    line = _wait_for_line(srv, lambda o: o.get("request_id") == "log-tmpl")
    assert line["route"] == "/api/v1/memories/{id}", line


def test_generated_request_id_matches_response_header(engram):
    srv = engram()
    r = srv.get("/health/live")
    rid = r.header("x-request-id")
    assert rid
    _wait_for_line(srv, lambda o: o.get("request_id") == rid)


def test_authorization_never_logged(engram):
    srv = engram(env={"ENGRAM_LOG_LEVEL": "debug"})
    auth = {"Authorization": "Bearer " + SECRET, "X-Request-Id": "log-auth"}
    srv.get("/health/live", auth)
    srv.get("/nope", auth)
    srv.request("PUT", "/health/live", auth)
    srv.request("POST", "/api/v1/memories", dict(auth, **{"Content-Type": "application/json"}),
                body=json.dumps({"subject_id": "u1", "text": "hello"}))
    with srv.conn() as c:  # a malformed request carrying the secret
        c.send(b"GET /health/live HTTP/1.1\r\nAuthorization: Bearer " + SECRET.encode()
               + b"\r\nHost : x\r\n\r\n")
        c.read_response()
    _wait_for_line(srv, lambda o: o.get("request_id") == "log-auth")
    srv.stop()  # flush everything, including shutdown lines
    text = srv.stdout_text() + srv.stderr_text()
    assert SECRET not in text, "the Authorization secret appears in the logs"
    _json_lines(srv.stdout_text())  # and every stdout line is still JSON


def test_stdout_is_json_lines_through_a_lifecycle(engram):
    srv = engram()
    srv.get("/health")
    srv.get("/nope")
    with srv.conn() as c:
        c.send(b"GARBAGE\r\n\r\n")
        c.read_response()
    srv.stop()
    lines = _json_lines(srv.stdout_text())
    assert lines, "nothing logged on stdout"
    for obj in lines:
        assert {"ts", "level", "msg"} <= set(obj), obj
