"""RELIABILITY.md §2.1 B1 and B2: malformed requests and the request-smuggling set.

Every case: 400 {"error":"bad_request"}, the connection is closed (the parser state is unknown), no
second response is produced from bytes after the bad request (no smuggling), and the server still
answers GET /health/live. Each case runs as the first request of a connection and again after a good
request on a keep-alive connection.
"""
import time

import pytest

from rawhttp import ConnClosed, request_bytes

SMUGGLED = b"GET /smuggled HTTP/1.1\r\nHost: x\r\n\r\n"

B1 = {
    "garbage_request_line": b"GARBAGE\r\n\r\n",
    "request_line_without_version": b"GET /health/live\r\n\r\n",
    "request_line_extra_token": b"GET /health/live HTTP/1.1 extra\r\nHost: x\r\n\r\n",
    "target_without_slash": b"GET health/live HTTP/1.1\r\nHost: x\r\n\r\n",
    "bad_method_token": b"G(T /health/live HTTP/1.1\r\nHost: x\r\n\r\n",
    "bad_method_ctl": b"GE\x01T /health/live HTTP/1.1\r\nHost: x\r\n\r\n",
    "bad_version_minor": b"GET /health/live HTTP/1.x\r\nHost: x\r\n\r\n",
    "bad_version_protocol": b"GET /health/live HTTX/1.1\r\nHost: x\r\n\r\n",
    "bad_version_digits": b"GET /health/live HTTP/11\r\nHost: x\r\n\r\n",
    "bare_lf_everywhere": b"GET /health/live HTTP/1.1\nHost: x\n\n",
    "bare_lf_in_headers": b"GET /health/live HTTP/1.1\r\nHost: x\nX-A: b\r\n\r\n",
    "cr_without_lf_request_line": b"GET /health/live HTTP/1.1\rHost: x\r\n\r\n",
    "cr_without_lf_header": b"GET /health/live HTTP/1.1\r\nHost: x\rX-A: b\r\n\r\n",
    "obs_fold_space": b"GET /health/live HTTP/1.1\r\nHost: x\r\n  y\r\n\r\n",
    "obs_fold_tab": b"GET /health/live HTTP/1.1\r\nHost: x\r\n\ty\r\n\r\n",
    # CVE-2024-27982 shape: a folded Content-Length hides the body, which would become request 2
    "obs_fold_smuggle": (b"POST /health/live HTTP/1.1\r\nHost: x\r\nX-A: b\r\n Content-Length: "
                         + str(len(SMUGGLED)).encode() + b"\r\n\r\n" + SMUGGLED),
    "space_before_colon": b"GET /health/live HTTP/1.1\r\nHost : x\r\n\r\n",
    "tab_before_colon": b"GET /health/live HTTP/1.1\r\nHost\t: x\r\n\r\n",
    "space_before_colon_cl_smuggle": (b"POST /health/live HTTP/1.1\r\nHost: x\r\nContent-Length : "
                                      + str(len(SMUGGLED)).encode() + b"\r\n\r\n" + SMUGGLED),
    "empty_header_name": b"GET /health/live HTTP/1.1\r\nHost: x\r\n: v\r\n\r\n",
    "nul_in_url": b"GET /health/\x00live HTTP/1.1\r\nHost: x\r\n\r\n",
    "nul_in_query": b"GET /health/live?a=\x00 HTTP/1.1\r\nHost: x\r\n\r\n",
    "nul_in_header_value": b"GET /health/live HTTP/1.1\r\nHost: x\r\nX-A: a\x00b\r\n\r\n",
    "nul_in_header_name": b"GET /health/live HTTP/1.1\r\nHost: x\r\nX-\x00A: b\r\n\r\n",
    "ctl_in_header_value": b"GET /health/live HTTP/1.1\r\nHost: x\r\nX-A: a\x01b\r\n\r\n",
}

