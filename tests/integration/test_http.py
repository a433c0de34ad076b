"""HTTP/1.1 connection handling: keep-alive, pipelining, chunked bodies, Expect, HEAD, request ids.

All on raw sockets: `requests` would hide framing mistakes.
"""
import json
import threading
import time

import pytest

from rawhttp import ConnClosed, RawConn, chunked, request_bytes

JSON_CT = "application/json; charset=utf-8"
# CORE API routes may answer 501 {"error":"not_implemented"} until the API lands (api_pending).
API_PENDING = 501


def test_keep_alive_several_requests_on_one_connection(engram_server):
    srv = engram_server
    with srv.conn() as c:
        for i in range(5):
            c.send(request_bytes("GET", "/health/live", {"X-Request-Id": "ka-%d" % i}))
            r = c.read_response()
            assert r.status == 200, r
            assert r.header("x-request-id") == "ka-%d" % i
            assert r.header("content-type") == JSON_CT
            assert r.header("connection", "").lower() != "close", r
        # a different route on the same connection still works
        c.send(request_bytes("GET", "/health"))
        r = c.read_response()
        assert r.status == 200 and r.json()["ok"] is True
        # and the connection is still open (no FIN after the responses)
        assert not c.wait_closed(timeout=0.3), "server closed a keep-alive connection"
    srv.assert_alive()


def test_http10_without_keepalive_is_closed_after_response(engram_server):
    srv = engram_server
    with srv.conn() as c:
        c.send(b"GET /health/live HTTP/1.0\r\nHost: x\r\n\r\n")
        r = c.read_response()
        assert r.status == 200
        assert c.wait_closed(timeout=3), "HTTP/1.0 request without keep-alive: connection kept open"


def test_connection_close_header_closes_after_response(engram_server):
    srv = engram_server
    with srv.conn() as c:
        c.send(request_bytes("GET", "/health/live", {"Connection": "close"}))
        r = c.read_response()
        assert r.status == 200
        assert c.wait_closed(timeout=3), "Connection: close was not honoured"


def test_pipelining_20_requests_in_one_write(engram_server):
    srv = engram_server
    paths = ["/health/live", "/health", "/nope"]
    data = b"".join(request_bytes("GET", paths[i % 3], {"X-Request-Id": "pipe-%d" % i})
                    for i in range(20))
    with srv.conn() as c:
        c.send(data)
        for i in range(20):
            r = c.read_response(timeout=5)
            assert r.header("x-request-id") == "pipe-%d" % i, "response %d out of order: %r" % (i, r)
            expected = 404 if paths[i % 3] == "/nope" else 200
            assert r.status == expected, r
        assert not c.wait_closed(timeout=0.3), "connection closed after a pipelined batch"
        assert c.buf == b"", "extra bytes after 20 responses: %r" % c.buf[:200]
    srv.assert_alive()


def test_pipelining_1000_requests_in_one_write(engram_server):
    """B5: 1000 pipelined requests in one write. Either every one is answered, in order, or the
    server answers a prefix in order and then closes; it never answers out of order, never answers
    more than asked, and stays alive."""
    srv = engram_server
    n = 1000
    data = b"".join(request_bytes("GET", "/health/live", {"X-Request-Id": "p%d" % i})
                    for i in range(n))
    c = srv.conn(timeout=10)
    sent = {}

    def sender():
        sent["ok"] = c.send_tolerant(data)

    t = threading.Thread(target=sender, daemon=True)
    t.start()
    got = 0
    closed = False
    deadline = time.monotonic() + 30
    try:
        while got < n and time.monotonic() < deadline:
            try:
                r = c.read_response(timeout=10)
            except ConnClosed:
                closed = True
                break
            assert r.header("x-request-id") == "p%d" % got, \
                "response %d out of order: %r" % (got, r)
            assert r.status in (200, 503), r
            got += 1
        t.join(timeout=10)
        assert got == n or closed, "only %d of %d answered and the connection is still open" % (
            got, n)
        if got == n:
            c.wait_closed(timeout=0.3)
            assert c.buf == b"", "more responses than requests: %r" % c.buf[:200]
    finally:
        c.close()
    srv.assert_alive("after 1000 pipelined requests")


