"""Claims: create, get, retract, truth, slot, slots, graph, history (core-contract.md §5.14–§5.21,
§9.1, §9.2, §3.2–§3.5) with DECISIONS 2 (409 claim_exists, 400 source_memory_not_found,
invalid_date) and 8 (graph/history omit `embedding`).

API-PENDING: depends on the engram API work (issue #3); fails with 501 until it lands (not skipped).
"""
import pytest

from apiclient import (ASSERTION_KEYS, AST_ID_RE, CLAIM_CREATE_KEYS, CLAIM_KEYS, CLM_ID_RE,  # noqa: F401
                       EDGE_KEYS, api, api2, assert_error, assert_ts, iso_ms, keys, new_id, seg,
                       sql, sql_dict, sql_one)

C = "/api/v1/claims"
SUBJ = "/api/v1/claims/subject/"
TRUTH_ROW_KEYS = ["slot", "active_claim_id", "predicate", "object_value", "claim_type",
                  "confidence", "tags", "updated_at", "source_memory_id", "source_observation_id"]
SLOT_KEYS = ["subject_id", "project_id", "slot", "active_claim_id", "predicate", "object_value",
             "claim_type", "confidence", "updated_at", "tags", "source"]
SLOTS_ROW_KEYS = TRUTH_ROW_KEYS + ["status"]


def _claim_row(api, cid):
    return sql_dict(api.srv, "SELECT * FROM claims WHERE claim_id=%s", (cid,))[0]


def _slot_state(api, subject, slot):
    rows = sql_dict(api.srv, "SELECT * FROM slot_state WHERE project_id=%s AND subject_id=%s "
                    "AND slot=%s", (api.project, subject, slot))
    return rows[0] if rows else None


def _retract(api, cid, body=None, raw=None):
    r = api.post(C + "/%s/retract" % seg(cid), body, raw=raw)
    return r


# ------------------------------------------------------------------------------------------------
# POST /claims
# ------------------------------------------------------------------------------------------------
def test_create_claim_response_and_rows(api):
    r = api.post(C, {"subject_id": " u1 ", "predicate": " favorite_color ",
                     "object_value": "  blue  "})
    assert r.status == 201, r
    b = r.json
    assert keys(b) == CLAIM_CREATE_KEYS, b
    assert CLM_ID_RE.match(b["claim_id"]), b
    assert b == {"claim_id": b["claim_id"], "subject_id": "u1", "predicate": "favorite_color",
                 "object_value": "blue", "slot": "favorite_color", "claim_type": "preference",
                 "confidence": 0.8, "observation_id": None, "linking_triggered": True}
    row = _claim_row(api, b["claim_id"])
    assert row["project_id"] == api.project and row["importance"] == 0.5
    assert row["tags"] == [] and row["source_memory_id"] is None
    assert row["subject_entity"] == "self" and row["status"] == "active"
    assert row["retracted_at"] is None and row["valid_from"] is None
    a = sql_dict(api.srv, "SELECT * FROM claim_assertions WHERE claim_id=%s", (b["claim_id"],))
    assert len(a) == 1
    a = a[0]
    assert AST_ID_RE.match(a["assertion_id"])
    assert (a["project_id"], a["subject_id"], a["memory_id"], a["predicate"], a["object_type"],
            a["value_string"], a["confidence"], a["status"]) == (
        api.project, "u1", None, "favorite_color", "string", "blue", 0.8, "active")
    ss = _slot_state(api, "u1", "favorite_color")
    assert (ss["active_claim_id"], ss["status"], ss["replaced_by_claim_id"]) == (
        b["claim_id"], "active", None)
    # one transaction: every timestamp equal
    assert row["asserted_at"] == row["updated_at"] == a["first_seen_at"] == a["last_seen_at"] \
        == ss["updated_at"]


