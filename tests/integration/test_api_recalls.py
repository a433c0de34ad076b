"""GET /api/v1/memories/recalls (core-contract.md §5.8, §3.6) over rows seeded with SQL (nothing in
the API writes memory_recall_events), all three modes, with DECISIONS 1 (absent limit -> 100).

API-PENDING: depends on the engram API work (issue #3); fails with 501 until it lands (not skipped).
"""
import datetime

import pytest

from apiclient import (RECALL_KEYS, api, api2, assert_error, assert_ts, insert_memory,  # noqa: F401
                       insert_recall, iso_ms, keys, new_id, sql, sql_dict)

R = "/api/v1/memories/recalls"
T0 = datetime.datetime(2024, 6, 1, 12, 0, 0, tzinfo=datetime.timezone.utc)


def _t(s):
    return T0 + datetime.timedelta(seconds=s)


@pytest.fixture
def seeded(api):
    srv, p = api.srv, api.project
    m1 = insert_memory(srv, p, "u1", "memory one")
    m2 = insert_memory(srv, p, "u2", "memory two")
    ev = {
        "a": insert_recall(srv, p, "u1", m1, chat_id="chat-1", message_index=2, recalled_at=_t(10),
                           similarity_score=0.5, memory_text="memory one", model="m",
                           metadata={"zz": 1, "a": [2.50, 1e2]}, request_type="chat"),
        "b": insert_recall(srv, p, "u2", m2, chat_id="chat-1", message_index=1, recalled_at=_t(10),
                           similarity_score=1e-7),
        "c": insert_recall(srv, p, "u1", m1, chat_id="chat-1", message_index=0, recalled_at=_t(5),
                           similarity_score=100, chat_logged=False),
        "d": insert_recall(srv, p, "u1", m1, chat_id="chat-2", message_index=0, recalled_at=_t(20),
                           similarity_score=0.25),
    }
    return m1, m2, ev


def test_recalls_by_chat(api, seeded):
    m1, m2, ev = seeded
    r = api.get(R + "?chat_id=%20chat-1%20")
    assert r.status == 200, r
    j = r.json
    assert keys(j) == ["data", "count", "chat_id"], j
    assert j["chat_id"] == "chat-1" and j["count"] == 3
    # recalled_at ASC, message_index ASC; no subject filter
    assert [x["event_id"] for x in j["data"]] == [ev["c"], ev["b"], ev["a"]]
    for x in j["data"]:
        assert keys(x) == RECALL_KEYS, x
        assert_ts(x["recalled_at"])
    a = j["data"][2]
    assert a == {"event_id": ev["a"], "project_id": api.project, "subject_id": "u1",
                 "memory_id": m1, "memory_text": "memory one", "chat_id": "chat-1",
                 "message_index": 2, "chat_logged": True, "similarity_score": 0.5,
                 "request_type": "chat", "model": "m", "metadata": {"a": [2.5, 100], "zz": 1},
                 "recalled_at": "2024-06-01T12:00:10.000Z"}
    assert '"metadata":{"a":[2.5,100],"zz":1}' in r.text  # jsonb order, JS numbers
    assert '"similarity_score":1e-7,' in r.text and '"similarity_score":100,' in r.text
    b = j["data"][1]
    assert (b["memory_text"], b["model"], b["request_type"], b["metadata"]) == ("", "", "chat", {})
    assert j["data"][0]["chat_logged"] is False


def test_recalls_chat_takes_precedence_and_has_no_limit(api, seeded):
    m1, _, ev = seeded
    r = api.get(R + "?chat_id=chat-2&memory_id=%s&stats=true&limit=1" % m1)
    assert keys(r.json) == ["data", "count", "chat_id"], r
    assert [x["event_id"] for x in r.json["data"]] == [ev["d"]]
    sql(api.srv, "INSERT INTO memory_recall_events (event_id, project_id, subject_id, memory_id, "
        "chat_id, message_index) SELECT %s || i, %s, 'u1', %s, 'big', i "
        "FROM generate_series(1, 150) i", (new_id("rev"), api.project, m1))
    r = api.get(R + "?chat_id=big&limit=3")
    assert r.json["count"] == 150  # chat mode ignores limit


