"""The HTTPS listener (issue #5, TLS part): mbedTLS on the same loop as the HTTP listener.

Each module run makes its own CA and server certificate with `openssl` in a temp directory; the
clients are Python's ssl module (OpenSSL 3) and curl, trusting only that CA. Handshake failures
are checked from the server's side too: its tls_handshake_failures_total{reason} counters, and
that it keeps serving everyone else meanwhile.
"""
import json
import os
import re
import shutil
import socket
import ssl
import struct
import subprocess
import threading
import time
import warnings

import pytest

import apiclient
from apiclient import SSE, Api, seg
from conftest import HOST, free_port
from rawhttp import ConnClosed, RawConn, request_bytes

MiB = 1024 * 1024
HEADER_TIMEOUT_MS = 1500


# ------------------------------------------------------------------------------------------------
# certificates
# ------------------------------------------------------------------------------------------------
def _openssl(args, cwd):
    r = subprocess.run(["openssl"] + args, cwd=cwd, stdout=subprocess.PIPE,
                       stderr=subprocess.STDOUT, timeout=60)
    assert r.returncode == 0, "openssl %s failed:\n%s" % (" ".join(args), r.stdout.decode())


def _make_ca(d, name):
    _openssl(["req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
              "-nodes", "-keyout", name + ".key", "-out", name + ".pem", "-days", "2",
              "-subj", "/CN=" + name, "-addext", "basicConstraints=critical,CA:TRUE",
              "-addext", "keyUsage=critical,keyCertSign,cRLSign"], d)


def _make_leaf(d, ca, name, keyalg):
    newkey = (["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1"] if keyalg == "ec"
              else ["-newkey", "rsa:2048"])
    _openssl(["req", "-new"] + newkey + ["-nodes", "-keyout", name + ".key", "-out",
                                         name + ".csr", "-subj", "/CN=localhost"], d)
    with open(os.path.join(d, name + ".ext"), "w") as f:
        f.write("subjectAltName=DNS:localhost,IP:127.0.0.1\n"
                "extendedKeyUsage=serverAuth\nbasicConstraints=CA:FALSE\n")
    _openssl(["x509", "-req", "-in", name + ".csr", "-CA", ca + ".pem", "-CAkey", ca + ".key",
              "-CAcreateserial", "-days", "2", "-out", name + ".pem", "-extfile", name + ".ext"], d)


@pytest.fixture(scope="module")
def certs(tmp_path_factory):
    if shutil.which("openssl") is None:
        pytest.skip("openssl not installed")
    d = str(tmp_path_factory.mktemp("tls"))
    _make_ca(d, "ca")
    _make_ca(d, "other-ca")
    _make_leaf(d, "ca", "server", "ec")
    _make_leaf(d, "ca", "server-rsa", "rsa")
    return {k: os.path.join(d, v) for k, v in {
        "dir": "", "ca": "ca.pem", "other_ca": "other-ca.pem", "cert": "server.pem",
        "key": "server.key", "rsa_cert": "server-rsa.pem", "rsa_key": "server-rsa.key"}.items()}


def tls_env(certs, port, cert="cert", key="key", **extra):
    env = {"ENGRAM_TLS_PORT": port, "ENGRAM_TLS_CERT": certs[cert], "ENGRAM_TLS_KEY": certs[key],
           "ENGRAM_HEADER_TIMEOUT_MS": HEADER_TIMEOUT_MS}
    env.update(extra)
    return env


def client_ctx(certs, ca="ca"):
    ctx = ssl.create_default_context(cafile=certs[ca])
    ctx.set_alpn_protocols(["h2", "http/1.1"])
    return ctx


# ------------------------------------------------------------------------------------------------
# an HTTPS RawConn
# ------------------------------------------------------------------------------------------------
class TlsConn(RawConn):
    """RawConn over TLS: the same parser, on an ssl socket (strict about close_notify)."""

    def __init__(self, host, port, ctx, timeout=5.0, connect_timeout=3.0, session=None,
                 rcvbuf=None):
        self.host = host
        self.port = port
        raw = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        if rcvbuf is not None:
            raw.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        raw.settimeout(connect_timeout)
        raw.connect((host, port))
        self.sock = ctx.wrap_socket(raw, server_hostname="localhost", session=session,
                                    suppress_ragged_eofs=False)
        self.sock.settimeout(timeout)
        self.timeout = timeout
        self.buf = b""
        self.eof = False


