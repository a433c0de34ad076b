"""Several engramd instances on one PostgreSQL database, behind real HAProxy (ops/haproxy/haproxy.cfg).

ARCHITECTURE.md §5-6, RELIABILITY.md §1.5/§1.6, F6 and D1/D1b in their "-lite" form: every test
compares what each SSE client received (the seq of every memory.* event, in arrival order) with the
`events` table, and asserts lost = 0, duplicated = 0, out of order = 0 (plus: the log is gapless, and
every acknowledged write is in `memories` and in `events`).

- One fresh database per test, three instances on it (ENGRAM_SSE_CATCHUP_MS=200: events sequenced
  on another instance arrive within one catch-up poll), HAProxy started from the production config
  with the test's ports in ENGRAM_LB_* variables.
- SSE clients run in threads and emulate EventSource: on a stream end they wait the last `retry:`
  they were given and reconnect (through HAProxy) with `Last-Event-ID` (or `?last_event_id=`).
- Writers keep one keep-alive connection each (through HAProxy or straight to an instance).
- Every loop is bounded in count and time; every process is loopback-only and stopped at teardown.

Run: /usr/bin/python3 -m pytest -q -s tests/integration/test_cluster.py   (-s shows the numbers)
"""
import json
import os
import random
import re
import signal
import socket
import struct
import subprocess
import threading
import time
import uuid
from collections import namedtuple

import pytest

from apiclient import SSE
from conftest import HOST, REPO, free_port
from rawhttp import ConnClosed, RawConn, one_request, request_bytes

HAPROXY = os.environ.get("HAPROXY", "/usr/sbin/haproxy")
HAPROXY_CFG = REPO / "ops" / "haproxy" / "haproxy.cfg"
N_INSTANCES = 3
ENGRAM_ENV = {
    "ENGRAM_SSE_CATCHUP_MS": "200",
    "ENGRAM_SSE_RETRY_MS": "500",   # drain hint: 250-750 ms (jittered), keeps reconnects quick
    "ENGRAM_DB_POOL_SIZE": "4",     # 3 instances on 2 cores
}
ID_RE = re.compile(r"^(\d+):(\d+)$")
MEM = "/api/v1/memories"
EVENTS = "/api/v1/events/memories"

Target = namedtuple("Target", "host port name")


# ------------------------------------------------------------------------------------------------
# HAProxy
# ------------------------------------------------------------------------------------------------
class HAProxy:
    def __init__(self, rundir, servers):
        self.rundir = rundir
        self.port = free_port()
        self.stats_port = free_port()
        self.log_path = rundir / "haproxy.log"
        self.env = {"PATH": os.environ.get("PATH", "/usr/sbin:/usr/bin:/bin"),
                    "ENGRAM_LB_BIND": "%s:%d" % (HOST, self.port),
                    "ENGRAM_LB_STATS_BIND": "%s:%d" % (HOST, self.stats_port),
                    "ENGRAM_LB_ADMIN_SOCK": str(rundir / "admin.sock"),
                    "ENGRAM_LB_LOG": "stdout",
                    "ENGRAM_LB_MAXCONN": "4000"}
        for i, srv in enumerate(servers, 1):
            self.env["ENGRAM_LB_SERVER_%d" % i] = "%s:%d" % (srv.host, srv.port)
        self.names = ["engram%d" % i for i in range(1, len(servers) + 1)]
        self.target = Target(HOST, self.port, "haproxy")
        self.proc = None

    def check_config(self):
        r = subprocess.run([HAPROXY, "-c", "-f", str(HAPROXY_CFG)], env=self.env, timeout=20,
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        out = r.stdout.decode(errors="replace")
        assert r.returncode == 0, "haproxy -c failed:\n" + out
        assert "WARNING" not in out and "ALERT" not in out, out

    def start(self):
        self.check_config()
        with open(self.log_path, "wb") as log:
            self.proc = subprocess.Popen([HAPROXY, "-db", "-f", str(HAPROXY_CFG)], env=self.env,
                                         stdout=log, stderr=subprocess.STDOUT,
                                         stdin=subprocess.DEVNULL, start_new_session=True)
        try:
            return self._wait_ready()
        except BaseException:
            self.stop()
            raise

    def _wait_ready(self):
        deadline = time.monotonic() + 10
        last = None
        while time.monotonic() < deadline:
            assert self.proc.poll() is None, "haproxy exited %s:\n%s" % (
                self.proc.returncode, self.log_tail())
            try:
                st = self.status()
                last = st
                if all(st.get(("be_engram_api", n)) == "UP" for n in self.names) and \
                        all(st.get(("be_engram_events", n)) == "UP" for n in self.names):
                    r = one_request(HOST, self.port, "GET", "/health/ready", timeout=2)
                    if r.status == 200:
                        return self
            except (OSError, ConnClosed) as e:
                last = e
            time.sleep(0.1)
        raise AssertionError("haproxy not ready within 10 s (%r):\n%s" % (last, self.log_tail()))

    def status(self):
        """{(proxy, server): status} from the stats CSV on the local stats listener."""
        r = one_request(HOST, self.stats_port, "GET", "/stats;csv", timeout=2)
        assert r.status == 200, r
        out = {}
        lines = r.body.decode().splitlines()
        cols = lines[0].lstrip("# ").split(",")
        for line in lines[1:]:
            row = dict(zip(cols, line.split(",")))
            if row.get("svname") not in ("FRONTEND", "BACKEND"):
                out[(row["pxname"], row["svname"])] = row["status"].split(" ")[0]
        return out

    def log_tail(self, n=40):
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-n:])
        except OSError:
            return ""

    def log_text(self):
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""

    def stop(self):
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=5)


