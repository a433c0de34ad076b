"""Shared helpers for the CORE API suites (tests/integration/test_api_*.py).

- `Api`: JSON requests over rawhttp with an `x-project-id`; every JSON answer is checked for
  CORE's framing (Content-Type, Content-Length, compact JSON.stringify output with JS number
  formatting, no duplicate keys) and for "never a 5xx".
- `js_dumps`: a JSON.stringify clone (JS number formatting, raw non-ASCII and U+2028/9, lowercase
  `\\u00xx` control escapes, `/` not escaped), used to compare response bytes exactly.
- `SSE`: a hand-written SSE reader over a raw socket: chunked decoding, `\\n\\n` framing, `event:`,
  `data:`, `id:`, `retry:` and comment lines; every read is bounded (<= 10 s).
- SQL helpers to seed and inspect rows with psycopg2 (through the `pg` cluster of conftest).
- fixtures `api`, `api2`, `sse_factory` (module import: `from apiclient import *`-style names).

Every expectation here is CORE's contract (spec/core-contract.md) as amended by spec/DECISIONS.md.
"""
import datetime
import decimal
import json
import re
import socket
import time
import uuid
from urllib.parse import quote

import pytest

from rawhttp import ConnClosed, RawConn, one_request, request_bytes

JSON_CT = "application/json; charset=utf-8"
TS_RE = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")
UUID4 = r"[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}"
MEM_ID_RE = re.compile(r"^mem_%s$" % UUID4)
CLM_ID_RE = re.compile(r"^clm_%s$" % UUID4)
AST_ID_RE = re.compile(r"^ast_%s$" % UUID4)
SSE_WAIT_S = 10.0  # upper bound for any single SSE wait

# Memory (API form), DECISIONS 9: every column in table order except `embedding`; `is_deleted` kept.
MEM_KEYS = ["id", "project_id", "subject_id", "text", "kind", "visibility", "importance",
            "confidence", "is_temporal", "tags", "metadata", "status", "superseded_by",
            "is_deleted", "source_type", "created_at", "updated_at", "last_seen_at", "seen_count",
            "reinforcement_count", "last_reinforced_at"]
CREATE_KEYS = ["id", "subject_id", "text", "kind", "created", "superseded_count", "superseded_ids"]
DUP_KEYS = ["id", "subject_id", "text", "kind", "created", "skipped", "reason"]
HIT_KEYS = ["id", "text", "kind", "importance", "is_temporal", "created_at", "score",
            "effective_score"]
SEARCH_KEYS = ["data", "query", "count", "engine", "mode", "used_queries", "predicates"]
# claims row without `embedding` (GET /claims/{id}, and graph/history per DECISIONS 8)
CLAIM_KEYS = ["claim_id", "project_id", "subject_id", "predicate", "object_value", "slot",
              "claim_type", "confidence", "importance", "tags", "source_memory_id",
              "source_observation_id", "subject_entity", "status", "asserted_at", "updated_at",
              "retracted_at", "retract_reason", "valid_from", "valid_until"]
CLAIM_CREATE_KEYS = ["claim_id", "subject_id", "predicate", "object_value", "slot", "claim_type",
                     "confidence", "observation_id", "linking_triggered"]
ASSERTION_KEYS = ["assertion_id", "project_id", "subject_id", "claim_id", "memory_id", "predicate",
                  "object_type", "value_string", "value_number", "value_date", "value_json",
                  "confidence", "status", "first_seen_at", "last_seen_at"]
EDGE_KEYS = ["edge_id", "project_id", "subject_id", "from_claim_id", "to_claim_id", "edge_type",
             "weight", "reason_code", "reason_text", "created_at"]
RECALL_KEYS = ["event_id", "project_id", "subject_id", "memory_id", "memory_text", "chat_id",
               "message_index", "chat_logged", "similarity_score", "request_type", "model",
               "metadata", "recalled_at"]
MEM_EVENT_CREATED_KEYS = ["id", "subject_id", "text", "kind", "visibility", "importance", "tags",
                          "created_at"]


