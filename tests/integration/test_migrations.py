"""`engramd migrate`: empty database, idempotence, upgrading a CORE database in place, the schema
baseline, concurrency (advisory lock), and `serve` refusing an un-migrated database."""
import os
import subprocess
import time
from pathlib import Path

import pytest

from conftest import PG_BIN, engram_env, engramd_path, free_port, require_engramd, run_engramd

FIXTURES = Path(__file__).resolve().parent / "fixtures"
CORE_SCHEMA = FIXTURES / "core_schema.sql"
CHECK_SCHEMA = FIXTURES / "check_schema.sh"
REPO_SCHEMA = FIXTURES.parents[2] / "schema"

TABLES = {"memories", "claims", "claim_assertions", "claim_edges", "slot_state",
          "memory_recall_events", "projects", "event_outbox", "events", "schema_migrations"}

SAMPLE_TABLES = {
    "memories": "id",
    "claims": "claim_id",
    "claim_assertions": "assertion_id",
    "slot_state": "project_id, subject_id, slot",
}


def _tables(pg, db):
    rows = pg.query(db, "SELECT tablename FROM pg_tables WHERE schemaname = 'public'")
    return {r[0] for r in rows}


def _migrations(pg, db):
    return pg.query(db, "SELECT * FROM schema_migrations ORDER BY 1")


def _migrate(pg, db, timeout=60):
    return run_engramd(["migrate"], engram_env(db_url=pg.url(db)), timeout=timeout)


def _ok(r):
    assert r.returncode == 0, "engramd migrate exited %s:\nstdout: %s\nstderr: %s" % (
        r.returncode, r.stdout, r.stderr)


def _snapshot(pg, db):
    """Every row of the sample tables, as text, in key order."""
    snap = {}
    for table, key in SAMPLE_TABLES.items():
        snap[table] = pg.query(db, "SELECT t::text FROM %s t ORDER BY %s" % (table, key))
    return snap


def test_migrate_empty_database(pg, fresh_db):
    r = _migrate(pg, fresh_db)
    _ok(r)
    missing = TABLES - _tables(pg, fresh_db)
    assert not missing, "tables missing after migrate: %s" % sorted(missing)
    assert len(_migrations(pg, fresh_db)) >= 1


def test_migrate_twice_is_a_noop(pg, fresh_db):
    _ok(_migrate(pg, fresh_db))
    before_tables = _tables(pg, fresh_db)
    before = _migrations(pg, fresh_db)
    schema_before = pg.query(fresh_db, """
        SELECT table_name, column_name, data_type, column_default, is_nullable
        FROM information_schema.columns WHERE table_schema = 'public' ORDER BY 1, 2""")
    _ok(_migrate(pg, fresh_db))
    assert _migrations(pg, fresh_db) == before, "second migrate changed schema_migrations"
    assert _tables(pg, fresh_db) == before_tables
    schema_after = pg.query(fresh_db, """
        SELECT table_name, column_name, data_type, column_default, is_nullable
        FROM information_schema.columns WHERE table_schema = 'public' ORDER BY 1, 2""")
    assert schema_after == schema_before


def _load_core(pg, db):
    assert CORE_SCHEMA.exists(), "fixture %s missing" % CORE_SCHEMA
    r = pg.psql_file(db, CORE_SCHEMA)
    assert r.returncode == 0, "loading core_schema.sql failed:\n%s" % r.stdout.decode(
        errors="replace")


def test_migrate_core_database_keeps_rows(pg, fresh_db):
    _load_core(pg, fresh_db)
    before = _snapshot(pg, fresh_db)
    assert before["memories"], "core_schema.sql has no sample memories"
    _ok(_migrate(pg, fresh_db))
    assert _snapshot(pg, fresh_db) == before, "sample rows changed by migrate"
    assert not (TABLES - _tables(pg, fresh_db))
    _ok(_migrate(pg, fresh_db))  # and again: still a no-op
    assert _snapshot(pg, fresh_db) == before


def test_serve_on_migrated_core_database_lists_its_rows(engram, pg, fresh_db):
    _load_core(pg, fresh_db)
    srv = engram(db=fresh_db)
    r = srv.get("/api/v1/memories?subject_id=user_1&limit=10")
    # api_pending: 501 until GET /api/v1/memories lands
    assert r.status in (200, 501), r
    if r.status == 200:
        ids = {m["id"] for m in r.json()["data"]}
        assert "mem_6f1c2a9e-0b5d-4c1e-9a47-2d3b8e5f7a01" in ids, r.json()


