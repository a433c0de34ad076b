"""Cross-project isolation through `x-project-id` (core-contract.md §2.4; RELIABILITY.md B7, B11;
DECISIONS 2 source_memory_not_found, 10 no `:` key collision). Project B must never see or change
project A's memories, claims, slots, recalls, search hits or events.

API-PENDING: depends on the engram API work (issue #3); fails with 501 until it lands (not skipped).
"""
import json
from apiclient import (Api, api, api2, assert_error, count_rows, db_memory, insert_memory,  # noqa: F401
                       insert_recall, marker_pred, new_id, sql_dict, sse_factory)

M = "/api/v1/memories"
SUBJ = "/api/v1/claims/subject/u1"


def test_memories_invisible_across_projects(api, api2):
    marker = new_id("MARKER")
    a = api.create("u1", "secret %s" % marker, extract_claims=False)["id"]
    sup = insert_memory(api.srv, api.project, "u1", "sup %s" % marker, status="superseded")
    api2.create("u1", "theirs", extract_claims=False)
    for path in (M + "?subject_id=u1&limit=200&include_deleted=true&include_superseded=true",
                 M + "/superseded?subject_id=u1", M + "/search?subject_id=u1&q=" + marker,
                 M + "/search?subject_id=u1&q=%25"):
        r = api2.get(path)
        assert r.status == 200, r
        body = r.json
        # search echoes the query it was given (query, used_queries): only the hits matter there
        if "/search" in path:
            assert body["data"] == [] and body["count"] == 0, (path, r)
            body = {k: v for k, v in body.items() if k not in ("query", "used_queries")}
        assert marker not in json.dumps(body), (path, r)
    assert_error(api2.get(M + "/" + a), 404, "memory_not_found")
    assert_error(api2.get(M + "/%s/claims" % a), 404, "memory_not_found")
    assert_error(api2.patch(M + "/" + a, {"text": "pwned"}), 404, "memory_not_found")
    assert_error(api2.post(M + "/%s/restore" % sup), 404, "memory_not_found")
    r = api2.delete(M + "/" + a)
    assert r.status == 200 and r.json == {"ok": True, "deleted": False}, r
    row = db_memory(api.srv, a)
    assert row["text"] == "secret %s" % marker and row["is_deleted"] is False
    assert db_memory(api.srv, sup)["status"] == "superseded"
    # A still sees its own
    assert api.get(M + "/search?subject_id=u1&q=" + marker).json["count"] == 1


def test_claims_invisible_across_projects(api, api2):
    mid = api.create("u1", "My name is Alice")["id"]
    c = api.claim("u1", "city", "Oslo", source_memory_id=mid)["claim_id"]
    assert_error(api2.get("/api/v1/claims/" + c), 404, "claim_not_found")
    assert_error(api2.post("/api/v1/claims/%s/retract" % c), 404, "claim_not_found")
    assert sql_dict(api.srv, "SELECT status FROM claims WHERE claim_id=%s", (c,)) == [
        {"status": "active"}]
    t = api2.get(SUBJ + "/truth").json
    assert t["slot_count"] == 0 and t["slots"] == [] and t["project_id"] == api2.project
    assert_error(api2.get(SUBJ + "/slot/city"), 404, "slot_not_found", subject_id="u1",
                 slot="city")
    s = api2.get(SUBJ + "/slots").json
    assert s["total"] == 0
    g = api2.get(SUBJ + "/graph").json
    assert g["claims_count"] == 0 and g["claims"] == []
    h = api2.get(SUBJ + "/history").json
    assert h["total_claims"] == 0 and h["by_slot"] == {}
    # B creating a claim in the same subject/slot does not move A's slot
    api2.claim("u1", "city", "Lima")
    assert api.get(SUBJ + "/slot/city").json["object_value"] == "Oslo"
    assert api2.get(SUBJ + "/slot/city").json["object_value"] == "Lima"
    assert api.get(SUBJ + "/truth").json["slot_count"] == 2  # city + name (extracted)


def test_source_memory_from_other_project_is_rejected(api, api2):
    theirs = api2.create("u1", "theirs", extract_claims=False)["id"]
    assert_error(api.post("/api/v1/claims", {"subject_id": "u1", "predicate": "p",
                                             "object_value": "v", "source_memory_id": theirs}),
                 400, "source_memory_not_found")
    assert count_rows(api.srv, "claims", api.project) == 0
    assert count_rows(api.srv, "claim_assertions", api.project) == 0


