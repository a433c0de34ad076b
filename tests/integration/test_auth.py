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


# ------------------------------------------------------------------------------------------------
# scopes (A2) and tenancy
# ------------------------------------------------------------------------------------------------
READ_ROUTES = [
    ("GET", "/api/v1/memories?subject_id=s", "memories:read"),
    ("GET", "/api/v1/memories/search?subject_id=s&q=x", "memories:read"),
    ("GET", "/api/v1/memories/superseded?subject_id=s", "memories:read"),
    ("GET", "/api/v1/memories/recalls?subject_id=s", "memories:read"),
    ("GET", "/api/v1/memories/mem_x", "memories:read"),
    ("GET", "/api/v1/memories/mem_x/claims", "claims:read"),
    ("GET", "/api/v1/claims/clm_x", "claims:read"),
    ("GET", "/api/v1/claims/subject/s/truth", "claims:read"),
    ("GET", "/api/v1/claims/subject/s/slot/x", "claims:read"),
    ("GET", "/api/v1/claims/subject/s/slots", "claims:read"),
    ("GET", "/api/v1/claims/subject/s/graph", "claims:read"),
    ("GET", "/api/v1/claims/subject/s/history", "claims:read"),
    ("GET", "/api/v1/events/memories", "events:read"),
]
WRITE_ROUTES = [
    ("POST", "/api/v1/memories", "memories:write"),
    ("POST", "/api/v1/memories/extract", "memories:write"),
    ("PATCH", "/api/v1/memories/mem_x", "memories:write"),
    ("DELETE", "/api/v1/memories/mem_x", "memories:write"),
    ("POST", "/api/v1/memories/mem_x/restore", "memories:write"),
    ("POST", "/api/v1/claims", "claims:write"),
    ("POST", "/api/v1/claims/clm_x/retract", "claims:write"),
]
ADMIN_ROUTES = [
    ("GET", "/admin/keys", "admin"),
    ("POST", "/admin/keys", "admin"),
    ("POST", "/admin/keys/key_x/revoke", "admin"),
    ("POST", "/admin/keys/key_x/rotate", "admin"),
]
ALL_SCOPES = "memories:read,memories:write,claims:read,claims:write,events:read"


def forbidden(r, scope):
    assert r.status == 403, r
    assert r.body == ('{"error":"forbidden","required_scope":"%s"}' % scope).encode(), r


def test_scope_escalation(srv):
    holders = {s: make_key(srv, "p1", s)["key"] for s in ALL_SCOPES.split(",")}
    everything = make_key(srv, "p1", ALL_SCOPES)["key"]
    violations = []
    for method, path, need in READ_ROUTES + WRITE_ROUTES + ADMIN_ROUTES:
        body = {"subject_id": "s", "text": "t", "predicate": "p", "object_value": "v"} \
            if method in ("POST", "PATCH") else None
        for scope, key in holders.items():
            if scope == need:
                continue
            r = one_request(srv.host, srv.port, method, path,
                            auth_headers(key) + [("Content-Type", "application/json")],
                            json.dumps(body).encode() if body is not None else None)
            if r.status != 403 or json.loads(r.body).get("required_scope") != need:
                violations.append((scope, method, path, r.status, r.body[:100]))
        if need != "admin" and path != "/api/v1/events/memories":
            r = KeyApi(srv, everything).call(method, path, body, check=False)
            assert r.status != 403 and r.status != 401, (method, path, r)
    assert violations == []
    # claim events on the stream need claims:read as well
    ev = holders["events:read"]
    s = SSE(srv, None, "include=claims", headers=auth_headers(ev))
    assert s.status == 403 and json.loads(s.error_body)["required_scope"] == "claims:read"
    s.close()
    both = make_key(srv, "p1", "events:read,claims:read")["key"]
    s = SSE(srv, None, "include=claims", headers=auth_headers(both))
    assert s.status == 200
    s.close()