def test_create_claim_all_fields(api):
    mid = api.create("u1", "source memory", extract_claims=False)["id"]
    cid = new_id("clm_client")
    r = api.post(C, {"claim_id": cid, "subject_id": "u1", "predicate": "lives_in",
                     "object_value": "Oslo", "slot": "home", "claim_type": "custom",
                     "confidence": 0.25, "importance": 0.75, "tags": [1, None, "x"],
                     "source_memory_id": mid, "source_observation_id": "obs-1",
                     "subject_entity": "spouse", "valid_from": "2024-01-01",
                     "valid_until": "2025-06-30T12:00:00.123456Z"})
    assert r.status == 201, r
    assert r.json == {"claim_id": cid, "subject_id": "u1", "predicate": "lives_in",
                      "object_value": "Oslo", "slot": "home", "claim_type": "custom",
                      "confidence": 0.25, "observation_id": "obs-1", "linking_triggered": True}
    g = api.get(C + "/" + cid)
    assert g.status == 200, g
    c = g.json["claim"]
    assert keys(c) == CLAIM_KEYS, c
    assert (c["importance"], c["tags"], c["source_memory_id"], c["source_observation_id"],
            c["subject_entity"]) == (0.75, ["1", "null", "x"], mid, "obs-1", "spouse")
    assert c["valid_from"] == "2024-01-01T00:00:00.000Z"
    assert c["valid_until"] == "2025-06-30T12:00:00.123Z"
    a = sql_dict(api.srv, "SELECT memory_id FROM claim_assertions WHERE claim_id=%s", (cid,))
    assert a == [{"memory_id": mid}]


@pytest.mark.parametrize("predicate,ctype", [
    ("favorite_food", "preference"), ("likes_jazz", "preference"), ("dislikes_rain", "preference"),
    ("career_goal", "goal"), ("goals", "goal"), ("wants_dog", "goal"), ("did_marathon", "event"),
    ("event_wedding", "event"), ("likes", "fact"), ("name", "fact"), ("favorite_goal", "preference"),
    ("did_goal", "goal"), ("wants", "fact"), ("event", "fact"),
])
def test_claim_type_inference(api, predicate, ctype):
    assert api.claim("u1", predicate, "v")["claim_type"] == ctype


@pytest.mark.parametrize("field,value,stored", [
    ("confidence", 2, 1), ("confidence", None, 0), ("confidence", "0.5", 0.5),
    ("confidence", "abc", 0.8), ("confidence", -3, 0),
    ("importance", -1, 0), ("importance", None, 0), ("importance", 7, 1), ("importance", "x", 0.5),
])
def test_claim_numeric_clamps(api, field, value, stored):
    cid = api.claim("u1", "p", "v", **{field: value})["claim_id"]
    assert _claim_row(api, cid)[field] == stored
    if field == "confidence":
        assert api.get(C + "/" + cid).json["claim"]["confidence"] == stored


def test_claim_validation_order(api):
    assert_error(api.post(C, {}), 400, "subject_id_required")
    assert_error(api.post(C, {"predicate": "p", "object_value": "v"}), 400, "subject_id_required")
    assert_error(api.post(C, {"subject_id": "u1"}), 400, "predicate_required")
    assert_error(api.post(C, {"subject_id": "u1", "predicate": "  ", "object_value": "v"}), 400,
                 "predicate_required")
    assert_error(api.post(C, {"subject_id": "u1", "predicate": "p"}), 400, "object_value_required")
    assert_error(api.post(C, {"subject_id": "u1", "predicate": "p", "object_value": " "}), 400,
                 "object_value_required")
    assert_error(api.post(C, raw="{"), 400, "invalid_json_body")
    assert_error(api.post(C, raw="null"), 400, "invalid_json_body")
    assert sql_one(api.srv, "SELECT count(*) FROM claims WHERE project_id=%s", (api.project,))[0] \
        == 0


