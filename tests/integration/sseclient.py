"""A sequence-checking SSE client, a writer with an acknowledgement ledger, and the checker.

Used by tests/integration/test_event_faults.py (RELIABILITY.md F1-F6, D1, D1b, L3, B14).

- `SeqClient`: one EventSource emulation per thread over a raw socket. It parses the stream as the
  WHATWG spec says (lines end in LF, CR or CRLF; `id:` with NUL ignored; `retry:` only if all
  digits; a blank line dispatches), records every event it receives (epoch, seq, name, payload id,
  arrival time, session), and when the stream ends (clean end, EOF, RST, error, or a deliberate
  drop) reconnects with `Last-Event-ID` (or `?last_event_id=`) = the last id it saw, after the
  server's `retry:` (capped). Options: random drops (half of them RST), a reconnect target other
  than the first (HAProxy, a surviving instance), a small SO_RCVBUF and a pause switch (slow
  consumer). Every read has a timeout; every loop is bounded by a deadline and a connect count.
- `Writer`: POST /api/v1/memories over one keep-alive connection, at a bounded rate and count;
  records every acknowledged (2xx) memory id with its ack time. A failed request is not retried
  (its fate is unknown); only acknowledged writes are checked.
- `check()`: given a client, the project's `events` rows and the acknowledged ids, counts lost,
  duplicated and out-of-order events (plus foreign ids, wrong payloads, epochs, resets).
  `assert_clean()` prints a per-client table and asserts all zero.
"""
import json
import random
import socket
import struct
import threading
import time
import uuid
from collections import namedtuple

Target = namedtuple("Target", "host port name")

EVENTS_PATH = "/api/v1/events/memories"
MEM_PATH = "/api/v1/memories"


def parse_id(s):
    """'<epoch>:<seq>' -> (epoch, seq), or None."""
    if s is None:
        return None
    a, sep, b = s.partition(":")
    if not sep or not a.isdigit() or not b.isdigit():
        return None
    return int(a), int(b)


# ------------------------------------------------------------------------------------------------
# SSE stream parsing (WHATWG HTML 9.2.6), incremental
# ------------------------------------------------------------------------------------------------
class Frame:
    """One dispatched block (up to a blank line): the fields it carried."""
    __slots__ = ("event", "data", "id", "has_id", "retry", "comments", "has_data")

    def __init__(self):
        self.event = None
        self.data = []
        self.id = None
        self.has_id = False
        self.retry = None
        self.comments = 0
        self.has_data = False

    @property
    def is_event(self):
        return self.has_data

    def text(self):
        return "\n".join(self.data)


class SSEParser:
    """Feed decoded body bytes; get Frames (one per blank line that ended a non-empty block)."""

    def __init__(self):
        self.buf = bytearray()
        self.skip_lf = False  # the previous chunk ended in CR: a leading LF belongs to it
        self.cur = Frame()
        self.touched = False

    def feed(self, data):
        out = []
        if self.skip_lf and data[:1] == b"\n":
            data = data[1:]
        self.skip_lf = False
        self.buf += data
        start = 0
        n = len(self.buf)
        while True:
            i_lf = self.buf.find(b"\n", start)
            i_cr = self.buf.find(b"\r", start)
            if i_lf < 0 and i_cr < 0:
                break
            if i_cr >= 0 and (i_lf < 0 or i_cr < i_lf):
                end = i_cr
                if i_cr + 1 < n:
                    nxt = i_cr + 2 if self.buf[i_cr + 1:i_cr + 2] == b"\n" else i_cr + 1
                else:
                    nxt = i_cr + 1
                    self.skip_lf = True
            else:
                end = i_lf
                nxt = i_lf + 1
            line = bytes(self.buf[start:end]).decode("utf-8", errors="replace")
            start = nxt
            fr = self._line(line)
            if fr is not None:
                out.append(fr)
        del self.buf[:start]
        return out

    def _line(self, line):
        if line == "":
            if not self.touched:
                return None
            fr = self.cur
            self.cur = Frame()
            self.touched = False
            return fr
        self.touched = True
        if line.startswith(":"):
            self.cur.comments += 1
            return None
        name, sep, value = line.partition(":")
        if sep and value.startswith(" "):
            value = value[1:]
        if name == "event":
            self.cur.event = value
        elif name == "data":
            self.cur.data.append(value)
            self.cur.has_data = True
        elif name == "id":
            if "\0" not in value:
                self.cur.id = value
                self.cur.has_id = True
        elif name == "retry":
            if value.isdigit():
                self.cur.retry = int(value)
        return None


