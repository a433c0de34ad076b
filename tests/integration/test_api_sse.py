"""SSE: GET /api/v1/events/memories (core-contract.md §4, §5.2) with DECISIONS 10 (an `id:` on every
event, Last-Event-ID resume, claim events opt-in, no `*` double delivery), and the end-to-end flow of
CORE's e2e script over every route. Frames are parsed by hand (`\\n\\n` framing, `event:`, `data:`,
`id:`); every wait is bounded (<= 10 s).

API-PENDING: depends on the engram API work (issue #3, events); fails with 501 until it lands (not
skipped).
"""
import re

import pytest

from apiclient import (MEM_EVENT_CREATED_KEYS, MEM_KEYS, Api, api, api2, assert_error,  # noqa: F401
                       assert_now, db_memory, insert_memory, insert_recall, iso_ms, keys,
                       marker_pred, new_id, sql, sse_factory)

M = "/api/v1/memories"
C = "/api/v1/claims"
SUBJ = "/api/v1/claims/subject/"
ID_RE = re.compile(r"^(\d+):(\d+)$")


def _connected(s, subject=None):
    assert s.status == 200, (s.status, s.error_body)
    fr = s.next_event()
    assert fr is not None, "no connected frame within 10 s"
    assert fr.event == "connected", fr
    d = fr.data
    assert keys(d) == ["project_id", "subject_id", "timestamp"], d
    assert d["project_id"] == s.project and d["subject_id"] == subject, d
    assert_now(d["timestamp"])
    assert fr.has_id and fr.id, "connected frame without an id: %r" % fr
    return fr


def _created_payload(srv, mid):
    row = db_memory(srv, mid)
    return {"id": mid, "subject_id": row["subject_id"], "text": row["text"], "kind": row["kind"],
            "visibility": row["visibility"], "importance": row["importance"],
            "tags": row["tags"], "created_at": iso_ms(row["created_at"])}


def test_sse_headers_connected_and_framing(api, sse_factory):
    s = sse_factory(api.project)
    assert s.status == 200
    assert s.header("content-type") == "text/event-stream"
    assert s.header("cache-control") == "no-cache, no-transform"
    assert s.header("x-accel-buffering") == "no"
    fr = _connected(s, None)
    assert fr.data_text == '{"project_id":%s,"subject_id":null,"timestamp":"%s"}' % (
        '"%s"' % api.project, fr.data["timestamp"])
    mid = api.create("u1", "framing probe")["id"]
    ev = s.wait_event("memory.created", lambda d: d["id"] == mid)
    assert ev.has_id and ev.id
    # LF line endings only; frames end with a blank line; `data:` is one compact JSON line
    assert b"\r" not in s.all_bytes
    assert "event: memory.created" in ev.raw.split("\n")
    assert len(ev.data_lines) == 1


@pytest.mark.parametrize("query,subject", [
    ("subject_id=u1", "u1"), ("subject_id=%20u1%20", "u1"), ("subject_id=%20", None),
    ("subject_id=", None), ("", None), ("subject_id=a+b", "a b"), ("subject_id=%C3%A9", "\u00e9"),
])
def test_sse_connected_subject(api, sse_factory, query, subject):
    _connected(sse_factory(api.project, query), subject)


def test_sse_default_project(engram_server, sse_factory):
    s = sse_factory(None)
    s.project = "default-project"
    _connected(s, None)


def test_sse_memory_events_payloads(api, sse_factory):
    s = sse_factory(api.project)
    _connected(s)
    r = api.post(M, {"subject_id": "u1", "text": " Café \u2028 day ", "kind": "event",
                     "visibility": "shared", "importance": 61.7, "tags": ["x", 1]})
    mid = r.json["id"]
    ev = s.wait_event("memory.created")
    assert keys(ev.data) == MEM_EVENT_CREATED_KEYS, ev
    assert ev.data == _created_payload(api.srv, mid)
    assert ev.data["text"] == "Caf\u00e9 \u2028 day"
    assert ev.data["importance"] == 61 and ev.data["tags"] == ["x", "1"]
    api.patch(M + "/" + mid, {"importance": 5})
    ev = s.wait_event("memory.updated")
    assert ev.data == {"id": mid, "subject_id": "u1"} and keys(ev.data) == ["id", "subject_id"]
    api.patch(M + "/" + mid, raw="")  # a no-op PATCH still emits
    ev = s.wait_event("memory.updated")
    assert ev.data == {"id": mid, "subject_id": "u1"}
    sql(api.srv, "UPDATE memories SET status='superseded' WHERE id=%s", (mid,))
    api.post(M + "/%s/restore" % mid)
    ev = s.wait_event("memory.updated")
    assert ev.data == {"id": mid, "status": "active"} and keys(ev.data) == ["id", "status"]
    api.delete(M + "/" + mid)
    ev = s.wait_event("memory.deleted")
    assert ev.data == {"id": mid} and ev.data_text == '{"id":"%s"}' % mid


