"""POST /api/v1/memories/extract in simple mode (core-contract.md §5.5, §10) with DECISIONS 6
(phrases start at a word boundary; `my favorite X is` stops at the first ` is `).

API-PENDING: depends on the engram API work (issue #3); fails with 501 until it lands (not skipped).
"""
import pytest

from apiclient import (CLM_ID_RE, MEM_ID_RE, api, assert_error, count_rows, db_memory, keys,  # noqa: F401
                       sql_dict)

X = "/api/v1/memories/extract"
NOLEARN_KEYS = ["ok", "learned", "mode", "extracted_count", "memories"]
LEARN_KEYS = ["ok", "mode", "learned", "extracted_count", "learned_memory_count",
              "learned_claim_count", "memories"]
EXTRACTED_KEYS = ["text", "kind", "importance", "confidence", "is_temporal", "visibility", "tags",
                  "claims"]
CLAIM_KEYS = ["predicate", "object_value", "claim_type", "confidence"]


def _extract(api, text, query="", **body):
    body.update(subject_id="u1", text=text)
    r = api.post(X + ("?" + query if query else ""), body)
    assert r.status == 200, r
    return r


def _claims(api, text, **kw):
    r = _extract(api, text, force=True, **kw)
    mems = r.json["memories"]
    assert len(mems) == 1, r
    return [(c["predicate"], c["object_value"], c["claim_type"], c["confidence"])
            for c in mems[0]["claims"]]


def test_extract_without_learn_shape(api):
    r = _extract(api, "My name is Bob")
    b = r.json
    assert keys(b) == NOLEARN_KEYS, b
    assert (b["ok"], b["learned"], b["mode"], b["extracted_count"]) == (True, False, "simple", 1)
    m = b["memories"][0]
    assert keys(m) == EXTRACTED_KEYS, m
    assert m == {"text": "My name is Bob", "kind": "fact", "importance": 50, "confidence": 0.75,
                 "is_temporal": False, "visibility": "private", "tags": ["simple_mode"],
                 "claims": [{"predicate": "name", "object_value": "Bob", "claim_type": "fact",
                             "confidence": 0.9}]}
    assert keys(m["claims"][0]) == CLAIM_KEYS
    assert '"confidence":0.75,' in r.text and '"confidence":0.9}' in r.text
    # nothing is written without learn
    assert count_rows(api.srv, "memories", api.project) == 0
    assert count_rows(api.srv, "claims", api.project) == 0


def test_extract_five_patterns_in_order(api):
    text = ("My name is Ada Lovelace. I live in London. I work at Analytical Engines Ltd. "
            "My favorite programming language is Ada! I like mathematics")
    assert _claims(api, text) == [
        ("name", "Ada Lovelace", "fact", 0.9),
        ("lives_in", "London", "fact", 0.85),
        ("works_at", "Analytical Engines Ltd", "fact", 0.85),
        ("favorite_programming_language", "Ada", "preference", 0.85),
        ("likes", "mathematics", "preference", 0.7),
    ]


@pytest.mark.parametrize("text,claims", [
    # greedy values up to punctuation; pattern order (lives_in before favorite_)
    ("My favorite color is yellow and I live in Austin",
     [("lives_in", "Austin", "fact", 0.85),
      ("favorite_color", "yellow and I live in Austin", "preference", 0.85)]),
    ("I like tea and I like cake", [("likes", "tea and I like cake", "preference", 0.7)]),
    # DECISIONS 6: the subject stops at the first " is "
    ("my favorite color is blue and my favorite food is pizza",
     [("favorite_color", "blue and my favorite food is pizza", "preference", 0.85)]),
    ("My favorite Ice Cream is vanilla", [("favorite_ice_cream", "vanilla", "preference", 0.85)]),
    # a hyphen in X prevents the match
    ("My favorite Ice-Cream Flavor is mint", []),
    # DECISIONS 6: phrases start at a word boundary
    ("Enemy name is Joe", []),
    ("Hi like cats", []),
    ("Taxi live in a garage", []),
    ("Mei work at night", []),
    # case-insensitive; first match only
    ("MY NAME IS Al, my name is Bo", [("name", "Al", "fact", 0.9)]),
    ("I LIVE IN   Rome!", [("lives_in", "Rome", "fact", 0.85)]),
    ("i work at", []),
    ("Nothing to see here", []),
])
def test_extract_heuristic_patterns(api, text, claims):
    assert _claims(api, text) == claims


def test_extract_whitespace_normalisation(api):
    r = _extract(api, "  My \u00a0name\tis\u2028Bob\u3000 \n")
    m = r.json["memories"][0]
    assert m["text"] == "My name is Bob"
    assert m["claims"][0]["object_value"] == "Bob"


def test_extract_trivial_texts(api):
    for t in ["ok thanks", "ok, I live in Rome", "hi-five", "Thank you!", "HEY", "nope"]:
        r = _extract(api, t)
        assert r.json["extracted_count"] == 0 and r.json["memories"] == [], (t, r)
    for t in ["okay", "hiking is fun", "ok " + "x" * 40]:
        assert _extract(api, t).json["extracted_count"] == 1, t
    # forced: one note memory without claims, importance 70
    r = _extract(api, "ok thanks", force=True)
    assert r.json["memories"] == [{"text": "ok thanks", "kind": "note", "importance": 70,
                                   "confidence": 0.6, "is_temporal": False,
                                   "visibility": "private", "tags": ["simple_mode"],
                                   "claims": []}]
    # "ok, I live in Rome" forced: the claim is found
    assert _claims(api, "ok, I live in Rome") == [("lives_in", "Rome", "fact", 0.85)]