@pytest.mark.parametrize("field", ["valid_from", "valid_until"])
def test_claim_bad_date_is_400(api, field):
    assert_error(api.post(C, {"subject_id": "u1", "predicate": "p", "object_value": "v",
                              field: "garbage"}), 400, "invalid_date")
    assert_error(api.post(C, {"subject_id": "u1", "predicate": "p", "object_value": "v",
                              field: "2024-13-45"}), 400, "invalid_date")
    assert sql_one(api.srv, "SELECT count(*) FROM claims WHERE project_id=%s", (api.project,))[0] \
        == 0


def test_claim_existing_id_is_409(api, api2):
    cid = api.claim("u1", "p", "v1")["claim_id"]
    assert_error(api.post(C, {"claim_id": cid, "subject_id": "u1", "predicate": "p",
                              "object_value": "v2"}), 409, "claim_exists")
    # another project cannot take (or overwrite) it either
    assert_error(api2.post(C, {"claim_id": cid, "subject_id": "u1", "predicate": "p",
                               "object_value": "v3"}), 409, "claim_exists")
    row = _claim_row(api, cid)
    assert (row["project_id"], row["object_value"]) == (api.project, "v1")
    assert sql_one(api.srv, "SELECT count(*) FROM claim_assertions WHERE claim_id=%s",
                   (cid,))[0] == 1


def test_claim_source_memory_must_exist_in_project(api, api2):
    other = api2.create("u1", "their memory", extract_claims=False)["id"]
    assert_error(api.post(C, {"subject_id": "u1", "predicate": "p", "object_value": "v",
                              "source_memory_id": other}), 400, "source_memory_not_found")
    assert_error(api.post(C, {"subject_id": "u1", "predicate": "p", "object_value": "v",
                              "source_memory_id": "mem_nowhere"}), 400, "source_memory_not_found")
    assert sql_one(api.srv, "SELECT count(*) FROM claims WHERE project_id=%s", (api.project,))[0] \
        == 0
    # empty / falsy source_memory_id means none
    assert api.claim("u1", "p", "v", source_memory_id="")["claim_id"]


# ------------------------------------------------------------------------------------------------
# GET /claims/{id}
# ------------------------------------------------------------------------------------------------
def test_get_claim_shape(api):
    a = api.claim("u1", "home", "Rome")["claim_id"]
    b = api.claim("u1", "home", "Paris")["claim_id"]
    _retract(api, b, {"reason": "moved back"})
    g = api.get(C + "/" + b)
    assert g.status == 200, g
    assert keys(g.json) == ["claim", "assertions", "edges", "supersession_chain"], g
    c = g.json["claim"]
    assert keys(c) == CLAIM_KEYS and "embedding" not in c
    row = _claim_row(api, b)
    assert c["status"] == "retracted" and c["retract_reason"] == "moved back"
    for k in ("asserted_at", "updated_at", "retracted_at"):
        assert c[k] == iso_ms(row[k]), k
        assert_ts(c[k], k)
    assert len(g.json["assertions"]) == 1
    asr = g.json["assertions"][0]
    assert keys(asr) == ASSERTION_KEYS, asr
    assert (asr["object_type"], asr["value_string"], asr["value_number"], asr["value_date"],
            asr["value_json"]) == ("string", "Paris", None, None, None)
    assert len(g.json["edges"]) == 1
    e = g.json["edges"][0]
    assert keys(e) == EDGE_KEYS, e
    assert isinstance(e["edge_id"], str) and e["edge_id"].isdigit()
    assert '"edge_id":"%s"' % e["edge_id"] in g.text
    assert (e["from_claim_id"], e["to_claim_id"], e["edge_type"], e["weight"], e["reason_code"],
            e["reason_text"]) == (b, a, "retracts", 1, "manual_retraction", "moved back")
    assert g.json["supersession_chain"] == []
    ga = api.get(C + "/" + a)
    assert [x["edge_type"] for x in ga.json["edges"]] == ["retracts"]  # to = a also listed


