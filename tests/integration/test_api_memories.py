"""Memories CRUD (core-contract.md §5.3, §5.4, §5.7, §5.9–§5.13, §2.6, §3.7) as amended by
DECISIONS.md 1, 2, 4, 5, 9.

API-PENDING: every expectation in this module depends on the engram API work (issue #3); today each
CORE route answers 501 {"error":"not_implemented"}, so these tests fail until it lands. They are
deliberately not skipped or marked xfail.
"""
import datetime
import json

import pytest

from apiclient import (CLM_ID_RE, CREATE_KEYS, DUP_KEYS, MEM_ID_RE, MEM_KEYS, Api, api, api2,  # noqa: F401
                       assert_error, assert_now, assert_ts, count_rows, db_memory, insert_memory,
                       iso_ms, keys, new_id, qs, seg, sql, sql_dict, sql_one)

M = "/api/v1/memories"


def _list(api, query):
    r = api.get(M + "?" + query)
    assert r.status == 200, r
    assert keys(r.json) == ["data", "count"], r
    assert r.json["count"] == len(r.json["data"]), r
    return r.json["data"]


# ------------------------------------------------------------------------------------------------
# POST /memories
# ------------------------------------------------------------------------------------------------
def test_create_minimal_response_and_row(api):
    srv = api.srv
    r = api.post(M, {"subject_id": "  u1  ", "text": "  I drink green tea  "})
    assert r.status == 201, r
    b = r.json
    assert keys(b) == CREATE_KEYS, b
    assert MEM_ID_RE.match(b["id"]), b
    assert b == {"id": b["id"], "subject_id": "u1", "text": "I drink green tea", "kind": "fact",
                 "created": True, "superseded_count": 0, "superseded_ids": []}
    row = db_memory(srv, b["id"])
    assert row["project_id"] == api.project
    assert row["subject_id"] == "u1" and row["text"] == "I drink green tea"
    assert (row["kind"], row["visibility"], row["importance"]) == ("fact", "private", 50)
    assert row["confidence"] == 0.95  # the API default, not the schema's 0.8
    assert row["is_temporal"] is False and row["tags"] == [] and row["metadata"] == {}
    assert row["status"] == "active" and row["superseded_by"] is None
    assert row["is_deleted"] is False and row["source_type"] == "explicit"
    assert row["last_reinforced_at"] is not None
    assert row["last_seen_at"] is None and row["seen_count"] == 0
    assert row["reinforcement_count"] == 0
    assert row["created_at"] == row["updated_at"]


def test_create_all_fields_and_get_round_trip(api):
    mid = new_id("client-id")
    body = {"id": mid, "subject_id": "u1", "text": "Prefers window seats", "kind": "preference",
            "visibility": "shared", "importance": 80, "confidence": 0.9, "is_temporal": True,
            "tags": ["travel", "seat"], "metadata": {"bb": 1, "a": {"z": [1, 2.5], "y": None}},
            "source_type": "import"}
    r = api.post(M, body)
    assert r.status == 201, r
    assert r.json["id"] == mid and r.json["kind"] == "preference"
    m = api.mem(mid)
    assert keys(m) == MEM_KEYS, m
    assert m["project_id"] == api.project and m["subject_id"] == "u1"
    assert (m["kind"], m["visibility"], m["importance"], m["confidence"]) == (
        "preference", "shared", 80, 0.9)
    assert m["is_temporal"] is True and m["tags"] == ["travel", "seat"]
    # jsonb canonical key order: shorter keys first, then bytewise
    assert keys(m["metadata"]) == ["a", "bb"] and keys(m["metadata"]["a"]) == ["y", "z"]
    assert m["metadata"] == {"a": {"y": None, "z": [1, 2.5]}, "bb": 1}
    assert m["source_type"] == "import" and m["status"] == "active"
    assert m["superseded_by"] is None and m["is_deleted"] is False
    assert m["seen_count"] == 0 and m["reinforcement_count"] == 0 and m["last_seen_at"] is None
    for k in ("created_at", "updated_at", "last_reinforced_at"):
        assert_ts(m[k], k)
    assert_now(m["created_at"])
    row = db_memory(api.srv, mid)
    assert m["created_at"] == iso_ms(row["created_at"])
    assert m["updated_at"] == iso_ms(row["updated_at"])
    assert m["last_reinforced_at"] == iso_ms(row["last_reinforced_at"])