# ------------------------------------------------------------------------------------------------
# The cluster
# ------------------------------------------------------------------------------------------------
class Cluster:
    def __init__(self, pg, engram, workdir):
        self.pg = pg
        self.db = pg.create_database()
        self.instances = []
        for i in range(N_INSTANCES):
            srv = engram(env=ENGRAM_ENV, db=self.db, migrate=(i == 0))
            srv.name = "engram%d" % (i + 1)
            srv.target = Target(srv.host, srv.port, srv.name)
            self.instances.append(srv)
        rundir = workdir / ("haproxy-%s" % uuid.uuid4().hex[:8])
        rundir.mkdir()
        self.lb = HAProxy(rundir, self.instances).start()
        self.project = "proj_cluster_%s" % uuid.uuid4().hex[:10]
        self.threads = []

    # SQL ------------------------------------------------------------------------------------
    def sql(self, query, params=None):
        return self.pg.query(self.db, query, params)

    def outbox_empty(self, timeout=8.0):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.sql("SELECT count(*) FROM event_outbox")[0][0] == 0:
                return True
            time.sleep(0.05)
        return False

    def log_rows(self):
        """[(seq, event_type, payload id)] of the project's log, in seq order."""
        rows = self.sql("SELECT seq, event_type, payload FROM events WHERE project_id = %s "
                        "ORDER BY seq", (self.project,))
        return [(s, t, json.loads(p).get("id")) for s, t, p in rows]

    # instances ------------------------------------------------------------------------------
    def metrics(self, srv, timeout=1.0):
        r = srv.get("/metrics", timeout=timeout)
        assert r.status == 200, r
        out = {}
        for line in r.body.decode().splitlines():
            if line and not line.startswith("#"):
                name, _, value = line.rpartition(" ")
                try:
                    out[name] = float(value)
                except ValueError:
                    pass
        return out

    def leaders(self, among=None):
        found = []
        for srv in among or self.instances:
            try:
                if self.metrics(srv, timeout=0.5).get("sequencer_leader") == 1:
                    found.append(srv)
            except (OSError, ConnClosed, AssertionError):
                pass
        return found

    def wait_one_leader(self, timeout=5.0):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            ls = self.leaders()
            if len(ls) == 1:
                return ls[0]
            time.sleep(0.05)
        raise AssertionError("no single sequencer leader within %ss" % timeout)

    def close(self):
        try:
            for t in self.threads:
                t.stop()
            for t in self.threads:
                t.join(timeout=5)
        finally:
            self.lb.stop()