def test_key_project_is_authoritative(srv):
    k1 = make_key(srv, "p1", ALL_SCOPES)["key"]
    api = KeyApi(srv, k1, project="p2")
    r = api.get("/api/v1/memories?subject_id=s")
    assert r.status == 403 and r.json["error"] == "forbidden", r
    r = api.post("/api/v1/memories", {"subject_id": "s", "text": "x"})
    assert r.status == 403, r
    assert SSE(srv, "p2", headers=auth_headers(k1)).status == 403
    # the same project named explicitly, or none at all, is fine
    assert KeyApi(srv, k1, project="p1").get("/api/v1/memories?subject_id=s").status == 200
    # mass assignment: project_id in a body never moves a write to another project
    r = KeyApi(srv, k1).post("/api/v1/memories",
                             {"subject_id": "s", "text": "mass", "project_id": "p2"})
    assert r.status == 201, r
    rows = srv.cluster.query(srv.db, "SELECT project_id FROM memories WHERE id = %s",
                             (r.json["id"],))
    assert rows == [("p1",)]


# ------------------------------------------------------------------------------------------------
# A1: the BOLA matrix
# ------------------------------------------------------------------------------------------------
MARK = "P2MARKERzq"


def _ids(suffix):
    import uuid
    return {"mid": "mem_" + str(uuid.uuid4()), "cid": "clm_" + str(uuid.uuid4()),
            "subj": "subj-" + suffix + "-" + uuid.uuid4().hex[:8], "kid": "key_" + str(uuid.uuid4()),
            "slot": "likes"}


def test_bola_matrix(srv):
    k1 = KeyApi(srv, make_key(srv, "p1", "admin")["key"])
    k2obj = make_key(srv, "p2", "admin")
    k2 = KeyApi(srv, k2obj["key"])
    p2 = _ids("p2")
    nx = _ids("nx")
    # P2's objects: a live memory, a soft-deleted one, a claim, a superseded memory, a recall
    p2["mid"] = k2.create(p2["subj"], MARK + " live memory")["id"]
    gone = k2.create(p2["subj"], MARK + " deleted memory")["id"]
    assert k2.delete("/api/v1/memories/" + gone).status == 200
    p2["cid"] = k2.claim(p2["subj"], "likes", MARK + " tea", source_memory_id=p2["mid"])["claim_id"]
    k2.claim(p2["subj"], "likes", MARK + " coffee")
    p2["kid"] = k2obj["id"]
    # the never-existing twins have the same lengths, so bodies compare after substitution
    for k in p2:
        assert len(p2[k]) == len(nx[k]) or k == "subj"
    nx["subj"] = "subj-nx-" + p2["subj"][8:]

    p1_stream = SSE(srv, None, headers=k1_headers(k1))
    assert p1_stream.status == 200

    def norm(body, ids):
        for k in ("mid", "cid", "subj", "kid"):
            body = body.replace(ids[k].encode(), b"<" + k.encode() + b">")
        return body

    reads = [
        ("GET", "/api/v1/memories?subject_id={subj}"),
        ("GET", "/api/v1/memories?subject_id={subj}&include_deleted=true"),
        ("GET", "/api/v1/memories/search?subject_id={subj}&q=live%20memory"),
        ("GET", "/api/v1/memories/search?q=live%20memory"),
        ("GET", "/api/v1/memories/superseded?subject_id={subj}"),
        ("GET", "/api/v1/memories/recalls?subject_id={subj}"),
        ("GET", "/api/v1/memories/{mid}/claims"),
        ("GET", "/api/v1/memories/{mid}"),
        ("GET", "/api/v1/memories/" + gone.replace(gone, "{gone}")),
        ("GET", "/api/v1/claims/{cid}"),
        ("GET", "/api/v1/claims/subject/{subj}/truth"),
        ("GET", "/api/v1/claims/subject/{subj}/slot/{slot}"),
        ("GET", "/api/v1/claims/subject/{subj}/slots"),
        ("GET", "/api/v1/claims/subject/{subj}/graph"),
        ("GET", "/api/v1/claims/subject/{subj}/history"),
        ("GET", "/admin/keys"),
    ]
    writes = [
        ("PATCH", "/api/v1/memories/{mid}", {"text": "hijacked"}),
        ("DELETE", "/api/v1/memories/{mid}", None),
        ("POST", "/api/v1/memories/{gone}/restore", None),
        ("POST", "/api/v1/memories/{mid}/restore", None),
        ("POST", "/api/v1/claims/{cid}/retract", {"reason": "hijack"}),
        ("POST", "/admin/keys/{kid}/revoke", None),
        ("POST", "/admin/keys/{kid}/rotate", None),
    ]
    nx["gone"] = "mem_" + gone[4:][::-1]
    p2["gone"] = gone
    violations = []
    covered = set()
    for method, tmpl, *body in reads + writes:
        body = body[0] if body else None
        a = k1.call(method, tmpl.format(**p2), body, check=False)
        b = k1.call(method, tmpl.format(**nx), body, check=False)
        covered.add((method, tmpl.split("?")[0]))
        if MARK.encode() in a.body or a.status != b.status or \
                norm(a.body.replace(gone.encode(), b"<gone>"), p2) != \
                norm(b.body.replace(nx["gone"].encode(), b"<gone>"), nx):
            violations.append((method, tmpl, a.status, a.body[:200], b.status, b.body[:200]))
    # writes that create in P1 with P2's subject or P2's memory as a source
    for method, path, body in [
        ("POST", "/api/v1/memories", {"subject_id": p2["subj"], "text": "p1 own"}),
        ("POST", "/api/v1/memories/extract", {"subject_id": p2["subj"], "text": "I like tea",
                                              "learn": True}),
        ("POST", "/api/v1/claims", {"subject_id": p2["subj"], "predicate": "likes",
                                    "object_value": "water", "source_memory_id": p2["mid"]}),
    ]:
        r = k1.call(method, path, body, check=False)
        covered.add((method, path))
        if "source_memory_id" in body:  # P2's memory is as unknown as a never-existing one
            ok = r.status == 400 and r.json == {"error": "source_memory_not_found"}
        else:
            ok = r.status < 400
        if MARK.encode() in r.body or not ok:
            violations.append((method, path, r.status, r.body[:200]))
    assert violations == [], violations
    # P2's data is untouched and P2's key still works
    m = k2.mem(p2["mid"])
    assert m["text"] == MARK + " live memory" and m["is_deleted"] is False
    assert k2.get("/api/v1/claims/" + p2["cid"]).json["claim"]["status"] == "active"
    assert k2.get("/api/v1/memories?subject_id=" + p2["subj"]).status == 200
    # the P1 claim did not link P2's memory
    src = srv.cluster.query(srv.db, "SELECT source_memory_id FROM claims WHERE project_id = 'p1'")
    assert (p2["mid"],) not in src
    # streams: P2's new events never reach P1's stream
    k2.create(p2["subj"], MARK + " streamed")
    k1.create("p1subj", "p1 streamed")
    got = p1_stream.events_until(lambda f: f.event == "memory.created"
                                 and f.data.get("text") == "p1 streamed")
    assert all(MARK not in f.data_text for f in p1_stream.frames), got
    p1_stream.close()
    assert len(covered) >= 23


