"""Configuration and CLI (ARCHITECTURE.md §2: a bad value is a one-line error naming the variable,
exit code 2)."""
import re

import pytest

from conftest import free_port

BAD_VALUES = [
    ("PORT", "abc"),
    ("PORT", "70000"),
    ("PORT", "-1"),
    ("ENGRAM_MAX_BODY_BYTES", "-1"),
    ("ENGRAM_MAX_BODY_BYTES", "lots"),
    ("ENGRAM_DB_POOL_SIZE", "0"),
    ("ENGRAM_DB_POOL_SIZE", "8x"),
    ("ENGRAM_HEADER_TIMEOUT_MS", "-5"),
    ("ENGRAM_PIPELINE_MAX", "abc"),
    ("ENGRAM_MAX_HEADERS", "99999999999999999999999"),
    ("ENGRAM_LOG_LEVEL", "shouty"),
    ("ENGRAM_RATE_LIMIT_SCOPES", "memories=5"),
    ("ENGRAM_RATE_LIMIT_SCOPES", "memories:write=5,memories:write=6"),
    ("ENGRAM_RATE_LIMIT_SCOPES", "admin=lots"),
]


@pytest.mark.parametrize("name,value", BAD_VALUES, ids=["%s=%s" % nv for nv in BAD_VALUES])
def test_bad_env_value_exits_2_with_one_line(engramd_cli, fresh_db, name, value):
    env = {name: value}
    port = None if name == "PORT" else free_port()
    r = engramd_cli(["serve"], env=env, db=fresh_db, port=port, timeout=15)
    out = r.stdout + r.stderr
    assert r.returncode == 2, "%s=%s: exit %s (expected 2); output:\n%s" % (
        name, value, r.returncode, out)
    lines = [l for l in out.splitlines() if l.strip()]
    assert len(lines) == 1, "expected ONE line, got %d:\n%s" % (len(lines), out)
    assert name in lines[0], "the message does not name %s: %r" % (name, lines[0])


def test_unparsable_database_url_is_a_config_error(engramd_cli):
    """libpq can tell at startup that this is no connection string (PQconninfoParse): that is a
    bad value like any other, not something to retry forever."""
    r = engramd_cli(["serve"], env={"DATABASE_URL": "not a url ::"}, port=free_port(),
                    timeout=10)
    out = r.stdout + r.stderr
    assert r.returncode == 2, "exit %s; output:\n%s" % (r.returncode, out)
    assert "DATABASE_URL" in out


def test_version(engramd_cli):
    r = engramd_cli(["version"], timeout=10)
    assert r.returncode == 0, r
    assert re.search(r"\d+\.\d+", r.stdout), "no version number in %r" % r.stdout


@pytest.mark.parametrize("args", [["--help"], ["serve", "--help"], ["migrate", "--help"]])
def test_help_exits_0(engramd_cli, args):
    r = engramd_cli(args, timeout=10)
    assert r.returncode == 0, "engramd %s exited %s: %s%s" % (" ".join(args), r.returncode,
                                                              r.stdout, r.stderr)
    out = r.stdout + r.stderr
    assert out.strip(), "no help text"
    if args == ["--help"]:
        for cmd in ("serve", "migrate", "version"):
            assert cmd in out, "top-level help does not mention %r" % cmd


def test_unknown_command_fails(engramd_cli):
    r = engramd_cli(["frobnicate"], timeout=10)
    assert r.returncode != 0
    assert (r.stdout + r.stderr).strip()


def test_core_postgres_variables_are_accepted(engram, pg, fresh_db):
    """CORE's POSTGRES_HOST/PORT/DB/USER/PASSWORD work in place of DATABASE_URL."""
    srv = engram(db=fresh_db, env={
        "DATABASE_URL": None, "POSTGRES_HOST": "127.0.0.1", "POSTGRES_PORT": str(pg.port),
        "POSTGRES_DB": fresh_db, "POSTGRES_USER": "postgres", "POSTGRES_PASSWORD": "unused"})
    r = srv.get("/health/ready")
    assert r.status == 200 and r.json()["checks"]["postgres"]["status"] == "pass", r