def test_extract_force_and_learn_flags(api):
    assert _extract(api, "hello", "force=TRUE").json["extracted_count"] == 1
    assert _extract(api, "hello", force="true").json["extracted_count"] == 0  # string: no
    assert _extract(api, "hello", "force=1").json["extracted_count"] == 0
    assert _extract(api, "Just a note").json["memories"][0]["importance"] == 50
    assert _extract(api, "Just a note", force=True).json["memories"][0]["importance"] == 70
    assert _extract(api, "Just a note", learn="true").json["learned"] is False
    assert count_rows(api.srv, "memories", api.project) == 0
    assert _extract(api, "Just a note", "learn=True").json["learned"] is True
    assert count_rows(api.srv, "memories", api.project) == 1


def test_extract_text_cut_to_2000_units(api):
    m = _extract(api, "note " + "a" * 2500).json["memories"][0]
    assert m["text"] == ("note " + "a" * 2500)[:2000]
    m = _extract(api, "\U0001F600" * 1500).json["memories"][0]  # 3000 UTF-16 units
    assert m["text"] == "\U0001F600" * 1000


def test_extract_has_no_length_limit(api):
    r = _extract(api, "b" * 20000)
    assert r.json["extracted_count"] == 1


def test_extract_learn_writes_memories_and_claims(api):
    r = _extract(api, "My name is Bob. I live in Oslo", learn=True)
    b = r.json
    assert keys(b) == LEARN_KEYS, b
    assert (b["ok"], b["mode"], b["learned"], b["extracted_count"], b["learned_memory_count"],
            b["learned_claim_count"]) == (True, "simple", True, 1, 1, 2)
    m = b["memories"][0]
    assert keys(m) == ["memory_id", "text", "kind", "claim_ids"], m
    assert MEM_ID_RE.match(m["memory_id"]) and m["text"] == "My name is Bob. I live in Oslo"
    assert m["kind"] == "fact" and len(m["claim_ids"]) == 2
    assert all(CLM_ID_RE.match(c) for c in m["claim_ids"])
    row = db_memory(api.srv, m["memory_id"])
    assert row["project_id"] == api.project and row["subject_id"] == "u1"
    assert (row["importance"], row["confidence"], row["source_type"]) == (50, 0.75, "inferred")
    assert row["tags"] == ["simple_mode"] and row["is_temporal"] is False
    assert row["metadata"] == {"extracted_via": "simple", "force": False}
    g = api.get("/api/v1/memories/" + m["memory_id"])
    assert '"metadata":{"force":false,"extracted_via":"simple"}' in g.text, g  # jsonb key order
    claims = sql_dict(api.srv, "SELECT * FROM claims WHERE project_id=%s", (api.project,))
    by_id = {c["claim_id"]: c for c in claims}
    assert sorted(by_id) == sorted(m["claim_ids"])
    assert [(by_id[c]["predicate"], by_id[c]["object_value"]) for c in m["claim_ids"]] == [
        ("name", "Bob"), ("lives_in", "Oslo")]
    for c in claims:
        assert c["source_memory_id"] == m["memory_id"] and c["status"] == "active"
    assert len(sql_dict(api.srv, "SELECT * FROM claim_assertions WHERE memory_id=%s",
                        (m["memory_id"],))) == 2


def test_extract_learn_force_metadata_and_no_dedupe_of_claims(api):
    r = _extract(api, "hello there", learn=True, force=True)
    assert r.json["learned_memory_count"] == 1 and r.json["learned_claim_count"] == 0
    row = db_memory(api.srv, r.json["memories"][0]["memory_id"])
    assert row["metadata"] == {"extracted_via": "simple", "force": True}
    assert row["kind"] == "note" and row["importance"] == 70 and row["confidence"] == 0.6


def test_extract_learn_trivial_gives_zero(api):
    r = _extract(api, "thanks", learn=True)
    assert r.json == {"ok": True, "mode": "simple", "learned": True, "extracted_count": 0,
                      "learned_memory_count": 0, "learned_claim_count": 0, "memories": []}
    assert count_rows(api.srv, "memories", api.project) == 0


def test_extract_conversation_context_is_tolerated(api):
    for ctx in (["a", "", 3, None], "not an array", {"a": 1}):
        assert _extract(api, "My name is Eve", conversation_context=ctx).json[
            "extracted_count"] == 1


def test_extract_validation(api):
    assert_error(api.post(X, {}), 400, "subject_id_required")
    assert_error(api.post(X, {"text": "x"}), 400, "subject_id_required")
    assert_error(api.post(X, {"subject_id": " ", "text": "x"}), 400, "subject_id_required")
    assert_error(api.post(X, {"subject_id": "u1"}), 400, "text_required")
    assert_error(api.post(X, {"subject_id": "u1", "text": " \n"}), 400, "text_required")
    assert_error(api.post(X, raw="{oops"), 400, "invalid_json_body")
    assert_error(api.post(X, raw="[]"), 400, "invalid_json_body")  # DECISIONS 3
    assert_error(api.get(X), 404, "memory_not_found")  # GET reaches /memories/{id}