def k1_headers(api):
    return auth_headers(api.key)


# ------------------------------------------------------------------------------------------------
# /admin/keys over HTTP
# ------------------------------------------------------------------------------------------------
def test_admin_keys_http(srv):
    admin = KeyApi(srv, make_key(srv, "p1", "admin", "--name", "root")["key"])
    other = make_key(srv, "p2", "memories:read")
    r = admin.post("/admin/keys", {"scopes": ["memories:read", "events:read"], "name": "reader",
                                   "expires": "1h"})
    assert r.status == 201, r
    k = r.json
    assert list(k)[0] == "key" and KEY_RE.match(k["key"]) and k["project_id"] == "p1"
    assert k["scopes"] == ["memories:read", "events:read"] and k["expires_at"]
    assert KeyApi(srv, k["key"]).get("/api/v1/memories?subject_id=s").status == 200
    r = admin.post("/admin/keys", {"scopes": "claims:read", "expires": "2099-01-01T00:00:00Z"})
    assert r.status == 201 and r.json["expires_at"] == "2099-01-01T00:00:00.000Z", r
    listed = admin.get("/admin/keys").json["keys"]
    assert {x["name"] for x in listed} == {"root", "reader", ""}
    assert all(x["project_id"] == "p1" for x in listed)
    assert k["key"] not in admin.get("/admin/keys").text and "key_hash" not in listed[0]
    # bad input is a 400 in the API's error shape; another project is refused
    for body in ({}, {"scopes": []}, {"scopes": "nope"}, {"scopes": ["admin", 3]},
                 {"scopes": "admin", "expires": "soon"}, {"scopes": "admin", "expires": 5},
                 {"scopes": "admin", "name": "x" * 201}):
        r = admin.post("/admin/keys", body)
        assert r.status == 400 and r.json["error"] == "invalid_request", (body, r)
    r = admin.post("/admin/keys", {"scopes": "admin", "project_id": "p2"})
    assert r.status == 403, r
    assert admin.post("/admin/keys/" + other["id"] + "/revoke").status == 404
    assert admin.post("/admin/keys/" + other["prefix"] + "/rotate").status == 404
    r = admin.post("/admin/keys/" + k["id"] + "/rotate", {"overlap": "later"})
    assert r.status == 400, r
    # revoke by prefix takes effect at once on this instance
    r = admin.post("/admin/keys/" + k["prefix"] + "/revoke")
    assert r.status == 200 and r.json["status"] == "revoked", r
    assert KeyApi(srv, k["key"]).get("/api/v1/memories?subject_id=s").status == 401
    # an admin key cannot be used across projects and non-admins cannot reach key management
    assert KeyApi(srv, other["key"]).get("/admin/keys", check=False).status == 403
    # audit rows for key management, never a secret
    rows = srv.cluster.query(srv.db, "SELECT action, object_id FROM audit_log "
                                     "WHERE object_type = 'api_key' ORDER BY id")
    assert ("key.create", k["id"]) in rows and ("key.revoke", k["id"]) in rows


