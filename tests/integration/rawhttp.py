"""Raw-socket HTTP/1.1 client helpers for the black-box suite.

`requests` normalises too much (header casing, dot segments, framing), so every test that cares
about bytes on the wire goes through `RawConn`. Every read is bounded by a timeout.
"""
import json
import socket
import time


class ConnClosed(Exception):
    """The peer closed (FIN or RST) before a complete response arrived."""

    def __init__(self, msg, partial=b""):
        super().__init__(msg)
        self.partial = partial


class Response:
    def __init__(self, status, reason, version, headers, body, raw_head):
        self.status = status
        self.reason = reason
        self.version = version
        self.headers = headers  # list of (name, value) in wire order
        self.body = body
        self.raw_head = raw_head

    def header(self, name, default=None):
        name = name.lower()
        for k, v in self.headers:
            if k.lower() == name:
                return v
        return default

    def header_all(self, name):
        name = name.lower()
        return [v for k, v in self.headers if k.lower() == name]

    def json(self):
        return json.loads(self.body.decode("utf-8"))

    def __repr__(self):
        return "<Response %d %r headers=%r body=%r>" % (
            self.status, self.reason, self.headers, self.body[:300])


class RawConn:
    """One TCP connection with a receive buffer and a response parser."""

    def __init__(self, host, port, timeout=5.0, connect_timeout=3.0, rcvbuf=None):
        self.host = host
        self.port = port
        if rcvbuf is None:
            self.sock = socket.create_connection((host, port), timeout=connect_timeout)
        else:
            # Before connect, so the window the peer sees is small from the start (shrinking it
            # later leaves the sender waiting on zero-window probes).
            self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
            self.sock.settimeout(connect_timeout)
            self.sock.connect((host, port))
        self.sock.settimeout(timeout)
        self.timeout = timeout
        self.buf = b""
        self.eof = False

    # -- sending -------------------------------------------------------------------------------
    def send(self, data):
        if isinstance(data, str):
            data = data.encode("latin-1")
        self.sock.sendall(data)

    def send_tolerant(self, data):
        """Send; return False instead of raising if the peer already closed or reset."""
        try:
            self.send(data)
            return True
        except (BrokenPipeError, ConnectionResetError, ConnectionAbortedError):
            return False
        except socket.timeout:
            return False

    # -- receiving -----------------------------------------------------------------------------
    def _fill(self, deadline):
        """Read more bytes into self.buf. Returns False on EOF/RST. Raises socket.timeout."""
        if self.eof:
            return False
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise socket.timeout("deadline passed")
        self.sock.settimeout(remaining)
        try:
            chunk = self.sock.recv(65536)
        except (ConnectionResetError, ConnectionAbortedError):
            self.eof = True
            return False
        if not chunk:
            self.eof = True
            return False
        self.buf += chunk
        return True

    def _read_until(self, marker, deadline, limit=1 << 22):
        while True:
            i = self.buf.find(marker)
            if i >= 0:
                out = self.buf[:i + len(marker)]
                self.buf = self.buf[i + len(marker):]
                return out
            if len(self.buf) > limit:
                raise AssertionError("response head larger than %d bytes" % limit)
            if not self._fill(deadline):
                raise ConnClosed("connection closed while waiting for %r" % marker, self.buf)

    def _read_exact(self, n, deadline):
        while len(self.buf) < n:
            if not self._fill(deadline):
                raise ConnClosed("connection closed with %d of %d body bytes" % (len(self.buf), n),
                                 self.buf)
        out = self.buf[:n]
        self.buf = self.buf[n:]
        return out

    def read_response(self, timeout=None, head=False, allow_informational=False):
        """Parse one response. head=True: the request was HEAD, so no body follows.
        1xx responses are returned only if allow_informational, otherwise skipped."""
        deadline = time.monotonic() + (self.timeout if timeout is None else timeout)
        while True:
            raw_head = self._read_until(b"\r\n\r\n", deadline)
            lines = raw_head[:-4].split(b"\r\n")
            status_line = lines[0].decode("latin-1")
            parts = status_line.split(" ", 2)
            assert len(parts) >= 2 and parts[0].startswith("HTTP/"), \
                "bad status line %r" % status_line
            version = parts[0]
            status = int(parts[1])
            reason = parts[2] if len(parts) > 2 else ""
            headers = []
            for line in lines[1:]:
                name, sep, value = line.decode("latin-1").partition(":")
                assert sep, "bad header line %r in %r" % (line, raw_head)
                assert name == name.strip(), "whitespace around header name %r" % name
                headers.append((name, value.strip()))
            resp = Response(status, reason, version, headers, b"", raw_head)
            if 100 <= status < 200:
                if allow_informational:
                    return resp
                continue
            if head or status in (204, 304):
                return resp
            te = (resp.header("transfer-encoding") or "").lower()
            cl = resp.header("content-length")
            if "chunked" in te:
                body = b""
                while True:
                    size_line = self._read_until(b"\r\n", deadline)
                    size = int(size_line.split(b";")[0].strip(), 16)
                    if size == 0:
                        while self._read_until(b"\r\n", deadline) != b"\r\n":
                            pass  # trailer field lines
                        break
                    body += self._read_exact(size, deadline)
                    assert self._read_exact(2, deadline) == b"\r\n"
                resp.body = body
            elif cl is not None:
                assert len(resp.header_all("content-length")) == 1, "several Content-Length"
                resp.body = self._read_exact(int(cl), deadline)
            else:
                # close-delimited
                while self._fill(deadline):
                    pass
                resp.body, self.buf = self.buf, b""
            return resp

    def wait_closed(self, timeout=3.0):
        """True if the peer closes (FIN/RST) within timeout. Extra bytes received are kept in
        self.buf (callers can assert there are none)."""
        deadline = time.monotonic() + timeout
        try:
            while self._fill(deadline):
                pass
            return True
        except socket.timeout:
            return False

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def request_bytes(method, path, headers=None, body=None, host="engram.test"):
    """Build one well-formed request. headers: list of (name, value) or dict."""
    lines = ["%s %s HTTP/1.1" % (method, path), "Host: %s" % host]
    hdrs = list(headers.items()) if isinstance(headers, dict) else list(headers or [])
    if body is not None:
        if isinstance(body, str):
            body = body.encode("utf-8")
        if not any(k.lower() in ("content-length", "transfer-encoding") for k, _ in hdrs):
            hdrs.append(("Content-Length", str(len(body))))
    for k, v in hdrs:
        lines.append("%s: %s" % (k, v))
    out = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")
    if body is not None:
        out += body
    return out


def one_request(host, port, method, path, headers=None, body=None, timeout=5.0):
    """Open a connection, send one request with Connection: close, return the Response."""
    hdrs = list(headers.items()) if isinstance(headers, dict) else list(headers or [])
    hdrs.append(("Connection", "close"))
    with RawConn(host, port, timeout=timeout) as c:
        c.send(request_bytes(method, path, hdrs, body))
        return c.read_response(head=(method == "HEAD"))


def chunked(body, sizes):
    """Encode body as chunked transfer coding with the given chunk sizes (cycled)."""
    out = b""
    i = 0
    k = 0
    while i < len(body):
        n = sizes[k % len(sizes)]
        k += 1
        part = body[i:i + n]
        i += n
        out += b"%x\r\n" % len(part) + part + b"\r\n"
    return out + b"0\r\n\r\n"
