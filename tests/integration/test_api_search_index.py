"""Lexical search reads the subject's best memories first (schema/migrations/0004:
idx_memories_subject_rank) and falls back to the pg_trgm index (schema/migrations/0002:
idx_memories_text_ilike) when they hold too few matches.

The SQL is read from src/api/memories_read.c (the string literals between the
`search-sql-begin` / `search-sql-end` markers), so this checks the statement engramd really
prepares. It is EXPLAINed as a prepared statement, before and after the five executions after
which PostgreSQL may switch to a generic plan, over ~20k memories of one subject; the plan must
hold an Index Scan on idx_memories_subject_rank and a Bitmap Index Scan on
idx_memories_text_ilike, never a Seq Scan on memories; a common word must be answered without
running the trigram branch, a rare one through it; and the rows must be the plain query's. The handler runs the search with plan_cache_mode=force_custom_plan (set locally in
the same batch); the test reads that statement from the source too.
"""
import re
from pathlib import Path

import pytest

from apiclient import api, new_id, sql  # noqa: F401

SRC = Path(__file__).resolve().parents[2] / "src" / "api" / "memories_read.c"
N_ROWS = 20000


def search_sql():
    text = SRC.read_text()
    m = re.search(r"/\* search-sql-begin \*/(.*?)/\* search-sql-end \*/", text, re.S)
    assert m, "search-sql markers missing in %s" % SRC
    parts = re.findall(r'"((?:[^"\\]|\\.)*)"', m.group(1))
    assert parts, "no SQL string literals between the markers"
    return "".join(parts)


@pytest.fixture
def bulk(api):
    """~20k memories of subject u1 (hex noise), a few that mention Berlin, and another subject."""
    srv, p = api.srv, api.project
    sql(srv, "INSERT INTO memories (id, project_id, subject_id, text, importance) "
        "SELECT %s || i, %s, 'u1', 'note ' || md5(i::text) || ' ' || md5((i * 7)::text), "
        "i %% 101 FROM generate_series(1, %s) AS i", (new_id("mem_bulk"), p, N_ROWS))
    sql(srv, "INSERT INTO memories (id, project_id, subject_id, text) "
        "SELECT %s || i, %s, 'u1', 'I live in Berlin ' || i FROM generate_series(1, 5) AS i",
        (new_id("mem_berlin"), p))
    sql(srv, "INSERT INTO memories (id, project_id, subject_id, text) "
        "SELECT %s || i, %s, 'u2', 'other ' || md5(i::text) FROM generate_series(1, 2000) AS i",
        (new_id("mem_other"), p))
    sql(srv, "ANALYZE memories")
    return p


def _plan(srv, project, patterns, executions=0, analyze=False):
    """EXPLAIN of the handler's prepared statement as engramd runs it: in a transaction that
    first sets plan_cache_mode with the handler's own set_config statement, after `executions`
    earlier executions (PostgreSQL considers a generic plan from the sixth on)."""
    conn = srv.cluster.connect(srv.db)
    conn.autocommit = False
    try:
        with conn.cursor() as cur:
            cur.execute("PREPARE eg_search(text, text, text[], int) AS " + search_sql())
            cur.execute(plan_mode_sql())
            for _ in range(executions):
                cur.execute("EXECUTE eg_search(%s, 'u1', %s, 25)", (project, patterns))
            cur.execute("EXPLAIN %sEXECUTE eg_search(%%s, 'u1', %%s, 25)"
                        % ("(ANALYZE, COSTS OFF) " if analyze else ""), (project, patterns))
            plan = "\n".join(r[0] for r in cur.fetchall())
        conn.rollback()
        return plan
    finally:
        conn.close()


def plan_mode_sql():
    """The SQL of the statement after the `search-plan-mode` marker (its second literal)."""
    text = SRC.read_text()
    m = re.search(r"/\* search-plan-mode \*/(.*?)\};", text, re.S)
    assert m, "search-plan-mode statement missing in %s" % SRC
    parts = re.findall(r'"((?:[^"\\]|\\.)*)"', m.group(1))
    assert len(parts) == 2 and "force_custom_plan" in parts[1], parts
    assert "batch_add(b, &st_search_custom_plan" in text, "plan-mode statement not in the batch"
    return parts[1]


def _trgm_available(srv):
    rows = sql(srv, "SELECT 1 FROM pg_indexes WHERE indexname = 'idx_memories_text_ilike'")
    return bool(rows)


def test_search_sql_is_read_from_source():
    s = search_sql()
    assert "ILIKE ANY ($3::text[])" in s and "LIMIT $4" in s, s
    assert "0.25 * m.importance + 0.15 * m.confidence * 100" in s, s
    assert plan_mode_sql() == \
        "SELECT set_config('plan_cache_mode', 'force_custom_plan', true)"