class Https:
    """One engramd with both listeners; .tls_port is the HTTPS port."""

    def __init__(self, srv, tls_port, certs):
        self.srv = srv
        self.tls_port = tls_port
        self.certs = certs
        self.ctx = client_ctx(certs)

    def conn(self, timeout=5.0, **kw):
        return TlsConn(HOST, self.tls_port, self.ctx, timeout=timeout, **kw)

    def request(self, method, path, headers=None, body=None, timeout=5.0):
        hdrs = list(headers.items()) if isinstance(headers, dict) else list(headers or [])
        hdrs.append(("Connection", "close"))
        with self.conn(timeout=timeout) as c:
            c.send(request_bytes(method, path, hdrs, body))
            r = c.read_response(head=(method == "HEAD"))
            # Connection: close ends with the server's close_notify, then EOF (no ragged EOF).
            assert c.sock.recv(1) == b""
            return r

    def metrics(self):
        body = self.srv.get("/metrics").body.decode()
        out = {}
        for m in re.finditer(r'^(tls_[a-z_]+)(?:\{reason="([a-z_]+)"\})? (\d+)$', body, re.M):
            out[m.group(1) + ("." + m.group(2) if m.group(2) else "")] = int(m.group(3))
        return out


@pytest.fixture(scope="module")
def https(shared_tls):
    return shared_tls


@pytest.fixture(scope="module")
def shared_tls(pg, workdir, certs):
    from conftest import _Launcher
    launcher = _Launcher(pg, workdir)
    port = free_port()
    srv = launcher(env=tls_env(certs, port))
    yield Https(srv, port, certs)
    launcher.teardown()


def _metric(srv, name):
    m = re.search(r"^%s (\d+)$" % name, srv.get("/metrics").body.decode(), re.M)
    return int(m.group(1)) if m else 0


def wait_metric(h, name, at_least, timeout=5.0):
    deadline = time.monotonic() + timeout
    while True:
        v = h.metrics().get(name, 0)
        if v >= at_least or time.monotonic() > deadline:
            return v
        time.sleep(0.05)


def assert_serving(h):
    r = h.request("GET", "/health/live", timeout=2)
    assert r.status == 200, r
    assert h.srv.get("/health/live", timeout=2).status == 200


# ------------------------------------------------------------------------------------------------
# requests over HTTPS
# ------------------------------------------------------------------------------------------------
def test_health_over_https_with_curl_and_python(https):
    r = subprocess.run(["curl", "-sS", "--max-time", "10", "--cacert", https.certs["ca"],
                        "--resolve", "localhost:%d:127.0.0.1" % https.tls_port,
                        "-o", "-", "-w", "\n%{http_code} %{ssl_verify_result} %{http_version}",
                        "https://localhost:%d/health" % https.tls_port],
                       stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=20)
    assert r.returncode == 0, r.stderr
    body, _, tail = r.stdout.decode().rpartition("\n")
    assert tail == "200 0 1.1", (tail, r.stderr)
    assert isinstance(json.loads(body), dict), body
    r = https.request("GET", "/health/live")
    assert r.status == 200, r


def test_negotiated_parameters(https):
    with https.conn() as c:
        s = c.sock
        assert s.version() == "TLSv1.2"
        name, _, bits = s.cipher()
        assert "ECDHE" in name and ("GCM" in name or "CHACHA20" in name), name
        assert s.selected_alpn_protocol() == "http/1.1"
        assert s.compression() is None


def test_api_write_and_read_over_https(https):
    project = apiclient.new_id("tls")
    hdrs = {"x-project-id": project, "Content-Type": "application/json"}
    body = json.dumps({"subject_id": "u-tls", "text": "written over TLS"})
    r = https.request("POST", "/api/v1/memories", hdrs, body)
    assert r.status == 201, r
    mid = r.json()["id"]
    r = https.request("GET", "/api/v1/memories/" + seg(mid), {"x-project-id": project})
    assert r.status == 200, r
    assert r.json()["data"]["text"] == "written over TLS"
    # The same row over plain HTTP: both listeners serve one application.
    assert Api(https.srv, project).mem(mid)["text"] == "written over TLS"


