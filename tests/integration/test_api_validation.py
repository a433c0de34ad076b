"""Validation and bad input: each route's documented errors in order (core-contract.md §5), JSON
body parsing (§2.5), DECISIONS 2 and 3 (specific 400s/409s instead of CORE's 500s), and
RELIABILITY.md §2.1 B6–B12: every case is a 4xx, never a 5xx, and the process stays alive.

API-PENDING: depends on the engram API work (issue #3); fails with 501 until it lands (not skipped).
"""
import json

import pytest

from apiclient import (MEM_ID_RE, api, api2, assert_error, count_rows, db_memory, keys, new_id,  # noqa: F401
                       qs, seg, sql_dict)

M = "/api/v1/memories"
BODY_ROUTES = [("POST", M), ("POST", M + "/extract"), ("PATCH", M + "/{id}"),
               ("POST", "/api/v1/claims")]


def _route(api, method, path):
    if "{id}" in path:
        mid = api.create("u1", "patch target", extract_claims=False)["id"]
        path = path.replace("{id}", mid)
    return method, path


# ------------------------------------------------------------------------------------------------
# B6: invalid JSON bodies -> 400 invalid_json_body (DECISIONS 3: non-objects too)
# ------------------------------------------------------------------------------------------------
INVALID_JSON = ["{", '{"a":}', "[1,]", '{"a":1,}', "nul", "{'a':1}", '{"a":1}x', '{"a":1} {}',
                "NaN", '{"a":NaN}', '{"a":Infinity}', '{"a":01}', '{"a":"\\x"}', '{"a":"unterminated',
                '{"a":1', '{"a":.5}', '{"a":+1}', '{"a":"tab\there"}', "}",
                # falsy JSON is rejected by CORE too
                "null", "false", "0", '""',
                # DECISIONS 3: a non-object body
                "[]", "[1]", "1", "true", '"str"', "12.5"]


@pytest.mark.parametrize("method,path", BODY_ROUTES)
@pytest.mark.parametrize("raw", INVALID_JSON)
def test_b6_invalid_json_body(api, method, path, raw):
    method, path = _route(api, method, path)
    before = count_rows(api.srv, "memories", api.project)
    r = api.call(method, path, raw=raw)
    assert_error(r, 400, "invalid_json_body")
    assert count_rows(api.srv, "memories", api.project) == before


@pytest.mark.parametrize("method,path", BODY_ROUTES)
def test_b6_invalid_json_checked_before_anything_else(api, method, path):
    """The body is parsed first: missing ids and missing fields do not mask invalid JSON."""
    path = path.replace("{id}", "mem_does_not_exist")
    assert_error(api.call(method, path, raw="{bad"), 400, "invalid_json_body")


def test_b6_empty_and_whitespace_bodies_are_empty_objects(api):
    assert_error(api.post(M, raw=""), 400, "subject_id_required")
    assert_error(api.post(M, raw=" \r\n\t "), 400, "subject_id_required")
    assert_error(api.post("/api/v1/claims", raw=""), 400, "subject_id_required")
    assert_error(api.post(M + "/extract", raw="  "), 400, "subject_id_required")


def test_b6_content_type_is_not_checked(api):
    """CORE parses the body as JSON whatever Content-Type says (§2.1)."""
    for i, ct in enumerate(["text/plain", "application/x-www-form-urlencoded",
                            "application/json; charset=latin1", None]):
        body = json.dumps({"subject_id": "u1", "text": "typed as text %d" % i})
        r = api.call("POST", M, raw=body, content_type=ct)
        assert r.status == 201, (ct, r)
    assert count_rows(api.srv, "memories", api.project) == 4


def test_b6_duplicate_keys_last_wins(api):
    r = api.post(M, raw='{"subject_id":"first","text":"x","subject_id":"second"}')
    assert r.status == 201 and r.json["subject_id"] == "second", r