def test_get_claim_not_found_and_route_quirks(api):
    assert_error(api.get(C + "/clm_nope"), 404, "claim_not_found")
    assert_error(api.get(C + "/subject"), 404, "claim_not_found")
    r = api.get(C + "/subject/u1")
    assert r.status == 404 and r.json == {"error": "not_found", "path": C + "/subject/u1",
                                          "method": "GET"}, r


# ------------------------------------------------------------------------------------------------
# retract
# ------------------------------------------------------------------------------------------------
def test_retract_restores_previous_winner(api):
    old = api.claim("u1", "city", "Rome")["claim_id"]
    new = api.claim("u1", "city", "Paris")["claim_id"]
    # a new claim only moves slot_state; the old one stays active
    assert _claim_row(api, old)["status"] == "active"
    assert _slot_state(api, "u1", "city")["active_claim_id"] == new
    assert api.get(SUBJ + "u1/slot/city").json["object_value"] == "Paris"
    r = _retract(api, new)
    assert r.status == 200, r
    assert keys(r.json) == ["success", "claim_id", "slot", "previous_claim_id",
                            "restored_previous", "reason"], r
    assert r.json == {"success": True, "claim_id": new, "slot": "city", "previous_claim_id": old,
                      "restored_previous": True, "reason": "manual_retraction"}
    row = _claim_row(api, new)
    assert row["status"] == "retracted" and row["retract_reason"] == "manual_retraction"
    assert row["retracted_at"] is not None and row["updated_at"] == row["retracted_at"]
    ss = _slot_state(api, "u1", "city")
    assert (ss["active_claim_id"], ss["status"], ss["replaced_by_claim_id"]) == (old, "active", new)
    e = sql_dict(api.srv, "SELECT * FROM claim_edges WHERE project_id=%s", (api.project,))
    assert [(x["from_claim_id"], x["to_claim_id"], x["edge_type"], x["weight"], x["reason_code"],
             x["reason_text"]) for x in e] == [(new, old, "retracts", 1, "manual_retraction",
                                                "manual_retraction")]
    # slot and truth show the previous winner again
    s = api.get(SUBJ + "u1/slot/city")
    assert s.status == 200 and s.json["active_claim_id"] == old and s.json["object_value"] == "Rome"
    t = api.get(SUBJ + "u1/truth").json
    assert [(x["slot"], x["active_claim_id"]) for x in t["slots"]] == [("city", old)]


def test_retract_again_and_reasons(api):
    a = api.claim("u1", "pet", "cat")["claim_id"]
    b = api.claim("u1", "pet", "dog")["claim_id"]
    r = _retract(api, b, {"reason": 7})
    assert r.status == 200 and r.json["reason"] == "7", r
    r2 = _retract(api, b, {"reason": "second"})  # already retracted: succeeds again
    assert r2.status == 200 and r2.json["success"] is True and r2.json["reason"] == "second", r2
    assert r2.json["previous_claim_id"] == a
    assert _claim_row(api, b)["retract_reason"] == "second"
    e = sql_dict(api.srv, "SELECT reason_text FROM claim_edges WHERE project_id=%s",
                 (api.project,))
    assert e == [{"reason_text": "7"}]  # ON CONFLICT DO NOTHING keeps the first
    # invalid JSON and empty bodies are tolerated as "no body"
    for raw in ("{nope", "", "null", "[]", '"x"'):
        r3 = _retract(api, b, raw=raw)
        assert r3.status == 200 and r3.json["reason"] == "manual_retraction", (raw, r3)