def test_keepalive_several_requests_on_one_connection(https):
    with https.conn() as c:
        for i in range(20):
            c.send(request_bytes("GET", "/health/live" if i % 2 else "/health"))
            r = c.read_response()
            assert r.status == 200, (i, r)
            assert (r.header("connection") or "").lower() != "close"


def test_pipelined_requests_over_https(https):
    n = 12
    with https.conn() as c:
        c.send(b"".join(request_bytes("GET", "/health/live", {"X-Request-Id": "p%d" % i})
                        for i in range(n)))
        for i in range(n):
            r = c.read_response()
            assert r.status == 200, (i, r)
            assert r.header("x-request-id") == "p%d" % i


def test_pipeline_flood_pauses_and_resumes_reading(https):
    """More pipelined requests than ENGRAM_PIPELINE_MAX (16) in one burst: the server stops
    reading mid-record stream, keeps the undelivered ciphertext, and resumes from it later."""
    n = 2000
    with https.conn(timeout=20) as c:
        c.send(b"".join(request_bytes("GET", "/health/live", {"X-Request-Id": "f%d" % i})
                        for i in range(n)))
        for i in range(n):
            r = c.read_response(timeout=20)
            assert r.status == 200, (i, r)
            assert r.header("x-request-id") == "f%d" % i


def test_expect_100_continue_over_https(https):
    body = json.dumps({"subject_id": "u-100", "text": "after 100 Continue"}).encode()
    with https.conn() as c:
        c.send(request_bytes("POST", "/api/v1/memories",
                             {"x-project-id": apiclient.new_id("tls100"),
                              "Content-Type": "application/json", "Expect": "100-continue",
                              "Content-Length": str(len(body))}))
        r = c.read_response(allow_informational=True)
        assert r.status == 100, r
        c.send(body)
        r = c.read_response()
        assert r.status == 201, r


def test_malformed_request_over_https_gets_400_then_close_notify(https):
    with https.conn() as c:
        c.send(b"GET /health HTTP/1.1\r\nHost : bad\r\n\r\n")
        r = c.read_response()
        assert r.status == 400, r
        assert c.sock.recv(1) == b""  # close_notify, not a ragged EOF


def test_session_ticket_resumption(https):
    with https.conn() as c:
        c.send(request_bytes("GET", "/health/live"))
        assert c.read_response().status == 200
        sess = c.sock.session
    assert sess is not None and sess.has_ticket
    with https.conn(session=sess) as c:
        assert c.sock.session_reused
        c.send(request_bytes("GET", "/health/live"))
        assert c.read_response().status == 200