# ------------------------------------------------------------------------------------------------
# A3: revocation reaches every instance within 1 s and closes streams; A4: rotation overlap
# ------------------------------------------------------------------------------------------------
def _wait_401(srv, key, deadline):
    while time.monotonic() < deadline:
        r = one_request(srv.host, srv.port, "GET", "/api/v1/memories?subject_id=s",
                        auth_headers(key))
        if r.status == 401:
            return time.monotonic()
        assert r.status == 200, r
        time.sleep(0.02)
    return None


def _wait_end(stream, deadline):
    while time.monotonic() < deadline:
        fr = stream.next_frame(timeout=max(0.05, deadline - time.monotonic()))
        if fr is None and stream.ended:
            return time.monotonic()
    return None


@pytest.mark.parametrize("via", ["http", "cli"])
def test_revocation_two_instances(engram, via):
    a = engram(env=AUTH_ON)
    b = engram(env=AUTH_ON, db=a.db, migrate=False)
    admin = KeyApi(a, make_key(a, "p1", "admin")["key"])
    victim = make_key(a, "p1", "memories:read,events:read")
    bystander = make_key(a, "p1", "memories:read,events:read")
    streams = [SSE(s, None, headers=auth_headers(k["key"])) for s in (a, b)
               for k in (victim, bystander)]
    assert [s.status for s in streams] == [200] * 4
    for s in streams:
        assert s.wait_event("connected")
    # warm both caches
    for s in (a, b):
        assert KeyApi(s, victim["key"]).get("/api/v1/memories?subject_id=s").status == 200
    t0 = time.monotonic()
    if via == "http":
        assert admin.post("/admin/keys/" + victim["id"] + "/revoke").status == 200
    else:
        keys_cli(a, "revoke", victim["prefix"])
    t_rev = time.monotonic()
    deadline = t_rev + 1.5
    done = [_wait_401(s, victim["key"], deadline) for s in (a, b)]
    assert None not in done, done
    ended = [_wait_end(streams[0], deadline + 0.5), _wait_end(streams[2], deadline + 0.5)]
    assert None not in ended, ended
    staleness = max(done + ended) - t_rev
    assert staleness <= 1.0 + 0.3, staleness  # 0.3 s for this 2-core box's scheduling
    # the other key's streams stay open
    admin.create("s", "after revocation")
    for s in (streams[1], streams[3]):
        s.wait_event("memory.created")
        assert not s.ended
    for s in streams:
        s.close()
    assert t0 <= t_rev