# ------------------------------------------------------------------------------------------------
# JSON.stringify clone
# ------------------------------------------------------------------------------------------------
def js_number(x):
    """Number.prototype.toString for a double (what JSON.stringify writes)."""
    if isinstance(x, bool):
        raise TypeError("bool")
    if isinstance(x, int):
        x = float(x) if abs(x) >= 2 ** 53 else x
        if isinstance(x, int):
            return str(x)
    if x != x or x in (float("inf"), float("-inf")):
        return "null"
    if x == 0:
        return "0"
    sign = "-" if x < 0 else ""
    d = decimal.Decimal(repr(abs(x)))  # repr is the shortest round-trip form
    t = d.normalize().as_tuple()
    digits = "".join(map(str, t.digits))
    k = len(digits)
    n = t.exponent + k  # value = 0.digits * 10^n
    if k <= n <= 21:
        s = digits + "0" * (n - k)
    elif 0 < n <= 21:
        s = digits[:n] + "." + digits[n:]
    elif -6 < n <= 0:
        s = "0." + "0" * (-n) + digits
    else:
        e = n - 1
        s = digits[0] + ("." + digits[1:] if k > 1 else "") + "e" + ("+" if e >= 0 else "-") + \
            str(abs(e))
    return sign + s


_ESC = {'"': '\\"', "\\": "\\\\", "\b": "\\b", "\f": "\\f", "\n": "\\n", "\r": "\\r", "\t": "\\t"}


def js_string(s):
    out = ['"']
    for ch in s:
        if ch in _ESC:
            out.append(_ESC[ch])
        elif ord(ch) < 0x20:
            out.append("\\u%04x" % ord(ch))
        else:
            out.append(ch)
    out.append('"')
    return "".join(out)


def js_dumps(v):
    if v is None:
        return "null"
    if v is True:
        return "true"
    if v is False:
        return "false"
    if isinstance(v, (int, float)):
        return js_number(v)
    if isinstance(v, str):
        return js_string(v)
    if isinstance(v, list):
        return "[" + ",".join(js_dumps(x) for x in v) + "]"
    if isinstance(v, dict):
        return "{" + ",".join(js_string(k) + ":" + js_dumps(x) for k, x in v.items()) + "}"
    raise TypeError(type(v))


def _no_dup_pairs(pairs):
    out = {}
    for k, v in pairs:
        assert k not in out, "duplicate key %r in a JSON object" % k
        out[k] = v
    return out


def loads(raw):
    if isinstance(raw, bytes):
        raw = raw.decode("utf-8")
    return json.loads(raw, object_pairs_hook=_no_dup_pairs)


def keys(obj):
    return list(obj.keys())


def assert_ts(v, what="timestamp"):
    assert isinstance(v, str) and TS_RE.match(v), "%s %r is not ISO-8601 .mmmZ" % (what, v)