def test_retract_only_claim_empties_slot(api):
    c = api.claim("u1", "job", "baker")["claim_id"]
    r = _retract(api, c)
    assert r.json["previous_claim_id"] is None and r.json["restored_previous"] is False, r
    ss = _slot_state(api, "u1", "job")
    assert (ss["active_claim_id"], ss["status"], ss["replaced_by_claim_id"]) == (
        None, "retracted", c)
    assert sql_one(api.srv, "SELECT count(*) FROM claim_edges WHERE project_id=%s",
                   (api.project,))[0] == 0
    assert_error(api.get(SUBJ + "u1/slot/job"), 404, "slot_not_found", subject_id="u1", slot="job")
    t = api.get(SUBJ + "u1/truth").json
    assert t["slot_count"] == 0 and t["slots"] == []


def test_retract_missing_is_404(api):
    assert_error(_retract(api, "clm_nope"), 404, "claim_not_found")


# ------------------------------------------------------------------------------------------------
# truth / slot / slots
# ------------------------------------------------------------------------------------------------
def test_truth_shape_and_include_source(api):
    mid = api.create("u1", "src", extract_claims=False)["id"]
    c1 = api.claim("u1", "name", "Ann", source_memory_id=mid, tags=["t"], confidence=0.1)
    c2 = api.claim("u1", "likes_tea", "yes", source_observation_id="obs")
    sql(api.srv, "UPDATE slot_state SET updated_at = updated_at - interval '1 minute' "
        "WHERE project_id=%s AND slot='name'", (api.project,))
    r = api.get(SUBJ + "u1/truth")
    assert r.status == 200, r
    b = r.json
    assert keys(b) == ["subject_id", "project_id", "slot_count", "slots"], b
    assert (b["subject_id"], b["project_id"], b["slot_count"]) == ("u1", api.project, 2)
    assert [s["slot"] for s in b["slots"]] == ["likes_tea", "name"]  # updated_at desc
    for s in b["slots"]:
        assert keys(s) == TRUTH_ROW_KEYS + ["source"], s
        assert keys(s["source"]) == ["memory_id", "observation_id"]
    name = b["slots"][1]
    ss = _slot_state(api, "u1", "name")
    assert name == {"slot": "name", "active_claim_id": c1["claim_id"], "predicate": "name",
                    "object_value": "Ann", "claim_type": "fact", "confidence": 0.1, "tags": ["t"],
                    "updated_at": iso_ms(ss["updated_at"]), "source_memory_id": mid,
                    "source_observation_id": None,
                    "source": {"memory_id": mid, "observation_id": None}}
    assert b["slots"][0]["source"] == {"memory_id": None, "observation_id": "obs"}
    assert b["slots"][0]["active_claim_id"] == c2["claim_id"]
    for q in ("false", "1", "yes", "FALSE"):
        r = api.get(SUBJ + "u1/truth?include_source=" + q)
        for s in r.json["slots"]:
            assert keys(s) == TRUTH_ROW_KEYS[:8], (q, s)
    r = api.get(SUBJ + "u1/truth?include_source=TRUE")
    assert keys(r.json["slots"][0]) == TRUTH_ROW_KEYS + ["source"]


def test_truth_excludes_inactive_claims(api):
    c = api.claim("u1", "x", "1")["claim_id"]
    sql(api.srv, "UPDATE claims SET status='retracted' WHERE claim_id=%s", (c,))
    assert api.get(SUBJ + "u1/truth").json["slot_count"] == 0
    assert_error(api.get(SUBJ + "u1/slot/x"), 404, "slot_not_found", subject_id="u1", slot="x")


def test_slot_shape(api):
    c = api.claim("u 1", "home city", "Lima", tags=None, source_observation_id="o1")
    r = api.get(SUBJ + "u%201/slot/home%20city")
    assert r.status == 200, r
    assert keys(r.json) == SLOT_KEYS, r
    ss = _slot_state(api, "u 1", "home city")
    assert r.json == {"subject_id": "u 1", "project_id": api.project, "slot": "home city",
                      "active_claim_id": c["claim_id"], "predicate": "home city",
                      "object_value": "Lima", "claim_type": "fact", "confidence": 0.8,
                      "updated_at": iso_ms(ss["updated_at"]), "tags": [],
                      "source": {"memory_id": None, "observation_id": "o1"}}
    assert_error(api.get(SUBJ + "u%201/slot/nope"), 404, "slot_not_found", subject_id="u 1",
                 slot="nope")