# ------------------------------------------------------------------------------------------------
# documented validation errors, in order
# ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("body,code", [
    ({}, "subject_id_required"),
    ({"text": "x"}, "subject_id_required"),
    ({"subject_id": "", "text": "x"}, "subject_id_required"),
    ({"subject_id": "   ", "text": "x"}, "subject_id_required"),
    ({"subject_id": None, "text": "x"}, "subject_id_required"),
    ({"subject_id": 0, "text": "x"}, "subject_id_required"),
    ({"subject_id": False, "text": "x"}, "subject_id_required"),
    ({"subject_id": [], "text": "x"}, "subject_id_required"),
    ({"subject_id": [None], "text": "x"}, "subject_id_required"),
    ({"subject_id": "u1"}, "text_required"),
    ({"subject_id": "u1", "text": " \n\t"}, "text_required"),
    ({"subject_id": "u1", "text": 0}, "text_required"),
    ({"subject_id": "u1", "text": None}, "text_required"),
    ({"subject_id": "u1", "text": ""}, "text_required"),
    # validation before the DECISIONS 2 type checks
    ({"text": "x", "kind": "bogus"}, "subject_id_required"),
    ({"subject_id": "u1", "kind": "bogus"}, "text_required"),
])
def test_create_validation_order(api, body, code):
    assert_error(api.post(M, body), 400, code)
    assert count_rows(api.srv, "memories", api.project) == 0


def test_create_too_long_before_kind_check(api):
    assert_error(api.post(M, {"subject_id": "u1", "text": "a" * 10001, "kind": "bogus"}), 400,
                 "text_too_long", max=10000)


@pytest.mark.parametrize("query,code,extra", [
    ("", "subject_id_required", {}),
    ("?subject_id=", "subject_id_required", {}),
    ("?subject_id=%20%20", "subject_id_required", {}),
    ("?subject_id=+", "subject_id_required", {}),
    ("?limit=5", "subject_id_required", {}),
])
def test_list_validation(api, query, code, extra):
    assert_error(api.get(M + query), 400, code, **extra)


# ------------------------------------------------------------------------------------------------
# DECISIONS 2: wrong types -> specific 400s (CORE: 500 with a database message)
# ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("field,value,code", [
    ("kind", "bogus", "invalid_kind"),
    ("kind", "FACT", "invalid_kind"),
    ("kind", 5, "invalid_kind"),
    ("kind", True, "invalid_kind"),
    ("kind", {"a": 1}, "invalid_kind"),
    ("visibility", "secret", "invalid_visibility"),
    ("visibility", 1, "invalid_visibility"),
    ("visibility", ["private"], "invalid_visibility"),
])
def test_create_bad_enum_is_400(api, field, value, code):
    assert_error(api.post(M, {"subject_id": "u1", "text": "t", field: value}), 400, code)
    assert count_rows(api.srv, "memories", api.project) == 0


@pytest.mark.parametrize("patch,code", [
    ({"kind": "bogus"}, "invalid_kind"),
    ({"kind": ""}, "invalid_kind"),
    ({"kind": None}, "invalid_kind"),
    ({"visibility": "nope"}, "invalid_visibility"),
    ({"visibility": None}, "invalid_visibility"),
    ({"visibility": ""}, "invalid_visibility"),
    ({"text": None}, "invalid_text"),
    ({"is_temporal": None}, "invalid_is_temporal"),
    ({"is_temporal": "maybe"}, "invalid_is_temporal"),
    ({"is_temporal": {}}, "invalid_is_temporal"),
    ({"is_temporal": [True]}, "invalid_is_temporal"),
])
def test_patch_wrong_types_are_400(api, patch, code):
    mid = api.create("u1", "unchanged", kind="note", visibility="shared", is_temporal=True)["id"]
    before = db_memory(api.srv, mid)
    assert_error(api.patch(M + "/" + mid, patch), 400, code)
    after = db_memory(api.srv, mid)
    assert after == before  # nothing written, updated_at included


@pytest.mark.parametrize("patch,field,stored", [
    ({"kind": "event"}, "kind", "event"), ({"visibility": "public"}, "visibility", "public"),
    ({"is_temporal": False}, "is_temporal", False),
])
def test_patch_valid_values_still_work(api, patch, field, stored):
    mid = api.create("u1", "x", is_temporal=True)["id"]
    assert api.patch(M + "/" + mid, patch).status == 200
    assert db_memory(api.srv, mid)[field] == stored


# ------------------------------------------------------------------------------------------------
# B10: NUL and invalid UTF-8 -> 400 invalid_text (DECISIONS 2)
# ------------------------------------------------------------------------------------------------
BAD_TEXT_RAW = [
    b'{"subject_id":"u1","text":"a\\u0000b"}',           # escaped NUL
    b'{"subject_id":"u1","text":"\\u0000"}',
    b'{"subject_id":"u1","text":"a\xffb"}',               # invalid byte
    b'{"subject_id":"u1","text":"a\xc0\x80b"}',           # overlong NUL
    b'{"subject_id":"u1","text":"a\xc3"}',                # truncated sequence
    b'{"subject_id":"u1","text":"a\xed\xa0\x80b"}',       # UTF-8-encoded surrogate
    b'{"subject_id":"u1","text":"a\xf4\x90\x80\x80b"}',   # above U+10FFFF
]