def test_get_truncates_microseconds(api):
    mid = insert_memory(api.srv, api.project, "u1", "old",
                        created_at="2024-01-02 03:04:05.678999+00",
                        updated_at="2024-01-02 03:04:05.999999+00")
    m = api.mem(mid)
    assert m["created_at"] == "2024-01-02T03:04:05.678Z"  # floored, not rounded
    assert m["updated_at"] == "2024-01-02T03:04:05.999Z"
    assert m["last_reinforced_at"] is None


@pytest.mark.parametrize("field,value,stored", [
    ("subject_id", {}, "[object Object]"),
    ("subject_id", ["a", "b"], "a,b"),
    ("subject_id", [["a", ["b"]], "c", None], "a,b,c,"),
    ("subject_id", 12, "12"),
    ("subject_id", True, "true"),
    ("subject_id", 1e21, "1e+21"),
    ("subject_id", 1.5e-7, "1.5e-7"),
    ("subject_id", 0.1, "0.1"),
    ("subject_id", 9007199254740993, "9007199254740992"),  # JSON numbers are doubles
    ("text", ["a", "b"], "a,b"),
    ("text", 12.5, "12.5"),
    ("text", {"x": 1}, "[object Object]"),
    ("text", True, "true"),
])
def test_create_js_string_coercions(api, field, value, stored):
    body = {"subject_id": "u1", "text": "t"}
    body[field] = value
    r = api.post(M, body)
    assert r.status == 201, r
    assert r.json[field] == stored, r
    assert db_memory(api.srv, r.json["id"])[field] == stored


@pytest.mark.parametrize("value,stored", [
    (55.9, 55), (150.7, 100), (-5, 0), (None, 0), ("abc", 50), ("60", 60), (True, 1),
    ([7], 7), ([], 0), ({}, 50), (0, 0), (100, 100), ("  42  ", 42), ("", 0),
])
def test_create_importance_clamp_int(api, value, stored):
    r = api.post(M, {"subject_id": "u1", "text": "t", "importance": value})
    assert r.status == 201, r
    assert api.mem(r.json["id"])["importance"] == stored
    assert db_memory(api.srv, r.json["id"])["importance"] == stored


@pytest.mark.parametrize("value,stored,raw", [
    (0.1, 0.1, '"confidence":0.1,'), (3, 1, '"confidence":1,'), (-1, 0, '"confidence":0,'),
    ("0.5", 0.5, '"confidence":0.5,'), (None, 0, '"confidence":0,'),
    ("abc", 0.95, '"confidence":0.95,'), ({}, 0.95, '"confidence":0.95,'),
    ([], 0, '"confidence":0,'), ([0.7], 0.7, '"confidence":0.7,'), (True, 1, '"confidence":1,'),
    (1e-7, 1e-7, '"confidence":1e-7,'), (1 / 3, 1 / 3, '"confidence":0.3333333333333333,'),
])
def test_create_confidence_clamp_float_and_js_format(api, value, stored, raw):
    r = api.post(M, {"subject_id": "u1", "text": "t", "confidence": value})
    assert r.status == 201, r
    g = api.get(M + "/" + r.json["id"])
    assert g.json["data"]["confidence"] == stored
    assert raw in g.text, g
    assert db_memory(api.srv, r.json["id"])["confidence"] == stored


def test_create_confidence_default_is_095(api):
    r = api.post(M, {"subject_id": "u1", "text": "t"})
    g = api.get(M + "/" + r.json["id"])
    assert '"confidence":0.95,' in g.text, g


@pytest.mark.parametrize("value,stored", [
    (True, True), ("true", False), (1, False), (False, False), (None, False), ({}, False),
])
def test_create_is_temporal_only_exact_true(api, value, stored):
    r = api.post(M, {"subject_id": "u1", "text": "t", "is_temporal": value})
    assert r.status == 201, r
    assert api.mem(r.json["id"])["is_temporal"] is stored


