"""GET /api/v1/memories/search in simple mode (core-contract.md §5.6, §6.1–§6.4) with DECISIONS 1
(absent limit -> 25) and 7 (`%`/`_` escaped, non-ASCII letters kept in tokens).

API-PENDING: depends on the engram API work (issue #3); fails with 501 until it lands (not skipped).
"""
import datetime

import pytest

from apiclient import (HIT_KEYS, SEARCH_KEYS, api, api2, assert_error, insert_memory, iso_ms,  # noqa: F401
                       keys, new_id, qs, sql)

S = "/api/v1/memories/search"


def _search(api, **params):
    r = api.get(S + "?" + qs(**params))
    assert r.status == 200, r
    assert keys(r.json) == SEARCH_KEYS, r
    assert r.json["count"] == len(r.json["data"]), r
    for h in r.json["data"]:
        assert keys(h) == HIT_KEYS, h
    return r


def _texts(api, **params):
    return [h["text"] for h in _search(api, **params).json["data"]]


def test_search_simple_mode_shape_and_scores(api):
    mid = api.create("u1", "I live in Berlin", importance=80, confidence=0.9,
                     extract_claims=False)["id"]
    api.create("u1", "unrelated words", extract_claims=False)
    r = _search(api, subject_id="u1", q="  live Berlin  ")
    b = r.json
    assert b["query"] == "live Berlin"
    assert (b["engine"], b["mode"]) == ("simple", "simple")
    assert b["used_queries"] == ["live Berlin"] and b["predicates"] == []
    assert b["count"] == 1
    h = b["data"][0]
    row = sql(api.srv, "SELECT created_at FROM memories WHERE id=%s", (mid,))[0]
    assert h == {"id": mid, "text": "I live in Berlin", "kind": "fact", "importance": 80,
                 "is_temporal": False, "created_at": iso_ms(row[0]), "score": 0,
                 "effective_score": 33.5}
    assert '"score":0,"effective_score":33.5}' in r.text, r


@pytest.mark.parametrize("importance,confidence,expected", [
    (80, 0.9, 33.5), (50, 0.95, 26.75), (10, 0.5, 10), (100, 1, 40), (0, 0.2, 3),
    (55, 0.1, 15.25), (70, 0.75, 28.75), (0, 0, 0),
])
def test_search_effective_score_formula(api, importance, confidence, expected):
    api.create("u1", "scoring probe", importance=importance, confidence=confidence)
    h = _search(api, subject_id="u1", q="probe").json["data"][0]
    assert h["score"] == 0 and h["effective_score"] == expected, h


def test_search_order_importance_then_created_at(api):
    base = datetime.datetime(2024, 1, 1, tzinfo=datetime.timezone.utc)
    t = lambda s: base + datetime.timedelta(seconds=s)  # noqa: E731
    ids = {}
    for name, imp, ts in [("lo-old", 10, 1), ("hi-old", 90, 2), ("mid", 50, 3), ("hi-new", 90, 4),
                          ("lo-new", 10, 5)]:
        ids[name] = insert_memory(api.srv, api.project, "u1", "kiwi " + name, importance=imp,
                                  created_at=t(ts), confidence=0.5)
    data = _search(api, subject_id="u1", q="kiwi", limit=10).json["data"]
    assert [h["text"] for h in data] == ["kiwi hi-new", "kiwi hi-old", "kiwi mid", "kiwi lo-new",
                                         "kiwi lo-old"]
    assert [h["id"] for h in data][0] == ids["hi-new"]


def test_search_filters_subject_deleted_superseded(api):
    insert_memory(api.srv, api.project, "u1", "mango active")
    insert_memory(api.srv, api.project, "u1", "mango deleted", is_deleted=True)
    insert_memory(api.srv, api.project, "u1", "mango superseded", status="superseded")
    insert_memory(api.srv, api.project, "u2", "mango other subject")
    assert _texts(api, subject_id="u1", q="mango", limit=10) == ["mango active"]


def test_search_lexical_whole_query_or_any_token(api):
    for t in ["Pizza is my favorite", "what is your name", "FAVORITE things",
              "xylophone music", "I drink tea", "the end"]:
        api.create("u1", t, extract_claims=False)
    # tokens: "favorite" only (what/is/my are stop words)
    assert sorted(_texts(api, subject_id="u1", q="what is my favorite", limit=10)) == [
        "FAVORITE things", "Pizza is my favorite"]
    # "x" is dropped (< 2 chars); "tea" matches
    assert _texts(api, subject_id="u1", q="x tea", limit=10) == ["I drink tea"]
    # only stop words: no tokens; the whole query still matches as a substring
    assert _texts(api, subject_id="u1", q="the", limit=10) == ["the end"]
    assert _texts(api, subject_id="u1", q="BERLIN", limit=10) == []