def test_sse_no_events_for_noops(api, sse_factory):
    s = sse_factory(api.project)
    _connected(s)
    mid = api.create("u1", "base memory")["id"]
    s.wait_event("memory.created", lambda d: d["id"] == mid)
    api.post(M, {"subject_id": "u1", "text": "BASE   memory"})             # duplicate skip
    api.post(M + "/%s/restore" % mid)                                        # already active
    api.delete(M + "/mem_missing")                                           # deleted:false
    api.post(M + "/extract", {"subject_id": "u1", "text": "My name is X"})   # no learn
    api.post(M, {"subject_id": "u1", "text": "x", "kind": "bogus"})          # 400
    api.patch(M + "/mem_missing", {"text": "x"})                             # 404
    api.post(C, {"subject_id": "u1", "predicate": "p", "object_value": "v"})  # claims: opt-in
    api.post(C + "/clm_missing/retract")
    api.delete(M + "/" + mid)
    api.delete(M + "/" + mid)                                                # second: false
    marker = new_id("MARK")
    api.create("u1", marker)
    got = s.events_until(marker_pred(marker))
    assert [f.event for f in got] == ["memory.deleted", "memory.created"], got


def test_sse_subject_filter_and_fanout(api, sse_factory):
    wide = [sse_factory(api.project) for _ in range(3)]
    narrow = [sse_factory(api.project, "subject_id=u1") for _ in range(2)]
    for s in wide:
        _connected(s)
    for s in narrow:
        _connected(s, "u1")
    m2 = api.create("u2", "for u2")["id"]
    m1 = api.create("u1", "for u1")["id"]
    for s in wide:
        got = s.events_until(lambda f: f.event == "memory.created" and f.data["id"] == m1)
        assert [f.data["id"] for f in got] == [m2, m1]
    for s in narrow:
        got = s.events_until(lambda f: f.event == "memory.created" and f.data["id"] == m1)
        assert [f.data["id"] for f in got] == [m1]
    # patch/delete events are routed by the stored row's subject
    api.patch(M + "/" + m2, {"text": "x"})
    api.delete(M + "/" + m2)
    marker = new_id("MARK")
    api.create("u1", marker)
    for s in narrow:
        assert len(s.events_until(marker_pred(marker))) == 1
    for s in wide:
        assert [f.event for f in s.events_until(marker_pred(marker))] == [
            "memory.updated", "memory.deleted", "memory.created"]


def test_sse_commit_order_from_one_writer(api, sse_factory):
    s = sse_factory(api.project)
    _connected(s)
    expected = []
    for i in range(25):
        mid = api.create("u%d" % (i % 3), "ordered %02d" % i)["id"]
        expected.append(("memory.created", mid))
        if i % 5 == 4:
            api.patch(M + "/" + mid, {"text": "patched %02d" % i})
            expected.append(("memory.updated", mid))
            api.delete(M + "/" + mid)
            expected.append(("memory.deleted", mid))
    last = expected[-1]
    got = s.events_until(lambda f: (f.event, f.data["id"]) == last)
    assert [(f.event, f.data["id"]) for f in got] == expected
    assert all(f.has_id and f.id for f in got)
    assert len({f.id for f in got}) == len(got), "event ids repeat"


def test_sse_ids_are_epoch_seq_and_increase(api, sse_factory):
    """RELIABILITY.md §1.6 / ARCHITECTURE.md §6: `id: <epoch>:<seq>`; connected carries the current
    position; seq increases by event within a project."""
    s = sse_factory(api.project)
    con = _connected(s)
    m = ID_RE.match(con.id)
    assert m, "connected id %r is not <epoch>:<seq>" % con.id
    epoch, seq = int(m.group(1)), int(m.group(2))
    last = None
    for i in range(5):
        last = api.create("u1", "seq %d" % i)["id"]
    got = s.events_until(lambda f: f.event == "memory.created" and f.data["id"] == last)
    for f in got:
        mm = ID_RE.match(f.id or "")
        assert mm, "event id %r is not <epoch>:<seq>" % f.id
        assert int(mm.group(1)) == epoch
        assert int(mm.group(2)) > seq, (f.id, seq)
        seq = int(mm.group(2))