def test_large_body_in_small_records_and_large_response(https):
    """A ~1 MiB JSON body sent as 1,400-byte TLS records (each send() is one record), then the
    same bytes read back in one large response (many 16 KiB records, a partial socket write)."""
    project = apiclient.new_id("tlsbig")
    prefix = b'{"subject_id":"u-big","text":"big metadata","metadata":{"pad":"'
    suffix = b'"}}'
    text = (b"0123456789abcdef" * (MiB // 16))[:MiB - 4096]
    body = prefix + text + suffix
    assert len(body) < MiB
    with https.conn(timeout=30) as c:
        c.send(request_bytes("POST", "/api/v1/memories",
                             {"x-project-id": project, "Content-Type": "application/json",
                              "Content-Length": str(len(body))}))
        for i in range(0, len(body), 1400):
            c.sock.sendall(body[i:i + 1400])
        r = c.read_response(timeout=30)
        assert r.status == 201, r
        mid = r.json()["id"]
        c.send(request_bytes("GET", "/api/v1/memories/" + seg(mid), {"x-project-id": project}))
        r = c.read_response(timeout=30)
        assert r.status == 200, r
        assert r.json()["data"]["metadata"]["pad"].encode() == text
    # The same large answer as the connection's last, to a client that reads late and slowly:
    # all of it arrives, then close_notify.
    with https.conn(timeout=30, rcvbuf=4096) as c:
        c.send(request_bytes("GET", "/api/v1/memories/" + seg(mid),
                             {"x-project-id": project, "Connection": "close"}))
        time.sleep(1.0)
        r = c.read_response(timeout=30)
        assert r.status == 200, r
        assert r.json()["data"]["metadata"]["pad"].encode() == text
        assert c.sock.recv(1) == b""


def test_body_over_limit_is_413_over_https(https):
    with https.conn(timeout=10) as c:
        c.send(request_bytes("POST", "/api/v1/memories",
                             {"Content-Type": "application/json",
                              "Content-Length": str(MiB + 1)}))
        r = c.read_response(timeout=10)
        assert r.status == 413, r


def test_sse_over_https_receives_event_written_over_http(https):
    project = apiclient.new_id("tlssse")
    s = _tls_sse(https, project)
    try:
        assert s.status == 200
        assert s.next_event().event == "connected"
        mid = Api(https.srv, project).create("u-sse", "event over TLS")["id"]
        ev = s.wait_event("memory.created", lambda d: d["id"] == mid)
        assert ev.data["id"] == mid
    finally:
        s.close()


def _tls_sse(https, project, **kw):
    orig = apiclient.RawConn
    apiclient.RawConn = lambda host, port, timeout=5.0, **ckw: TlsConn(
        host, https.tls_port, https.ctx, timeout=timeout, **ckw)
    try:
        return SSE(https.srv, project, **kw)
    finally:
        apiclient.RawConn = orig


def _write_until_behind(srv, project, subject, text, behind0, most=3000):
    """Creates memories over plain HTTP until sse_subscribers_behind_total passes behind0 (checked
    every 50) or `most` are written; returns their ids in order."""
    ids = []
    with srv.conn(timeout=10) as w:
        for i in range(most):
            body = json.dumps({"subject_id": subject, "text": "%d %s" % (i, text)})
            w.send(request_bytes("POST", "/api/v1/memories",
                                 {"x-project-id": project, "Content-Type": "application/json"},
                                 body))
            r = w.read_response()
            assert r.status == 201
            ids.append(r.json()["id"])
            if i % 50 == 49 and _metric(srv, "sse_subscribers_behind_total") > behind0:
                break
    return ids


def test_slow_sse_reader_over_https_falls_behind_then_catches_up(https):
    """Backpressure: a TLS subscriber that does not read stops taking live events (it falls behind)
    once its unsent bytes, plaintext and ciphertext the server holds, pass
    ENGRAM_SSE_MAX_PENDING_BYTES, without the server buffering without bound; when it reads again
    it pages through the log to the last event."""
    project = apiclient.new_id("tlsslow")
    s = _tls_sse(https, project, rcvbuf=4096)
    behind0 = _metric(https.srv, "sse_subscribers_behind_total")
    rss0 = https.srv.rss_kib()
    text = "y" * 9000
    last = None
    try:
        assert s.status == 200
        last = _write_until_behind(https.srv, project, "u-slow", text, behind0)[-1]
        deadline = time.monotonic() + 10
        while _metric(https.srv, "sse_subscribers_behind_total") == behind0:
            assert time.monotonic() < deadline, "the stalled TLS subscriber never fell behind"
            time.sleep(0.05)
        assert https.srv.rss_kib() - rss0 < 64 * 1024
        ev = s.wait_event("memory.created", lambda d: d["id"] == last, timeout=60)
        assert ev.data["id"] == last
    finally:
        s.close()
    assert_serving(https)


def test_behind_tls_reader_pages_on_at_drain_not_at_the_catchup_tick(engram, certs):
    """A TLS subscriber that fell behind pages on from the log as soon as its socket drains. With
    TLS a direct stream write can leave ciphertext queued with no write of the server's own in
    flight, so no completion would announce the room: the TLS layer reports the drain itself
    (on_drained). The catch-up tick, which would also notice, is set to a minute here, so only
    the drain can explain a catch-up within seconds."""
    port = free_port()
    srv = engram(env=tls_env(certs, port, ENGRAM_SSE_CATCHUP_MS="60000",
                             ENGRAM_SSE_MAX_PENDING_BYTES="8192"))
    h = Https(srv, port, certs)
    project = apiclient.new_id("tlsdrain")
    s = _tls_sse(h, project, rcvbuf=4096)
    text = "z" * 9000
    try:
        assert s.status == 200
        assert s.next_event().event == "connected"
        ids = _write_until_behind(srv, project, "u-drain", text, 0)
        assert _metric(srv, "sse_subscribers_behind_total") >= 1, "it never fell behind"
        t0 = time.monotonic()
        got = []
        while len(got) < len(ids):
            ev = s.wait_event("memory.created", timeout=30)
            got.append(ev.data["id"])
        took = time.monotonic() - t0
        assert got == ids
        assert took < 20, "caught up in %.1f s: it waited for the catch-up tick" % took
        assert _metric(srv, "sse_subscribers_dropped_total") == 0
    finally:
        s.close()


# ------------------------------------------------------------------------------------------------
# handshake failures
# ------------------------------------------------------------------------------------------------
def test_client_with_other_ca_fails_verification(https):
    with pytest.raises(ssl.SSLCertVerificationError):
        TlsConn(HOST, https.tls_port, client_ctx(https.certs, "other_ca"))
    assert_serving(https)


def _tls11_client_hello():
    """A minimal TLS 1.1 ClientHello (version 3.2, ECDHE-RSA-AES128-SHA, no extensions)."""
    hello = struct.pack(">H", 0x0302) + os.urandom(32) + b"\x00"
    hello += struct.pack(">H", 4) + b"\xc0\x13\x00\x2f" + b"\x01\x00"
    hs = b"\x01" + struct.pack(">I", len(hello))[1:] + hello
    return b"\x16\x03\x01" + struct.pack(">H", len(hs)) + hs


def _read_all(sock, timeout):
    sock.settimeout(timeout)
    out = b""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            chunk = sock.recv(65536)
        except (ConnectionResetError, socket.timeout):
            break
        if not chunk:
            break
        out += chunk
    return out


def test_tls11_only_client_is_rejected(https):
    before = https.metrics().get("tls_handshake_failures_total.handshake", 0)
    with socket.create_connection((HOST, https.tls_port), timeout=5) as s:
        s.sendall(_tls11_client_hello())
        reply = _read_all(s, 5)
    # A fatal alert record (21) or a bare close; never a ServerHello (22).
    assert reply[:1] in (b"", b"\x15"), reply[:16]
    assert wait_metric(https, "tls_handshake_failures_total.handshake", before + 1) == before + 1
    # OpenSSL's own TLS 1.0/1.1 client, when this OpenSSL still allows it, fails as well.
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            ctx.set_ciphers("DEFAULT:@SECLEVEL=0")
            ctx.minimum_version = ssl.TLSVersion.TLSv1
            ctx.maximum_version = ssl.TLSVersion.TLSv1_1
    except (ssl.SSLError, ValueError):
        ctx = None
    if ctx is not None:
        with pytest.raises((ssl.SSLError, ConnectionResetError, OSError)):
            TlsConn(HOST, https.tls_port, ctx)
    assert_serving(https)


def test_garbage_bytes_are_closed(https):
    before = https.metrics().get("tls_handshake_failures_total.not_tls", 0)
    with socket.create_connection((HOST, https.tls_port), timeout=5) as s:
        s.sendall(b"\x00\xff\x13garbage that is no TLS record" * 10)
        t0 = time.monotonic()
        reply = _read_all(s, 5)
        assert time.monotonic() - t0 < 2.0
    assert reply == b""
    assert wait_metric(https, "tls_handshake_failures_total.not_tls", before + 1) == before + 1
    assert_serving(https)


def test_handshake_record_with_garbage_fails(https):
    before = https.metrics().get("tls_handshake_failures_total.handshake", 0)
    with socket.create_connection((HOST, https.tls_port), timeout=5) as s:
        s.sendall(b"\x16\x03\x01\x00\x40" + b"\x01\x00\x00\x3c" + os.urandom(60))
        reply = _read_all(s, 5)
    assert reply[:1] in (b"", b"\x15"), reply[:16]
    assert wait_metric(https, "tls_handshake_failures_total.handshake", before + 1) == before + 1
    assert_serving(https)


def test_oversized_handshake_is_cut_off(https):
    """40 KiB of handshake records at once: past EG_NET_TLS_HANDSHAKE_MAX (32 KiB) the server
    stops reading. Whether mbedTLS refused the first record already (when the kernel split the
    bytes across reads) or the size cap ended it, the connection closes and is counted."""
    m0 = https.metrics()
    record = b"\x16\x03\x01\x40\x00" + b"\x01\x00\x3f\xfc" + b"\x00" * (0x4000 - 4)
    with socket.create_connection((HOST, https.tls_port), timeout=5) as s:
        try:
            s.sendall(record * 2 + record[:8000])
        except (BrokenPipeError, ConnectionResetError):
            pass
        assert _read_all(s, 5)[:1] in (b"", b"\x15")
    deadline = time.monotonic() + 5
    while True:
        m1 = https.metrics()
        grew = sum(m1["tls_handshake_failures_total." + r] - m0["tls_handshake_failures_total." + r]
                   for r in ("too_large", "handshake"))
        if grew >= 1 or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    assert grew == 1, (m0, m1)
    assert_serving(https)


def test_plain_http_on_tls_port_gets_plain_400(https):
    before = https.metrics().get("tls_handshake_failures_total.plain_http", 0)
    with RawConn(HOST, https.tls_port, timeout=5) as c:
        c.send(request_bytes("GET", "/health"))
        r = c.read_response()
        assert r.status == 400
        assert b"HTTPS" in r.body
        assert (r.header("connection") or "").lower() == "close"
        c.wait_closed(3)
    r = subprocess.run(["curl", "-sS", "--max-time", "5", "-o", "/dev/null", "-w", "%{http_code}",
                        "http://127.0.0.1:%d/health" % https.tls_port],
                       stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=20)
    assert r.stdout == b"400", (r.stdout, r.stderr)
    assert wait_metric(https, "tls_handshake_failures_total.plain_http", before + 2) == before + 2
    assert_serving(https)


def test_stalled_handshake_is_closed_by_the_header_timeout(https):
    before = https.metrics().get("tls_handshake_failures_total.incomplete", 0)
    hello = _tls11_client_hello()
    stalled = []
    try:
        for _ in range(3):
            s = socket.create_connection((HOST, https.tls_port), timeout=5)
            s.sendall(hello[:9])  # a record header and part of the ClientHello, then nothing
            stalled.append(s)
        t0 = time.monotonic()
        # Everyone else is served while those wait.
        for _ in range(5):
            assert_serving(https)
        for s in stalled:
            assert _read_all(s, 10) == b""
        waited = time.monotonic() - t0
        assert waited < HEADER_TIMEOUT_MS / 1000.0 + 3.0, waited
    finally:
        for s in stalled:
            s.close()
    assert wait_metric(https, "tls_handshake_failures_total.incomplete",
                       before + 3) >= before + 3


def test_idle_connection_before_handshake_is_closed_too(https):
    with socket.create_connection((HOST, https.tls_port), timeout=5) as s:
        t0 = time.monotonic()
        assert _read_all(s, 10) == b""
        assert time.monotonic() - t0 < HEADER_TIMEOUT_MS / 1000.0 + 3.0


def test_many_concurrent_handshakes_and_requests(https):
    errors = []

    def worker(k):
        try:
            with https.conn(timeout=10) as c:
                for i in range(5):
                    c.send(request_bytes("GET", "/health/live"))
                    assert c.read_response().status == 200
        except Exception as e:  # noqa: BLE001 - collected and reported below
            errors.append((k, repr(e)))

    threads = [threading.Thread(target=worker, args=(k,)) for k in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert not errors, errors
    assert not any(t.is_alive() for t in threads)


def test_metrics_count_handshakes(https):
    m0 = https.metrics()
    https.request("GET", "/health/live")
    m1 = https.metrics()
    assert m1["tls_handshakes_total"] >= m0["tls_handshakes_total"] + 1
    for reason in ("handshake", "plain_http", "not_tls", "too_large", "incomplete"):
        assert "tls_handshake_failures_total." + reason in m1
    assert "tls_connections_active" in m1


# ------------------------------------------------------------------------------------------------
# server lifecycle and configuration
# ------------------------------------------------------------------------------------------------
def test_rsa_certificate_and_drain_with_open_tls_connections(engram, certs):
    port = free_port()
    srv = engram(env=tls_env(certs, port, "rsa_cert", "rsa_key"))
    h = Https(srv, port, certs)
    with h.conn() as c:
        assert "ECDHE-RSA" in c.sock.cipher()[0]
        c.send(request_bytes("GET", "/health/live"))
        assert c.read_response().status == 200
        # An idle keep-alive TLS connection is closed by the drain with close_notify.
        srv.terminate()
        assert c.sock.recv(1) == b""
    assert srv.wait_exit() == 0


def test_connection_limit_503_goes_out_after_the_handshake(engram, certs):
    port = free_port()
    srv = engram(env=tls_env(certs, port, ENGRAM_MAX_CONNECTIONS="2"))
    h = Https(srv, port, certs)
    with h.conn() as a, h.conn() as b:
        for c in (a, b):
            c.send(request_bytes("GET", "/health/live"))
            assert c.read_response().status == 200
        with h.conn() as c:
            r = c.read_response()
            assert r.status == 503, r
            assert c.sock.recv(1) == b""
    deadline = time.monotonic() + 5  # the server sees the closes above asynchronously
    while h.request("GET", "/health/live").status != 200:
        assert time.monotonic() < deadline
        time.sleep(0.05)


def _serve_exit(engramd_cli, fresh_db, env):
    r = engramd_cli(["serve"], env=env, db=fresh_db, port=free_port(), timeout=15)
    out = r.stdout + r.stderr
    lines = [l for l in out.splitlines() if l.strip()]
    return r.returncode, lines


@pytest.mark.parametrize("case", ["missing_cert", "missing_key", "garbage_key", "cert_is_key",
                                  "mismatch", "no_cert", "no_port", "bad_port"])
def test_bad_tls_configuration_exits_2_with_one_line(engramd_cli, fresh_db, certs, tmp_path,
                                                     case):
    garbage = tmp_path / "garbage.pem"
    garbage.write_text("-----BEGIN PRIVATE KEY-----\nnot base64 at all\n-----END PRIVATE KEY-----\n")
    env = {"ENGRAM_TLS_PORT": str(free_port()), "ENGRAM_TLS_CERT": certs["cert"],
           "ENGRAM_TLS_KEY": certs["key"]}
    name = {"missing_cert": "ENGRAM_TLS_CERT", "missing_key": "ENGRAM_TLS_KEY",
            "garbage_key": "ENGRAM_TLS_KEY", "cert_is_key": "ENGRAM_TLS_CERT",
            "mismatch": "ENGRAM_TLS_KEY", "no_cert": "ENGRAM_TLS_CERT",
            "no_port": "ENGRAM_TLS_PORT", "bad_port": "ENGRAM_TLS_PORT"}[case]
    if case == "missing_cert":
        env["ENGRAM_TLS_CERT"] = str(tmp_path / "nope.pem")
    elif case == "missing_key":
        env["ENGRAM_TLS_KEY"] = str(tmp_path / "nope.key")
    elif case == "garbage_key":
        env["ENGRAM_TLS_KEY"] = str(garbage)
    elif case == "cert_is_key":
        env["ENGRAM_TLS_CERT"] = certs["key"]
    elif case == "mismatch":
        env["ENGRAM_TLS_KEY"] = certs["rsa_key"]
    elif case == "no_cert":
        del env["ENGRAM_TLS_CERT"]
    elif case == "no_port":
        del env["ENGRAM_TLS_PORT"]
    elif case == "bad_port":
        env["ENGRAM_TLS_PORT"] = "70000"
    rc, lines = _serve_exit(engramd_cli, fresh_db, env)
    assert rc == 2, (rc, lines)
    assert len(lines) == 1, lines
    assert lines[0].startswith("engramd: " + name), lines


def test_tls_port_in_use_fails_to_start(engramd_cli, fresh_db, certs):
    with socket.socket() as s:
        s.bind((HOST, 0))
        s.listen(1)
        port = s.getsockname()[1]
        r = engramd_cli(["serve"], env={"ENGRAM_TLS_PORT": str(port),
                                        "ENGRAM_TLS_CERT": certs["cert"],
                                        "ENGRAM_TLS_KEY": certs["key"]},
                        db=fresh_db, port=free_port(), timeout=15)
    assert r.returncode == 1, r
    assert "ENGRAM_TLS_PORT" in r.stderr