class ChunkDecoder:
    """HTTP/1.1 chunked transfer decoding, incremental. .ended after the last chunk."""

    def __init__(self):
        self.buf = bytearray()
        self.left = 0      # bytes left in the current chunk; -1: expecting its CRLF
        self.ended = False

    def feed(self, data):
        self.buf += data
        out = bytearray()
        while not self.ended:
            if self.left > 0:
                take = self.buf[:self.left]
                out += take
                del self.buf[:len(take)]
                self.left -= len(take)
                if self.left > 0:
                    break
                self.left = -1
            if self.left == -1:
                if len(self.buf) < 2:
                    break
                if self.buf[:2] != b"\r\n":
                    raise ValueError("bad chunk terminator %r" % bytes(self.buf[:10]))
                del self.buf[:2]
                self.left = 0
            i = self.buf.find(b"\r\n")
            if i < 0:
                break
            size = int(bytes(self.buf[:i]).split(b";")[0].strip(), 16)
            del self.buf[:i + 2]
            if size == 0:
                self.ended = True
                break
            self.left = size
        return bytes(out)


# ------------------------------------------------------------------------------------------------
# The subscriber
# ------------------------------------------------------------------------------------------------
class Event:
    __slots__ = ("epoch", "seq", "name", "pid", "t", "session")

    def __init__(self, epoch, seq, name, pid, t, session):
        self.epoch, self.seq, self.name, self.pid, self.t, self.session = \
            epoch, seq, name, pid, t, session


class Session:
    """One connection of a subscriber."""

    def __init__(self, index, target, resumed_from):
        self.index = index
        self.target = target
        self.resumed_from = resumed_from
        self.t_open = time.monotonic()
        self.t_first = None       # when `connected` arrived
        self.t_end = None
        self.status = None
        self.how = None           # clean | eof | rst | dropped | stopped | error | refused | status
        self.retries = []         # every retry: value seen on this session (the first is the
                                  # stream head's; a drain adds its jittered hint)
        self.n_events = 0
        self.connected_id = None
        self.resets = []          # (id, reason)