@pytest.mark.parametrize("value,stored", [
    ([1, None, {"a": 1}], ["1", "null", "[object Object]"]),
    ([True, 1.5, [1, [2, 3]], "x", 1e21], ["true", "1.5", "1,2,3", "x", "1e+21"]),
    ("a,b", []), ({"a": 1}, []), (None, []), (5, []), ([], []),
])
def test_create_tags_stringified(api, value, stored):
    r = api.post(M, {"subject_id": "u1", "text": "t", "tags": value})
    assert r.status == 201, r
    assert api.mem(r.json["id"])["tags"] == stored
    assert db_memory(api.srv, r.json["id"])["tags"] == stored


@pytest.mark.parametrize("value,stored", [
    ({"k": "v"}, {"k": "v"}), ([1, "x"], [1, "x"]), ("str", {}), (5, {}), (None, {}),
    (False, {}), ({}, {}),
])
def test_create_metadata_only_objects(api, value, stored):
    r = api.post(M, {"subject_id": "u1", "text": "t", "metadata": value})
    assert r.status == 201, r
    assert api.mem(r.json["id"])["metadata"] == stored


@pytest.mark.parametrize("field,value,stored", [
    ("kind", "", "fact"), ("kind", None, "fact"), ("kind", 0, "fact"),
    ("kind", "trait", "trait"), ("kind", "event", "event"),
    ("visibility", "", "private"), ("visibility", None, "private"),
    ("visibility", "public", "public"),
    ("source_type", "", "explicit"), ("source_type", "chat", "chat"),
])
def test_create_defaults_for_falsy(api, field, value, stored):
    r = api.post(M, {"subject_id": "u1", "text": "t", field: value})
    assert r.status == 201, r
    if field == "kind":
        assert r.json["kind"] == stored
    assert api.mem(r.json["id"])[field] == stored


@pytest.mark.parametrize("value", ["", 0, None, False])
def test_create_falsy_id_generates_one(api, value):
    r = api.post(M, {"subject_id": "u1", "text": "t", "id": value})
    assert r.status == 201, r
    assert MEM_ID_RE.match(r.json["id"]), r


def test_create_numeric_id_is_stringified(api):
    n = int(new_id("x").split("_")[1], 16) % 10 ** 12 + 10 ** 12
    r = api.post(M, {"subject_id": "u1", "text": "t", "id": n})
    assert r.status == 201, r
    assert r.json["id"] == str(n)
    assert api.mem(str(n))["id"] == str(n)


def test_create_project_id_in_body_is_ignored(api, api2):
    r = api.post(M, {"subject_id": "u1", "text": "t", "project_id": api2.project})
    assert r.status == 201, r
    assert db_memory(api.srv, r.json["id"])["project_id"] == api.project
    assert count_rows(api.srv, "memories", api2.project) == 0


def test_create_unicode_text_round_trip(api):
    text = "caf\u00e9 \U0001F600 line\u2028sep\u2029end \u00a0nbsp"
    r = api.post(M, {"subject_id": "s\u00e9", "text": text})
    assert r.status == 201, r
    assert r.json["text"] == text.strip()
    g = api.get(M + "/" + r.json["id"])
    assert g.json["data"]["text"] == text.strip()
    # written raw as UTF-8, U+2028/U+2029 included (JSON.stringify does not escape them)
    assert "\u2028".encode() in g.body and "\u2029".encode() in g.body
    assert "\U0001F600".encode() in g.body and b"\\u" not in g.body
    assert db_memory(api.srv, r.json["id"])["text"] == text.strip()


def test_text_limit_counts_utf16_units(api):
    ok = api.post(M, {"subject_id": "u1", "text": "\u00e9" * 10000})  # 10000 units, 20000 bytes
    assert ok.status == 201, ok
    assert db_memory(api.srv, ok.json["id"])["text"] == "\u00e9" * 10000
    ok2 = api.post(M, {"subject_id": "u1", "text": "\U0001F600" * 5000})  # exactly 10000 units
    assert ok2.status == 201, ok2
    ok3 = api.post(M, {"subject_id": "u1", "text": "   " + "a" * 10000 + "\n\t "})  # after trim
    assert ok3.status == 201, ok3
    bad = api.post(M, {"subject_id": "u1", "text": "\U0001F600" * 5001})  # 10002 units
    assert_error(bad, 400, "text_too_long", max=10000)
    bad2 = api.post(M, {"subject_id": "u1", "text": "a" * 10001})
    assert_error(bad2, 400, "text_too_long", max=10000)
    assert count_rows(api.srv, "memories", api.project) == 3