_P = b"POST /api/v1/memories HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
B2 = {
    "cl_and_te": _P + b"Content-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
    "te_and_cl_smuggle": (_P + b"Transfer-Encoding: chunked\r\nContent-Length: "
                          + str(5 + len(SMUGGLED)).encode() + b"\r\n\r\n0\r\n\r\n" + SMUGGLED),
    "duplicate_differing_cl": _P + b"Content-Length: 5\r\nContent-Length: 6\r\n\r\nhello!",
    "cl_list": _P + b"Content-Length: 5, 6\r\n\r\nhello!",
    "cl_negative": _P + b"Content-Length: -1\r\n\r\n",
    "cl_not_a_number": _P + b"Content-Length: abc\r\n\r\n",
    "cl_plus_sign": _P + b"Content-Length: +5\r\n\r\nhello",
    "te_chunked_gzip": _P + b"Transfer-Encoding: chunked, gzip\r\n\r\n0\r\n\r\n",
    "te_gzip_only": _P + b"Transfer-Encoding: gzip\r\n\r\n" + SMUGGLED,
    "te_identity": _P + b"Transfer-Encoding: identity\r\n\r\n" + SMUGGLED,
    "bad_chunk_size": _P + b"Transfer-Encoding: chunked\r\n\r\nzz\r\nhello\r\n0\r\n\r\n",
    "chunk_size_overflow": (_P + b"Transfer-Encoding: chunked\r\n\r\n"
                            b"fffffffffffffffffff\r\nhello\r\n0\r\n\r\n"),
    "missing_crlf_after_chunk": _P + b"Transfer-Encoding: chunked\r\n\r\n5\r\nhelloXX0\r\n\r\n",
    "missing_crlf_after_chunk_2": _P + b"Transfer-Encoding: chunked\r\n\r\n5\r\nhello0\r\n\r\n",
}

CASES = [pytest.param(v, id="B1-" + k) for k, v in B1.items()] + \
        [pytest.param(v, id="B2-" + k) for k, v in B2.items()]


def _expect_400_and_close(c, payload):
    c.send_tolerant(payload)
    try:
        r = c.read_response(timeout=5)
    except ConnClosed as e:
        raise AssertionError("connection closed without a 400 response (got %r)" % e.partial)
    assert r.status == 400, "expected 400, got %r" % (r,)
    assert r.json() == {"error": "bad_request"}, r
    assert r.header("content-type") == "application/json; charset=utf-8"
    assert c.wait_closed(timeout=3), "connection not closed after a 400 for a malformed request"
    assert c.buf == b"", "bytes after the 400 (a smuggled request was answered?): %r" % c.buf[:300]


@pytest.mark.parametrize("payload", CASES)
def test_malformed_first_request(engram_server, payload):
    srv = engram_server
    with srv.conn() as c:
        _expect_400_and_close(c, payload)
    srv.assert_alive()


@pytest.mark.parametrize("payload", CASES)
def test_malformed_after_good_request(engram_server, payload):
    srv = engram_server
    with srv.conn() as c:
        c.send(request_bytes("GET", "/health/live"))
        assert c.read_response().status == 200
        _expect_400_and_close(c, payload)
    srv.assert_alive()


def test_no_leak_after_many_malformed(engram_server):
    """200 malformed connections in a row: no 5xx, no fd or memory growth, still serving. (Whether
    each case gets its 400 is checked above; this one only looks at the server's own state.)"""
    srv = engram_server
    payloads = list(B1.values()) + list(B2.values())
    for i in range(20):  # warm-up: allocator pools, lazily created buffers
        with srv.conn() as c:
            c.send_tolerant(payloads[i % len(payloads)])
            c.wait_closed(timeout=0.5)
    rss0 = srv.rss_kib()
    fds0 = srv.fd_count()
    for i in range(200):
        with srv.conn() as c:
            c.send_tolerant(payloads[i % len(payloads)])
            try:
                r = c.read_response(timeout=3)
                assert r.status < 500, "5xx for malformed input %r: %r" % (
                    payloads[i % len(payloads)][:80], r)
            except ConnClosed:
                pass
    srv.assert_alive()
    time.sleep(0.3)  # let the server finish closing
    assert srv.fd_count() <= fds0 + 2, "fd leak: %d -> %d" % (fds0, srv.fd_count())
    assert srv.rss_kib() - rss0 < 8 * 1024, "RSS grew by %d KiB" % (srv.rss_kib() - rss0)