@pytest.fixture
def cluster(pg, engram, workdir, request):
    if not os.access(HAPROXY, os.X_OK):
        pytest.skip("haproxy not installed at %s" % HAPROXY)
    c = Cluster(pg, engram, workdir)
    yield c
    c.close()
    # on failure, the tail of HAProxy's log goes with engramd's (conftest's report hook)
    request.node.add_report_section("teardown", "haproxy log (tail)", c.lb.log_tail(30))


# ------------------------------------------------------------------------------------------------
# Load: writers and EventSource-like subscribers
# ------------------------------------------------------------------------------------------------
class Writer(threading.Thread):
    """Creates memories over one keep-alive connection until `count` or stop(); records every
    acknowledged (2xx) id and every failure. A failed request is not retried (its fate is
    unknown; only acknowledged writes are checked)."""

    def __init__(self, target, project, tag, count, pause=0.0, max_s=30.0):
        super().__init__(daemon=True)
        self.target = target
        self.project = project
        self.tag = tag
        self.count = count
        self.pause = pause
        self.max_s = max_s
        self.acked = []
        self.errors = []
        self.statuses = {}
        self._halt = threading.Event()
        self.conn = None

    def stop(self):
        self._halt.set()

    def _post(self, body):
        if self.conn is None:
            self.conn = RawConn(self.target.host, self.target.port, timeout=10)
        self.conn.send(request_bytes("POST", MEM, [("x-project-id", self.project),
                                                    ("Content-Type", "application/json")], body))
        r = self.conn.read_response(timeout=10)
        if (r.header("connection") or "").lower() == "close":
            self.conn.close()
            self.conn = None
        return r

    def run(self):
        deadline = time.monotonic() + self.max_s
        for i in range(self.count):
            if self._halt.is_set() or time.monotonic() > deadline:
                break
            body = json.dumps({"subject_id": "s-%s" % self.tag,
                               "text": "cluster %s #%d %s" % (self.tag, i, uuid.uuid4().hex[:8]),
                               "no_supersede": True}).encode()
            try:
                r = self._post(body)
                self.statuses[r.status] = self.statuses.get(r.status, 0) + 1
                if 200 <= r.status < 300:
                    self.acked.append(json.loads(r.body)["id"])
                else:
                    self.errors.append((i, r.status, r.body[:200]))
            except (OSError, ConnClosed, AssertionError) as e:
                self.errors.append((i, "exc", repr(e)))
                if self.conn is not None:
                    self.conn.close()
                self.conn = None
            if self.pause:
                time.sleep(self.pause)
        if self.conn is not None:
            self.conn.close()


class Session:
    """One connection of a subscriber."""

    def __init__(self, resumed_from):
        self.resumed_from = resumed_from
        self.t_open = time.monotonic()
        self.t_end = None
        self.status = None
        self.how = None          # "clean" (terminating chunk), "eof", "dropped", "stopped", "error"
        self.final_retry = None  # a retry-only frame right before a clean end
        self.n_events = 0
        self.reset = False