# ------------------------------------------------------------------------------------------------
# DECISIONS 4: exact-text duplicate skip without embeddings
# ------------------------------------------------------------------------------------------------
def test_duplicate_normalised_text_is_skipped(api):
    first = api.create("u1", "I like green tea")
    r = api.post(M, {"subject_id": "u1", "text": "  i  LIKE\tgreen\n tea ", "kind": "preference"})
    assert r.status == 200, r
    assert keys(r.json) == DUP_KEYS, r
    assert r.json == {"id": None, "subject_id": "u1", "text": "i  LIKE\tgreen\n tea",
                      "kind": "preference", "created": False, "skipped": True,
                      "reason": "duplicate"}
    assert count_rows(api.srv, "memories", api.project) == 1
    assert db_memory(api.srv, first["id"])["status"] == "active"
    # kind echoes the raw body.kind || "fact"
    r2 = api.post(M, {"subject_id": "u1", "text": "I LIKE GREEN TEA"})
    assert r2.status == 200 and r2.json["kind"] == "fact", r2
    # no_supersede does not disable the duplicate guard
    r3 = api.post(M, {"subject_id": "u1", "text": "i like green tea", "no_supersede": True})
    assert r3.status == 200 and r3.json["skipped"] is True, r3
    assert count_rows(api.srv, "memories", api.project) == 1


def test_duplicate_only_against_active_undeleted_same_subject(api, api2):
    a = api.create("u1", "Lives near the river")
    assert api.create("u2", "Lives near the river")["created"] is True        # other subject
    assert api2.create("u1", "Lives near the river")["created"] is True       # other project
    assert api.create("u1", "Lives near the river, north bank")["created"] is True  # not equal
    sql(api.srv, "UPDATE memories SET status='superseded' WHERE id=%s", (a["id"],))
    b = api.create("u1", "lives near the RIVER")                              # a not active
    assert b["created"] is True
    r = api.delete(M + "/" + b["id"])
    assert r.json["deleted"] is True
    assert api.create("u1", "Lives near the river")["created"] is True        # b deleted


# ------------------------------------------------------------------------------------------------
# DECISIONS 5: claim extraction in the same transaction, before the response
# ------------------------------------------------------------------------------------------------
def test_create_extracts_claims_before_responding(api):
    r = api.create("u1", "My name is Bob. I live in Paris")
    mid = r["id"]
    # no waiting: the claims must already be committed when the 201 arrives
    rows = sql_dict(api.srv, "SELECT * FROM claims WHERE project_id=%s ORDER BY predicate",
                    (api.project,))
    assert [(c["predicate"], c["object_value"], c["claim_type"], c["confidence"]) for c in rows] \
        == [("lives_in", "Paris", "fact", 0.85), ("name", "Bob", "fact", 0.9)], rows
    for c in rows:
        assert CLM_ID_RE.match(c["claim_id"]) and c["source_memory_id"] == mid
        assert c["subject_id"] == "u1" and c["slot"] == c["predicate"] and c["status"] == "active"
    cl = api.get(M + "/%s/claims" % mid)
    assert cl.status == 200 and cl.json["count"] == 2, cl
    t = api.get("/api/v1/claims/subject/u1/truth")
    assert t.status == 200 and t.json["slot_count"] == 2, t
    # the claims were written by the same transaction as the memory
    ts = sql_one(api.srv, "SELECT m.created_at, min(c.asserted_at), max(c.asserted_at) "
                 "FROM memories m JOIN claims c ON c.source_memory_id=m.id WHERE m.id=%s "
                 "GROUP BY m.created_at", (mid,))
    assert ts[0] == ts[1] == ts[2], ts