class SeqClient(threading.Thread):
    """An EventSource emulation that records every event id it receives and resumes with
    Last-Event-ID. Stops at its goal seq, stop(), its deadline, or max_connects."""

    def __init__(self, target, project, name, include_claims=True, subject=None, drop=None,
                 max_s=60.0, max_connects=400, resume_via="header", reconnect_target=None,
                 retry_cap_s=1.0, rcvbuf=None, seed=None, read_timeout=0.2, last_id=None,
                 extra_query="", rotate=None, extra_headers=(), keep_frames=False):
        super().__init__(daemon=True, name="sse-" + name)
        self.target = target
        self.project = project
        self.label = name
        self.include_claims = include_claims
        self.subject = subject
        self.drop = drop                      # (min_s, max_s) between deliberate drops
        self.max_s = max_s
        self.max_connects = max_connects
        self.resume_via = resume_via          # header | query | alternate
        self.reconnect_target = reconnect_target
        self.rotate = rotate                  # targets to cycle through on each reconnect
        self.retry_cap_s = retry_cap_s        # EventSource waits retry:, capped to keep tests short
        self.rcvbuf = rcvbuf
        self.rng = random.Random(seed if seed is not None else name)
        self.read_timeout = read_timeout
        self.extra_query = extra_query
        self.extra_headers = list(extra_headers)  # sent on every connect (e.g. a raw id)
        self.frames = [] if keep_frames else None  # (event, id, data) of every event frame
        self.last_id = last_id
        self.retry_ms = 3000
        self.start_seq = None                 # seq of the first `connected`
        self.epochs = set()
        self.events = []                      # memory.*/claim.*/slot.* events, in arrival order
        self.sessions = []
        self.errors = []
        self.frames_without_id = 0            # event frames (other than heartbeat) with no id
        self.connected = threading.Event()
        self.paused = threading.Event()       # set: stop reading the socket (slow consumer)
        self.goal = None
        self._halt = threading.Event()
        self.reconnect_gaps = []              # stream end -> next `connected`, seconds
        self.bytes_read = 0

    # control ------------------------------------------------------------------------------------
    def stop(self):
        self._halt.set()

    def set_goal(self, seq):
        self.goal = seq

    def done(self):
        if self.goal is None:
            return False
        if self.events and self.events[-1].seq >= self.goal:
            return True
        return self.start_seq is not None and self.goal <= self.start_seq

    @property
    def seqs(self):
        return [e.seq for e in self.events]

    @property
    def resets(self):
        return [r for s in self.sessions for r in s.resets]

    # connection ---------------------------------------------------------------------------------
    def _request(self, sess):
        q = []
        if self.include_claims:
            q.append("include=claims")
        if self.subject is not None:
            q.append("subject_id=" + self.subject)
        if self.extra_query:
            q.append(self.extra_query)
        headers = [("Host", "%s:%d" % (sess.target.host, sess.target.port)),
                   ("x-project-id", self.project), ("Accept", "text/event-stream")]
        if self.last_id is not None:
            via = self.resume_via
            if via == "alternate":
                via = "query" if sess.index % 2 == 1 else "header"
            if via == "query":
                q.append("last_event_id=" + self.last_id)
            else:
                headers.append(("Last-Event-ID", self.last_id))
        headers += self.extra_headers
        path = EVENTS_PATH + ("?" + "&".join(q) if q else "")
        lines = ["GET %s HTTP/1.1" % path] + ["%s: %s" % kv for kv in headers]
        return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")

    def _connect(self, target):
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        if self.rcvbuf:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, self.rcvbuf)
        sock.settimeout(3.0)
        try:
            sock.connect((target.host, target.port))
        except OSError:
            sock.close()
            raise
        return sock

    def run(self):
        deadline = time.monotonic() + self.max_s
        target = self.target
        while not self._halt.is_set() and not self.done() and time.monotonic() < deadline \
                and len(self.sessions) < self.max_connects:
            sess = Session(len(self.sessions), target, self.last_id)
            self.sessions.append(sess)
            wait = self._one_session(sess, deadline)
            sess.t_end = time.monotonic()
            if sess.how == "stopped":
                break
            if self._ended_at is None:  # the first end since the last `connected`
                self._ended_at = sess.t_end
            if self.rotate:
                target = self.rotate[len(self.sessions) % len(self.rotate)]
            elif self.reconnect_target is not None:
                target = self.reconnect_target
            if wait > 0:
                self._halt.wait(min(wait, max(deadline - time.monotonic(), 0)))

    _ended_at = None

    def _one_session(self, sess, deadline):
        """Runs one connection; returns how long to wait before the next one."""
        try:
            sock = self._connect(sess.target)
        except OSError as e:
            sess.how = "refused"
            self.errors.append(("connect", sess.target.name, repr(e)))
            return 0.2
        try:
            return self._stream(sock, sess, deadline)
        finally:
            try:
                sock.close()
            except OSError:
                pass

    def _stream(self, sock, sess, deadline):
        try:
            sock.sendall(self._request(sess))
        except OSError as e:
            sess.how = "error"
            self.errors.append(("send", repr(e)))
            return 0.2
        head = bytearray()
        t_head = time.monotonic() + 5.0
        sock.settimeout(0.5)
        while b"\r\n\r\n" not in head:
            if time.monotonic() > min(t_head, deadline) or self._halt.is_set():
                sess.how = "error"
                self.errors.append(("head timeout", bytes(head[:200])))
                return 0.2
            try:
                chunk = sock.recv(65536)
            except socket.timeout:
                continue
            except OSError as e:
                sess.how = "error"
                self.errors.append(("head", repr(e)))
                return 0.2
            if not chunk:
                sess.how = "eof"
                self.errors.append(("head eof", bytes(head[:200])))
                return 0.2
            head += chunk
        i = head.find(b"\r\n\r\n")
        rest = bytes(head[i + 4:])
        lines = bytes(head[:i]).decode("latin-1").split("\r\n")
        try:
            sess.status = int(lines[0].split(" ")[1])
        except (IndexError, ValueError):
            sess.how = "error"
            self.errors.append(("status line", lines[0]))
            return 0.2
        hdrs = {}
        for line in lines[1:]:
            k, _, v = line.partition(":")
            hdrs[k.strip().lower()] = v.strip()
        if sess.status != 200:
            sess.how = "status"
            self.errors.append(("status", sess.status, sess.target.name))
            ra = hdrs.get("retry-after", "")
            return min(float(ra), 1.0) if ra.isdigit() else 0.3
        chunked = "chunked" in hdrs.get("transfer-encoding", "").lower()
        dec = ChunkDecoder() if chunked else None
        parser = SSEParser()
        drop_at = time.monotonic() + self.rng.uniform(*self.drop) if self.drop else None
        sock.settimeout(self.read_timeout)
        pending = rest
        while True:
            if pending:
                body = dec.feed(pending) if dec else pending
                pending = b""
                for fr in parser.feed(body):
                    self._frame(fr, sess)
                if dec is not None and dec.ended:
                    sess.how = "clean"
                    break
            if self._halt.is_set() or self.done() or time.monotonic() >= deadline:
                sess.how = "stopped"
                return 0
            if drop_at is not None and time.monotonic() >= drop_at:
                sess.how = "dropped"
                if self.rng.random() < 0.5:  # half of the drops are resets (RST)
                    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                return 0
            if self.paused.is_set():
                self._halt.wait(0.05)
                continue
            try:
                chunk = sock.recv(65536)
            except socket.timeout:
                continue
            except (ConnectionResetError, ConnectionAbortedError):
                sess.how = "rst"
                break
            except OSError as e:
                sess.how = "error"
                self.errors.append(("recv", repr(e)))
                break
            if not chunk:
                sess.how = "eof"
                break
            self.bytes_read += len(chunk)
            pending = chunk
        # EventSource: wait the reconnection time (capped), then reconnect with the last id.
        return min(self.retry_ms / 1000.0, self.retry_cap_s)

    def _frame(self, fr, sess):
        if fr.retry is not None:
            self.retry_ms = fr.retry
            sess.retries.append(fr.retry)
        if fr.has_id:
            self.last_id = fr.id
        if not fr.is_event:
            return
        now = time.monotonic()
        name = fr.event or "message"
        if self.frames is not None and name != "heartbeat":
            self.frames.append((name, fr.id, fr.text()))
        ident = parse_id(fr.id) if fr.has_id else None
        if ident is None and name != "heartbeat":
            self.frames_without_id += 1
            return
        if ident is not None:
            self.epochs.add(ident[0])
        if name == "connected":
            sess.t_first = now
            sess.connected_id = fr.id
            if self.start_seq is None and ident is not None:
                self.start_seq = ident[1]
            if self._ended_at is not None:
                self.reconnect_gaps.append(now - self._ended_at)
                self._ended_at = None
            self.connected.set()
            return
        if name == "reset":
            try:
                reason = json.loads(fr.text()).get("reason")
            except ValueError:
                reason = None
            sess.resets.append((fr.id, reason))
            return
        if name == "heartbeat":
            return
        pid = None
        try:
            d = json.loads(fr.text())
            pid = d.get("id") if name.startswith("memory.") else d.get("claim_id", d.get("slot"))
        except ValueError:
            self.errors.append(("bad json", fr.text()[:200]))
        sess.n_events += 1
        self.events.append(Event(ident[0], ident[1], name, pid, now, sess.index))