class Subscriber(threading.Thread):
    """An EventSource emulation over apiclient.SSE: records the seq of every memory.* event,
    follows `retry:`, reconnects with Last-Event-ID (or ?last_event_id=), and optionally drops its
    connection at random (drop=(min_s, max_s)). Stops when it has seen seq >= goal or at its
    deadline (both bounded)."""

    def __init__(self, target, project, name, drop=None, max_s=60.0, max_connects=400,
                 use_query=False, seed=None):
        super().__init__(daemon=True)
        self.target = target
        self.project = project
        self.name = name
        self.drop = drop
        self.max_s = max_s
        self.max_connects = max_connects
        self.use_query = use_query
        self.rng = random.Random(seed)
        self.last_id = None
        self.start_seq = None
        self.retry_ms = 3000
        self.seqs = []
        self.payload_ids = []
        self.epochs = set()      # epoch part of every id received
        self.sessions = []
        self.resets = []
        self.errors = []
        self.connected = threading.Event()
        self.goal = None
        self._halt = threading.Event()
        self.reconnect_gaps = []  # seconds from a stream's end to the next `connected`

    def stop(self):
        self._halt.set()

    def set_goal(self, seq):
        self.goal = seq

    def done(self):
        return self.goal is not None and self.seqs and self.seqs[-1] >= self.goal

    def _open(self):
        query, headers = "", []
        if self.last_id is not None:
            if self.use_query and len(self.sessions) % 2 == 1:
                query = "last_event_id=" + self.last_id
            else:
                headers = [("Last-Event-ID", self.last_id)]
        return SSE(self.target, self.project, query, headers, timeout=5)

    def run(self):
        deadline = time.monotonic() + self.max_s
        ended_at = None
        while not self._halt.is_set() and not self.done() and time.monotonic() < deadline \
                and len(self.sessions) < self.max_connects:
            sess = Session(self.last_id)
            self.sessions.append(sess)
            try:
                s = self._open()
            except (OSError, ConnClosed, AssertionError, ValueError, IndexError) as e:
                sess.how = "error"
                self.errors.append(("connect", repr(e)))
                time.sleep(0.1)
                continue
            sess.status = s.status
            if s.status != 200:
                sess.how = "error"
                self.errors.append(("status", s.status, s.error_body))
                s.close()
                time.sleep(self.retry_ms / 1000.0)
                continue
            drop_at = (time.monotonic() + self.rng.uniform(*self.drop)) if self.drop else None
            last_frame = None
            try:
                while True:
                    if self._halt.is_set() or self.done() or time.monotonic() >= deadline:
                        sess.how = "stopped"
                        break
                    if drop_at is not None and time.monotonic() >= drop_at:
                        sess.how = "dropped"
                        if self.rng.random() < 0.5:  # half of the drops are resets (RST)
                            s.conn.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER,
                                                   struct.pack("ii", 1, 0))
                        break
                    fr = s.next_frame(timeout=0.2)
                    if fr is None:
                        if s.ended:
                            sess.how = "eof" if s.conn.eof else "clean"
                            if sess.how == "clean" and last_frame is not None and \
                                    last_frame.retry is not None and not last_frame.is_event:
                                sess.final_retry = int(last_frame.retry)
                            break
                        continue
                    last_frame = fr
                    self._frame(fr, sess)
                    if fr.event == "connected" and ended_at is not None:
                        self.reconnect_gaps.append(time.monotonic() - ended_at)
                        ended_at = None
            except (OSError, ConnClosed, AssertionError, ValueError) as e:
                sess.how = "error"
                self.errors.append(("read", repr(e)))
            finally:
                s.close()
                sess.t_end = time.monotonic()
            if sess.how in ("stopped",):
                break
            ended_at = time.monotonic()
            if sess.how in ("clean", "eof", "error"):
                # EventSource: wait the reconnection time, then reconnect with the last id.
                self._halt.wait(self.retry_ms / 1000.0)
            # a deliberate drop reconnects at once (the chaos client)

    def _frame(self, fr, sess):
        if fr.retry is not None and fr.retry.isdigit():
            self.retry_ms = int(fr.retry)
        if fr.has_id:
            self.last_id = fr.id
        if not fr.is_event:
            return
        m = ID_RE.match(fr.id or "") if fr.has_id else None
        if m:
            self.epochs.add(int(m.group(1)))
        if fr.event == "connected":
            if self.start_seq is None and m:
                self.start_seq = int(m.group(2))
            self.connected.set()
        elif fr.event == "reset":
            sess.reset = True
            self.resets.append((sess.resumed_from, fr.id))
        elif fr.event and fr.event.startswith("memory."):
            assert m, "event without an <epoch>:<seq> id: %r" % fr
            self.seqs.append(int(m.group(2)))
            self.payload_ids.append(fr.data.get("id"))
            sess.n_events += 1


def start_all(cluster, threads):
    for t in threads:
        cluster.threads.append(t)
        t.start()


def wait_connected(subs, timeout=10.0):
    deadline = time.monotonic() + timeout
    for s in subs:
        left = deadline - time.monotonic()
        assert s.connected.wait(max(left, 0.01)), "%s: no connected frame within %ss (errors %r)" \
            % (s.name, timeout, s.errors[:5])