def test_search_token_cap_is_ten(api):
    api.create("u1", "kilo", extract_claims=False)
    api.create("u1", "juliet", extract_claims=False)
    q = "alpha bravo charlie delta echo foxtrot golf hotel india juliet kilo"
    assert _texts(api, subject_id="u1", q=q, limit=10) == ["juliet"]
    # duplicates are removed before the cap
    q2 = "alpha alpha bravo charlie delta echo foxtrot golf hotel india kilo"
    assert _texts(api, subject_id="u1", q=q2, limit=10) == ["kilo"]


def test_search_escapes_like_wildcards(api):
    """DECISIONS 7: `%`, `_` (and the LIKE escape `\\`) are literal."""
    for t in ["100% sure", "plain text", "got 5%x", "5 and x", "abc", "a_c here", "x\\y here",
              "xy"]:
        api.create("u1", t, extract_claims=False)
    assert _texts(api, subject_id="u1", q="%", limit=20) == ["got 5%x", "100% sure"] or \
        sorted(_texts(api, subject_id="u1", q="%", limit=20)) == ["100% sure", "got 5%x"]
    assert _texts(api, subject_id="u1", q="5%x", limit=20) == ["got 5%x"]
    assert _texts(api, subject_id="u1", q="a_c", limit=20) == ["a_c here"]
    assert _texts(api, subject_id="u1", q="_", limit=20) == ["a_c here"]
    assert _texts(api, subject_id="u1", q="x\\y", limit=20) == ["x\\y here"]


def test_search_keeps_non_ascii_tokens(api):
    """DECISIONS 7: `café` stays `café` (CORE searches `caf`, which hits `cafeteria`)."""
    api.create("u1", "the cafeteria is closed", extract_claims=False)
    api.create("u1", "un caf\u00e9 noir", extract_claims=False)
    assert _texts(api, subject_id="u1", q="caf\u00e9 zzqq", limit=10) == ["un caf\u00e9 noir"]
    api.create("u1", "\u6771\u4eac\u306b\u4f4f\u3093\u3067\u3044\u308b", extract_claims=False)
    assert _texts(api, subject_id="u1", q="\u6771\u4eac zzqq", limit=10) == [
        "\u6771\u4eac\u306b\u4f4f\u3093\u3067\u3044\u308b"]


def test_search_min_score_ignored_without_embeddings(api):
    api.create("u1", "walnut", extract_claims=False)
    for extra in ({"min_score": "99"}, {"distance": "100"}, {"min_score": ""},
                  {"min_score": "-5"}, {"min_score": "abc"}):
        assert _texts(api, subject_id="u1", q="walnut", **extra) == ["walnut"], extra


def test_search_limit_default_25_and_parsing(api):
    sql(api.srv, "INSERT INTO memories (id, project_id, subject_id, text, importance) "
        "SELECT %s || i, %s, 'u1', 'cherry ' || i, i FROM generate_series(1, 30) AS i",
        (new_id("mem_s"), api.project))
    assert len(_texts(api, subject_id="u1", q="cherry")) == 25  # DECISIONS 1 (CORE: 1)
    assert len(_texts(api, subject_id="u1", q="cherry", limit="abc")) == 25
    assert len(_texts(api, subject_id="u1", q="cherry", limit="0")) == 1
    assert len(_texts(api, subject_id="u1", q="cherry", limit="2.9")) == 2
    assert len(_texts(api, subject_id="u1", q="cherry", limit="999")) == 30
    top = _search(api, subject_id="u1", q="cherry", limit=3).json["data"]
    assert [h["importance"] for h in top] == [30, 29, 28]


def test_search_context_params_are_accepted(api):
    api.create("u1", "olive oil", extract_claims=False)
    r = api.get(S + "?subject_id=u1&q=olive&context=a&context=b&context=")
    assert r.status == 200 and r.json["count"] == 1, r


def test_search_injection_strings_are_data(api):
    api.create("u1", "O'Brien likes 'quotes'", extract_claims=False)
    api.create("u1", "nothing here", extract_claims=False)
    assert _texts(api, subject_id="u1", q="' OR 1=1--") == []
    assert _texts(api, subject_id="u1", q="O'Brien") == ["O'Brien likes 'quotes'"]
    assert _texts(api, subject_id="u1' OR '1'='1", q="nothing") == []


def test_search_validation(api):
    assert_error(api.get(S), 400, "subject_id_required")
    assert_error(api.get(S + "?q=x"), 400, "subject_id_required")
    assert_error(api.get(S + "?subject_id=%20&q=x"), 400, "subject_id_required")
    assert_error(api.get(S + "?subject_id=u1"), 400, "q_required")
    assert_error(api.get(S + "?subject_id=u1&q=%20%20"), 400, "q_required")
    assert_error(api.get(S + "?subject_id=u1&q="), 400, "q_required")


def test_search_hit_js_numbers(api):
    api.create("u1", "fig tree", importance=55, confidence=0.1, extract_claims=False)
    r = _search(api, subject_id="u1", q="fig")
    assert '"importance":55,"is_temporal":false' in r.text
    assert '"score":0,"effective_score":15.25}' in r.text, r