def test_recalls_invisible_across_projects(api, api2):
    m = insert_memory(api.srv, api.project, "u1", "recalled")
    insert_recall(api.srv, api.project, "u1", m, chat_id="shared-chat", similarity_score=0.5)
    r = api2.get(M + "/recalls?chat_id=shared-chat")
    assert r.json == {"data": [], "count": 0, "chat_id": "shared-chat"}, r
    r = api2.get(M + "/recalls?memory_id=" + m)
    assert r.json == {"data": [], "count": 0, "memory_id": m}, r
    st = api2.get(M + "/recalls?memory_id=%s&stats=true" % m).json["stats"]
    assert st["total_recalls"] == 0 and st["first_recalled_at"] is None
    assert api.get(M + "/recalls?chat_id=shared-chat").json["count"] == 1


def test_memory_id_collision_does_not_cross_projects(api, api2):
    mid = new_id("shared-id")
    api.create("u1", "first owner", id=mid)
    assert_error(api2.post(M, {"id": mid, "subject_id": "u1", "text": "intruder"}), 409,
                 "memory_exists")
    row = db_memory(api.srv, mid)
    assert (row["project_id"], row["text"]) == (api.project, "first owner")
    assert_error(api2.get(M + "/" + mid), 404, "memory_not_found")


def test_project_header_resolution(api):
    srv = api.srv
    p = new_id("proj")
    spaced = Api(srv, "  %s  " % p)
    mid = spaced.create("u1", "trimmed project")["id"]
    assert db_memory(srv, mid)["project_id"] == p
    r = Api(srv, None).call("GET", M + "/" + mid, headers=[("X-PROJECT-ID", p)])
    assert r.status == 200, r  # header names are case-insensitive
    # no header (or an empty one) -> CORE_DEFAULT_PROJECT_ID's default, "default-project"
    nohdr = Api(srv, None)
    d = nohdr.create("u-default-%s" % p, "default project memory")["id"]
    assert db_memory(srv, d)["project_id"] == "default-project"
    empty = Api(srv, "")
    assert empty.get(M + "/" + d).status == 200
    assert Api(srv, "default-project").get(M + "/" + d).status == 200
    assert_error(Api(srv, p).get(M + "/" + d), 404, "memory_not_found")


def test_repeated_project_header_joins(api):
    srv = api.srv
    a, b = new_id("pa"), new_id("pb")
    r = Api(srv, None).call("POST", M, {"subject_id": "u1", "text": "joined"},
                            headers=[("x-project-id", a), ("x-project-id", b)])
    assert r.status == 201, r
    assert db_memory(srv, r.json["id"])["project_id"] == "%s, %s" % (a, b)


def test_events_do_not_cross_projects(api, api2, sse_factory):
    sa = sse_factory(api.project)
    sb = sse_factory(api2.project)
    sb_subject = sse_factory(api2.project, "subject_id=u1")
    for s in (sa, sb, sb_subject):
        assert s.status == 200
        assert s.next_event().event == "connected"
    secret = new_id("SECRET")
    mid = api.create("u1", "a " + secret)["id"]
    api.patch(M + "/" + mid, {"text": "b " + secret})
    api.delete(M + "/" + mid)
    got = sa.events_until(lambda f: f.event == "memory.deleted")
    assert [f.event for f in got] == ["memory.created", "memory.updated", "memory.deleted"]
    marker = new_id("B-MARKER")
    api2.create("u1", marker)
    for s in (sb, sb_subject):
        frames = s.events_until(marker_pred(marker))
        assert len(frames) == 1, frames  # nothing of A's before B's own event
        assert secret not in s.all_bytes.decode()
        assert mid not in s.all_bytes.decode()


def test_events_no_colon_key_collision(engram_server, sse_factory):
    """DECISIONS 10: project `x:y` + subject `z` must not reach project `x` + subject `y:z`."""
    base = new_id("col")
    pa, pb = base + ":y", base
    victim = sse_factory(pb, "subject_id=y:z")
    assert victim.status == 200, (victim.status, victim.error_body)
    assert victim.next_event().event == "connected"
    Api(engram_server, pa).create("z", "collide " + base)
    marker = new_id("M")
    Api(engram_server, pb).create("y:z", marker)
    frames = victim.events_until(marker_pred(marker))
    assert len(frames) == 1, frames
    assert ("collide " + base) not in victim.all_bytes.decode()