def finish(cluster, writers, subs, catch_up_s=10.0):
    """Writers done -> outbox drained -> every subscriber reaches the log's last seq (bounded)."""
    for w in writers:
        w.join(timeout=40)
        assert not w.is_alive(), "writer %s did not finish" % w.tag
    assert cluster.outbox_empty(), "event_outbox not drained within 8 s (no sequencer leader?)"
    rows = cluster.log_rows()
    goal = max((s for s, t, _ in rows if t.startswith("memory.")), default=0)
    for s in subs:
        s.set_goal(goal)
    deadline = time.monotonic() + catch_up_s
    for s in subs:
        s.join(timeout=max(deadline - time.monotonic(), 0.1))
    for s in subs:
        s.stop()
    for s in subs:
        s.join(timeout=5)
    return rows


def verify(cluster, rows, subs, writers, label):
    """lost/duplicated/out-of-order per subscriber against the events table; gapless log;
    acknowledged writes in memories and events. Returns the summary dict (also printed)."""
    seqs = [s for s, _, _ in rows]
    assert seqs == list(range(1, len(seqs) + 1)), "events seqs are not gapless 1..N: %r" % seqs[:50]
    last_seq, epoch = cluster.sql("SELECT last_seq, epoch FROM projects WHERE project_id = %s",
                                  (cluster.project,))[0]
    assert last_seq == len(seqs), (last_seq, len(seqs))
    mem = [(s, pid) for s, t, pid in rows if t.startswith("memory.")]
    pid_of = dict(mem)

    # acknowledged writes are durable and in the log
    acked = [i for w in writers for i in w.acked]
    assert len(set(acked)) == len(acked), "a memory id was acknowledged twice"
    in_db = {r[0] for r in cluster.sql("SELECT id FROM memories WHERE project_id = %s",
                                       (cluster.project,))}
    created = {pid for s, t, pid in rows if t == "memory.created"}
    missing_db = [i for i in acked if i not in in_db]
    missing_log = [i for i in acked if i not in created]
    assert not missing_db, "acknowledged writes missing from memories: %r" % missing_db[:10]
    assert not missing_log, "acknowledged writes missing from events: %r" % missing_log[:10]

    problems = []
    per = []
    for sub in subs:
        assert sub.start_seq is not None, "%s never connected: %r" % (sub.name, sub.errors[:5])
        expected = [s for s, _ in mem if s > sub.start_seq]
        got = sub.seqs
        got_set = set(got)
        lost = len(set(expected) - got_set)
        dup = len(got) - len(got_set)
        ooo = sum(1 for a, b in zip(got, got[1:]) if b <= a)
        foreign = len(got_set - set(expected))
        wrong_payload = sum(1 for s, pid in zip(got, sub.payload_ids) if pid_of.get(s) != pid)
        per.append((sub.name, len(got), lost, dup, ooo))
        if lost or dup or ooo or foreign or wrong_payload or got != expected or sub.resets or \
                sub.epochs != {epoch}:
            problems.append("%s (%s): expected %d got %d lost=%d dup=%d out_of_order=%d "
                            "foreign=%d wrong_payload=%d epochs=%r (log: %d) resets=%r sessions=%d "
                            "first missing=%r"
                            % (sub.name, sub.target.name, len(expected), len(got), lost, dup, ooo,
                               foreign, wrong_payload, sorted(sub.epochs), epoch, sub.resets[:3],
                               len(sub.sessions),
                               sorted(set(expected) - got_set)[:10]))
    statuses = {}
    for w in writers:
        for k, v in w.statuses.items():
            statuses[str(k)] = statuses.get(str(k), 0) + v
    summary = {
        "test": label,
        "events": len(seqs),
        "acked_writes": len(acked),
        "write_errors": sum(len(w.errors) for w in writers),
        "write_statuses": statuses,
        "subscribers": len(subs),
        "connections": sum(len(s.sessions) for s in subs),
        "lost": sum(p[2] for p in per),
        "duplicated": sum(p[3] for p in per),
        "out_of_order": sum(p[4] for p in per),
        "resets": sum(len(s.resets) for s in subs),
    }
    print("\n[%s] %s" % (label, json.dumps(summary)))
    assert not problems, "subscribers disagree with the events table:\n" + "\n".join(problems)
    return summary