# ------------------------------------------------------------------------------------------------
# Writers
# ------------------------------------------------------------------------------------------------
class Writer(threading.Thread):
    """POST /api/v1/memories over one keep-alive connection; `acked` = [(memory id, ack time)]."""

    def __init__(self, target, project, tag, count, pause=0.0, max_s=30.0, text_len=0,
                 timeout=5.0, subject=None, claims=False):
        super().__init__(daemon=True, name="writer-" + tag)
        self.target = target
        self.project = project
        self.tag = tag
        self.count = count
        self.pause = pause
        self.max_s = max_s
        self.text_len = text_len
        self.timeout = timeout
        self.subject = subject or "s-" + tag
        # claims: texts the heuristic extractor turns into claims (memory.created, then
        # claim.created/slot.updated, and claim.retracted when a slot's value changes)
        self.claims = claims
        self.acked = []
        self.errors = []
        self.statuses = {}
        self._halt = threading.Event()
        self.sock = None
        self.buf = b""

    def stop(self):
        self._halt.set()

    @property
    def acked_ids(self):
        return [i for i, _ in self.acked]

    def _close(self):
        if self.sock is not None:
            try:
                self.sock.close()
            except OSError:
                pass
        self.sock = None
        self.buf = b""

    def _read_response(self, deadline):
        while b"\r\n\r\n" not in self.buf:
            self._fill(deadline)
        i = self.buf.find(b"\r\n\r\n")
        lines = self.buf[:i].decode("latin-1").split("\r\n")
        self.buf = self.buf[i + 4:]
        status = int(lines[0].split(" ")[1])
        hdrs = {}
        for line in lines[1:]:
            k, _, v = line.partition(":")
            hdrs[k.strip().lower()] = v.strip()
        n = int(hdrs.get("content-length", "0"))
        while len(self.buf) < n:
            self._fill(deadline)
        body, self.buf = self.buf[:n], self.buf[n:]
        return status, hdrs, body

    def _fill(self, deadline):
        left = deadline - time.monotonic()
        if left <= 0:
            raise socket.timeout("response deadline")
        self.sock.settimeout(left)
        chunk = self.sock.recv(65536)
        if not chunk:
            raise ConnectionError("closed by peer")
        self.buf += chunk

    def post(self, body):
        if self.sock is None:
            self.sock = socket.create_connection((self.target.host, self.target.port), timeout=3)
        req = ("POST %s HTTP/1.1\r\nHost: %s:%d\r\nx-project-id: %s\r\n"
               "Content-Type: application/json\r\nContent-Length: %d\r\n\r\n"
               % (MEM_PATH, self.target.host, self.target.port, self.project, len(body))
               ).encode("latin-1") + body
        self.sock.settimeout(self.timeout)
        self.sock.sendall(req)
        status, hdrs, rbody = self._read_response(time.monotonic() + self.timeout)
        if hdrs.get("connection", "").lower() == "close":
            self._close()
        return status, rbody

    def run(self):
        deadline = time.monotonic() + self.max_s
        pad = ""
        if self.text_len:
            pad = " " + ("lorem ipsum dolor sit amet " * (self.text_len // 27 + 1))[:self.text_len]
        for i in range(self.count):
            if self._halt.is_set() or time.monotonic() > deadline:
                break
            if self.claims:
                body = json.dumps({"subject_id": self.subject,
                                   "text": "I live in City%s%d." % (uuid.uuid4().hex[:6], i)})
            else:
                body = json.dumps({"subject_id": self.subject,
                                   "text": "w %s #%d %s%s" % (self.tag, i, uuid.uuid4().hex[:8],
                                                              pad),
                                   "no_supersede": True})
            body = body.encode()
            try:
                status, rbody = self.post(body)
                self.statuses[status] = self.statuses.get(status, 0) + 1
                if 200 <= status < 300:
                    self.acked.append((json.loads(rbody)["id"], time.monotonic()))
                else:
                    self.errors.append((i, status, rbody[:120]))
            except (OSError, ValueError, IndexError) as e:
                self.errors.append((i, "exc", repr(e)))
                self._close()
                self._halt.wait(0.05)
            if self.pause:
                self._halt.wait(self.pause)
        self._close()


# ------------------------------------------------------------------------------------------------
# The checker
# ------------------------------------------------------------------------------------------------
def log_rows(pg, db, project):
    """[(seq, event_type, subject_id, payload id)] of the project's events, in seq order."""
    rows = pg.query(db, "SELECT seq, event_type, subject_id, payload FROM events "
                        "WHERE project_id = %s ORDER BY seq", (project,))
    out = []
    for s, t, subj, p in rows:
        d = json.loads(p)
        pid = d.get("id") if t.startswith("memory.") else d.get("claim_id", d.get("slot"))
        out.append((s, t, subj, pid))
    return out


def _wanted(client, etype, subject):
    if not client.include_claims and not etype.startswith("memory."):
        return False
    return client.subject is None or client.subject == subject


def check(client, rows, acked=(), epoch=None, allow_resets=False):
    """Counts for one client against the log rows. acked: memory ids acknowledged (201)."""
    expected = [(s, pid) for s, t, subj, pid in rows
                if client.start_seq is not None and s > client.start_seq
                and _wanted(client, t, subj)]
    exp_seqs = [s for s, _ in expected]
    exp_set = set(exp_seqs)
    pid_of = dict(expected)
    got = client.seqs
    got_set = set(got)
    ooo = sum(1 for a, b in zip(got, got[1:]) if b <= a)
    rcvd_pids = {e.pid for e in client.events if e.name == "memory.created"}
    created_seq = {pid: s for s, t, _, pid in rows if t == "memory.created"}
    acked_missing = [a for a in acked
                     if a in created_seq and created_seq[a] > (client.start_seq or 0)
                     and _wanted(client, "memory.created", None) and a not in rcvd_pids
                     and client.subject is None]
    res = {
        "client": client.label,
        "start": client.start_seq,
        "expected": len(exp_seqs),
        "received": len(got),
        "lost": len(exp_set - got_set),
        "duplicated": len(got) - len(got_set),
        "out_of_order": ooo,
        "foreign": len(got_set - exp_set),
        "wrong_payload": sum(1 for e in client.events if pid_of.get(e.seq, e.pid) != e.pid),
        "acked_missing": len(acked_missing),
        "resets": len(client.resets),
        "sessions": len(client.sessions),
        "epochs": sorted(client.epochs),
        "no_id": client.frames_without_id,
        "first_lost": sorted(exp_set - got_set)[:8],
        "allow_resets": allow_resets,
    }
    res["epoch_ok"] = epoch is None or set(client.epochs) <= {epoch}
    return res


BAD_KEYS = ("lost", "duplicated", "out_of_order", "foreign", "wrong_payload", "acked_missing",
            "no_id")


def assert_clean(label, clients, rows, acked, epoch, allow_resets=False, extra=None):
    """Checks every client; prints one line per client and a summary; asserts lost = dup = ooo = 0
    (and no foreign/wrong/missing-acked events, no resets unless allowed). Returns the summary."""
    results = [check(c, rows, acked, epoch, allow_resets) for c in clients]
    seqs = [r[0] for r in rows]
    summary = {
        "scenario": label,
        "log_events": len(rows),
        "acked_writes": len(acked),
        "clients": len(clients),
        "connections": sum(r["sessions"] for r in results),
        "lost": sum(r["lost"] for r in results),
        "duplicated": sum(r["duplicated"] for r in results),
        "out_of_order": sum(r["out_of_order"] for r in results),
        "resets": sum(r["resets"] for r in results),
    }
    summary.update(extra or {})
    print("\n[%s] %s" % (label, json.dumps(summary)))
    for r in results:
        print("  %-22s start=%-5s exp=%-5d got=%-5d lost=%d dup=%d ooo=%d foreign=%d wrong=%d "
              "acked_missing=%d resets=%d sessions=%d"
              % (r["client"], r["start"], r["expected"], r["received"], r["lost"],
                 r["duplicated"], r["out_of_order"], r["foreign"], r["wrong_payload"],
                 r["acked_missing"], r["resets"], r["sessions"]))
    problems = []
    # the log itself: gapless from its first kept seq
    if seqs and seqs != list(range(seqs[0], seqs[0] + len(seqs))):
        problems.append("events table seqs are not gapless: %r" % seqs[:40])
    in_log = {pid for _, t, _, pid in rows if t == "memory.created"}
    not_logged = [a for a in acked if a not in in_log]
    if not_logged:
        problems.append("%d acknowledged writes not in the log: %r" % (len(not_logged),
                                                                       not_logged[:5]))
    if len(set(acked)) != len(acked):
        problems.append("a memory id was acknowledged twice")
    for r, c in zip(results, clients):
        if c.start_seq is None:
            problems.append("%s never connected: %r" % (c.label, c.errors[:5]))
            continue
        bad = {k: r[k] for k in BAD_KEYS if r[k]}
        if not r["epoch_ok"]:
            bad["epochs"] = r["epochs"]
        if r["resets"] and not allow_resets:
            bad["resets"] = c.resets[:3]
        if bad:
            problems.append("%s: %r first lost %r (sessions %d, errors %r)"
                            % (c.label, bad, r["first_lost"], r["sessions"], c.errors[:3]))
    assert not problems, "[%s] subscribers disagree with the events table:\n  %s" % (
        label, "\n  ".join(problems))
    return summary


def set_goals(clients, rows):
    """Each client stops once it has the last log event it wants (bounded by its deadline)."""
    for c in clients:
        want = [s for s, t, subj, _ in rows if _wanted(c, t, subj)]
        c.set_goal(want[-1] if want else 0)


def percentile(values, p):
    if not values:
        return None
    v = sorted(values)
    return v[min(len(v) - 1, int(round((len(v) - 1) * p)))]


def delivery_latency(clients, writers):
    """Ack -> receipt (s) of memory.created events, over all clients: (p50, p99, max, n)."""
    ack_t = {i: t for w in writers for i, t in w.acked}
    lat = [e.t - ack_t[e.pid] for c in clients for e in c.events
           if e.name == "memory.created" and e.pid in ack_t]
    if not lat:
        return (None, None, None, 0)
    return (percentile(lat, 0.5), percentile(lat, 0.99), max(lat), len(lat))
