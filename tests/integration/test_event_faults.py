"""Event-stream fault tests (issue #4 "Tests"; RELIABILITY.md F1, F2, F4, F6, D1, D1b, L3, B14).

Every scenario runs real processes (PostgreSQL, Redis, 1-3 engramd instances, HAProxy from
ops/haproxy/haproxy.cfg where named) and checks every SSE subscriber with the sequence-checking
client in sseclient.py: each client records the id of every event it receives, reconnects with
Last-Event-ID (or ?last_event_id=) when its stream ends, and is then compared with the project's
`events` table and the writers' ledger of acknowledged (201) writes:

    lost = 0, duplicated = 0, out of order = 0   (per client; printed and asserted)

plus: no foreign or wrong-payload events, no `reset`, one epoch, every acknowledged write in the
log and delivered. Subscribers use ?include=claims, so they must see every seq of the log after
their start position (the log is gapless).

Engram runs with its defaults (catch-up poll 1 s, retry 3 s, pending cap 256 KiB) unless a test
says otherwise; clients cap the server's `retry:` at 1 s to keep the run short. Loads are bounded
(a few hundred writes per scenario, 6-12 subscribers), every wait is bounded, and timing asserts
are generous (2 shared cores); measured values are printed (run with -s to see them).

Run (-s shows the numbers):
    ENGRAMD=$PWD/build/engramd /usr/bin/python3 -m pytest -q -s \
        tests/integration/test_event_faults.py
"""
import json
import os
import signal
import subprocess
import threading
import time
import uuid

import pytest

from conftest import HOST, PG_BIN
from rawhttp import ConnClosed, one_request
from sseclient import (SeqClient, Target, Writer, assert_clean, delivery_latency, log_rows,
                       percentile, set_goals)
from test_cluster import HAPROXY, Cluster, HAProxy

CONNECT_S = 10.0
CATCH_UP_S = 20.0


# ------------------------------------------------------------------------------------------------
# The rig: one database, N instances, optional HAProxy and Redis
# ------------------------------------------------------------------------------------------------
class Rig:
    def __init__(self, pg, engram, workdir, n=2, env=None, lb=False, cluster=None):
        self.pg = cluster or pg
        self.db = self.pg.create_database()
        self.instances = []
        for i in range(n):
            srv = engram(env=env, db=self.db, migrate=(i == 0), cluster=self.pg)
            srv.name = "engram%d" % (i + 1)
            srv.target = Target(srv.host, srv.port, srv.name)
            self.instances.append(srv)
        self.lb = None
        if lb:
            rundir = workdir / ("haproxy-%s" % uuid.uuid4().hex[:8])
            rundir.mkdir()
            self.lb = HAProxy(rundir, self.instances).start()
        self.project = "proj_faults_%s" % uuid.uuid4().hex[:10]
        self.threads = []

    # SQL --------------------------------------------------------------------------------------
    def sql(self, query, params=None):
        return self.pg.query(self.db, query, params)

    def rows(self):
        return log_rows(self.pg, self.db, self.project)

    def epoch(self):
        r = self.sql("SELECT epoch FROM projects WHERE project_id = %s", (self.project,))
        return r[0][0] if r else None

    def outbox_empty(self, timeout=15.0):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                if self.sql("SELECT count(*) FROM event_outbox")[0][0] == 0:
                    return True
            except Exception:  # noqa: BLE001 - PostgreSQL may still be coming back
                pass
            time.sleep(0.05)
        return False

    # instances --------------------------------------------------------------------------------
    # The same instance queries as test_cluster's Cluster (they only use self.instances).
    metrics = Cluster.metrics
    leaders = Cluster.leaders

    def wait_one_leader(self, among=None, timeout=8.0):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            ls = self.leaders(among)
            if len(ls) == 1:
                return ls[0]
            time.sleep(0.05)
        raise AssertionError("no single sequencer leader within %ss" % timeout)

    def start(self, threads):
        for t in threads:
            self.threads.append(t)
            t.start()

    def close(self):
        for t in self.threads:
            t.stop()
        for t in self.threads:
            t.join(timeout=5)
        if self.lb is not None:
            self.lb.stop()


@pytest.fixture
def rig(pg, engram, workdir, request):
    """rig(n=2, env=None, lb=False, cluster=None) -> Rig; everything stopped at teardown."""
    made = []

    def make(n=2, env=None, lb=False, cluster=None):
        if lb and not os.access(HAPROXY, os.X_OK):
            pytest.fail("haproxy not installed at %s" % HAPROXY)
        r = Rig(pg, engram, workdir, n=n, env=env, lb=lb, cluster=cluster)
        made.append(r)
        return r

    yield make
    for r in made:
        r.close()
        if r.lb is not None:
            request.node.add_report_section("teardown", "haproxy log (tail)", r.lb.log_tail(30))


# ------------------------------------------------------------------------------------------------
# Common flow
# ------------------------------------------------------------------------------------------------
def wait_connected(clients, timeout=CONNECT_S):
    deadline = time.monotonic() + timeout
    for c in clients:
        assert c.connected.wait(max(deadline - time.monotonic(), 0.01)), \
            "%s: no connected frame within %ss (errors %r)" % (c.label, timeout, c.errors[:5])


def finish(rig, writers, clients, catch_up_s=CATCH_UP_S, writer_s=60.0):
    """Writers done -> outbox drained -> every client reaches the last event it wants."""
    deadline = time.monotonic() + writer_s
    for w in writers:
        w.join(timeout=max(deadline - time.monotonic(), 0.1))
        assert not w.is_alive(), "writer %s did not finish" % w.tag
    assert rig.outbox_empty(), "event_outbox not drained within 15 s (no sequencer leader?)"
    rows = rig.rows()
    set_goals(clients, rows)
    deadline = time.monotonic() + catch_up_s
    for c in clients:
        c.join(timeout=max(deadline - time.monotonic(), 0.1))
    for c in clients:
        c.stop()
    for c in clients:
        c.join(timeout=5)
    return rows


def acked(writers):
    return [i for w in writers for i in w.acked_ids]


def write_stats(writers):
    st = {}
    for w in writers:
        for k, v in w.statuses.items():
            st[str(k)] = st.get(str(k), 0) + v
    return {"write_statuses": st, "write_errors": sum(len(w.errors) for w in writers)}


def clients_on(target, project, prefix, n, **kw):
    return [SeqClient(target, project, "%s-%d" % (prefix, i), seed="%s-%d" % (prefix, i), **kw)
            for i in range(n)]