@pytest.mark.parametrize("raw", BAD_TEXT_RAW)
def test_b10_create_text_nul_or_bad_utf8(api, raw):
    assert_error(api.post(M, raw=raw), 400, "invalid_text")
    assert count_rows(api.srv, "memories", api.project) == 0


@pytest.mark.parametrize("raw", BAD_TEXT_RAW)
def test_b10_patch_text_nul_or_bad_utf8(api, raw):
    mid = api.create("u1", "clean", extract_claims=False)["id"]
    assert_error(api.patch(M + "/" + mid, raw=raw), 400, "invalid_text")
    assert db_memory(api.srv, mid)["text"] == "clean"


@pytest.mark.parametrize("raw", [
    b'{"subject_id":"u\\u0000","text":"x"}',
    b'{"subject_id":"u1","text":"x","tags":["a\\u0000"]}',
    b'{"subject_id":"u1","text":"x","metadata":{"k":"\\u0000"}}',
    b'{"subject_id":"u1","text":"x","metadata":{"\\u0000":1}}',
    b'{"subject_id":"u1","text":"x","source_type":"\xff"}',
    b'{"subject_id":"u1","text":"x","id":"m\\u0000"}',
    b'{"subject_id":"u1","text":"lone \\ud800 surrogate"}',
    b'{"subject_id":"u1","text":"lone \\udc00"}',
])
def test_b10_nul_or_bad_utf8_in_other_fields_is_400(api, raw):
    r = api.post(M, raw=raw)
    assert r.status == 400, r
    assert isinstance(r.json.get("error"), str) and r.json["error"]
    assert count_rows(api.srv, "memories", api.project) == 0


@pytest.mark.parametrize("raw", [
    b'{"subject_id":"u1","predicate":"p","object_value":"a\\u0000"}',
    b'{"subject_id":"u1","predicate":"p\xff","object_value":"v"}',
    b'{"subject_id":"u1","text":"My name is \\u0000"}',
])
def test_b10_claims_and_extract_nul_is_400(api, raw):
    path = "/api/v1/claims" if b"predicate" in raw else M + "/extract?learn=true"
    r = api.post(path, raw=raw)
    assert r.status == 400, r
    assert count_rows(api.srv, "claims", api.project) == 0


def test_b10_escaped_non_bmp_and_specials_are_fine(api):
    raw = '{"subject_id":"u1","text":"\\ud83d\\ude00 \\u00e9 \\u2028 \\u001f"}'
    r = api.post(M, raw=raw)
    assert r.status == 201, r
    assert r.json["text"] == "\U0001F600 \u00e9 \u2028 \u001f"
    assert '"text":"\U0001F600 \u00e9 \u2028 \\u001f"' in r.text


# ------------------------------------------------------------------------------------------------
# B8: numbers
# ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("num,stored", [
    ("-0", 0), ("9223372036854775808", 100), ("9007199254740993", 100), ("1e308", 100),
    ("-1e308", 0), ("1" + "0" * 400, 50), ("1e400", 50), ("-1e400", 50), ("4.9e-324", 0),
    ("1e-400", 0), ("55.999999999999999999", 56),
])
def test_b8_importance_numbers(api, num, stored):
    """JS semantics (Number() then clamp, ±Infinity -> default 50) or a 400; never a 5xx."""
    r = api.post(M, raw='{"subject_id":"u1","text":"n","importance":%s}' % num)
    if r.status == 400:
        assert isinstance(r.json.get("error"), str), r
        assert count_rows(api.srv, "memories", api.project) == 0
    else:
        assert r.status == 201, r
        assert db_memory(api.srv, r.json["id"])["importance"] == stored


@pytest.mark.parametrize("num,stored", [
    ("-0", 0), ("1e-400", 0), ("0.1", 0.1), ("1e400", 0.95), ("-1e400", 0.95),
    ("0.30000000000000004", 0.30000000000000004),
])
def test_b8_confidence_numbers(api, num, stored):
    r = api.post(M, raw='{"subject_id":"u1","text":"n","confidence":%s}' % num)
    if r.status == 400:
        assert isinstance(r.json.get("error"), str), r
    else:
        assert r.status == 201, r
        m = api.mem(r.json["id"])
        assert m["confidence"] == stored
        assert db_memory(api.srv, r.json["id"])["confidence"] == stored