def test_check_schema_script(pg):
    assert CHECK_SCHEMA.exists(), "fixture %s missing" % CHECK_SCHEMA
    env = dict(os.environ, PG_BINDIR=str(PG_BIN))
    r = subprocess.run(["bash", str(CHECK_SCHEMA), "-h", "127.0.0.1", "-p", str(pg.port),
                        "-U", "postgres"], env=env, stdout=subprocess.PIPE,
                       stderr=subprocess.STDOUT, timeout=300, cwd=str(FIXTURES.parents[2]))
    assert r.returncode == 0, "check_schema.sh failed:\n%s" % r.stdout.decode(errors="replace")


def _schema_dump(pg, db):
    r = subprocess.run([str(PG_BIN / "pg_dump"), "--schema-only", "--no-owner", "--no-privileges",
                        "-h", "127.0.0.1", "-p", str(pg.port), "-U", "postgres", db],
                       stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=60)
    assert r.returncode == 0, r.stdout.decode(errors="replace")
    keep = []
    for line in r.stdout.decode().splitlines():
        if not line.strip() or line.startswith("--") or line.startswith("SET ") \
                or line.startswith("SELECT pg_catalog.set_config") \
                or line.startswith(("\\restrict ", "\\unrestrict ")):  # random per-dump keys
            continue
        keep.append(line)
    return keep


def test_engramd_migrate_matches_schema_sql_baseline(pg):
    """The schema `engramd migrate` builds (the real runner, not psql) equals schema/schema.sql."""
    baseline = REPO_SCHEMA / "schema.sql"
    assert baseline.exists(), "%s missing" % baseline
    migrated = pg.create_database()
    _ok(_migrate(pg, migrated))
    loaded = pg.create_database()
    r = pg.psql_file(loaded, baseline)
    assert r.returncode == 0, "loading schema.sql failed:\n%s" % r.stdout.decode(errors="replace")
    a, b = _schema_dump(pg, migrated), _schema_dump(pg, loaded)
    if a != b:
        import difflib
        diff = "\n".join(difflib.unified_diff(b, a, "schema.sql", "engramd migrate", lineterm="",
                                               n=2))
        raise AssertionError("schema differs:\n%s" % diff[:6000])
    assert _migrations(pg, migrated) and [r[0] for r in _migrations(pg, migrated)] == \
        [r[0] for r in _migrations(pg, loaded)], "schema_migrations versions differ"


def test_serve_refuses_unmigrated_database(pg, fresh_db):
    r = run_engramd(["serve"], engram_env(port=free_port(), db_url=pg.url(fresh_db)), timeout=20)
    assert r.returncode != 0, "serve started on an un-migrated database:\n%s%s" % (
        r.stdout, r.stderr)
    out = r.stdout + r.stderr
    assert "engramd migrate" in out, "the refusal does not tell the user to run `engramd "\
        "migrate`:\n%s" % out


def test_serve_refuses_partially_migrated_core_database(pg, fresh_db):
    """A CORE database that was never migrated by engram is also refused (no schema_migrations)."""
    _load_core(pg, fresh_db)
    r = run_engramd(["serve"], engram_env(port=free_port(), db_url=pg.url(fresh_db)), timeout=20)
    assert r.returncode != 0
    assert "engramd migrate" in r.stdout + r.stderr


def test_concurrent_migrations_both_succeed(pg, fresh_db):
    require_engramd()
    env = engram_env(db_url=pg.url(fresh_db))
    procs = [subprocess.Popen([engramd_path(), "migrate"], env=env, stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT) for _ in range(3)]
    outs = []
    try:
        for p in procs:
            out, _ = p.communicate(timeout=60)
            outs.append((p.returncode, out.decode(errors="replace")))
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait(timeout=10)
    for rc, out in outs:
        assert rc == 0, "a concurrent migrate exited %s:\n%s" % (rc, out)
    assert not (TABLES - _tables(pg, fresh_db))
    versions = [row[0] for row in _migrations(pg, fresh_db)]
    assert len(versions) == len(set(versions)), "duplicate schema_migrations rows: %r" % versions


def test_migrate_without_database_config_fails_cleanly(engramd_cli):
    """An unreachable database: migrate gives up within its connect timeout (30 s) and fails."""
    r = engramd_cli(["migrate"], env={"DATABASE_URL": "postgresql://postgres@127.0.0.1:1/none"},
                    timeout=50)
    assert r.returncode != 0
    assert r.stdout.strip() or r.stderr.strip(), "no message on failure"