@pytest.mark.parametrize("how", ["header", "query"])
def test_sse_resume_with_last_event_id(api, sse_factory, how):
    s = sse_factory(api.project)
    _connected(s)
    ids = [api.create("u1", "before %d" % i)["id"] for i in range(3)]
    got = s.events_until(lambda f: f.event == "memory.created" and f.data["id"] == ids[-1])
    resume_from = got[0].id
    assert got[0].data["id"] == ids[0] and resume_from
    s.close()
    ids += [api.create("u1", "while away %d" % i)["id"] for i in range(2)]
    if how == "header":
        s2 = sse_factory(api.project, headers=[("Last-Event-ID", resume_from)])
    else:
        s2 = sse_factory(api.project, "last_event_id=" + resume_from)
    assert s2.status == 200
    assert s2.next_event().event == "connected"
    live = api.create("u1", "live after resume")["id"]
    got2 = s2.events_until(lambda f: f.event == "memory.created" and f.data["id"] == live)
    assert [f.data["id"] for f in got2] == ids[1:] + [live], got2


def test_sse_claim_events_are_opt_in(api, sse_factory):
    plain = sse_factory(api.project)
    withc = sse_factory(api.project, "include=claims")
    _connected(plain)
    _connected(withc)
    c = api.claim("u1", "city", "Oslo")["claim_id"]
    api.claim("u1", "city", "Rome")
    api.post(C + "/%s/retract" % c)
    marker = new_id("MARK")
    api.create("u1", marker, extract_claims=False)
    assert [f.event for f in plain.events_until(marker_pred(marker))] == ["memory.created"]
    names = [f.event for f in withc.events_until(marker_pred(marker))]
    assert "claim.created" in names and "claim.retracted" in names, names
    assert all(n.startswith(("claim.", "slot.")) for n in names[:-1]), names
    for f in withc.frames:
        if f.is_event:
            assert f.has_id and f.id, f


def test_sse_star_subject_delivered_once(api, sse_factory):
    s = sse_factory(api.project)
    _connected(s)
    star = api.create("*", "star subject")["id"]
    marker = new_id("MARK")
    api.create("u1", marker)
    got = s.events_until(marker_pred(marker))
    assert [f.data["id"] for f in got if f.event == "memory.created"].count(star) == 1, got


def test_sse_extract_learn_emits_created(api, sse_factory):
    s = sse_factory(api.project, "subject_id=u1")
    _connected(s, "u1")
    r = api.post(M + "/extract?learn=true", {"subject_id": "u1", "text": "I work at Acme"})
    mid = r.json["memories"][0]["memory_id"]
    ev = s.wait_event("memory.created")
    assert ev.data == _created_payload(api.srv, mid)
    assert ev.data["tags"] == ["simple_mode"] and ev.data["kind"] == "fact"