def test_recalls_by_memory(api, seeded):
    m1, _, ev = seeded
    r = api.get(R + "?memory_id=%20" + m1 + "%20")
    assert r.status == 200, r
    j = r.json
    assert keys(j) == ["data", "count", "memory_id"], j
    assert j["memory_id"] == m1
    assert [x["event_id"] for x in j["data"]] == [ev["d"], ev["a"], ev["c"]]  # recalled_at DESC
    assert all(keys(x) == RECALL_KEYS for x in j["data"])
    r = api.get(R + "?memory_id=%s&limit=2" % m1)
    assert [x["event_id"] for x in r.json["data"]] == [ev["d"], ev["a"]]
    r = api.get(R + "?memory_id=%s&stats=1" % m1)  # parseBool: "1" is false
    assert keys(r.json) == ["data", "count", "memory_id"], r


def test_recalls_by_memory_default_limit_100(api):
    m = insert_memory(api.srv, api.project, "u1", "popular")
    sql(api.srv, "INSERT INTO memory_recall_events (event_id, project_id, subject_id, memory_id, "
        "recalled_at) SELECT %s || i, %s, 'u1', %s, "
        "timestamptz '2024-01-01 00:00:00+00' + i * interval '1 minute' "
        "FROM generate_series(1, 1100) i", (new_id("rev"), api.project, m))
    r = api.get(R + "?memory_id=" + m)
    assert r.json["count"] == 100  # DECISIONS 1 (CORE: 1)
    assert r.json["data"][0]["recalled_at"] == "2024-01-01T18:20:00.000Z"  # newest first
    assert api.get(R + "?memory_id=%s&limit=abc" % m).json["count"] == 100
    assert api.get(R + "?memory_id=%s&limit=5000" % m).json["count"] == 1000
    assert api.get(R + "?memory_id=%s&limit=-4" % m).json["count"] == 1


def test_recalls_stats(api, seeded):
    m1, _, _ = seeded
    rows = sql_dict(api.srv, "SELECT min(recalled_at) AS lo, max(recalled_at) AS hi "
                    "FROM memory_recall_events WHERE memory_id=%s", (m1,))[0]
    for flag in ("true", "TRUE", "True"):
        r = api.get(R + "?memory_id=%s&stats=%s" % (m1, flag))
        assert r.status == 200, r
        j = r.json
        assert keys(j) == ["memory_id", "stats"], j
        assert keys(j["stats"]) == ["total_recalls", "unique_chats", "unique_subjects",
                                    "avg_score", "first_recalled_at", "last_recalled_at"]
        assert j == {"memory_id": m1, "stats": {
            "total_recalls": 3, "unique_chats": 2, "unique_subjects": 1,
            "avg_score": (0.5 + 100 + 0.25) / 3,
            "first_recalled_at": iso_ms(rows["lo"]), "last_recalled_at": iso_ms(rows["hi"])}}
    r = api.get(R + "?memory_id=mem_never&stats=true")
    assert r.json == {"memory_id": "mem_never", "stats": {
        "total_recalls": 0, "unique_chats": 0, "unique_subjects": 0, "avg_score": 0,
        "first_recalled_at": None, "last_recalled_at": None}}
    assert '"avg_score":0,' in r.text


def test_recalls_stats_unique_subjects(api, seeded):
    m1, _, _ = seeded
    insert_recall(api.srv, api.project, "u9", m1, chat_id="chat-1", similarity_score=0.25)
    st = api.get(R + "?memory_id=%s&stats=true" % m1).json["stats"]
    assert (st["total_recalls"], st["unique_chats"], st["unique_subjects"]) == (4, 2, 2)
    assert st["avg_score"] == (0.5 + 100 + 0.25 + 0.25) / 4


def test_recalls_missing_parameter(api):
    msg = "Provide either chat_id or memory_id"
    for q in ("", "?chat_id=", "?memory_id=%20", "?chat_id=%20&memory_id=", "?stats=true"):
        assert_error(api.get(R + q), 400, "missing_parameter", message=msg)


def test_recalls_unknown_ids_are_empty(api):
    r = api.get(R + "?chat_id=nope")
    assert r.json == {"data": [], "count": 0, "chat_id": "nope"}
    r = api.get(R + "?memory_id=nope")
    assert r.json == {"data": [], "count": 0, "memory_id": "nope"}