@pytest.mark.parametrize("flags", [{"extract_claims": False}, {"no_supersede": True}])
def test_create_without_claim_extraction(api, flags):
    api.create("u1", "My name is Bob", **flags)
    assert count_rows(api.srv, "claims", api.project) == 0


@pytest.mark.parametrize("flags", [{"extract_claims": "false"}, {"extract_claims": 0},
                                   {"no_supersede": "true"}, {"extract_claims": None}])
def test_create_claim_extraction_only_off_for_exact_values(api, flags):
    api.create("u1", "My name is Bob", **flags)
    assert count_rows(api.srv, "claims", api.project) == 1


# ------------------------------------------------------------------------------------------------
# GET /memories (list)
# ------------------------------------------------------------------------------------------------
def _seed_list(api, n, subject="u1"):
    """n rows, one second apart (one INSERT); returns their ids newest first."""
    tag = new_id("mem_l")
    sql(api.srv, "INSERT INTO memories (id, project_id, subject_id, text, created_at) "
        "SELECT %s || '_' || lpad(i::text, 3, '0'), %s, %s, 'row ' || i, "
        "timestamptz '2024-03-01 00:00:00+00' + i * interval '1 second' "
        "FROM generate_series(0, %s - 1) AS i", (tag, api.project, subject, n))
    return ["%s_%03d" % (tag, i) for i in range(n)][::-1]


def test_list_shape_order_and_rows(api):
    ids = _seed_list(api, 3)
    api.create("other-subject", "not mine")
    data = _list(api, "subject_id=u1&limit=10")
    assert [m["id"] for m in data] == ids
    for m in data:
        assert keys(m) == MEM_KEYS, m
        assert m["is_deleted"] is False and m["project_id"] == api.project


def test_list_absent_limit_is_default_50(api):
    ids = _seed_list(api, 60)
    data = _list(api, "subject_id=u1")
    assert len(data) == 50, "DECISIONS 1: absent limit -> 50 (CORE gives 1)"
    assert [m["id"] for m in data] == ids[:50]


@pytest.mark.parametrize("query,expected", [
    ("limit=", 1), ("limit=abc", 50), ("limit=Infinity", 50), ("limit=NaN", 50),
    ("limit=-3", 1), ("limit=0", 1), ("limit=2.7", 2), ("limit=%205%20", 5), ("limit=+7", 7),
    ("limit=%2B3", 3), ("limit=1e1", 10), ("limit=0x10", 16), ("limit=0b11", 3),
    ("limit=1e400", 50), ("limit=.5", 1), ("limit=5.", 5), ("limit=1_0", 50), ("limit=500", 60),
    ("limit=3&limit=9", 3),
])
def test_list_limit_parsing(api, query, expected):
    _seed_list(api, 60)
    assert len(_list(api, "subject_id=u1&" + query)) == expected


@pytest.mark.parametrize("offset,skip", [
    ("2.9", 2), ("-1", 0), ("abc", 0), ("", 0), ("3", 3), ("1e1", 10), ("99", 12),
])
def test_list_offset_parsing(api, offset, skip):
    ids = _seed_list(api, 12)
    data = _list(api, "subject_id=u1&limit=200&offset=" + offset)
    assert [m["id"] for m in data] == ids[skip:]


def test_list_include_deleted_and_superseded(api):
    a = insert_memory(api.srv, api.project, "u1", "active", created_at="2024-01-01T00:00:03Z")
    d = insert_memory(api.srv, api.project, "u1", "deleted", is_deleted=True,
                      created_at="2024-01-01T00:00:02Z")
    s = insert_memory(api.srv, api.project, "u1", "superseded", status="superseded",
                      superseded_by=a, created_at="2024-01-01T00:00:01Z")
    ids = lambda q: [m["id"] for m in _list(api, "subject_id=u1&limit=10" + q)]  # noqa: E731
    assert ids("") == [a]
    assert ids("&include_deleted=true") == [a, d]
    assert ids("&include_superseded=TRUE") == [a, s]
    assert ids("&include_deleted=True&include_superseded=true") == [a, d, s]
    assert ids("&include_deleted=1&include_superseded=yes") == [a]  # parseBool: only "true"
    rows = {m["id"]: m for m in _list(api, "subject_id=u1&limit=10&include_deleted=true"
                                              "&include_superseded=true")}
    assert rows[d]["is_deleted"] is True and rows[a]["is_deleted"] is False  # DECISIONS 9
    assert rows[s]["status"] == "superseded" and rows[s]["superseded_by"] == a