def subs_on(targets, project, prefix, n_each, **kw):
    out = []
    for t in targets:
        for i in range(n_each):
            out.append(Subscriber(t, project, "%s-%s-%d" % (prefix, t.name, i), **kw))
    return out


# ------------------------------------------------------------------------------------------------
# a. fan-out across instances and through HAProxy
# ------------------------------------------------------------------------------------------------
def test_cluster_fanout_all_instances(cluster):
    a, b, _ = cluster.instances
    subs = subs_on([a.target], cluster.project, "A", 5, max_s=40) + \
        subs_on([cluster.lb.target], cluster.project, "LB", 6, max_s=40)
    start_all(cluster, subs)
    wait_connected(subs)
    writers = [Writer(b.target, cluster.project, "B%d" % i, 100) for i in range(2)] + \
        [Writer(cluster.lb.target, cluster.project, "LB%d" % i, 100) for i in range(2)]
    t0 = time.monotonic()
    start_all(cluster, writers)
    rows = finish(cluster, writers, subs)
    summary = verify(cluster, rows, subs, writers, "a-fanout")
    assert summary["acked_writes"] == 400 and summary["write_errors"] == 0, summary
    created = [r for r in rows if r[1] == "memory.created"]
    assert len(created) == 400
    for s in subs:
        assert len(s.seqs) == 400 and set(s.payload_ids) == {r[2] for r in created}, s.name
    print("[a-fanout] 400 writes + delivery to 11 subscribers in %.2f s"
          % (time.monotonic() - t0))


# ------------------------------------------------------------------------------------------------
# b. sequencer takeover after SIGKILL of the leader
# ------------------------------------------------------------------------------------------------
def test_cluster_sequencer_takeover(cluster):
    leader = cluster.wait_one_leader()
    others = [s for s in cluster.instances if s is not leader]
    subs = subs_on([o.target for o in others], cluster.project, "direct", 3, max_s=40) + \
        subs_on([cluster.lb.target], cluster.project, "LB", 4, max_s=40)
    start_all(cluster, subs)
    wait_connected(subs)
    writers = [Writer(o.target, cluster.project, "%s-%d" % (o.name, i), 2000, pause=0.005,
                      max_s=5.0) for o in others for i in range(2)]
    start_all(cluster, writers)
    time.sleep(1.5)
    acked_before = sum(len(w.acked) for w in writers)
    t_kill = time.monotonic()
    leader.kill()  # SIGKILL
    new_leader = None
    while time.monotonic() - t_kill < 5.0:
        ls = cluster.leaders(others)
        if ls:
            new_leader = ls[0]
            break
        time.sleep(0.02)
    takeover_s = time.monotonic() - t_kill
    assert new_leader is not None, "no new sequencer leader within 5 s of SIGKILL"
    print("\n[b-takeover] killed %s (leader); %s leads after %.3f s; acked before kill %d"
          % (leader.name, new_leader.name, takeover_s, acked_before))
    rows = finish(cluster, writers, subs)
    assert len(cluster.leaders(others)) == 1, "not exactly one leader after the takeover"
    summary = verify(cluster, rows, subs, writers, "b-takeover")
    assert summary["write_errors"] == 0, [w.errors[:3] for w in writers]
    assert sum(len(w.acked) for w in writers) > acked_before, "no writes after the kill"
    assert takeover_s < 2.5, "takeover took %.3f s" % takeover_s