def lat_extra(clients, writers):
    p50, p99, mx, n = delivery_latency(clients, writers)
    return {"latency_p50_s": round(p50, 3) if p50 is not None else None,
            "latency_p99_s": round(p99, 3) if p99 is not None else None,
            "latency_max_s": round(mx, 3) if mx is not None else None}


def _sanitized(srv):
    """True when engramd runs with AddressSanitizer (its RSS then includes ASan's own memory)."""
    try:
        with open("/proc/%d/maps" % srv.pid) as f:
            return "libasan" in f.read()
    except OSError:
        return False


def ready_status(srv, timeout=1.0):
    try:
        return one_request(srv.host, srv.port, "GET", "/health/ready", timeout=timeout).status
    except (OSError, ConnClosed):
        return None


# ------------------------------------------------------------------------------------------------
# Cross-instance: subscribe on A, write on B and through HAProxy
# ------------------------------------------------------------------------------------------------
def test_cross_instance_in_order_once(rig):
    r = rig(n=3, lb=True)
    a, b, _ = r.instances
    clients = clients_on(a.target, r.project, "onA", 4, max_s=60) + \
        clients_on(r.lb.target, r.project, "viaLB", 4, max_s=60)
    r.start(clients)
    wait_connected(clients)
    writers = [Writer(b.target, r.project, "B%d" % i, 100, pause=0.005) for i in range(2)] + \
        [Writer(r.lb.target, r.project, "LB%d" % i, 100, pause=0.005) for i in range(2)]
    r.start(writers)
    rows = finish(r, writers, clients)
    extra = dict(write_stats(writers), **lat_extra(clients, writers))
    s = assert_clean("cross-instance", clients, rows, acked(writers), r.epoch(), extra=extra)
    assert s["acked_writes"] == 400 and extra["write_errors"] == 0, extra
    for c in clients:
        assert len(c.sessions) == 1, "%s reconnected without a fault: %r" % (
            c.label, [x.how for x in c.sessions])
    # events sequenced on another instance reach A within its catch-up poll (1 s) + slack
    assert extra["latency_p99_s"] < 5.0, extra


