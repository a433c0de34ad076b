"""API keys, scopes, tenancy, revocation, rotation, audit log and CORS (issue #5;
RELIABILITY.md §2.2 A1-A5, A7).

Keys are made with `engramd keys` against the server's database (the CLI is the root of trust),
then used over HTTP as `Authorization: Bearer` or `x-api-key`.
"""
import json
import re
import subprocess
import time

import pytest

from apiclient import SSE, Api, seg
from conftest import engram_env, run_engramd
from rawhttp import one_request

AUTH_ON = {"ENGRAM_AUTH": "on"}
KEY_RE = re.compile(r"^eg_[0-9a-z]{8}_[0-9A-Za-z]{43}$")
UNAUTH_BODY = (b'{"error":"unauthorized","message":"A valid API key is required: send '
               b'Authorization: Bearer <key> or x-api-key: <key>"}')


def keys_cli(srv, *args, check=True):
    r = run_engramd(["keys"] + list(args), engram_env(db_url=srv.cluster.url(srv.db)))
    if check:
        assert r.returncode == 0, (r.returncode, r.stdout, r.stderr)
    return r


def make_key(srv, project, scopes, *extra):
    r = keys_cli(srv, "create", "--project", project, "--scopes", scopes, *extra)
    obj = json.loads(r.stdout.splitlines()[0])
    assert KEY_RE.match(obj["key"]), obj
    return obj


class KeyApi(Api):
    """Api that authenticates with a key (Bearer by default) and may omit x-project-id."""

    def __init__(self, srv, key, project=None, style="bearer"):
        super().__init__(srv, project)
        self.key = key
        self.style = style

    def call(self, method, path, body=None, raw=None, headers=None, **kw):
        extra = list(headers.items()) if isinstance(headers, dict) else list(headers or [])
        if self.key is not None:
            if self.style == "bearer":
                extra.append(("Authorization", "Bearer " + self.key))
            else:
                extra.append(("x-api-key", self.key))
        return super().call(method, path, body, raw=raw, headers=extra, **kw)


def auth_headers(key):
    return [("Authorization", "Bearer " + key)]


@pytest.fixture
def srv(engram):
    return engram(env=AUTH_ON)


# ------------------------------------------------------------------------------------------------
# CLI
# ------------------------------------------------------------------------------------------------
def test_cli_create_list_revoke_rotate(srv):
    k = make_key(srv, "p1", "memories:read,memories:write", "--name", "ci", "--expires", "30d")
    assert k["project_id"] == "p1" and k["name"] == "ci" and k["status"] == "active"
    assert k["scopes"] == ["memories:read", "memories:write"]
    assert k["expires_at"] is not None and k["key"].split("_")[1] == k["prefix"]
    listed = json.loads(keys_cli(srv, "list", "--project", "p1").stdout)
    assert [x["id"] for x in listed] == [k["id"]]
    assert "key" not in listed[0] and k["key"] not in json.dumps(listed)
    assert json.loads(keys_cli(srv, "list", "--project", "other").stdout) == []
    # rotate: first line is the new key (shown once), second the old one with its new expiry
    r = keys_cli(srv, "rotate", k["prefix"], "--overlap", "1h")
    new, old = [json.loads(line) for line in r.stdout.splitlines()]
    assert KEY_RE.match(new["key"]) and new["scopes"] == k["scopes"] and new["name"] == "ci"
    assert old["id"] == k["id"] and old["replaced_by"] == new["id"]
    # revoke by id; a second revoke keeps the first time
    rv = json.loads(keys_cli(srv, "revoke", new["id"]).stdout)
    assert rv["status"] == "revoked" and rv["revoked_at"]
    rv2 = json.loads(keys_cli(srv, "revoke", new["id"]).stdout)
    assert rv2["revoked_at"] == rv["revoked_at"]
    assert keys_cli(srv, "revoke", "nosuchkey", check=False).returncode == 1