# ------------------------------------------------------------------------------------------------
# c. SIGTERM drain (F6-lite): streams get retry: and end, clients resume through HAProxy
# ------------------------------------------------------------------------------------------------
def test_cluster_drain_resume_through_haproxy(cluster):
    subs = subs_on([cluster.lb.target], cluster.project, "LB", 30, max_s=40)
    start_all(cluster, subs)
    wait_connected(subs)
    per_instance = {}
    for srv in cluster.instances:
        per_instance[srv.name] = cluster.metrics(srv).get("sse_subscribers", 0)
    assert sum(per_instance.values()) == 30, per_instance
    victim = max(cluster.instances, key=lambda s: per_instance[s.name])
    was_leader = cluster.metrics(victim).get("sequencer_leader") == 1
    n_victim = int(per_instance[victim.name])
    writers = [Writer(cluster.lb.target, cluster.project, "LB%d" % i, 2000, pause=0.01,
                      max_s=5.0) for i in range(2)]
    start_all(cluster, writers)
    time.sleep(1.5)
    t_term = time.monotonic()
    victim.terminate()
    rc = victim.wait_exit(timeout=15)
    exit_s = time.monotonic() - t_term
    marked_down = None
    while time.monotonic() - t_term < 6:
        if cluster.lb.status().get(("be_engram_api", victim.name)) != "UP":
            marked_down = time.monotonic() - t_term
            break
        time.sleep(0.05)
    rows = finish(cluster, writers, subs)
    # the victim's streams: ended cleanly with a final retry hint, after the SIGTERM
    drained = [sess for s in subs for sess in s.sessions
               if sess.t_end is not None and sess.t_end >= t_term and sess.how in ("clean", "eof")]
    with_retry = [x for x in drained if x.how == "clean" and x.final_retry is not None]
    gaps = sorted(g for s in subs for g in s.reconnect_gaps)
    print("\n[c-drain] victim %s (leader=%s) had %d of 30 streams (%r); exit %s in %.2f s; "
          "haproxy marked it down after %s s; streams ended %d (with retry: %d, retry ms %r); "
          "reconnect gap max %.2f s"
          % (victim.name, was_leader, n_victim, per_instance, rc, exit_s,
             "%.2f" % marked_down if marked_down is not None else "n/a", len(drained),
             len(with_retry), sorted(x.final_retry for x in with_retry)[:3] + ["..."],
             gaps[-1] if gaps else 0.0))
    assert rc == 0, "drained instance exited %s:\n%s" % (rc, victim.log_tail())
    assert n_victim > 0
    assert len(drained) == n_victim, "expected %d streams to end, saw %d" % (n_victim, len(drained))
    assert len(with_retry) == n_victim, [(x.how, x.final_retry) for x in drained]
    assert all(250 <= x.final_retry <= 750 for x in with_retry), [x.final_retry for x in with_retry]
    summary = verify(cluster, rows, subs, writers, "c-drain")
    # F6: no write errors to clients while an instance drains
    assert summary["write_errors"] == 0, [w.errors[:5] for w in writers]