def test_b8_limit_numbers_in_query(api):
    for v in ("9223372036854775808", "1e308", "-1e308", "1" + "0" * 400, "NaN", "-0"):
        r = api.get(M + "?subject_id=u1&limit=" + v)
        assert r.status == 200, (v, r)


# ------------------------------------------------------------------------------------------------
# B9: depth and size
# ------------------------------------------------------------------------------------------------
def _nested(depth_total):
    """A body whose total nesting (the root object included) is depth_total."""
    inner = depth_total - 1
    return ('{"subject_id":"u1","text":"deep","metadata":' + '{"a":' * (inner - 1) + "{}" +
            "}" * (inner - 1) + "}")


def test_b9_depth_64_is_accepted(api):
    r = api.post(M, raw=_nested(64))
    assert r.status == 201, r


@pytest.mark.parametrize("depth", [65, 200])
def test_b9_depth_over_64_is_400(api, depth):
    r = api.post(M, raw=_nested(depth))
    assert r.status == 400, r
    assert isinstance(r.json.get("error"), str) and r.json["error"], r
    assert count_rows(api.srv, "memories", api.project) == 0


@pytest.mark.parametrize("method,path", BODY_ROUTES)
def test_b9_hundred_thousand_brackets(api, method, path):
    method, path = _route(api, method, path)
    r = api.call(method, path, raw="[" * 100000)
    assert r.status == 400, r
    r = api.call(method, path, raw='{"a":' * 50000)
    assert r.status == 400, r
    api.srv.assert_alive()


def test_b9_many_elements_and_keys_never_5xx(api):
    tags = json.dumps(["t"] * 100000)
    r = api.post(M, raw='{"subject_id":"u1","text":"x","tags":%s}' % tags)
    assert 400 <= r.status < 500 or r.status == 201, r
    keys_body = "{" + ",".join('"k%d":1' % i for i in range(50000)) + \
        ',"subject_id":"u1","text":"y"}'
    r = api.post(M, raw=keys_body)
    assert 400 <= r.status < 500 or r.status == 201, r
    api.srv.assert_alive()


# ------------------------------------------------------------------------------------------------
# B11: path ids
# ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("pid", [
    "..%2F..%2Fhealth", "%2e%2e%2f", "%2F", "%C0%AF", "%E0%80%AF", "%ff", "x" * 5000,
    "-1", "99999999999999999999999", "mem_" + "0" * 36, "%27%20OR%201%3D1--", "%24%24",
], ids=lambda v: v if len(v) < 40 else "%s...(%d)" % (v[:8], len(v)))
def test_b11_path_ids_are_404(api, api2, pid):
    victim = api2.create("u1", "other tenant", extract_claims=False)["id"]
    for method, path in [("GET", M + "/" + pid), ("GET", M + "/%s/claims" % pid),
                         ("PATCH", M + "/" + pid), ("POST", M + "/%s/restore" % pid),
                         ("GET", "/api/v1/claims/" + pid)]:
        r = api.call(method, path, body={} if method == "PATCH" else None)
        assert r.status == 404, (method, path, r)
        assert r.json["error"] in ("memory_not_found", "claim_not_found"), r
    r = api.delete(M + "/" + pid)
    assert r.status == 200 and r.json == {"ok": True, "deleted": False}, r
    r = api.post("/api/v1/claims/%s/retract" % pid)
    assert_error(r, 404, "claim_not_found")
    assert db_memory(api.srv, victim)["is_deleted"] is False


@pytest.mark.parametrize("pid", ["%00", "a%00b"])
def test_b11_nul_in_path_id_is_400_or_404(api, pid):
    for method, path in [("GET", M + "/" + pid), ("DELETE", M + "/" + pid),
                         ("GET", "/api/v1/claims/" + pid),
                         ("GET", "/api/v1/claims/subject/%s/truth" % pid)]:
        r = api.call(method, path)
        assert r.status in (400, 404) or (method == "DELETE" and r.status == 200) or \
            (path.endswith("/truth") and r.status == 200), (method, path, r)