@pytest.mark.parametrize("args", [
    ["create"], ["create", "--project", "p"], ["create", "--project", "p", "--scopes", "nope"],
    ["create", "--project", "p", "--scopes", ""], ["create", "--project", "p", "--scopes"],
    ["revoke"], ["rotate"], ["bogus"], ["rotate", "x", "--overlap", "5 days"],
])
def test_cli_usage_errors(srv, args):
    r = keys_cli(srv, *args, check=False)
    assert r.returncode == 2, (r.stdout, r.stderr)
    assert r.stdout == ""


def test_cli_bad_expiry_and_if_no_admin(srv):
    r = keys_cli(srv, "create", "--project", "p", "--scopes", "admin", "--expires", "tomorrow-ish",
                 check=False)
    assert r.returncode == 1 and "invalid value" in r.stderr and r.stdout == ""
    first = keys_cli(srv, "create", "--project", "p", "--scopes", "admin", "--if-no-admin")
    assert KEY_RE.match(json.loads(first.stdout)["key"])
    again = keys_cli(srv, "create", "--project", "p", "--scopes", "admin", "--if-no-admin")
    assert again.stdout == "" and "already has an active admin key" in again.stderr


# ------------------------------------------------------------------------------------------------
# authentication: A5 uniform errors
# ------------------------------------------------------------------------------------------------
def test_uniform_401(srv):
    good = make_key(srv, "p1", "memories:read")["key"]
    revoked = make_key(srv, "p1", "memories:read")
    keys_cli(srv, "revoke", revoked["id"])
    expired = make_key(srv, "p1", "memories:read", "--expires", "1s")
    unknown = good[:-7] + ("A" if good[-7] != "A" else "B") + good[-6:]  # CRC now wrong
    # a well-formed key with a valid checksum that was never issued
    never = make_key(srv, "p1", "memories:read")
    srv.cluster.query(srv.db, "DELETE FROM api_keys WHERE id = %s", (never["id"],))
    time.sleep(1.2)
    cases = {
        "missing": [],
        "empty bearer": [("Authorization", "Bearer ")],
        "basic": [("Authorization", "Basic dXNlcjpwYXNz")],
        "malformed": [("Authorization", "Bearer not-a-key")],
        "bad crc": auth_headers(unknown),
        "never issued": auth_headers(never["key"]),
        "revoked": auth_headers(revoked["key"]),
        "expired": auth_headers(expired["key"]),
        "x-api-key revoked": [("x-api-key", revoked["key"])],
        "key in query only": [],
    }
    for what, hdrs in cases.items():
        path = "/api/v1/memories?subject_id=s"
        if what == "key in query only":
            path += "&key=" + good + "&api_key=" + good
        r = one_request(srv.host, srv.port, "GET", path, hdrs)
        assert r.status == 401, (what, r)
        assert r.body == UNAUTH_BODY, (what, r.body)
        assert r.header("www-authenticate") == "Bearer", what
    # unknown paths do not reveal routes to anonymous clients
    r = one_request(srv.host, srv.port, "GET", "/nope", [])
    assert r.status == 401 and r.body == UNAUTH_BODY
    # the good key works both ways, without x-project-id
    for style in ("bearer", "x-api-key"):
        r = KeyApi(srv, good, style=style).get("/api/v1/memories?subject_id=s")
        assert r.status == 200, r


def test_health_and_metrics_need_no_key(srv):
    for path in ("/health", "/health/live", "/health/ready", "/metrics"):
        assert one_request(srv.host, srv.port, "GET", path, []).status == 200, path


def test_auth_off_warns_and_bad_value_refused(engram, engramd_cli, fresh_db):
    off = engram(env={"ENGRAM_AUTH": "off"})
    assert "AUTHENTICATION IS OFF" in off.log_text()
    r = engramd_cli(["serve"], env={"ENGRAM_AUTH": "maybe"}, db=fresh_db, timeout=15)
    assert r.returncode == 2 and "ENGRAM_AUTH" in r.stderr
    on = engram(env={"ENGRAM_AUTH": None})  # default: on
    assert one_request(on.host, on.port, "GET", "/api/v1/memories?subject_id=s", []).status == 401
