"""Per-connection memory of idle keep-alive connections, HTTP vs HTTPS (bench/tls/run.sh).

usage: idle_conns.py PID HTTP_PORT HTTPS_PORT N
Opens N connections to one port, sends one GET /health/live on each and reads the answer (so every
TLS connection has finished its handshake and holds its session), waits a moment, reads the
server's VmRSS, closes them all, and repeats for the other port. Prints one JSON line.
"""
import json
import socket
import ssl
import sys
import time

REQ = b"GET /health/live HTTP/1.1\r\nHost: bench\r\n\r\n"


def rss_kib(pid):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise RuntimeError("no VmRSS")


def open_conns(port, n, ctx):
    conns = []
    for _ in range(n):
        s = socket.create_connection(("127.0.0.1", port), timeout=10)
        if ctx is not None:
            s = ctx.wrap_socket(s, server_hostname="localhost")
        s.sendall(REQ)
        got = b""
        while b"\r\n\r\n" not in got or not got.endswith(b"}"):
            chunk = s.recv(4096)
            if not chunk:
                raise RuntimeError("closed")
            got += chunk
        conns.append(s)
    return conns


def measure(pid, port, n, ctx):
    # One round first, so allocator arenas and caches are warm before the baseline.
    for s in open_conns(port, 50, ctx):
        s.close()
    time.sleep(0.5)
    before = rss_kib(pid)
    conns = open_conns(port, n, ctx)
    time.sleep(0.5)
    after = rss_kib(pid)
    for s in conns:
        s.close()
    time.sleep(0.5)
    return before, after


def main():
    pid, http_port, https_port, n = (int(a) for a in sys.argv[1:5])
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    hb, ha = measure(pid, http_port, n, None)
    tb, ta = measure(pid, https_port, n, ctx)
    print(json.dumps({"n": n, "http_before_kib": hb, "http_after_kib": ha,
                      "https_before_kib": tb, "https_after_kib": ta,
                      "http_per_conn_bytes": round((ha - hb) * 1024 / n),
                      "https_per_conn_bytes": round((ta - tb) * 1024 / n)}))


if __name__ == "__main__":
    main()
