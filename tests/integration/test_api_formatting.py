"""Response formatting (core-contract.md §2.1, §2.8, §2.9): compact JSON.stringify bytes, JS string
escaping and number formatting, jsonb re-emission, ISO-8601 millisecond UTC timestamps, headers,
HEAD (DECISIONS 11). Every response in every test_api_* module is also checked by
apiclient.check_json_response (exact bytes == JSON.stringify of the parsed value).

API-PENDING: depends on the engram API work (issue #3); fails with 501 until it lands (not skipped).
"""
import pytest

from apiclient import (JSON_CT, MEM_KEYS, TS_RE, api, assert_ts, insert_memory, iso_ms, keys,  # noqa: F401
                       js_dumps, new_id, sql, sql_dict)
from rawhttp import one_request

M = "/api/v1/memories"


def test_string_escaping_like_json_stringify(api):
    text = 'q"b\\s/x\x01y\x1fz\x7f\b\f\n\r\tend\u00e9\u2028\u2029\U0001F600'
    r = api.post(M, {"subject_id": "u1", "text": "<" + text + ">"})
    assert r.status == 201, r
    want = js_dumps("<" + text + ">")
    assert '"text":%s' % want in r.text, r
    # the exact escapes JSON.stringify uses
    assert '\\"b\\\\s/x\\u0001y\\u001fz\x7f\\b\\f\\n\\r\\tend' in r.text
    assert "\u00e9\u2028\u2029\U0001F600>" in r.text
    g = api.get(M + "/" + r.json["id"])
    assert '"text":%s' % want in g.text


@pytest.mark.parametrize("conf,raw", [
    (0.1, "0.1"), (1, "1"), (0, "0"), (0.5, "0.5"), (1e-7, "1e-7"), (1.5e-7, "1.5e-7"),
    (0.000001, "0.000001"), (0.1 + 0.2, "0.30000000000000004"), (2 / 3, "0.6666666666666666"),
    (0.999999999999999, "0.999999999999999"), (1e-300, "1e-300"),
])
def test_float8_js_number_format(api, conf, raw):
    r = api.post(M, {"subject_id": "u1", "text": "n", "confidence": conf})
    g = api.get(M + "/" + r.json["id"])
    assert '"confidence":%s,' % raw in g.text, g


def test_jsonb_numbers_and_key_order(api):
    raw = ('{"subject_id":"u1","text":"j","metadata":{"zz":{"b":1,"a":2},"f":1.0e21,"e":-0.0,'
           '"d":1234567890123456789,"c":1e-7,"b":1e2,"a":2.50,"aa":[1.50,"x",null,true]}}')
    r = api.post(M, raw=raw)
    assert r.status == 201, r
    g = api.get(M + "/" + r.json["id"])
    assert ('"metadata":{"a":2.5,"b":100,"c":1e-7,"d":1234567890123456800,"e":0,"f":1e+21,'
            '"aa":[1.5,"x",null,true],"zz":{"a":2,"b":1}},') in g.text, g


def test_timestamps_are_utc_ms_z(api):
    cid = api.claim("u1", "p", "v", valid_from="2024-01-01T05:00:00.9999+02:00",
                    valid_until="2024-07-01")["claim_id"]
    c = api.get("/api/v1/claims/" + cid).json["claim"]
    assert c["valid_from"] == "2024-01-01T03:00:00.999Z"
    assert c["valid_until"] == "2024-07-01T00:00:00.000Z"
    for k in ("asserted_at", "updated_at"):
        assert TS_RE.match(c[k]), c
    assert c["retracted_at"] is None


def test_sql_seeded_timestamps_truncate(api):
    mid = insert_memory(api.srv, api.project, "u1", "t",
                        created_at="1999-12-31 23:59:59.9999999+00",  # PG rounds input to us
                        updated_at="2000-02-29 12:00:00.000999+00",
                        last_seen_at="2010-06-15 08:30:00-05",
                        last_reinforced_at="2030-01-01 00:00:00.001+00")
    m = api.mem(mid)
    assert m["created_at"] == "2000-01-01T00:00:00.000Z"
    assert m["updated_at"] == "2000-02-29T12:00:00.000Z"
    assert m["last_seen_at"] == "2010-06-15T13:30:00.000Z"
    assert m["last_reinforced_at"] == "2030-01-01T00:00:00.001Z"


def test_integer_columns_are_plain_numbers(api):
    mid = insert_memory(api.srv, api.project, "u1", "ints", importance=7, seen_count=2147483647,
                        reinforcement_count=0)
    g = api.get(M + "/" + mid)
    assert '"importance":7,' in g.text
    assert '"seen_count":2147483647,"reinforcement_count":0,' in g.text


def test_headers_and_compact_body(api):
    r = api.post(M, {"subject_id": "u1", "text": "h"})
    for resp in (r, api.get(M + "?subject_id=u1"), api.get(M + "/nope"),
                 api.get("/api/v1/memories/search?subject_id=u1")):
        assert resp.header("content-type") == JSON_CT, resp
        assert int(resp.header("content-length")) == len(resp.body)
        assert not resp.body.endswith(b"\n")
        assert resp.text == js_dumps(resp.json)


@pytest.mark.parametrize("path", [
    M + "?subject_id=u1", M + "/{id}", M + "/search?subject_id=u1&q=x",
    M + "/superseded?subject_id=u1", M + "/recalls?memory_id=x", M + "/{id}/claims",
    "/api/v1/claims/subject/u1/truth", "/api/v1/claims/subject/u1/slots",
    "/api/v1/claims/subject/u1/graph", "/api/v1/claims/subject/u1/history",
    "/api/v1/claims/{cid}", M + "/nope",
])
def test_head_where_get(api, path):
    """DECISIONS 11: HEAD answered wherever GET is: same status and headers, no body."""
    mid = api.create("u1", "head probe x", extract_claims=False)["id"]
    cid = api.claim("u1", "p", "v")["claim_id"]
    path = path.replace("{id}", mid).replace("{cid}", cid)
    g = api.get(path)
    h = one_request(api.srv.host, api.srv.port, "HEAD", path,
                    [("x-project-id", api.project)])
    assert h.status == g.status, (h, g)
    assert h.body == b""
    assert h.header("content-type") == JSON_CT
    assert int(h.header("content-length")) == len(g.body), (h, g)


def test_non_ascii_written_raw(api):
    r = api.post(M, {"subject_id": "\u00fc\u00df\u4e2d", "text": "\u0416\u00e9\U0001F600"})
    assert r.status == 201, r
    assert "\u00fc\u00df\u4e2d".encode() in r.body and b"\\u" not in r.body
    lst = api.get(M + "?subject_id=%C3%BC%C3%9F%E4%B8%AD")
    assert lst.json["count"] == 1 and lst.json["data"][0]["text"] == "\u0416\u00e9\U0001F600"