# ------------------------------------------------------------------------------------------------
# F1 / F2: Redis SIGKILL (then restarted) / SIGSTOP (then SIGCONT) during writes
# ------------------------------------------------------------------------------------------------
def _restart_redis(srv):
    """A new redis-server on the same port and dir (the fixture kills srv.proc at teardown)."""
    srv.proc = subprocess.Popen(
        ["redis-server", "--port", str(srv.port), "--bind", HOST, "--save", "",
         "--appendonly", "no", "--dir", str(srv.dir), "--logfile", str(srv.logfile)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        if srv.ping():
            return
        time.sleep(0.05)
    raise AssertionError("redis-server did not restart on port %d" % srv.port)


@pytest.mark.parametrize("fault", ["F1-sigkill", "F2-sigstop"])
def test_redis_fault_during_writes(rig, redis_factory, fault):
    redis = redis_factory()
    r = rig(n=2, env={"REDIS_URL": redis.url})
    # SIGSTOP: past engram's PING deadline (ping every 1 s, answer due within 4 s: 4-6 s)
    outage_s = 2.0 if fault == "F1-sigkill" else 7.0
    a, b = r.instances
    for srv in (a, b):
        deadline = time.monotonic() + 5
        while r.metrics(srv).get("redis_up") != 1 and time.monotonic() < deadline:
            time.sleep(0.1)
        assert r.metrics(srv).get("redis_up") == 1, "redis_up not 1 before the fault"
    clients = clients_on(a.target, r.project, "onA", 3, max_s=60) + \
        clients_on(b.target, r.project, "onB", 3, max_s=60)
    r.start(clients)
    wait_connected(clients)
    writers = [Writer(a.target, r.project, "A", 2000, pause=0.01, max_s=outage_s + 3),
               Writer(b.target, r.project, "B", 2000, pause=0.01, max_s=outage_s + 3)]
    r.start(writers)
    time.sleep(1.0)
    t0 = time.monotonic()
    ready = []
    detect = {}
    if fault == "F1-sigkill":
        redis.proc.kill()
        redis.proc.wait(timeout=5)
    else:
        os.kill(redis.proc.pid, signal.SIGSTOP)
    try:
        while time.monotonic() - t0 < outage_s:
            for srv in (a, b):
                t1 = time.monotonic()
                st = ready_status(srv)
                ready.append((st, time.monotonic() - t1))
                if srv.name not in detect and r.metrics(srv).get("redis_up") == 0:
                    detect[srv.name] = round(time.monotonic() - t0, 2)
            time.sleep(0.2)
    finally:
        if fault == "F1-sigkill":
            _restart_redis(redis)
        else:
            os.kill(redis.proc.pid, signal.SIGCONT)
    t_back = time.monotonic()
    recovered = {}
    while time.monotonic() - t_back < 10 and len(recovered) < 2:
        for srv in (a, b):
            if srv.name not in recovered and r.metrics(srv).get("redis_up") == 1:
                recovered[srv.name] = round(time.monotonic() - t_back, 2)
        time.sleep(0.1)
    rows = finish(r, writers, clients)
    extra = dict(write_stats(writers), **lat_extra(clients, writers))
    extra.update({"redis_down_detected_s": detect, "redis_up_again_s": recovered,
                  "ready_probes": len(ready),
                  "ready_probe_max_s": round(max(t for _, t in ready), 3)})
    assert_clean(fault, clients, rows, acked(writers), r.epoch(), extra=extra)
    assert extra["write_errors"] == 0, [w.errors[:3] for w in writers]
    # Redis never affects readiness, and a hung Redis never blocks the loop.
    assert all(st == 200 for st, _ in ready), ready
    assert extra["ready_probe_max_s"] < 1.0, extra
    assert len(recovered) == 2, "redis_up did not return to 1 within 10 s: %r" % recovered
    # a dead Redis is noticed at once, a hung one by engram's PING deadline
    assert len(detect) == 2, "redis_up did not drop to 0 during the outage: %r" % detect


# ------------------------------------------------------------------------------------------------
# F4: PostgreSQL stopped (immediate: a crash) and restarted during writes
# ------------------------------------------------------------------------------------------------
def test_f4_postgres_restart_during_writes(rig, private_pg):
    """PostgreSQL crashes (pg_ctl stop -m immediate) for ~2 s during writes, then restarts.
    Two kinds of subscribers: `steady` ones keep their streams open through the outage; `moving`
    ones drop every 0.2-0.6 s and resume with Last-Event-ID on the other instance (what clients
    of a drained or failed instance do), so some resume while PostgreSQL is down. The steady
    clients are checked first."""
    r = rig(n=2, cluster=private_pg)
    a, b = r.instances
    steady = clients_on(a.target, r.project, "steadyA", 3, max_s=60) + \
        clients_on(b.target, r.project, "steadyB", 3, max_s=60)
    moving = [SeqClient(a.target, r.project, "moving-%d" % i, drop=(0.2, 0.6), max_s=60,
                        rotate=[a.target, b.target], seed=300 + i) for i in range(6)]
    clients = steady + moving
    r.start(clients)
    wait_connected(clients)
    writers = [Writer(a.target, r.project, "A", 3000, pause=0.01, max_s=9.0),
               Writer(b.target, r.project, "B", 3000, pause=0.01, max_s=9.0)]
    r.start(writers)
    time.sleep(1.5)
    acked_before = len(acked(writers))
    t_stop = time.monotonic()
    private_pg.stop("immediate")
    time.sleep(2.0)
    private_pg.start()
    t_up = time.monotonic()
    for srv in (a, b):
        deadline = time.monotonic() + 15
        while ready_status(srv) != 200 and time.monotonic() < deadline:
            time.sleep(0.1)
        assert ready_status(srv) == 200, \
            "%s not ready within 15 s of PostgreSQL's restart" % srv.name
    ready_again_s = time.monotonic() - t_up
    rows = finish(r, writers, clients)
    ack_times = sorted(t for w in writers for _, t in w.acked)
    first_after = next((t for t in ack_times if t > t_up), None)
    extra = dict(write_stats(writers), **lat_extra(steady, writers))
    extra.update({"acked_before_stop": acked_before,
                  "ready_again_s": round(ready_again_s, 2),
                  "first_ack_after_restart_s": round(first_after - t_up, 2)
                  if first_after else None,
                  "outage_s": round(t_up - t_stop, 2),
                  "moving_resumes": sum(len(c.sessions) - 1 for c in moving)})
    assert len(acked(writers)) > acked_before, "no write acknowledged after the restart"
    # failures during the outage are 503s or connection errors, never 500 or a hang
    for w in writers:
        for e in w.errors:
            assert e[1] in (503, "exc"), e
    assert first_after is not None and first_after - t_up < 10.0, extra
    assert_clean("F4-pg-restart-steady", steady, rows, acked(writers), r.epoch(), extra=extra)
    assert_clean("F4-pg-restart-moving", moving, rows, acked(writers), r.epoch(), extra=extra)


def test_f4_resume_on_lagging_instance_while_postgres_down(rig, private_pg):
    """The deterministic form of what the moving clients above can hit. Instance B's topic for
    the project lags the log (it is not the sequencer leader and its catch-up poll is set to
    10 min here; by default it lags by up to 1 s). PostgreSQL goes down, and a client resumes on
    B with the id it last got from the leader A, which is valid but ahead of B's topic. B must
    not answer with `reset` (the position exists); it may refuse (503) or hold the stream until
    it can read the log, and once PostgreSQL is back the client must get what follows its id,
    once."""
    r = rig(n=2, cluster=private_pg, env={"ENGRAM_SSE_CATCHUP_MS": "600000"})
    leader = r.wait_one_leader()
    lagging = [s for s in r.instances if s is not leader][0]
    on_b = SeqClient(lagging.target, r.project, "onB", max_s=30)  # B's topic exists from here
    on_a = SeqClient(leader.target, r.project, "onA", max_s=30)
    r.start([on_b, on_a])
    wait_connected([on_b, on_a])
    w = Writer(leader.target, r.project, "A", 3)
    r.start([w])
    w.join(timeout=10)
    deadline = time.monotonic() + 5
    while len(on_a.events) < 3 and time.monotonic() < deadline:
        time.sleep(0.02)
    assert len(on_a.events) == 3, "the leader's own subscriber did not get 3 events"
    position = on_a.last_id
    private_pg.stop("immediate")
    try:
        probe = Probe(lagging, r.project, headers=[("Last-Event-ID", position)], n_events=2,
                      timeout=4.0)
        frames = probe.run()
    finally:
        private_pg.start()
    print("\n[F4-resume-lagging] position %s; B answered %s %r"
          % (position, probe.status, [(e, i) for e, i, _ in frames]))
    assert not any(e == "reset" for e, _, _ in frames), \
        "a valid position got reset while PostgreSQL was down: %r" % frames
    # and the same resume works once PostgreSQL is back
    deadline = time.monotonic() + 15
    while ready_status(lagging) != 200 and time.monotonic() < deadline:
        time.sleep(0.1)
    again = Probe(lagging, r.project, headers=[("Last-Event-ID", position)], n_events=1,
                  timeout=4.0).run()
    assert again and again[0][:2] == ("connected", position), again


# ------------------------------------------------------------------------------------------------
# F6: one instance SIGTERM-drained, another SIGKILLed, streams open on both; clients come back
# through HAProxy with Last-Event-ID
# ------------------------------------------------------------------------------------------------
def test_f6_drain_and_kill_with_open_streams(rig):
    r = rig(n=3, lb=True)
    a, b, c = r.instances
    lb = r.lb.target
    clients = clients_on(a.target, r.project, "onA", 4, max_s=60, reconnect_target=lb) + \
        clients_on(b.target, r.project, "onB", 4, max_s=60, reconnect_target=lb) + \
        clients_on(lb, r.project, "viaLB", 4, max_s=60, resume_via="alternate")
    r.start(clients)
    wait_connected(clients)
    writers = [Writer(lb, r.project, "LB%d" % i, 3000, pause=0.01, max_s=8.0) for i in range(2)] + \
        [Writer(c.target, r.project, "C", 3000, pause=0.01, max_s=8.0)]
    r.start(writers)
    time.sleep(1.5)
    t_term = time.monotonic()
    a.terminate()
    time.sleep(1.0)
    t_kill = time.monotonic()
    b.kill()
    rc = a.wait_exit(timeout=15)
    exit_s = time.monotonic() - t_term
    rows = finish(r, writers, clients)
    on_a = [s for cl in clients if cl.label.startswith("onA") for s in cl.sessions[:1]]
    on_b = [s for cl in clients if cl.label.startswith("onB") for s in cl.sessions[:1]]
    gaps = sorted(g for cl in clients for g in cl.reconnect_gaps)
    extra = dict(write_stats(writers), **lat_extra(clients, writers))
    extra.update({"drain_exit_code": rc, "drain_exit_s": round(exit_s, 2),
                  "drained_with_retry": sum(1 for s in on_a
                                            if s.how == "clean" and len(s.retries) >= 2),
                  "drain_retry_ms": sorted(s.retries[-1] for s in on_a if len(s.retries) >= 2),
                  "killed_streams_ended": sum(1 for s in on_b if s.how in ("eof", "rst")),
                  "reconnect_gap_p50_s": round(percentile(gaps, 0.5), 3) if gaps else None,
                  "reconnect_gap_max_s": round(gaps[-1], 3) if gaps else None})
    # which hop answered the failed writes (HAProxy log: backend/server, status, termination)
    failed = [ln for ln in r.lb.log_text().splitlines()
              if "be_engram_api" in ln and any(" %d " % st in ln for st in (500, 502, 503, 504))]
    print("\n[F6-drain+kill] writer errors %r\n  haproxy: %s"
          % ([e for w in writers for e in w.errors][:5], "\n  haproxy: ".join(failed[:5])))
    assert_clean("F6-drain+kill", clients, rows, acked(writers), r.epoch(), extra=extra)
    assert rc == 0, "drained instance exited %s:\n%s" % (rc, a.log_tail())
    # every stream on A ended cleanly after SIGTERM with a retry: hint; B's streams just died
    assert all(s.how == "clean" and s.t_end >= t_term for s in on_a), \
        [(s.how, s.retries) for s in on_a]
    assert extra["drained_with_retry"] == 4, extra
    assert all(s.how in ("eof", "rst") and s.t_end >= t_kill for s in on_b), \
        [s.how for s in on_b]
    # writes straight to the surviving instance never failed
    assert not writers[2].errors, writers[2].errors[:5]


# ------------------------------------------------------------------------------------------------
# Sequencer leader SIGKILL during writes: a standby takes over; nothing lost or reordered
# ------------------------------------------------------------------------------------------------
def _takeover_after(r, t_wall, window_s=5.0):
    """Seconds from t_wall until the first batch sequenced by the next leader.

    events.sequenced_at is the sequencer transaction's start (same host clock as ours). A batch
    the old leader sent just before it died can still start in PostgreSQL a few ms after t_wall,
    so "the first batch after t_wall" alone can under-measure: the takeover is the end of the
    longest pause between batches from just before t_wall to window_s after it (writes run
    continuously, so batches are otherwise a few ms apart). Returns (takeover_s, pause_s)."""
    ts = [row[0] for row in r.sql(
        "SELECT DISTINCT extract(epoch FROM sequenced_at)::float8 AS t FROM events "
        "WHERE project_id = %s AND sequenced_at BETWEEN to_timestamp(%s) AND to_timestamp(%s) "
        "ORDER BY t", (r.project, t_wall - 0.5, t_wall + window_s))]
    after = [t for t in ts if t > t_wall]
    if not after:
        return None, None
    best = (after[0] - t_wall, after[0] - max([t for t in ts if t <= t_wall] or [t_wall]))
    for x, y in zip(ts, ts[1:]):
        if y > t_wall and y - x > best[1]:
            best = (y - t_wall, y - x)
    return best


def test_sequencer_leader_sigkill_takeover(rig):
    """SIGKILL of the sequencer leader during writes (to the other two instances); 2 s later the
    new leader's sequencer session is terminated in PostgreSQL (pg_terminate_backend: the leader
    loses its database session without dying). Each time a standby (or the same instance, once
    reconnected) takes over; nothing is lost, duplicated or reordered."""
    r = rig(n=3, lb=True)
    leader = r.wait_one_leader()
    others = [s for s in r.instances if s is not leader]
    lb = r.lb.target
    clients = clients_on(others[0].target, r.project, "on-%s" % others[0].name, 3, max_s=60) + \
        clients_on(others[1].target, r.project, "on-%s" % others[1].name, 3, max_s=60) + \
        clients_on(leader.target, r.project, "on-leader", 2, max_s=60, reconnect_target=lb) + \
        clients_on(lb, r.project, "viaLB", 2, max_s=60)
    r.start(clients)
    wait_connected(clients)
    writers = [Writer(o.target, r.project, "%s-%d" % (o.name, i), 3000, pause=0.005, max_s=7.5)
               for o in others for i in range(2)]
    r.start(writers)
    time.sleep(2.0)
    t_kill_wall = time.time()
    t_kill = time.monotonic()
    leader.kill()  # SIGKILL
    new_leader = None
    while time.monotonic() - t_kill < 10.0:
        ls = r.leaders(others)
        if ls:
            new_leader = ls[0]
            break
        time.sleep(0.02)
    metric_takeover_s = time.monotonic() - t_kill
    assert new_leader is not None, "no new sequencer leader within 10 s of SIGKILL"
    time.sleep(max(t_kill + 2.0 - time.monotonic(), 0))
    holder = r.sql("SELECT pid FROM pg_locks WHERE locktype = 'advisory' AND classid = 0 "
                   "AND objid = 1701734770 AND granted")
    assert len(holder) == 1, "advisory lock holders: %r" % holder
    t_term_wall = time.time()
    assert r.sql("SELECT pg_terminate_backend(%s)", (holder[0][0],))[0][0]
    rows = finish(r, writers, clients)
    takeover_s, pause_kill = _takeover_after(r, t_kill_wall, window_s=t_term_wall - t_kill_wall)
    retake_s, pause_term = _takeover_after(r, t_term_wall, window_s=2.0)
    assert takeover_s is not None, "nothing sequenced after the kill"
    assert retake_s is not None, "nothing sequenced after the leader lost its session"
    # the longest silence a surviving direct client saw around the kill
    gap = 0.0
    for cl in clients[:6]:
        ts = [e.t for e in cl.events]
        around = [y - x for x, y in zip(ts, ts[1:]) if y >= t_kill and x <= t_kill + 5]
        gap = max([gap] + around)
    leaders_after = r.leaders(others)
    extra = dict(write_stats(writers), **lat_extra(clients, writers))
    extra.update({"killed": leader.name, "new_leader": new_leader.name,
                  "takeover_s": round(takeover_s, 3),
                  "leader_metric_after_s": round(metric_takeover_s, 3),
                  "sequencing_pause_s": round(pause_kill, 3),
                  "session_loss_takeover_s": round(retake_s, 3),
                  "session_loss_pause_s": round(pause_term, 3),
                  "leader_at_end": [s.name for s in leaders_after],
                  "max_delivery_gap_s": round(gap, 3)})
    assert_clean("leader-sigkill", clients, rows, acked(writers), r.epoch(), extra=extra)
    assert len(leaders_after) == 1, "not exactly one leader at the end: %r" % leaders_after
    assert extra["write_errors"] == 0, [w.errors[:3] for w in writers]
    # issue #4 target: 1 s. Generous here (2 shared cores): 3 s.
    assert takeover_s <= 3.0, extra
    assert retake_s <= 3.0, extra


# ------------------------------------------------------------------------------------------------
# D1: random client disconnects resuming with Last-Event-ID (header or query)
# ------------------------------------------------------------------------------------------------
def test_d1_random_disconnects_resume(rig):
    """Six of eight clients drop every 0.15-0.6 s (half of the drops RST) and resume at once
    with Last-Event-ID, alternating header and ?last_event_id=. One writer makes memories the
    extractor turns into claims (claim.created, slot.updated, claim.retracted), so the log mixes
    event types: the clients without ?include=claims must resume across events they filter
    out."""
    r = rig(n=2, lb=True)
    a, b = r.instances
    lb = r.lb.target
    chaos = [SeqClient(lb, r.project, "chaosLB-%d" % i, drop=(0.15, 0.6), max_s=60,
                       resume_via="alternate", seed=100 + i, include_claims=(i % 2 == 0))
             for i in range(4)] + \
        [SeqClient(a.target, r.project, "chaosA-%d" % i, drop=(0.15, 0.6), max_s=60,
                   resume_via="header" if i else "query", seed=200 + i,
                   include_claims=(i == 0)) for i in range(2)]
    steady = clients_on(b.target, r.project, "steadyB", 2, max_s=60)
    clients = chaos + steady
    r.start(clients)
    wait_connected(clients)
    writers = [Writer(lb, r.project, "LB", 150, pause=0.02, max_s=10.0),
               Writer(a.target, r.project, "A", 150, pause=0.02, max_s=10.0),
               Writer(b.target, r.project, "B", 100, pause=0.03, max_s=10.0, claims=True)]
    r.start(writers)
    rows = finish(r, writers, clients)
    drops = sum(1 for cl in chaos for s in cl.sessions if s.how == "dropped")
    gaps = sorted(g for cl in chaos for g in cl.reconnect_gaps)
    extra = dict(write_stats(writers), **lat_extra(steady, writers))
    kinds = {}
    for _, t, _, _ in rows:
        kinds[t] = kinds.get(t, 0) + 1
    extra.update({"drops": drops, "event_types": kinds,
                  "resume_p50_s": round(percentile(gaps, 0.5), 3) if gaps else None,
                  "resume_p99_s": round(percentile(gaps, 0.99), 3) if gaps else None})
    assert_clean("D1-random-disconnects", clients, rows, acked(writers), r.epoch(), extra=extra)
    assert drops >= 20, "too few disconnects to mean anything: %d" % drops
    assert extra["write_errors"] == 0, [w.errors[:3] for w in writers]


# ------------------------------------------------------------------------------------------------
# D1b: the commit-order adversary
# ------------------------------------------------------------------------------------------------
def _psql_async(pg, db, script, appname, timeout=30):
    """Runs an SQL script through psql (statement by statement, from stdin) in a thread.
    Returns (Popen, thread, result dict with "out")."""
    env = dict(os.environ, PGAPPNAME=appname, PGCONNECT_TIMEOUT="5")
    p = subprocess.Popen([str(PG_BIN / "psql"), "-X", "-q", "-v", "ON_ERROR_STOP=1",
                          "-h", HOST, "-p", str(pg.port), "-U", "postgres", "-d", db],
                         stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                         stderr=subprocess.STDOUT, env=env)
    res = {}

    def run():
        try:
            res["out"], _ = p.communicate(script.encode(), timeout=timeout)
        except subprocess.TimeoutExpired:
            p.kill()
            res["out"], _ = p.communicate()

    th = threading.Thread(target=run, daemon=True)
    th.start()
    return p, th, res


def _adversary_sql(project, pid, hold_s):
    payload = json.dumps({"id": pid, "subject_id": "adv", "text": "adversary " + pid},
                         separators=(",", ":"))
    # The outbox row and its naive-log twin share the outbox's bigserial id. hold_s > 0: the
    # transaction stays open (started first, commits last).
    return ("BEGIN;\n"
            "WITH o AS (INSERT INTO event_outbox (project_id, subject_id, event_type, payload) "
            "VALUES ('%s', 'adv', 'memory.created', '%s') RETURNING id)\n"
            "INSERT INTO naive_log (outbox_id, payload_id) SELECT id, '%s' FROM o;\n"
            "%s"
            "COMMIT;\n" % (project, payload, pid,
                           "SELECT pg_sleep(%s);\n" % hold_s if hold_s else ""))


class NaivePoller(threading.Thread):
    """The negative control: a reader with a naive cursor, `WHERE outbox_id > last ORDER BY
    outbox_id`, polled every 20 ms. It skips forever a row whose transaction allocated its id
    early and committed late."""

    def __init__(self, pg, db):
        super().__init__(daemon=True)
        self.pg = pg
        self.db = db
        self.cursor = 0
        self.seen = []
        self.errors = []
        self._halt = threading.Event()

    def stop(self):
        self._halt.set()

    def poll(self, cur):
        cur.execute("SELECT outbox_id, payload_id FROM naive_log WHERE outbox_id > %s "
                    "ORDER BY outbox_id", (self.cursor,))
        for oid, pid in cur.fetchall():
            self.seen.append(pid)
            self.cursor = oid

    def run(self):
        conn = self.pg.connect(self.db)
        try:
            with conn.cursor() as cur:
                deadline = time.monotonic() + 60
                while not self._halt.is_set() and time.monotonic() < deadline:
                    self.poll(cur)
                    self._halt.wait(0.02)
                self.poll(cur)
        except Exception as e:  # noqa: BLE001 - reported by the test
            self.errors.append(repr(e))
        finally:
            conn.close()


def test_d1b_commit_order_adversary(rig):
    r = rig(n=2)
    a, b = r.instances
    r.sql("CREATE TABLE naive_log (outbox_id bigint PRIMARY KEY, payload_id text NOT NULL)")
    clients = clients_on(a.target, r.project, "onA", 3, max_s=60) + \
        clients_on(b.target, r.project, "onB", 3, max_s=60)
    r.start(clients)
    wait_connected(clients)
    naive = NaivePoller(r.pg, r.db)
    r.start([naive])
    writers = [Writer(a.target, r.project, "A", 2000, pause=0.01, max_s=8.0),
               Writer(b.target, r.project, "B", 2000, pause=0.01, max_s=8.0)]
    r.start(writers)
    rounds = []
    for k in range(3):
        late, early = "adv_late_%d_%s" % (k, uuid.uuid4().hex[:6]), \
            "adv_early_%d_%s" % (k, uuid.uuid4().hex[:6])
        app = "d1b-late-%d-%s" % (k, uuid.uuid4().hex[:6])
        p1, th1, res1 = _psql_async(r.pg, r.db, _adversary_sql(r.project, late, 1.5), app)
        # wait until T1 holds its outbox id (it is in pg_sleep)
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            if r.sql("SELECT count(*) FROM pg_stat_activity WHERE application_name = %s "
                     "AND query LIKE %s", (app, "%pg_sleep%"))[0][0]:
                break
            time.sleep(0.02)
        else:
            p1.kill()
            th1.join(timeout=5)
            pytest.fail("T1 never reached pg_sleep: %r" % res1.get("out"))
        p2, th2, res2 = _psql_async(r.pg, r.db, _adversary_sql(r.project, early, 0),
                                    app + "-early")
        th2.join(timeout=25)
        assert p2.returncode == 0, res2.get("out")
        t2_done = time.monotonic()
        th1.join(timeout=25)
        assert p1.returncode == 0, res1.get("out")
        rounds.append((late, early, time.monotonic() - t2_done))
        time.sleep(0.3)
    rows = finish(r, writers, clients)
    naive.stop()
    naive.join(timeout=5)
    assert not naive.errors, naive.errors
    ids = dict(r.sql("SELECT payload_id, outbox_id FROM naive_log"))
    seq_of = {pid: s for s, t, _, pid in rows}
    naive_seen = set(naive.seen)
    naive_missed = [late for late, _, _ in rounds if late not in naive_seen]
    overtaken = 0
    for late, early, _ in rounds:
        # the adversary's shape: T1 (late) got the lower outbox id, committed last ...
        assert ids[late] < ids[early], (late, early, ids)
        # ... so engram sequenced it after T2: seq order is sequencing order, not id order
        assert late in seq_of and early in seq_of, "an adversary row never reached the log"
        overtaken += seq_of[early] < seq_of[late]
    late_ids = [late for late, _, _ in rounds] + [early for _, early, _ in rounds]
    extra = dict(write_stats(writers))
    extra.update({"rounds": len(rounds), "naive_cursor_missed": len(naive_missed),
                  "engram_seq_overtaken": overtaken,
                  "late_commit_after_early_s": [round(x, 2) for _, _, x in rounds]})
    # The negative control bites: the naive id cursor skipped every late commit.
    assert len(naive_missed) == len(rounds), (naive_missed, rounds)
    assert overtaken == len(rounds), extra
    # engram's seq does not: every client got every late row, in log order, once.
    s = assert_clean("D1b-adversary", clients, rows, acked(writers) + late_ids, r.epoch(),
                     extra=extra)
    for cl in clients:
        got = {e.pid for e in cl.events}
        assert all(x in got for x in late_ids), "%s missed an adversary row" % cl.label
    assert s["lost"] == 0


# ------------------------------------------------------------------------------------------------
# L3: slow consumers
# ------------------------------------------------------------------------------------------------
def test_l3_slow_consumers(rig):
    """Three subscribers stop reading (SO_RCVBUF 4 KiB, no reads) while 2100 events of ~1.75 KB
    (~3.6 MB per subscriber) are written; five others read normally. The volume has to be that
    large: loopback TCP autotunes the server's send buffer to a few MB (measured here: ~2.7 MB
    per stream) before anything queues in engram.

    Today (src/sse/hub.c sub_write): a subscriber whose unsent bytes pass
    ENGRAM_SSE_MAX_PENDING_BYTES (256 KiB) is cut off; it reads what was sent, sees the end,
    and resumes with Last-Event-ID. Intended (issue #4, being built): it stops taking live
    events and catches up from PostgreSQL when its socket drains, and is closed only if it stays
    behind past a time limit. The test accepts both: it asserts lossless delivery to the slow
    clients across however many sessions they needed, that the fast ones were never cut or
    slowed, and that the server's RSS stayed bounded. What would change with the new behaviour:
    `slow_sessions` becomes 1 per slow client (no reconnect) if the pause (~5 s) is shorter than
    the limit, and sse_subscribers_dropped_total stays 0; neither is asserted.
    The fast clients and RSS are checked first, so a failure of the slow clients' resume (see
    test_l3_resume_backlog_larger_than_pending_cap) does not hide them."""
    r = rig(n=1)
    (srv,) = r.instances
    fast = clients_on(srv.target, r.project, "fast", 5, max_s=90)
    slow = clients_on(srv.target, r.project, "slow", 3, max_s=90, rcvbuf=4096)
    clients = fast + slow
    r.start(clients)
    wait_connected(clients)
    for c in slow:
        c.paused.set()
    rss0 = srv.rss_kib()
    writers = [Writer(srv.target, r.project, "W%d" % i, 700, text_len=1500) for i in range(3)]
    rss_max = [rss0]
    stop_sampling = threading.Event()

    def sample():
        while not stop_sampling.wait(0.1):
            try:
                rss_max[0] = max(rss_max[0], srv.rss_kib())
            except OSError:
                return

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    t0 = time.monotonic()
    r.start(writers)
    for w in writers:
        w.join(timeout=60)
    write_s = time.monotonic() - t0
    assert r.outbox_empty()
    rows = r.rows()
    set_goals(fast, rows)
    for c in fast:  # the fast clients take the tail; the slow ones are still not reading
        c.join(timeout=max(t0 + write_s + 10 - time.monotonic(), 0.1))
    fast_done_s = time.monotonic() - t0 - write_s
    dropped = r.metrics(srv).get("sse_subscribers_dropped_total", 0)
    for c in slow:
        c.paused.clear()
    for c in fast:
        c.stop()
    rows = finish(r, writers, clients, catch_up_s=12)
    stop_sampling.set()
    sampler.join(timeout=2)
    extra = dict(write_stats(writers), **lat_extra(fast, writers))
    extra.update({"write_s": round(write_s, 2), "fast_done_after_writes_s": round(fast_done_s, 2),
                  "rss_before_kib": rss0, "rss_max_kib": rss_max[0],
                  "dropped_while_paused": dropped,
                  "slow_sessions": [len(c.sessions) for c in slow],
                  "slow_events": [len(c.events) for c in slow],
                  "slow_kib_read": [c.bytes_read // 1024 for c in slow]})
    # 1. the fast clients: everything, in order, once, on their first connection, promptly
    assert_clean("L3-fast-clients", fast, rows, acked(writers), r.epoch(), extra=extra)
    for c in fast:
        assert len(c.sessions) == 1, (c.label, [s.how for s in c.sessions])
    assert extra["latency_p99_s"] < 3.0, extra  # generous: 2 shared cores
    # 2. bounded: unsent frames are capped per subscriber (today 256 KiB), not kept whole. A
    # sanity bound, not a tight one: the kernel's send buffers absorb most of the backlog, so
    # an unbounded queue would add only ~1 MB per slow client at this volume; measured growth
    # is ~1 MB in the plain build and ~35 MB under ASan (quarantine and shadow memory).
    limit_mib = 96 if _sanitized(srv) else 16
    assert rss_max[0] - rss0 < limit_mib * 1024, (limit_mib, extra)
    # 3. the slow clients: everything, in order, once, across their reconnects
    assert_clean("L3-slow-clients", slow, rows, acked(writers), r.epoch(), extra=extra)


def test_l3_resume_backlog_larger_than_pending_cap(rig):
    """A subscriber resumes (Last-Event-ID) 150 events of ~2.2 KB behind (~330 KB, more than the
    256 KiB pending cap): it must get all of them. This is exactly the state a slow consumer is
    in after the cap cut it off (L3: "the cut clients resume with zero loss")."""
    r = rig(n=1)
    (srv,) = r.instances
    first = SeqClient(srv.target, r.project, "first", max_s=10)
    r.start([first])
    wait_connected([first])
    first.stop()
    first.join(timeout=5)
    position = first.last_id
    w = Writer(srv.target, r.project, "W", 150, text_len=2000)
    r.start([w])
    w.join(timeout=60)
    assert r.outbox_empty()
    resumer = SeqClient(srv.target, r.project, "resumer", last_id=position, max_s=12,
                        retry_cap_s=0.3)
    rows = r.rows()
    set_goals([resumer], rows)
    r.start([resumer])
    resumer.join(timeout=15)
    resumer.stop()
    backlog = r.sql("SELECT sum(length(payload) + 50) FROM events WHERE project_id = %s",
                    (r.project,))[0][0]
    extra = {"backlog_kib": int(backlog) // 1024,
             "sessions": len(resumer.sessions),
             "session_ends": sorted({s.how for s in resumer.sessions}),
             "dropped_total": r.metrics(srv).get("sse_subscribers_dropped_total", 0)}
    assert_clean("L3-resume-big-backlog", [resumer], rows, w.acked_ids, r.epoch(), extra=extra)


# ------------------------------------------------------------------------------------------------
# B14: resume edge cases
# ------------------------------------------------------------------------------------------------
class Probe:
    """One short subscription (no reconnect) with the given raw headers and query: collects the
    event frames (event, id, data) until `n_events` of them or `timeout`."""

    def __init__(self, srv, project, headers=(), query="", n_events=3, timeout=4.0):
        self.c = SeqClient(srv.target, project, "probe", max_s=timeout, max_connects=1,
                           extra_headers=headers, extra_query=query, keep_frames=True)
        self.n_events = n_events
        self.timeout = timeout

    def start(self):
        self.deadline = time.monotonic() + self.timeout
        self.c.start()
        return self

    def collect(self):
        while time.monotonic() < self.deadline and len(self.c.frames) < self.n_events:
            time.sleep(0.02)
        self.c.stop()
        self.c.join(timeout=5)
        return self.frames

    def run(self):
        return self.start().collect()

    @property
    def frames(self):
        return list(self.c.frames)

    @property
    def status(self):
        return self.c.sessions[0].status if self.c.sessions else None


def _post(srv, project, text):
    r = srv.request("POST", "/api/v1/memories",
                    headers=[("x-project-id", project), ("Content-Type", "application/json")],
                    body=json.dumps({"subject_id": "b14", "text": text,
                                     "no_supersede": True}).encode())
    assert r.status == 201, r
    return r.json()["id"]


def _head(r):
    return r.sql("SELECT last_seq, epoch FROM projects WHERE project_id = %s", (r.project,))[0]


def _wait_seq(r, seq, timeout=5.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if _head(r)[0] >= seq:
            return
        time.sleep(0.02)
    raise AssertionError("log did not reach seq %d" % seq)


def test_b14_unusable_positions_get_reset(rig):
    r = rig(n=1)
    (srv,) = r.instances
    assert Probe(srv, r.project, n_events=1).run()[0][0] == "connected"  # creates the project
    for i in range(5):
        _post(srv, r.project, "b14 seed %d" % i)
    _wait_seq(r, 5)
    head, epoch = _head(r)
    other = "%s_other" % r.project
    assert Probe(srv, other, n_events=1).run()[0][0] == "connected"
    _post(srv, other, "other tenant marker")
    cases = [
        ("foreign epoch", [("Last-Event-ID", "%d:%d" % (epoch + 1, 2))], ""),
        ("epoch 0", [("Last-Event-ID", "0:2")], ""),
        ("ahead of the log", [("Last-Event-ID", "%d:%d" % (epoch, head + 1000))], ""),
        ("one ahead", [("Last-Event-ID", "%d:%d" % (epoch, head + 1))], ""),
        ("garbage", [("Last-Event-ID", "garbage")], ""),
        ("three parts", [("Last-Event-ID", "%d:1:2" % epoch)], ""),
        ("no seq", [("Last-Event-ID", "%d:" % epoch)], ""),
        ("no epoch", [("Last-Event-ID", ":3")], ""),
        ("negative seq", [("Last-Event-ID", "%d:-1" % epoch)], ""),
        ("overflow", [("Last-Event-ID", "%d:99999999999999999999999" % epoch)], ""),
        ("spaces", [("Last-Event-ID", "%d : 3" % epoch)], ""),
        ("10 KB", [("Last-Event-ID", "9" * 10240)], ""),
        ("query garbage", [], "last_event_id=zz%3Azz"),
        ("query foreign epoch", [], "last_event_id=%d%%3A2" % (epoch + 7)),
    ]
    # all at once (each waits up to 2 s for a third event that must not come)
    probes = [(name, Probe(srv, r.project, headers=headers, query=query, n_events=3,
                           timeout=2.0).start()) for name, headers, query in cases]
    results = []
    for name, p in probes:
        p.collect()
        results.append((name, p.status, p.frames[:3]))
    print("\n[B14-reset] %d cases" % len(cases))
    for name, status, frames in results:
        print("  %-18s %s %r" % (name, status, [(e, i) for e, i, _ in frames]))
    want_id = "%d:%d" % (epoch, head)
    for name, status, frames in results:
        assert status == 200, (name, status)
        # documented: reset {"reason":"position_unavailable"} (id = current position) before
        # connected (id = current position); nothing of the log replayed
        assert [e for e, _, _ in frames] == ["reset", "connected"], (name, frames)  # and no more
        assert frames[0][1] == want_id and frames[1][1] == want_id, (name, frames, want_id)
        assert json.loads(frames[0][2]) == {"reason": "position_unavailable"}, (name, frames)
    # after a reset the stream is live from the head: the next write arrives once, as head+1
    c = SeqClient(srv.target, r.project, "after-reset", max_s=10, max_connects=1,
                  last_id="%d:%d" % (epoch + 1, 1))
    r.start([c])
    wait_connected([c])
    mid = _post(srv, r.project, "b14 after reset")
    _wait_seq(r, head + 1)
    c.set_goal(head + 1)
    c.join(timeout=5)
    c.stop()
    assert [(e.seq, e.pid) for e in c.events] == [(head + 1, mid)], c.events
    assert [x[1] for x in c.resets] == ["position_unavailable"]
    # another project's id: never that project's events
    o_head, o_epoch = r.sql("SELECT last_seq, epoch FROM projects WHERE project_id = %s",
                            (other,))[0]
    p = Probe(srv, r.project, headers=[("Last-Event-ID", "%d:0" % o_epoch)], n_events=8,
              timeout=1.5)
    frames = p.run()
    assert not any("other tenant marker" in d for _, _, d in frames), frames


def test_b14_pruned_positions(rig):
    r = rig(n=1)
    (srv,) = r.instances
    first = Probe(srv, r.project, n_events=1).run()
    assert first[0][0] == "connected", first
    position_zero = first[0][1]  # "<epoch>:0": the position of an empty log
    assert position_zero.endswith(":0"), position_zero
    for i in range(30):
        _post(srv, r.project, "b14 prune %d" % i)
    _wait_seq(r, 30)
    head, epoch = _head(r)
    assert head == 30
    # retention: prune seqs 1..20
    r.sql("DELETE FROM events WHERE project_id = %s AND seq <= 20", (r.project,))
    cases = [("pruned 5", 5), ("pruned 19", 19), ("kept 20", 20), ("kept 25", 25), ("zero", 0)]
    # kept: connected + the rest of the log; pruned: wait a moment for anything extra
    probes = [(name, Probe(srv, r.project, headers=[("Last-Event-ID", "%d:%d" % (epoch, pos))],
                           n_events=1 + 30 - pos if pos >= 20 else 3,
                           timeout=4.0 if pos >= 20 else 2.0).start()) for name, pos in cases]
    got = {name: p.collect() for name, p in probes}
    print("\n[B14-pruned] oldest kept seq 21, head 30")
    for name, frames in got.items():
        print("  %-10s %r" % (name, [(e, i) for e, i, _ in frames][:12]))
    for name, pos in [("pruned 5", 5), ("pruned 19", 19), ("zero", 0)]:
        frames = got[name]
        # documented: connected with the client's id, then reset position_pruned (id = head)
        assert [e for e, _, _ in frames[:2]] == ["connected", "reset"], (name, frames[:4])
        assert frames[0][1] == "%d:%d" % (epoch, pos), (name, frames[0])
        assert frames[1][1] == "%d:%d" % (epoch, head), (name, frames[1])
        assert json.loads(frames[1][2]) == {"reason": "position_pruned"}, (name, frames[1])
        assert len(frames) == 2, "%s: events replayed after a pruned reset: %r" % (name, frames)
    for name, pos in [("kept 20", 20), ("kept 25", 25)]:
        frames = got[name]
        assert frames[0][:2] == ("connected", "%d:%d" % (epoch, pos)), (name, frames[0])
        seqs = [int(i.split(":")[1]) for e, i, _ in frames[1:]]
        assert seqs == list(range(pos + 1, 31)), (name, seqs)


def test_b14_resume_precedence_and_head(rig):
    r = rig(n=1)
    (srv,) = r.instances
    assert Probe(srv, r.project, n_events=1).run()[0][0] == "connected"
    for i in range(12):
        _post(srv, r.project, "b14 prec %d" % i)
    _wait_seq(r, 12)
    head, epoch = _head(r)

    def seqs_of(frames):
        return [int(i.split(":")[1]) for e, i, _ in frames if e not in ("connected", "reset")]

    # header and query both present: the header wins (docs/API.md: the query is used only when
    # no Last-Event-ID header is present)
    p = Probe(srv, r.project, headers=[("Last-Event-ID", "%d:4" % epoch)],
              query="last_event_id=%d%%3A9" % epoch, n_events=1 + head - 4)
    f = p.run()
    assert f[0][:2] == ("connected", "%d:4" % epoch), f[:2]
    assert seqs_of(f) == list(range(5, head + 1)), seqs_of(f)
    # query alone
    p = Probe(srv, r.project, query="last_event_id=%d%%3A9" % epoch, n_events=1 + head - 9)
    f = p.run()
    assert f[0][:2] == ("connected", "%d:9" % epoch), f[:2]
    assert seqs_of(f) == list(range(10, head + 1)), seqs_of(f)
    # an empty header is ignored (documented); what it does with a query next to it is printed
    p = Probe(srv, r.project, headers=[("Last-Event-ID", "")], n_events=1)
    f = p.run()
    assert f[0][:2] == ("connected", "%d:%d" % (epoch, head)), f[:2]
    p = Probe(srv, r.project, headers=[("Last-Event-ID", "")],
              query="last_event_id=%d%%3A9" % epoch, n_events=4, timeout=1.5)
    f_empty_and_query = p.run()
    print("\n[B14-precedence] empty header + query -> %r"
          % [(e, i) for e, i, _ in f_empty_and_query][:4])
    # exactly at the head: connected with that id, nothing replayed, then the next write once
    c = SeqClient(srv.target, r.project, "at-head", max_s=10, max_connects=1,
                  last_id="%d:%d" % (epoch, head))
    r.start([c])
    wait_connected([c])
    assert c.sessions[0].connected_id == "%d:%d" % (epoch, head)
    time.sleep(0.3)
    assert c.events == [], "events replayed at the head: %r" % [(e.seq, e.name) for e in c.events]
    nxt = _post(srv, r.project, "b14 next")
    _wait_seq(r, head + 1)
    c.set_goal(head + 1)
    c.join(timeout=5)
    c.stop()
    assert [(e.seq, e.pid) for e in c.events] == [(head + 1, nxt)]
    assert not c.resets