def test_rotation_overlap(srv):
    admin = KeyApi(srv, make_key(srv, "p1", "admin")["key"])
    old = make_key(srv, "p1", "memories:read")
    assert KeyApi(srv, old["key"]).get("/api/v1/memories?subject_id=s").status == 200
    r = admin.post("/admin/keys/" + old["id"] + "/rotate", {"overlap": "2s"})
    assert r.status == 200, r
    new = r.json
    assert new["previous"]["id"] == old["id"] and new["previous"]["replaced_by"] == new["id"]
    assert new["scopes"] == ["memories:read"] and KEY_RE.match(new["key"])
    t = time.monotonic()
    for k in (old["key"], new["key"]):
        assert KeyApi(srv, k).get("/api/v1/memories?subject_id=s").status == 200
    end = _wait_401(srv, old["key"], t + 4.0)
    assert end is not None and 1.5 <= end - t <= 3.2, end - t
    assert KeyApi(srv, new["key"]).get("/api/v1/memories?subject_id=s").status == 200
    # a rotated (now expired) key cannot be rotated again
    assert admin.post("/admin/keys/" + old["id"] + "/rotate").status == 404


# ------------------------------------------------------------------------------------------------
# A7: secrets never in logs, metrics, dumps or error bodies
# ------------------------------------------------------------------------------------------------
def test_secrets_never_leak(srv):
    from conftest import PG_BIN
    cli_key = make_key(srv, "p1", "admin")
    admin = KeyApi(srv, cli_key["key"], style="x-api-key")
    http_key = admin.post("/admin/keys", {"scopes": "memories:read"}).json
    rot = admin.post("/admin/keys/" + http_key["id"] + "/rotate").json
    secrets = [k["key"] for k in (cli_key, http_key, rot)]
    bodies = []
    for key in secrets:
        wrong = key[:-1] + ("x" if key[-1] != "x" else "y")
        for hdrs in (auth_headers(key), [("x-api-key", wrong)], auth_headers(wrong)):
            r = one_request(srv.host, srv.port, "GET", "/api/v1/memories?subject_id=s", hdrs)
            bodies.append(r.body)
            r = one_request(srv.host, srv.port, "GET", "/nope", hdrs)
            bodies.append(r.body)
    bodies.append(admin.get("/admin/keys").body)
    metrics = one_request(srv.host, srv.port, "GET", "/metrics", []).body
    dump = subprocess.run([str(PG_BIN / "pg_dump"), "-h", srv.host, "-p", str(srv.cluster.port),
                           "-U", "postgres", srv.db], stdout=subprocess.PIPE, timeout=60).stdout
    assert dump and b"api_keys" in dump
    logs = srv.log_text().encode()
    for key in secrets:
        secret = key.split("_", 2)[2].encode()
        for where, blob in [("metrics", metrics), ("dump", dump), ("logs", logs)] + \
                [("body", x) for x in bodies]:
            assert secret not in blob, where


# ------------------------------------------------------------------------------------------------
# audit log
# ------------------------------------------------------------------------------------------------
def sequenced(srv, timeout=10.0):
    """Waits until the sequencer has moved every outbox row: a write's audit record reaches
    audit_log with its events (migration 0009)."""
    deadline = time.monotonic() + timeout
    while srv.cluster.query(srv.db, "SELECT count(*) FROM event_outbox") != [(0,)]:
        assert time.monotonic() < deadline, "the outbox was not drained"
        time.sleep(0.05)


def test_audit_log_records_writes(srv):
    k = make_key(srv, "p1", ALL_SCOPES)
    api = KeyApi(srv, k["key"])
    m = api.create("s", "audited")["id"]
    assert api.patch("/api/v1/memories/" + m, {"text": "audited 2"}).status == 200
    assert api.patch("/api/v1/memories/mem_nope", {"text": "x"}).status == 404
    assert api.delete("/api/v1/memories/" + m).status == 200
    c = api.claim("s", "likes", "tea")["claim_id"]
    assert api.post("/api/v1/claims/" + c + "/retract").status == 200
    r = api.post("/api/v1/memories/extract", {"subject_id": "s", "text": "I like tea. I live in Oslo.",
                                               "learn": True})
    assert r.status == 200, r
    sequenced(srv)
    rows = srv.cluster.query(
        srv.db, "SELECT key_id, action, object_type, object_id, project_id, request_id "
                "FROM audit_log WHERE object_type <> 'api_key' ORDER BY id")
    assert all(x[0] == k["id"] and x[4] == "p1" and re.match(r"^[0-9a-f]{32}$", x[5])
               for x in rows), rows
    acts = [(x[1], x[3]) for x in rows]
    assert acts[:5] == [("memory.create", m), ("memory.update", m), ("memory.delete", m),
                        ("claim.create", c), ("claim.retract", c)], acts
    assert all(a == "memory.extract" for a, _ in acts[5:]) and len(acts) > 5
    # the no-op PATCH wrote nothing; no secret or body text is stored
    assert ("memory.update", "mem_nope") not in acts
    everything = str(srv.cluster.query(srv.db, "SELECT * FROM audit_log"))
    assert "audited" not in everything and k["key"] not in everything
    # `at` is the time of the write's own transaction, as when the row was written with it
    assert srv.cluster.query(srv.db, "SELECT a.at = m.created_at FROM audit_log a JOIN memories m "
                                     "ON m.id = a.object_id WHERE a.action = 'memory.create'") \
        == [(True,)]