def test_slots_buckets(api):
    a = api.claim("u1", "a", "1")["claim_id"]
    b = api.claim("u1", "b", "2", tags=["x"])["claim_id"]
    _retract(api, b)
    r = api.get(SUBJ + "u1/slots")
    assert r.status == 200, r
    j = r.json
    assert keys(j) == ["subject_id", "total", "active_count", "slots"], j
    assert keys(j["slots"]) == ["active", "superseded", "other"]
    assert (j["subject_id"], j["total"], j["active_count"]) == ("u1", 2, 1)
    assert j["slots"]["superseded"] == []
    act = j["slots"]["active"]
    assert len(act) == 1 and keys(act[0]) == SLOTS_ROW_KEYS, act
    assert (act[0]["slot"], act[0]["active_claim_id"], act[0]["status"]) == ("a", a, "active")
    other = j["slots"]["other"]
    ss = _slot_state(api, "u1", "b")
    assert other == [{"slot": "b", "active_claim_id": None, "predicate": "", "object_value": "",
                      "claim_type": "", "confidence": 0, "tags": [],
                      "updated_at": iso_ms(ss["updated_at"]), "source_memory_id": None,
                      "source_observation_id": None, "status": "retracted"}]
    assert '"confidence":0,"tags":[]' in r.text


def test_slots_limit_default_100(api):
    sql(api.srv, "INSERT INTO claims (claim_id, project_id, subject_id, predicate, object_value, "
        "slot) SELECT %s || i, %s, 'u1', 'p' || i, 'v', 's' || i FROM generate_series(1, 120) i",
        (new_id("clm_b"), api.project))
    sql(api.srv, "INSERT INTO slot_state (project_id, subject_id, slot, active_claim_id) "
        "SELECT project_id, subject_id, slot, claim_id FROM claims WHERE project_id=%s",
        (api.project,))
    assert api.get(SUBJ + "u1/slots").json["total"] == 100  # DECISIONS 1 (CORE: 1)
    assert api.get(SUBJ + "u1/slots?limit=7").json["total"] == 7
    assert api.get(SUBJ + "u1/slots?limit=x").json["total"] == 100
    assert api.get(SUBJ + "u1/slots?limit=9999").json["total"] == 120


# ------------------------------------------------------------------------------------------------
# graph / history
# ------------------------------------------------------------------------------------------------
def test_graph_shape(api):
    a = api.claim("u1", "city", "Rome")["claim_id"]
    b = api.claim("u1", "city", "Paris")["claim_id"]
    c = api.claim("u1", "food", "rice")["claim_id"]
    api.claim("u2", "city", "elsewhere")
    _retract(api, b)
    sql(api.srv, "UPDATE claims SET asserted_at = asserted_at - (interval '1 second' * "
        "CASE claim_id WHEN %s THEN 3 WHEN %s THEN 2 ELSE 1 END) WHERE project_id=%s",
        (a, b, api.project))
    r = api.get(SUBJ + "u1/graph")
    assert r.status == 200, r
    j = r.json
    assert keys(j) == ["subject_id", "claims_count", "edges_count", "edges_by_type", "claims",
                       "edges"], j
    assert (j["subject_id"], j["claims_count"], j["edges_count"]) == ("u1", 3, 1)
    assert j["edges_by_type"] == {"retracts": 1}
    assert [x["claim_id"] for x in j["claims"]] == [c, b, a]  # asserted_at desc
    for x in j["claims"]:
        assert keys(x) == CLAIM_KEYS, x  # DECISIONS 8: no embedding
    e = j["edges"][0]
    assert keys(e) == EDGE_KEYS and isinstance(e["edge_id"], str) and e["edge_id"].isdigit()
    assert (e["from_claim_id"], e["to_claim_id"]) == (b, a)
    r = api.get(SUBJ + "u1/graph?limit=1")
    assert r.json["claims_count"] == 1 and r.json["edges"] == [] and r.json["edges_by_type"] == {}
    r = api.get(SUBJ + "nobody/graph")
    assert r.json == {"subject_id": "nobody", "claims_count": 0, "edges_count": 0,
                      "edges_by_type": {}, "claims": [], "edges": []}