@pytest.mark.parametrize("executions", [0, 8])
@pytest.mark.parametrize("patterns", [
    ["%live berlin%", "%live%", "%berlin%"],   # q = "live Berlin"
    ["%berlin%", "%berlin%"],                  # a one-word query and its token
])
def test_search_plan_uses_trigram_index(api, bulk, patterns, executions):
    """Without the custom-plan setting, the generic plan PostgreSQL may switch to after five
    executions reads the whole subject through idx_memories_project_subject instead."""
    if not _trgm_available(api.srv):
        pytest.skip("pg_trgm not installed in this cluster (migration 0002 skipped the index)")
    plan = _plan(api.srv, bulk, patterns, executions)
    assert "Bitmap Index Scan on idx_memories_text_ilike" in plan, plan
    assert "Index Scan using idx_memories_subject_rank" in plan, plan
    assert not re.search(r"Seq Scan on memories", plan), plan


def _branch_lines(plan):
    """The scan nodes of the full-search branch: those below its one-time filter."""
    lines = plan.splitlines()
    at = next((i for i, ln in enumerate(lines) if re.search(r"One-Time Filter: \(\$\d+ < ", ln)),
              None)
    assert at is not None, plan
    return [ln for ln in lines[at + 1:] if "Scan" in ln and "CTE Scan" not in ln]


def test_common_word_skips_the_trigram_branch(api, bulk):
    """Every u1 memory says 'note': the best 25 are found among the first rows of the rank
    index and the full-search branch never runs."""
    if not _trgm_available(api.srv):
        pytest.skip("pg_trgm not installed in this cluster (migration 0002 skipped the index)")
    plan = _plan(api.srv, bulk, ["%note%", "%note%"], analyze=True)
    assert "Index Scan using idx_memories_subject_rank" in plan, plan
    lines = _branch_lines(plan)
    assert lines and all("never executed" in ln for ln in lines), plan


def test_rare_word_runs_the_trigram_branch(api, bulk):
    if not _trgm_available(api.srv):
        pytest.skip("pg_trgm not installed in this cluster (migration 0002 skipped the index)")
    plan = _plan(api.srv, bulk, ["%berlin%", "%berlin%"], analyze=True)
    lines = _branch_lines(plan)
    assert lines and not any("never executed" in ln for ln in lines), plan


PLAIN_SQL = (
    "SELECT m.id, m.importance, m.created_at FROM memories m "
    "WHERE m.project_id = %s AND m.subject_id = 'u1' AND m.is_deleted = false "
    "AND m.status = 'active' AND m.text ILIKE ANY (%s::text[]) "
    "ORDER BY m.importance DESC, m.created_at DESC LIMIT %s")


def test_rows_equal_the_plain_query(api, bulk):
    """Same rows as the single-branch query, up to the order of ties: the sort keys of the
    answer are the same multiset, and every row returned matches. One bulk load for all cases."""
    for patterns in (["%note%"], ["%berlin%"], ["%live berlin%", "%live%", "%berlin%"], ["%ab%"],
                     ["%zzz%"], ["%a1%", "%ff%"]):
        for limit in (1, 25, 200):
            _check_rows(api, bulk, patterns, limit)


def _check_rows(api, bulk, patterns, limit):
    srv = api.srv
    want = sql(srv, PLAIN_SQL, (bulk, patterns, limit))
    got = sql(srv, "SELECT id, importance, created_at FROM (" + search_sql().replace(
        "$1", "%(p)s").replace("$2", "'u1'").replace("$3::text[]", "%(pat)s::text[]").replace(
        "$4", "%(lim)s") + ") x", {"p": bulk, "pat": patterns, "lim": limit})
    assert [(r[1], r[2]) for r in got] == [(r[1], r[2]) for r in want]
    ids = [r[0] for r in got]
    assert len(set(ids)) == len(ids)
    if ids:
        matching = sql(srv, "SELECT count(*) FROM memories WHERE id = ANY (%s) "
                       "AND text ILIKE ANY (%s::text[]) AND subject_id = 'u1'", (ids, patterns))
        assert matching[0][0] == len(ids)


def test_search_over_http_on_bulk_data(api, bulk):
    for _ in range(8):  # past the point where a prepared statement may go generic
        r = api.get("/api/v1/memories/search?subject_id=u1&q=live+Berlin&limit=10")
        assert r.status == 200, r
        assert r.json["count"] == 5, r
        assert all(h["text"].startswith("I live in Berlin") for h in r.json["data"]), r