def test_audit_record_commits_with_the_write(engram):
    """The audit record is committed by the write itself, on its outbox row, and reaches
    audit_log when the write is sequenced, by whichever instance leads: here none can until the
    test lets go of the sequencer's lock."""
    db = engram.pg.create_database()
    engram.migrate(engram.pg.url(db), AUTH_ON)
    lock = engram.pg.connect(db)
    try:
        lock.cursor().execute("SELECT pg_advisory_lock(1701734770)")
        srv = engram(env=AUTH_ON, db=db, migrate=False)
        k = make_key(srv, "p1", ALL_SCOPES)
        m = KeyApi(srv, k["key"]).create("s", "held in the outbox")["id"]
        q = srv.cluster.query
        assert q(db, "SELECT audit_action, audit_key_id, audit_object_type, audit_object_id "
                     "FROM event_outbox") == [("memory.create", k["id"], "memory", m)]
        assert q(db, "SELECT count(*) FROM audit_log WHERE object_type = 'memory'") == [(0,)]
    finally:
        lock.close()
    sequenced(srv)
    assert q(db, "SELECT key_id, action, object_id FROM audit_log WHERE object_type = 'memory'") \
        == [(k["id"], "memory.create", m)]


def test_audit_row_looks_up_only_the_written_objects(srv):
    """An audited write finds the objects it records by primary key whatever the planner knows:
    with no statistics on memories yet, the audit insert of migration 0004 ("project_id = $1 AND
    id IN (...)") read every row of the project through a project index, on every write."""
    q = srv.cluster.query
    q(srv.db, "ALTER TABLE memories SET (autovacuum_enabled = off)")  # no statistics arrive
    q(srv.db, "INSERT INTO memories (id, project_id, subject_id, text, kind, importance, "
              "confidence, status, is_deleted, source_type) SELECT 'mem_bulk_' || i, 'p1', "
              "'bulk', 'bulk note ' || i, 'fact', 50, 0.9, 'active', false, 'explicit' "
              "FROM generate_series(1, 3000) i")
    stat = ("SELECT coalesce(sum(idx_tup_read) FILTER (WHERE indexrelname <> 'memories_pkey'), "
            "0)::bigint, coalesce(sum(idx_scan) FILTER (WHERE indexrelname = 'memories_pkey'), "
            "0)::bigint FROM pg_stat_user_indexes WHERE relname = 'memories'")
    # Counters are flushed by each backend on its own schedule (PostgreSQL 15: idle backends
    # within 10 s): wait for the PK lookups of the write to show before comparing.
    read0, pk0 = q(srv.db, stat)[0]
    api = KeyApi(srv, make_key(srv, "p1", ALL_SCOPES)["key"])
    for i in range(6):  # past the 5 custom plans of a prepared statement
        api.create("s%d" % i, "one more note %d" % i)
    deadline = time.monotonic() + 20
    while q(srv.db, stat)[0][1] - pk0 < 6 and time.monotonic() < deadline:
        time.sleep(0.2)
    read1, pk1 = q(srv.db, stat)[0]
    assert pk1 - pk0 >= 6, "the writes' statistics never arrived"
    sequenced(srv)
    assert q(srv.db, "SELECT count(*) FROM audit_log WHERE action = 'memory.create'") == [(6,)]
    assert read1 - read0 < 300, "the writes read %d index entries of memories" % (read1 - read0)


def test_audit_is_off_without_auth(engram):
    srv = engram()
    Api(srv, "p").create("s", "x")
    sequenced(srv)
    assert srv.cluster.query(srv.db, "SELECT count(*) FROM audit_log") == [(0,)]