def test_list_subject_is_trimmed_and_form_decoded(api):
    api.create("a b", "spaced")
    api.create("%zz", "literal")
    assert len(_list(api, "subject_id=a+b&limit=5")) == 1          # + is a space
    assert len(_list(api, "subject_id=%20a%20b%20&limit=5")) == 1  # trimmed
    assert len(_list(api, "subject_id=%zz&limit=5")) == 1          # malformed escape literal
    assert _list(api, "subject_id=a%2Bb&limit=5") == []


# ------------------------------------------------------------------------------------------------
# GET /memories/{id}
# ------------------------------------------------------------------------------------------------
def test_get_unknown_and_route_quirks(api):
    assert_error(api.get(M + "/mem_nope"), 404, "memory_not_found")
    assert_error(api.get(M + "/extract"), 404, "memory_not_found")
    assert_error(api.patch(M + "/search", {}), 404, "memory_not_found")
    r = api.delete(M + "/extract")
    assert r.status == 200 and r.json == {"ok": True, "deleted": False}, r
    assert keys(r.json) == ["ok", "deleted"]


def test_get_path_id_is_percent_decoded(api):
    mid = "a/b c+d%" + new_id("x")
    api.create("u1", "weird id", id=mid)
    assert api.mem(mid)["id"] == mid
    r = api.get(M + "/" + seg(mid).replace("%2B", "+"))  # '+' stays '+' in a path
    assert r.status == 200 and r.json["data"]["id"] == mid, r


def test_get_superseded_is_served(api):
    mid = api.create("u1", "x")["id"]
    sql(api.srv, "UPDATE memories SET status='superseded', superseded_by='mem_other' WHERE id=%s",
        (mid,))
    m = api.mem(mid)
    assert m["status"] == "superseded" and m["superseded_by"] == "mem_other"


# ------------------------------------------------------------------------------------------------
# PATCH /memories/{id}
# ------------------------------------------------------------------------------------------------
def test_patch_updates_fields(api):
    mid = api.create("u1", "before", importance=10)["id"]
    row0 = db_memory(api.srv, mid)
    r = api.patch(M + "/" + mid, {"text": "  after  ", "kind": "trait", "visibility": "public",
                                   "importance": 55.9, "confidence": 0.1, "is_temporal": True,
                                   "tags": [1, None], "metadata": {"k": [1]}})
    assert r.status == 200, r
    assert r.json == {"id": mid, "updated": True} and keys(r.json) == ["id", "updated"]
    m = api.mem(mid)
    assert (m["text"], m["kind"], m["visibility"], m["importance"], m["confidence"]) == (
        "after", "trait", "public", 55, 0.1)
    assert m["is_temporal"] is True and m["tags"] == ["1", "null"] and m["metadata"] == {"k": [1]}
    row = db_memory(api.srv, mid)
    assert row["updated_at"] > row0["updated_at"] and row["created_at"] == row0["created_at"]
    assert m["updated_at"] == iso_ms(row["updated_at"])


def test_patch_empty_body_is_noop_but_bumps_updated_at(api):
    mid = api.create("u1", "same", importance=33, tags=["a"])["id"]
    row0 = db_memory(api.srv, mid)
    for raw in ("", "  \n", "{}"):
        r = api.patch(M + "/" + mid, raw=raw)
        assert r.status == 200 and r.json == {"id": mid, "updated": True}, r
    row = db_memory(api.srv, mid)
    assert (row["text"], row["importance"], row["tags"]) == ("same", 33, ["a"])
    assert row["updated_at"] > row0["updated_at"]