def test_e2e_flow(api, sse_factory):
    """CORE's e2e script, end to end, with every response checked."""
    srv, S = api.srv, "e2e-" + new_id("s")
    s = sse_factory(api.project, "subject_id=" + S)
    _connected(s, S)

    # create -> memory.created
    r = api.post(M, {"subject_id": S, "text": "My favorite color is teal", "importance": 70,
                     "tags": ["color"]})
    assert r.status == 201, r
    mid = r.json["id"]
    ev = s.wait_event("memory.created")
    assert keys(ev.data) == MEM_EVENT_CREATED_KEYS
    assert ev.data == _created_payload(srv, mid)

    # list / get
    lst = api.get(M + "?subject_id=" + S)
    assert lst.status == 200 and [m["id"] for m in lst.json["data"]] == [mid]
    g = api.get(M + "/" + mid)
    assert g.status == 200 and keys(g.json["data"]) == MEM_KEYS

    # patch -> memory.updated {id, subject_id}
    assert api.patch(M + "/" + mid, {"importance": 90}).json == {"id": mid, "updated": True}
    ev = s.wait_event("memory.updated")
    assert ev.data == {"id": mid, "subject_id": S}

    # search (simple mode)
    sr = api.get(M + "/search?subject_id=%s&q=teal" % S)
    assert sr.status == 200 and sr.json["engine"] == "simple"
    h = sr.json["data"][0]
    assert h["id"] == mid and h["score"] == 0 and h["effective_score"] == 36.75

    # extract without and with learn
    ex = api.post(M + "/extract", {"subject_id": S, "text": "I live in Lisbon"})
    assert ex.json["learned"] is False and ex.json["memories"][0]["claims"][0]["predicate"] == \
        "lives_in"
    exl = api.post(M + "/extract", {"subject_id": S, "text": "I live in Lisbon", "learn": True})
    assert exl.json["learned"] is True and exl.json["learned_claim_count"] == 1
    learned = exl.json["memories"][0]["memory_id"]
    ev = s.wait_event("memory.created")
    assert ev.data["id"] == learned

    # claims: create, truth, slot, slots, graph, history
    c1 = api.claim(S, "lives_in", "Porto")["claim_id"]
    slot = api.get(SUBJ + S + "/slot/lives_in")
    assert slot.json["active_claim_id"] == c1 and slot.json["object_value"] == "Porto"
    truth = api.get(SUBJ + S + "/truth").json
    assert {x["slot"]: x["object_value"] for x in truth["slots"]} == {
        "favorite_color": "teal", "lives_in": "Porto"}
    # retract restores the previous winner (the learned Lisbon claim)
    rr = api.post(C + "/%s/retract" % c1, {"reason": "moved"})
    assert rr.json["restored_previous"] is True and rr.json["reason"] == "moved"
    assert api.get(SUBJ + S + "/slot/lives_in").json["object_value"] == "Lisbon"
    truth = api.get(SUBJ + S + "/truth").json
    assert {x["slot"]: x["object_value"] for x in truth["slots"]}["lives_in"] == "Lisbon"
    slots = api.get(SUBJ + S + "/slots").json
    assert slots["total"] == 2 and slots["active_count"] == 2
    graph = api.get(SUBJ + S + "/graph").json
    assert graph["claims_count"] == 3 and graph["edges_by_type"] == {"retracts": 1}
    hist = api.get(SUBJ + S + "/history?slot=lives_in").json
    assert hist["total_claims"] == 2 and keys(hist["by_slot"]) == ["lives_in"]
    mc = api.get(M + "/%s/claims" % mid).json
    assert [x["predicate"] for x in mc["data"]] == ["favorite_color"]

    # superseded listing + restore (simple mode never supersedes: do it with SQL)
    old = api.create(S, "old fact about teal")["id"]
    s.wait_event("memory.created", lambda d: d["id"] == old)
    sql(srv, "UPDATE memories SET status='superseded', superseded_by=%s WHERE id=%s", (mid, old))
    sup = api.get(M + "/superseded?subject_id=" + S).json
    assert [m["id"] for m in sup["data"]] == [old] and sup["data"][0]["superseded_by"] == mid
    rs = api.post(M + "/%s/restore" % old)
    assert rs.json == {"ok": True, "restored": True, "id": old, "subject_id": S,
                       "text": "old fact about teal"}
    ev = s.wait_event("memory.updated")
    assert ev.data == {"id": old, "status": "active"}
    assert api.get(M + "/superseded?subject_id=" + S).json["count"] == 0

    # recalls from SQL rows
    insert_recall(srv, api.project, S, mid, chat_id="e2e-chat", similarity_score=0.9)
    insert_recall(srv, api.project, S, mid, chat_id="e2e-chat", message_index=1,
                  similarity_score=0.7)
    assert api.get(M + "/recalls?chat_id=e2e-chat").json["count"] == 2
    assert api.get(M + "/recalls?memory_id=" + mid).json["count"] == 2
    st = api.get(M + "/recalls?memory_id=%s&stats=true" % mid).json["stats"]
    assert st["total_recalls"] == 2 and st["avg_score"] == (0.9 + 0.7) / 2

    # delete -> memory.deleted; GET 404 memory_deleted; DELETE again deleted:false
    assert api.delete(M + "/" + mid).json == {"ok": True, "deleted": True}
    ev = s.wait_event("memory.deleted")
    assert ev.data == {"id": mid}
    assert_error(api.get(M + "/" + mid), 404, "memory_deleted")
    assert api.delete(M + "/" + mid).json == {"ok": True, "deleted": False}
    marker = new_id("END")
    api.create(S, marker)
    tail = s.events_until(marker_pred(marker))
    assert [f.event for f in tail] == ["memory.created"], tail
    for f in s.frames:
        if f.is_event:
            assert f.has_id and f.id, "event frame without id: %r" % f