# ------------------------------------------------------------------------------------------------
# d. random disconnects with resume (D1-lite)
# ------------------------------------------------------------------------------------------------
def test_cluster_random_disconnects_resume(cluster):
    a, b, _ = cluster.instances
    subs = [Subscriber(cluster.lb.target, cluster.project, "chaos-%d" % i, drop=(0.3, 2.0),
                       max_s=45, use_query=(i % 2 == 1), seed=1000 + i) for i in range(10)]
    start_all(cluster, subs)
    wait_connected(subs)
    writers = [Writer(cluster.lb.target, cluster.project, "LB", 5000, pause=0.01, max_s=15.0),
               Writer(a.target, cluster.project, "A", 5000, pause=0.01, max_s=15.0),
               Writer(b.target, cluster.project, "B", 5000, pause=0.01, max_s=15.0)]
    start_all(cluster, writers)
    rows = finish(cluster, writers, subs, catch_up_s=15.0)
    drops = sum(1 for s in subs for x in s.sessions if x.how == "dropped")
    gaps = sorted(g for s in subs for g in s.reconnect_gaps)
    print("\n[d-chaos] %d drops/resumes; resume latency p50 %.3f s p99 %.3f s"
          % (drops, gaps[len(gaps) // 2] if gaps else 0, gaps[int(len(gaps) * 0.99)] if gaps else 0))
    assert drops >= 50, "too few disconnects to mean anything: %d" % drops
    summary = verify(cluster, rows, subs, writers, "d-chaos")
    assert summary["write_errors"] == 0, [w.errors[:5] for w in writers]


# ------------------------------------------------------------------------------------------------
# e. commit-order adversary (D1b-lite)
# ------------------------------------------------------------------------------------------------
class LateCommitter(threading.Thread):
    """A separate PostgreSQL session that inserts an event_outbox row (allocating its id early),
    holds the transaction open for hold_s, then commits: the row becomes visible to the sequencer
    after rows with higher ids that committed meanwhile."""

    def __init__(self, cluster, tag, n, hold_s=1.0, gap_s=0.2):
        super().__init__(daemon=True)
        self.cluster = cluster
        self.tag = tag
        self.n = n
        self.hold_s = hold_s
        self.gap_s = gap_s
        self.committed = []  # (outbox id, payload id)
        self.errors = []
        self._halt = threading.Event()

    def stop(self):
        self._halt.set()

    def run(self):
        import psycopg2
        conn = psycopg2.connect(host=HOST, port=self.cluster.pg.port, user="postgres",
                                dbname=self.cluster.db, connect_timeout=5)
        try:
            for i in range(self.n):
                if self._halt.is_set():
                    break
                pid = "late_%s_%d_%s" % (self.tag, i, uuid.uuid4().hex[:6])
                payload = json.dumps({"id": pid, "subject_id": "adv", "text": "late %d" % i},
                                     separators=(",", ":"))
                with conn.cursor() as cur:  # psycopg2 opens a transaction implicitly
                    cur.execute("INSERT INTO event_outbox (project_id, subject_id, event_type, "
                                "payload) VALUES (%s, 'adv', 'memory.created', %s) RETURNING id",
                                (self.cluster.project, payload))
                    oid = cur.fetchone()[0]
                time.sleep(self.hold_s)
                conn.commit()
                self.committed.append((oid, pid))
                self._halt.wait(self.gap_s)
        except Exception as e:  # noqa: BLE001 - reported by the test
            self.errors.append(repr(e))
        finally:
            conn.close()


def test_cluster_commit_order_adversary(cluster):
    a, b, c = cluster.instances
    subs = subs_on([a.target, b.target, c.target], cluster.project, "direct", 2, max_s=40) + \
        subs_on([cluster.lb.target], cluster.project, "LB", 4, max_s=40)
    start_all(cluster, subs)
    wait_connected(subs)
    writers = [Writer(cluster.lb.target, cluster.project, "LB", 5000, pause=0.005, max_s=7.0),
               Writer(a.target, cluster.project, "A", 5000, pause=0.005, max_s=7.0),
               Writer(b.target, cluster.project, "B", 5000, pause=0.005, max_s=7.0),
               Writer(c.target, cluster.project, "C", 5000, pause=0.005, max_s=7.0)]
    late = [LateCommitter(cluster, "x", 5, hold_s=1.0, gap_s=0.15),
            LateCommitter(cluster, "y", 4, hold_s=1.0, gap_s=0.4)]
    start_all(cluster, writers)
    start_all(cluster, late)
    for t in late:
        t.join(timeout=20)
        assert not t.is_alive() and not t.errors, t.errors
    rows = finish(cluster, writers, subs)
    late_ids = [pid for t in late for _, pid in t.committed]
    assert len(late_ids) == 9
    seq_of = {pid: s for s, _, pid in rows}
    assert all(pid in seq_of for pid in late_ids), "a late-committed outbox row never sequenced"
    # did the adversary bite? events whose transaction started after a late row's transaction
    # (created_at is the writing transaction's now()) but that were sequenced before it
    overtaken = cluster.sql(
        "SELECT count(*) FROM events l JOIN events e ON e.project_id = l.project_id "
        "AND e.created_at > l.created_at AND e.seq < l.seq "
        "WHERE l.project_id = %s AND l.payload LIKE '{\"id\":\"late\\_%%'", (cluster.project,))[0][0]
    print("\n[e-adversary] %d late commits (1 s each); %d (late, overtaking) event pairs"
          % (len(late_ids), overtaken))
    assert overtaken > 0, "no event overtook a late commit: the adversary did not bite"
    summary = verify(cluster, rows, subs, writers, "e-adversary")
    for s in subs:
        got = set(s.payload_ids)
        assert all(pid in got for pid in late_ids), "%s missed a late event" % s.name
    assert summary["write_errors"] == 0, [w.errors[:5] for w in writers]