# ------------------------------------------------------------------------------------------------
# B12: SQL injection strings are data
# ------------------------------------------------------------------------------------------------
INJECT = ["' OR 1=1--", "'; DROP TABLE memories;--", "$$", "$1", "\\", "\\'", "%", "_", "'||'",
          "\") OR (\"1\"=\"1", "1; SELECT pg_sleep(10)", "E'\\x00'"]


def test_b12_injection_strings_round_trip(api):
    for i, s in enumerate(INJECT):
        subj = "s" + s
        body = {"subject_id": subj, "text": "t" + s, "kind": "fact", "tags": [s],
                "metadata": {"q": s}, "source_type": s}
        r = api.post(M, body)
        assert r.status == 201, (s, r)
        assert r.json["subject_id"] == subj and r.json["text"] == "t" + s
        m = api.mem(r.json["id"])
        assert (m["subject_id"], m["text"], m["tags"], m["metadata"], m["source_type"]) == (
            subj, "t" + s, [s], {"q": s}, s)
        lst = api.get(M + "?" + qs(subject_id=subj, limit=5))
        assert [x["id"] for x in lst.json["data"]] == [r.json["id"]], (s, lst)
        c = api.claim(subj, "p" + s, "v" + s, slot="slot" + s)
        assert (c["predicate"], c["object_value"], c["slot"]) == ("p" + s, "v" + s, "slot" + s)
        sl = api.get("/api/v1/claims/subject/%s/slot/%s" % (seg(subj), seg("slot" + s)))
        assert sl.status == 200 and sl.json["object_value"] == "v" + s, (s, sl)
    assert count_rows(api.srv, "memories", api.project) == len(INJECT)
    rows = sql_dict(api.srv, "SELECT subject_id FROM memories WHERE project_id=%s",
                    (api.project,))
    assert sorted(r["subject_id"] for r in rows) == sorted("s" + s for s in INJECT)


def test_b12_injection_in_project_header(api):
    from apiclient import Api
    evil = Api(api.srv, "p' OR '1'='1")
    r = evil.post(M, {"subject_id": "u1", "text": "x"})
    assert r.status == 201, r
    assert db_memory(api.srv, r.json["id"])["project_id"] == "p' OR '1'='1"
    api.create("u1", "mine")
    assert [m["text"] for m in evil.get(M + "?subject_id=u1").json["data"]] == ["x"]


# ------------------------------------------------------------------------------------------------
# DECISIONS 2: existing client ids -> 409
# ------------------------------------------------------------------------------------------------
def test_existing_memory_id_is_409(api, api2):
    mid = new_id("mine")
    api.create("u1", "original", id=mid)
    assert_error(api.post(M, {"id": mid, "subject_id": "u1", "text": "second"}), 409,
                 "memory_exists")
    assert_error(api2.post(M, {"id": mid, "subject_id": "u1", "text": "third"}), 409,
                 "memory_exists")
    row = db_memory(api.srv, mid)
    assert (row["project_id"], row["text"]) == (api.project, "original")
    # a deleted memory still owns its id
    api.delete(M + "/" + mid)
    assert_error(api.post(M, {"id": mid, "subject_id": "u1", "text": "fourth"}), 409,
                 "memory_exists")


def test_garbage_never_5xx_on_every_body_route(api):
    """A sweep of odd-but-valid JSON over every body route: 4xx or success, never 5xx."""
    mid = api.create("u1", "target", extract_claims=False)["id"]
    cid = api.claim("u1", "p", "v")["claim_id"]
    values = [None, True, False, 0, -1, 1.5, 1e300, "", "x" * 3000, [], [[]], {}, {"a": {}},
              ["a", 1, None], "\u2028", "' OR 1=1--"]
    fields = ["subject_id", "text", "kind", "visibility", "importance", "confidence",
              "is_temporal", "tags", "metadata", "source_type", "extract_claims", "no_supersede",
              "predicate", "object_value", "slot", "claim_type", "valid_from", "valid_until",
              "source_observation_id", "subject_entity", "learn", "force",
              "conversation_context", "reason"]
    routes = [("POST", M), ("POST", M + "/extract"), ("PATCH", M + "/" + mid),
              ("POST", "/api/v1/claims"), ("POST", "/api/v1/claims/%s/retract" % cid)]
    for f in fields:
        for v in values:
            for method, path in routes:
                body = {"subject_id": "u1", "text": "base", "predicate": "p",
                        "object_value": "o"}
                body[f] = v
                r = api.call(method, path, body)  # the helper asserts status < 500
                assert r.status < 500
    api.srv.assert_alive()