def test_chunked_request_body_is_framed_correctly(engram_server):
    """A chunked POST (with a chunk extension and a trailer, in several writes) is consumed
    exactly: the next request on the same connection is answered normally."""
    srv = engram_server
    body = json.dumps({"subject_id": "u-chunked", "text": "chunked body works"}).encode()
    enc = chunked(body, [7, 1, 13])
    enc = enc.replace(b"\r\n", b";ext=1\r\n", 1)  # extension on the first chunk size line
    enc = enc[:-2] + b"X-Trailer: t\r\n\r\n"        # a trailer field
    head = (b"POST /api/v1/memories HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            b"Transfer-Encoding: chunked\r\nX-Request-Id: chunk-1\r\n\r\n")
    with srv.conn() as c:
        c.send(head)
        for i in range(0, len(enc), 10):
            c.send(enc[i:i + 10])
            time.sleep(0.005)
        r = c.read_response()
        # api_pending: 501 until POST /memories exists; then 201 created.
        assert r.status in (200, 201, API_PENDING), r
        assert r.header("x-request-id") == "chunk-1"
        if r.status == API_PENDING:
            assert r.json() == {"error": "not_implemented"}
        c.send(request_bytes("GET", "/health/live", {"X-Request-Id": "after-chunk"}))
        r2 = c.read_response()
        assert r2.status == 200 and r2.header("x-request-id") == "after-chunk", r2
    srv.assert_alive()


def test_content_length_body_in_pieces_then_next_request(engram_server):
    srv = engram_server
    body = json.dumps({"subject_id": "u-cl", "text": "split body"}).encode()
    head = request_bytes("POST", "/api/v1/memories",
                         {"Content-Type": "application/json", "Content-Length": str(len(body)),
                          "X-Request-Id": "cl-1"})
    with srv.conn() as c:
        c.send(head)
        for i in range(0, len(body), 5):
            c.send(body[i:i + 5])
            time.sleep(0.005)
        r = c.read_response()
        assert r.status in (200, 201, API_PENDING), r  # api_pending
        c.send(request_bytes("GET", "/health/live", {"X-Request-Id": "after-cl"}))
        r2 = c.read_response()
        assert r2.status == 200 and r2.header("x-request-id") == "after-cl"


def test_expect_100_continue_within_limits(engram_server):
    srv = engram_server
    body = json.dumps({"subject_id": "u-expect", "text": "expect continue"}).encode()
    head = request_bytes("POST", "/api/v1/memories",
                         {"Content-Type": "application/json", "Content-Length": str(len(body)),
                          "Expect": "100-continue"})
    with srv.conn() as c:
        c.send(head)
        interim = c.read_response(timeout=3, allow_informational=True)
        assert interim.status == 100, "expected HTTP/1.1 100 Continue before the body, got %r" % (
            interim,)
        assert interim.raw_head.startswith(b"HTTP/1.1 100 Continue\r\n"), interim.raw_head
        c.send(body)
        r = c.read_response()
        assert r.status in (200, 201, API_PENDING), r  # api_pending
        # the connection is still usable
        c.send(request_bytes("GET", "/health/live"))
        assert c.read_response().status == 200
    srv.assert_alive()


def test_expect_100_continue_too_large_gets_413_without_continue(engram_server):
    srv = engram_server
    head = request_bytes("POST", "/api/v1/memories",
                         {"Content-Type": "application/json", "Content-Length": str(2 * 1024 * 1024),
                          "Expect": "100-continue"})
    with srv.conn() as c:
        c.send(head)
        r = c.read_response(timeout=3, allow_informational=True)
        assert r.status == 413, "expected 413 without reading the body, got %r" % (r,)
        assert r.json() == {"error": "payload_too_large"}
        assert r.header("content-type") == JSON_CT
    srv.assert_alive()


@pytest.mark.parametrize("path", ["/health/live", "/health", "/health/ready", "/nope"])
def test_head_has_get_headers_and_no_body(engram_server, path):
    srv = engram_server
    with srv.conn() as c:
        c.send(request_bytes("GET", path, {"X-Request-Id": "get-1"}))
        g = c.read_response()
        c.send(request_bytes("HEAD", path, {"X-Request-Id": "head-1"}))
        h = c.read_response(head=True)
        # the next response on the wire must be the GET's: any body bytes after HEAD would corrupt it
        c.send(request_bytes("GET", "/health/live", {"X-Request-Id": "after-head"}))
        n = c.read_response()
    assert h.status == g.status, (g, h)
    assert n.status == 200 and n.header("x-request-id") == "after-head", \
        "HEAD response was followed by body bytes: %r" % (n,)
    skip = {"date", "x-request-id", "content-length"}
    gh = {(k.lower(), v) for k, v in g.headers if k.lower() not in skip}
    hh = {(k.lower(), v) for k, v in h.headers if k.lower() not in skip}
    assert gh == hh, "HEAD headers differ from GET: GET-only %r, HEAD-only %r" % (gh - hh, hh - gh)
    if path == "/health/live":  # a body of stable length (the 404 body names the method)
        assert h.header("content-length") == g.header("content-length") == str(len(g.body))


def test_request_id_echoed_when_sent(engram_server):
    srv = engram_server
    r = srv.get("/health/live", {"X-Request-Id": "req-abc-123"})
    assert r.header("x-request-id") == "req-abc-123"
    r = srv.get("/does-not-exist", {"X-Request-Id": "req-404"})
    assert r.status == 404 and r.header("x-request-id") == "req-404"


def test_request_id_generated_when_absent(engram_server):
    srv = engram_server
    ids = set()
    for _ in range(3):
        r = srv.get("/health/live")
        rid = r.header("x-request-id")
        assert rid and rid.strip(), "no X-Request-Id generated: %r" % (r,)
        ids.add(rid)
    assert len(ids) == 3, "generated request ids repeat: %r" % ids


def test_responses_carry_content_length_and_json_type(engram_server):
    srv = engram_server
    for path in ("/health", "/health/live", "/health/ready", "/nope"):
        r = srv.get(path)
        assert r.header("content-type") == JSON_CT, (path, r)
        assert r.header("content-length") == str(len(r.body)), (path, r)
        assert r.header("transfer-encoding") is None, (path, r)
        json.loads(r.body)


def test_pipeline_with_malformed_request_in_the_middle(engram_server):
    """Good requests before a malformed one are answered in order; then 400 and close; nothing
    after the bad request is answered."""
    srv = engram_server
    data = (request_bytes("GET", "/health/live", {"X-Request-Id": "m-0"})
            + request_bytes("GET", "/health", {"X-Request-Id": "m-1"})
            + b"GET /health/live HTTP/1.1\r\nHost : x\r\n\r\n"
            + request_bytes("GET", "/health/live", {"X-Request-Id": "m-3"}))
    with srv.conn() as c:
        c.send(data)
        r0 = c.read_response()
        r1 = c.read_response()
        r2 = c.read_response()
        assert (r0.status, r0.header("x-request-id")) == (200, "m-0"), r0
        assert (r1.status, r1.header("x-request-id")) == (200, "m-1"), r1
        assert r2.status == 400 and r2.json() == {"error": "bad_request"}, r2
        assert c.wait_closed(timeout=3), "not closed after the 400"
        assert c.buf == b"", "the request after the malformed one was answered: %r" % c.buf[:200]
    srv.assert_alive()


def test_connection_close_in_pipeline_stops_processing(engram_server):
    srv = engram_server
    data = (request_bytes("GET", "/health/live", {"X-Request-Id": "cc-0"})
            + request_bytes("GET", "/health/live", {"X-Request-Id": "cc-1", "Connection": "close"})
            + request_bytes("GET", "/health/live", {"X-Request-Id": "cc-2"}))
    with srv.conn() as c:
        c.send(data)
        assert c.read_response().header("x-request-id") == "cc-0"
        r = c.read_response()
        assert r.header("x-request-id") == "cc-1"
        assert (r.header("connection") or "").lower() == "close", r
        assert c.wait_closed(timeout=3)
        assert c.buf == b"", "a request after Connection: close was answered: %r" % c.buf[:200]


def test_http10_keep_alive_is_honoured(engram_server):
    srv = engram_server
    with srv.conn() as c:
        for _ in range(2):
            c.send(b"GET /health/live HTTP/1.0\r\nHost: x\r\nConnection: keep-alive\r\n\r\n")
            r = c.read_response()
            assert r.status == 200
            assert (r.header("connection") or "").lower() == "keep-alive", r
        assert not c.wait_closed(timeout=0.3)


def test_body_on_get_is_consumed(engram_server):
    srv = engram_server
    with srv.conn() as c:
        c.send(request_bytes("GET", "/health/live", {"X-Request-Id": "gb-0"}, body=b"hello"))
        r = c.read_response()
        assert r.status == 200 and r.header("x-request-id") == "gb-0", r
        c.send(request_bytes("GET", "/health/live", {"X-Request-Id": "gb-1"}))
        r = c.read_response()
        assert r.status == 200 and r.header("x-request-id") == "gb-1", r


def test_half_closed_client_still_gets_its_responses(engram_server):
    """A client that sends its requests and then shuts down its write side (FIN) still reads
    every answer."""
    import socket as _s
    srv = engram_server
    with srv.conn() as c:
        c.send(request_bytes("GET", "/health/live", {"X-Request-Id": "hc-0"})
               + request_bytes("GET", "/health", {"X-Request-Id": "hc-1"}))
        c.sock.shutdown(_s.SHUT_WR)
        assert c.read_response().header("x-request-id") == "hc-0"
        assert c.read_response().header("x-request-id") == "hc-1"
        assert c.wait_closed(timeout=3)


def test_unsupported_expectation_is_417(engram_server):
    srv = engram_server
    with srv.conn() as c:
        c.send(request_bytes("POST", "/api/v1/memories",
                             {"Content-Type": "application/json", "Content-Length": "2",
                              "Expect": "something-else"}))
        r = c.read_response(timeout=3, allow_informational=True)
        assert r.status == 417, r
        assert r.json() == {"error": "expectation_failed"}
    srv.assert_alive()