@pytest.mark.parametrize("patch,field,stored", [
    ({"importance": None}, "importance", 0),
    ({"importance": "abc"}, "importance", 42),     # fallback = existing value
    ({"importance": 150}, "importance", 100),
    ({"confidence": None}, "confidence", 0),
    ({"confidence": "abc"}, "confidence", 0.5),
    ({"confidence": 7}, "confidence", 1),
    ({"tags": "x,y"}, "tags", ["keep"]),           # non-array ignored
    ({"tags": []}, "tags", []),
    ({"metadata": None}, "metadata", {}),
    ({"metadata": 0}, "metadata", {}),
    ({"metadata": "str"}, "metadata", "str"),
    ({"metadata": [1, 2]}, "metadata", [1, 2]),
    ({"text": ""}, "text", ""),
    ({"text": "x" * 10001}, "text", "x" * 10001),  # no length limit on PATCH
    ({"is_temporal": False}, "is_temporal", False),
])
def test_patch_coercions(api, patch, field, stored):
    mid = api.create("u1", "orig", importance=42, confidence=0.5, tags=["keep"],
                     metadata={"m": 1}, is_temporal=True)["id"]
    r = api.patch(M + "/" + mid, patch)
    assert r.status == 200, r
    assert api.mem(mid)[field] == stored
    assert db_memory(api.srv, mid)[field] == stored


def test_patch_superseded_is_allowed(api):
    mid = api.create("u1", "x")["id"]
    sql(api.srv, "UPDATE memories SET status='superseded' WHERE id=%s", (mid,))
    r = api.patch(M + "/" + mid, {"text": "y"})
    assert r.status == 200, r
    assert db_memory(api.srv, mid)["status"] == "superseded"


def test_patch_not_found_and_deleted(api):
    assert_error(api.patch(M + "/mem_nope", {"text": "x"}), 404, "memory_not_found")
    mid = api.create("u1", "x")["id"]
    api.delete(M + "/" + mid)
    assert_error(api.patch(M + "/" + mid, {"text": "y"}), 404, "memory_deleted")
    assert db_memory(api.srv, mid)["text"] == "x"


# ------------------------------------------------------------------------------------------------
# DELETE /memories/{id}
# ------------------------------------------------------------------------------------------------
def test_delete_soft_then_404_then_false(api):
    mid = api.create("u1", "My name is Zed")["id"]
    nclaims = count_rows(api.srv, "claims", api.project)
    assert nclaims == 1
    sql(api.srv, "UPDATE memories SET status='superseded' WHERE id=%s", (mid,))
    row0 = db_memory(api.srv, mid)
    r = api.delete(M + "/" + mid)
    assert r.status == 200 and r.json == {"ok": True, "deleted": True}, r
    assert keys(r.json) == ["ok", "deleted"]
    row = db_memory(api.srv, mid)
    assert row["is_deleted"] is True and row["status"] == "superseded"  # status untouched
    assert row["updated_at"] > row0["updated_at"]
    assert count_rows(api.srv, "claims", api.project) == nclaims  # claims untouched
    assert count_rows(api.srv, "claim_assertions", api.project) == 1
    assert_error(api.get(M + "/" + mid), 404, "memory_deleted")
    assert_error(api.get(M + "/%s/claims" % mid), 404, "memory_deleted")
    r2 = api.delete(M + "/" + mid)
    assert r2.status == 200 and r2.json == {"ok": True, "deleted": False}, r2
    r3 = api.delete(M + "/mem_never_existed")
    assert r3.status == 200 and r3.json == {"ok": True, "deleted": False}, r3


def test_delete_ignores_body(api):
    mid = api.create("u1", "x")["id"]
    r = api.call("DELETE", M + "/" + mid, raw="{not json")
    assert r.status == 200 and r.json == {"ok": True, "deleted": True}, r


# ------------------------------------------------------------------------------------------------
# POST /memories/{id}/restore and GET /memories/superseded
# ------------------------------------------------------------------------------------------------
def test_restore_flow(api):
    keep = api.create("u1", "new truth")["id"]
    old = api.create("u1", "old truth")["id"]
    r = api.post(M + "/%s/restore" % old)
    assert r.status == 200, r
    assert r.json == {"ok": True, "restored": False, "message": "Memory is already active"}
    assert keys(r.json) == ["ok", "restored", "message"]
    sql(api.srv, "UPDATE memories SET status='superseded', superseded_by=%s WHERE id=%s",
        (keep, old))
    row0 = db_memory(api.srv, old)
    r = api.post(M + "/%s/restore" % old, raw="{garbage")  # the body is not read
    assert r.status == 200, r
    assert r.json == {"ok": True, "restored": True, "id": old, "subject_id": "u1",
                      "text": "old truth"}
    assert keys(r.json) == ["ok", "restored", "id", "subject_id", "text"]
    row = db_memory(api.srv, old)
    assert row["status"] == "active" and row["superseded_by"] is None
    assert row["updated_at"] > row0["updated_at"]