# ------------------------------------------------------------------------------------------------
# CORS
# ------------------------------------------------------------------------------------------------
def test_cors(engram):
    srv = engram(env={"ENGRAM_AUTH": "on",
                      "ENGRAM_CORS_ORIGINS": "https://app.example, https://b.example"})
    key = make_key(srv, "p1", ALL_SCOPES)["key"]
    origin = ("Origin", "https://app.example")
    pre = [origin, ("Access-Control-Request-Method", "POST"),
           ("Access-Control-Request-Headers", "authorization, content-type")]
    r = one_request(srv.host, srv.port, "OPTIONS", "/api/v1/memories", pre)
    assert r.status == 204, r
    assert r.header("access-control-allow-origin") == "https://app.example"
    assert "POST" in r.header("access-control-allow-methods")
    assert "Authorization" in r.header("access-control-allow-headers")
    assert "Last-Event-ID" in r.header("access-control-allow-headers")
    assert r.header("access-control-max-age") == "600"
    assert r.header("vary") == "Origin" and r.body == b""
    r = one_request(srv.host, srv.port, "OPTIONS", "/api/v1/memories",
                    [("Origin", "https://evil.example"), pre[1]])
    assert r.status == 403 and r.header("access-control-allow-origin") is None, r
    # actual requests: allowed origins get the header, errors included; others do not
    r = one_request(srv.host, srv.port, "GET", "/api/v1/memories?subject_id=s",
                    [origin] + auth_headers(key))
    assert r.status == 200 and r.header("access-control-allow-origin") == "https://app.example"
    assert "WWW-Authenticate" in r.header("access-control-expose-headers")
    r = one_request(srv.host, srv.port, "GET", "/api/v1/memories?subject_id=s", [origin])
    assert r.status == 401 and r.header("access-control-allow-origin") == "https://app.example"
    r = one_request(srv.host, srv.port, "GET", "/api/v1/memories?subject_id=s",
                    [("Origin", "https://evil.example")] + auth_headers(key))
    assert r.status == 200 and r.header("access-control-allow-origin") is None
    assert r.header("vary") == "Origin"
    s = SSE(srv, None, headers=[origin] + auth_headers(key))
    assert s.status == 200 and s.header("access-control-allow-origin") == "https://app.example"
    s.close()


def test_cors_wildcard_and_off(engram):
    srv = engram(env={"ENGRAM_CORS_ORIGINS": "*"})
    s = SSE(srv, "p", headers=[("Origin", "http://localhost:3000")])
    assert s.status == 200 and s.header("access-control-allow-origin") == "http://localhost:3000"
    s.close()
    plain = engram()
    r = one_request(plain.host, plain.port, "GET", "/api/v1/memories?subject_id=s",
                    [("Origin", "http://localhost:3000"), ("x-project-id", "p")])
    assert r.status == 200 and r.header("access-control-allow-origin") is None
    assert r.header("vary") is None


# ------------------------------------------------------------------------------------------------
# ops/run: the first start prints an admin key once
# ------------------------------------------------------------------------------------------------
def test_ops_run_first_admin_key(srv):
    from conftest import REPO, engramd_path
    script = (
        'log() { printf "ops/run: %s\\n" "$*" >&2; }; die() { log "error: $*"; exit 1; }; '
        'base_url() { echo http://127.0.0.1:1; }; '
        'eval "$(sed -n "/^first_admin_key()/,/^}/p" "$REPO/ops/run")"; first_admin_key')
    env = engram_env(db_url=srv.cluster.url(srv.db),
                     extra={"ENGRAMD": engramd_path(), "REPO": str(REPO), "ENGRAM_AUTH": None})
    first = subprocess.run(["bash", "-c", script], env=env, stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE, timeout=60)
    assert first.returncode == 0, first.stderr
    found = re.findall(rb"eg_[0-9a-z]{8}_[0-9A-Za-z]{43}", first.stderr)
    assert len(found) == 1 and first.stdout == b"", first.stderr
    key = found[0].decode()
    r = KeyApi(srv, key).get("/admin/keys")
    assert r.status == 200 and r.json["keys"][0]["project_id"] == "default-project"
    second = subprocess.run(["bash", "-c", script], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, timeout=60)
    assert second.returncode == 0 and b"already has an admin key" in second.stderr
    assert not re.findall(rb"eg_[0-9a-z]{8}_", second.stderr)