def test_graph_limit_default_50(api):
    sql(api.srv, "INSERT INTO claims (claim_id, project_id, subject_id, predicate, object_value, "
        "slot) SELECT %s || i, %s, 'u1', 'p', 'v', 's' FROM generate_series(1, 60) i",
        (new_id("clm_g"), api.project))
    assert api.get(SUBJ + "u1/graph").json["claims_count"] == 50  # DECISIONS 1
    assert api.get(SUBJ + "u1/graph?limit=300").json["claims_count"] == 60


def test_history_shape(api):
    a = api.claim("u1", "city", "Rome")["claim_id"]
    f = api.claim("u1", "food", "rice")["claim_id"]
    b = api.claim("u1", "city", "Paris")["claim_id"]
    _retract(api, b)
    sql(api.srv, "UPDATE claims SET asserted_at = asserted_at - (interval '1 second' * "
        "CASE claim_id WHEN %s THEN 3 WHEN %s THEN 2 ELSE 1 END) WHERE project_id=%s",
        (a, f, api.project))
    r = api.get(SUBJ + "u1/history")
    assert r.status == 200, r
    j = r.json
    assert keys(j) == ["subject_id", "project_id", "slot_filter", "by_slot", "edges",
                       "total_claims"], j
    assert (j["subject_id"], j["project_id"], j["slot_filter"], j["total_claims"]) == (
        "u1", api.project, None, 3)
    assert keys(j["by_slot"]) == ["city", "food"]  # first met in asserted_at desc order
    assert [x["claim_id"] for x in j["by_slot"]["city"]] == [b, a]
    assert [x["claim_id"] for x in j["by_slot"]["food"]] == [f]
    for x in j["by_slot"]["city"] + j["by_slot"]["food"]:
        assert keys(x) == CLAIM_KEYS, x  # DECISIONS 8
    assert j["edges"] == []  # only supersedes edges, never written
    r = api.get(SUBJ + "u1/history?slot=%20city%20")
    assert r.json["slot_filter"] == "city" and keys(r.json["by_slot"]) == ["city"]
    assert r.json["total_claims"] == 2
    r = api.get(SUBJ + "u1/history?slot=")
    assert r.json["slot_filter"] is None and r.json["total_claims"] == 3
    r = api.get(SUBJ + "u1/history?limit=1")
    assert r.json["total_claims"] == 1


def test_history_limit_default_100(api):
    sql(api.srv, "INSERT INTO claims (claim_id, project_id, subject_id, predicate, object_value, "
        "slot) SELECT %s || i, %s, 'u1', 'p', 'v', '' FROM generate_series(1, 110) i",
        (new_id("clm_h"), api.project))
    j = api.get(SUBJ + "u1/history").json
    assert j["total_claims"] == 100  # DECISIONS 1
    assert keys(j["by_slot"]) == ["_unknown"]  # a falsy slot


def test_subject_path_is_percent_decoded_not_trimmed(api):
    api.claim(" sp ", "k", "v")  # stored trimmed: "sp"
    assert api.get(SUBJ + "sp/truth").json["slot_count"] == 1
    assert api.get(SUBJ + "%20sp%20/truth").json["slot_count"] == 0
    assert api.get(SUBJ + "%20sp%20/truth").json["subject_id"] == " sp "
    api.claim("a/b", "k", "v")
    assert api.get(SUBJ + "a%2Fb/truth").json["slot_count"] == 1