def test_restore_errors(api):
    assert_error(api.post(M + "/mem_nope/restore"), 404, "memory_not_found")
    mid = api.create("u1", "x")["id"]
    sql(api.srv, "UPDATE memories SET status='superseded' WHERE id=%s", (mid,))
    api.delete(M + "/" + mid)
    assert_error(api.post(M + "/%s/restore" % mid), 400, "memory_deleted",
                 message="Cannot restore a deleted memory")
    assert db_memory(api.srv, mid)["status"] == "superseded"


def test_superseded_listing(api):
    base = datetime.datetime(2024, 5, 1, tzinfo=datetime.timezone.utc)
    sup = [insert_memory(api.srv, api.project, "u1", "s%d" % i, status="superseded",
                         superseded_by="mem_x", created_at=base + datetime.timedelta(minutes=i))
           for i in range(55)][::-1]
    insert_memory(api.srv, api.project, "u1", "sd", status="superseded", is_deleted=True,
                  created_at=base + datetime.timedelta(days=1))
    insert_memory(api.srv, api.project, "u1", "act")
    insert_memory(api.srv, api.project, "u2", "other", status="superseded")
    r = api.get(M + "/superseded?subject_id=u1")
    assert r.status == 200 and keys(r.json) == ["data", "count"], r
    assert [m["id"] for m in r.json["data"]] == sup[:50]  # DECISIONS 1: default 50
    assert r.json["count"] == 50
    assert all(keys(m) == MEM_KEYS and m["status"] == "superseded" for m in r.json["data"])
    r = api.get(M + "/superseded?subject_id=u1&limit=2&offset=1")
    assert [m["id"] for m in r.json["data"]] == sup[1:3]
    r = api.get(M + "/superseded?subject_id=u1&limit=0x3")
    assert r.json["count"] == 3
    assert_error(api.get(M + "/superseded"), 400, "subject_id_required")


# ------------------------------------------------------------------------------------------------
# GET /memories/{id}/claims
# ------------------------------------------------------------------------------------------------
def test_memory_claims_lists_assertions(api):
    mid = api.create("u1", "plain note", extract_claims=False)["id"]
    c1 = api.claim("u1", "favorite_color", "blue", source_memory_id=mid, confidence=0.6)
    r = api.get(M + "/%s/claims" % mid)
    assert r.status == 200 and keys(r.json) == ["data", "count"], r
    assert r.json["count"] == 1
    a = r.json["data"][0]
    assert keys(a) == ["id", "predicate", "type", "value", "confidence", "status",
                       "first_seen_at", "last_seen_at"], a
    row = sql_dict(api.srv, "SELECT * FROM claim_assertions WHERE claim_id=%s",
                   (c1["claim_id"],))[0]
    assert a == {"id": row["assertion_id"], "predicate": "favorite_color", "type": "string",
                 "value": "blue", "confidence": 0.6, "status": "active",
                 "first_seen_at": iso_ms(row["first_seen_at"]),
                 "last_seen_at": iso_ms(row["last_seen_at"])}
    # superseded memories are served; newest last_seen_at first
    sql(api.srv, "UPDATE memories SET status='superseded' WHERE id=%s", (mid,))
    api.claim("u1", "likes_x", "y", source_memory_id=mid)
    sql(api.srv, "UPDATE claim_assertions SET last_seen_at = last_seen_at - interval '1 hour' "
        "WHERE claim_id=%s", (c1["claim_id"],))
    r = api.get(M + "/%s/claims" % mid)
    assert [x["predicate"] for x in r.json["data"]] == ["likes_x", "favorite_color"], r
    assert_error(api.get(M + "/mem_nope/claims"), 404, "memory_not_found")