def iso_ms(dt):
    """How CORE prints a timestamptz: UTC, milliseconds truncated, Z."""
    if dt is None:
        return None
    dt = dt.astimezone(datetime.timezone.utc)
    return dt.strftime("%Y-%m-%dT%H:%M:%S.") + "%03dZ" % (dt.microsecond // 1000)


def parse_ts(s):
    return datetime.datetime.strptime(s, "%Y-%m-%dT%H:%M:%S.%fZ").replace(
        tzinfo=datetime.timezone.utc)


def assert_now(s, slack=10.0):
    assert_ts(s)
    now = datetime.datetime.now(datetime.timezone.utc)
    assert abs((now - parse_ts(s)).total_seconds()) < slack, "%s is not now (%s)" % (s, now)


def new_id(prefix="p"):
    return "%s_%s" % (prefix, uuid.uuid4().hex[:12])


def qs(**params):
    """A query string from keyword params (values percent-encoded, no `+`)."""
    return "&".join("%s=%s" % (k, quote(str(v), safe="")) for k, v in params.items())


def seg(s):
    """A path segment for an id (encodeURIComponent)."""
    return quote(s, safe="-_.!~*'()")


# ------------------------------------------------------------------------------------------------
# HTTP
# ------------------------------------------------------------------------------------------------
class ApiResp:
    def __init__(self, resp, method, path):
        self.resp = resp
        self.status = resp.status
        self.body = resp.body
        self.method = method
        self.path = path
        self._json = None
        self._parsed = False

    def header(self, name, default=None):
        return self.resp.header(name, default)

    @property
    def text(self):
        return self.body.decode("utf-8")

    @property
    def json(self):
        if not self._parsed:
            self._json = loads(self.body)
            self._parsed = True
        return self._json

    def __repr__(self):
        return "<%s %s -> %d %r>" % (self.method, self.path[:120], self.status, self.body[:400])


class Api:
    """Requests for one project. project=None sends no x-project-id header."""

    def __init__(self, srv, project="__new__"):
        self.srv = srv
        self.project = new_id("proj") if project == "__new__" else project

    def call(self, method, path, body=None, raw=None, headers=None, timeout=10.0, check=True,
             content_type="application/json"):
        """body: a Python value sent as JSON; raw: exact body bytes/str. content_type=None sends
        none (a Content-Type in headers also replaces the default)."""
        hdrs = []
        if self.project is not None:
            hdrs.append(("x-project-id", self.project))
        extra = list(headers.items()) if isinstance(headers, dict) else list(headers or [])
        data = None
        if raw is not None:
            data = raw if isinstance(raw, bytes) else raw.encode("utf-8")
        elif body is not None:
            data = json.dumps(body, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
        if data is not None and content_type and \
                not any(k.lower() == "content-type" for k, _ in extra):
            hdrs.append(("Content-Type", content_type))
        hdrs += extra
        r = ApiResp(one_request(self.srv.host, self.srv.port, method, path, hdrs, data,
                                timeout=timeout), method, path)
        if check and method != "HEAD":
            check_json_response(r)
        return r

    def get(self, path, **kw):
        return self.call("GET", path, **kw)

    def post(self, path, body=None, **kw):
        return self.call("POST", path, body, **kw)

    def patch(self, path, body=None, **kw):
        return self.call("PATCH", path, body, **kw)

    def delete(self, path, **kw):
        return self.call("DELETE", path, **kw)

    # conveniences -------------------------------------------------------------------------------
    def create(self, subject, text, expect=201, **fields):
        body = {"subject_id": subject, "text": text}
        body.update(fields)
        r = self.post("/api/v1/memories", body)
        assert r.status == expect, r
        return r.json

    def mem(self, mid):
        r = self.get("/api/v1/memories/" + seg(mid))
        assert r.status == 200, r
        assert keys(r.json) == ["data"], r
        return r.json["data"]

    def claim(self, subject, predicate, value, expect=201, **fields):
        body = {"subject_id": subject, "predicate": predicate, "object_value": value}
        body.update(fields)
        r = self.post("/api/v1/claims", body)
        assert r.status == expect, r
        return r.json


def check_json_response(r):
    """CORE's framing for every non-SSE answer, and the suite-wide rule: never a 5xx."""
    assert r.status < 500, "server error: %r" % (r,)
    assert r.header("content-type") == JSON_CT, r
    assert r.header("content-length") is not None, r
    assert int(r.header("content-length")) == len(r.body), r
    obj = r.json
    assert isinstance(obj, dict), r
    assert r.text == js_dumps(obj), "body is not compact JSON.stringify output:\n%s\n%s" % (
        r.text[:600], js_dumps(obj)[:600])


def assert_error(r, status, code, **extra):
    """An error answer: exact status and exact body (key order included)."""
    assert r.status == status, r
    want = {"error": code}
    want.update(extra)
    assert r.json == want and keys(r.json) == keys(want), r


# ------------------------------------------------------------------------------------------------
# SQL
# ------------------------------------------------------------------------------------------------
def sql(srv, query, params=None):
    return srv.cluster.query(srv.db, query, params)


def sql_one(srv, query, params=None):
    rows = sql(srv, query, params)
    assert rows is not None and len(rows) == 1, "expected one row, got %r" % (rows,)
    return rows[0]


def sql_dict(srv, query, params=None):
    conn = srv.cluster.connect(srv.db)
    try:
        with conn.cursor() as cur:
            cur.execute(query, params)
            cols = [c.name for c in cur.description]
            return [dict(zip(cols, row)) for row in cur.fetchall()]
    finally:
        conn.close()


def db_memory(srv, mid):
    rows = sql_dict(srv, "SELECT * FROM memories WHERE id = %s", (mid,))
    return rows[0] if rows else None


def insert_memory(srv, project, subject, text, **cols):
    """Seed a memory row directly (clients and tools do this against CORE too)."""
    cols.setdefault("id", new_id("mem_sql"))
    cols.update(project_id=project, subject_id=subject, text=text)
    names = list(cols)
    vals = []
    for n in names:
        v = cols[n]
        if n == "metadata" and not isinstance(v, str):
            v = json.dumps(v)
        vals.append(v)
    sql(srv, "INSERT INTO memories (%s) VALUES (%s)" % (
        ", ".join(names), ", ".join(["%s"] * len(names))), vals)
    return cols["id"]


def insert_recall(srv, project, subject, memory_id, **cols):
    cols.setdefault("event_id", new_id("rev"))
    cols.update(project_id=project, subject_id=subject, memory_id=memory_id)
    if "metadata" in cols and not isinstance(cols["metadata"], str):
        cols["metadata"] = json.dumps(cols["metadata"])
    names = list(cols)
    sql(srv, "INSERT INTO memory_recall_events (%s) VALUES (%s)" % (
        ", ".join(names), ", ".join(["%s"] * len(names))), [cols[n] for n in names])
    return cols["event_id"]


def count_rows(srv, table, project):
    return sql_one(srv, "SELECT count(*) FROM %s WHERE project_id = %%s" % table, (project,))[0]


# ------------------------------------------------------------------------------------------------
# SSE
# ------------------------------------------------------------------------------------------------
class Frame:
    def __init__(self, raw):
        self.raw = raw
        self.event = None
        self.data_lines = []
        self.id = None
        self.has_id = False
        self.retry = None
        self.comments = []
        for line in raw.split("\n"):
            if line.startswith(":"):
                self.comments.append(line[1:])
                continue
            name, sep, value = line.partition(":")
            if sep and value.startswith(" "):
                value = value[1:]
            if name == "event":
                self.event = value
            elif name == "data":
                self.data_lines.append(value)
            elif name == "id":
                self.id = value
                self.has_id = True
            elif name == "retry":
                self.retry = value

    @property
    def is_event(self):
        return bool(self.data_lines) or self.event is not None

    @property
    def data_text(self):
        return "\n".join(self.data_lines)

    @property
    def data(self):
        return loads(self.data_text)

    def __repr__(self):
        return "<Frame %r>" % (self.raw[:300],)


class SSE:
    """One subscription to GET /api/v1/events/memories."""

    def __init__(self, srv, project, query="", headers=None, timeout=SSE_WAIT_S, rcvbuf=None):
        self.srv = srv
        self.project = project
        self.conn = RawConn(srv.host, srv.port, timeout=timeout, rcvbuf=rcvbuf)
        path = "/api/v1/events/memories" + ("?" + query if query else "")
        hdrs = [("x-project-id", project)] if project is not None else []
        hdrs += list(headers.items()) if isinstance(headers, dict) else list(headers or [])
        self.conn.send(request_bytes("GET", path, hdrs))
        deadline = time.monotonic() + timeout
        head = self.conn._read_until(b"\r\n\r\n", deadline)
        lines = head[:-4].split(b"\r\n")
        self.status = int(lines[0].split(b" ")[1])
        self.headers = []
        for line in lines[1:]:
            k, _, v = line.decode("latin-1").partition(":")
            self.headers.append((k, v.strip()))
        self.chunked = "chunked" in (self.header("transfer-encoding") or "").lower()
        self.stream = b""       # decoded stream bytes not yet split into frames
        self.all_bytes = b""    # every decoded stream byte (for framing checks)
        self.frames = []        # every frame read so far
        self.pending = []       # frames parsed but not yet handed out
        self.ended = False
        self._chunk_left = 0
        self.error_body = None
        if self.status != 200:
            cl = self.header("content-length")
            if cl is not None:
                self.error_body = self.conn._read_exact(int(cl), deadline)

    def header(self, name, default=None):
        for k, v in self.headers:
            if k.lower() == name.lower():
                return v
        return default

    # -- decoding ----------------------------------------------------------------------------------
    def _decode_available(self):
        buf = self.conn.buf
        out = b""
        if not self.chunked:
            out, buf = buf, b""
        else:
            while True:
                if self._chunk_left > 0:
                    take = buf[:self._chunk_left]
                    out += take
                    buf = buf[len(take):]
                    self._chunk_left -= len(take)
                    if self._chunk_left > 0:
                        break
                    self._chunk_left = -2  # expect CRLF
                if self._chunk_left == -2:
                    if len(buf) < 2:
                        break
                    assert buf[:2] == b"\r\n", "bad chunk terminator %r" % buf[:10]
                    buf = buf[2:]
                    self._chunk_left = 0
                i = buf.find(b"\r\n")
                if i < 0:
                    break
                size = int(buf[:i].split(b";")[0].strip(), 16)
                buf = buf[i + 2:]
                if size == 0:
                    self.ended = True
                    break
                self._chunk_left = size
        self.conn.buf = buf
        self.stream += out
        self.all_bytes += out
        while True:
            i = self.stream.find(b"\n\n")
            if i < 0:
                break
            raw = self.stream[:i].decode("utf-8")
            self.stream = self.stream[i + 2:]
            fr = Frame(raw)
            self.frames.append(fr)
            self.pending.append(fr)

    def _pump(self, deadline):
        self._decode_available()
        if self.pending:
            return True
        try:
            if not self.conn._fill(deadline):
                self.ended = True
                return False
        except socket.timeout:
            return False
        self._decode_available()
        return True

    def next_frame(self, timeout=SSE_WAIT_S):
        """The next frame (comment/retry-only frames included), or None on timeout/EOF."""
        timeout = min(timeout, SSE_WAIT_S)
        deadline = time.monotonic() + timeout
        while not self.pending:
            if self.ended or time.monotonic() >= deadline:
                return None
            if not self._pump(deadline) and not self.pending:
                if self.ended:
                    return None
        return self.pending.pop(0)

    def next_event(self, timeout=SSE_WAIT_S):
        """The next frame that carries an event (skips comment-only and retry-only frames)."""
        deadline = time.monotonic() + min(timeout, SSE_WAIT_S)
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                return None
            fr = self.next_frame(left)
            if fr is None:
                return None
            if fr.is_event:
                return fr

    def events_until(self, pred, timeout=SSE_WAIT_S, skip_heartbeat=True):
        """Event frames up to and including the first one matching pred; AssertionError if it
        does not come within timeout (<= 10 s)."""
        deadline = time.monotonic() + min(timeout, SSE_WAIT_S)
        got = []
        while True:
            left = deadline - time.monotonic()
            fr = self.next_event(left) if left > 0 else None
            if fr is None:
                raise AssertionError("SSE: expected event not seen within %.1fs; got %r"
                                     % (timeout, [(f.event, f.data_text[:200]) for f in got]))
            if skip_heartbeat and fr.event == "heartbeat":
                continue
            got.append(fr)
            if pred(fr):
                return got

    def wait_event(self, name, pred=None, timeout=SSE_WAIT_S):
        got = self.events_until(
            lambda f: f.event == name and (pred is None or pred(f.data)), timeout)
        return got[-1]

    def close(self):
        self.conn.close()


def marker_pred(text):
    return lambda f: f.event == "memory.created" and f.data.get("text") == text


# ------------------------------------------------------------------------------------------------
# fixtures (imported by the test modules)
# ------------------------------------------------------------------------------------------------
@pytest.fixture
def api(engram_server):
    """An Api on the module's shared engramd, with a project id of this test's own."""
    return Api(engram_server)


@pytest.fixture
def api2(engram_server):
    """A second project on the same server (isolation tests)."""
    return Api(engram_server)


@pytest.fixture
def sse_factory(engram_server):
    """sse_factory(project, query="", headers=None) -> SSE (closed at teardown)."""
    opened = []

    def make(project, query="", headers=None):
        s = SSE(engram_server, project, query, headers)
        opened.append(s)
        return s

    yield make
    for s in opened:
        s.close()


__all__ = ["api", "api2", "sse_factory"]
