"""Fixtures for the engram black-box integration suite.

Run with: /usr/bin/python3 -m pytest -q tests/integration
(the `python3` on PATH is pyenv's and lacks the Debian packages).

What is here:
- one PostgreSQL 15 cluster per session (`pg`), made by copying a template data directory that is
  initdb'd once per session; `pg.create_database()` gives each test a fresh database;
- `private_pg`: a cluster of a test's own (copied from the same template) for tests that stop and
  restart PostgreSQL;
- `redis_factory`: redis-server instances on loopback;
- `engram(env=..., db=...)`: runs `engramd migrate`, starts `engramd serve` on a free loopback port,
  waits for `GET /health/ready` = 200 (10 s) and, at teardown, sends SIGTERM and asserts exit code 0
  within 15 s (graceful shutdown is part of every test). API keys are off (ENGRAM_AUTH=off) unless
  env turns them on;
- `engramd_cli(args, env=...)`: runs one engramd command with a bounded timeout.

Everything binds to 127.0.0.1 on free ports, lives in one temp directory that is removed at the end,
and every wait is bounded. The binary comes from $ENGRAMD (default <repo>/build/engramd).
"""
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import uuid
from pathlib import Path

import pytest

from rawhttp import ConnClosed, RawConn, one_request

REPO = Path(__file__).resolve().parents[2]
ENGRAMD = os.environ.get("ENGRAMD", str(REPO / "build" / "engramd"))
PG_BIN = Path(os.environ.get("PG_BIN", "/usr/lib/postgresql/15/bin"))
HOST = "127.0.0.1"
READY_TIMEOUT_S = 10.0
STOP_TIMEOUT_S = 15.0
MIGRATE_TIMEOUT_S = 60.0

# Environment variables that configure engramd; scrubbed from the inherited environment so the
# developer's shell cannot leak into a test.
_SCRUB_PREFIXES = ("ENGRAM_", "PG", "POSTGRES_", "REDIS", "CORE_", "OPENAI", "CEREBRAS")
_SCRUB_NAMES = {"DATABASE_URL", "PORT", "RETRIEVAL_MODEL", "USE_RETRIEVAL_EXPAND"}

_issued_ports = set()


def free_port():
    """A loopback TCP port that is free now and not handed out before in this session."""
    for _ in range(50):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            s.bind((HOST, 0))
            port = s.getsockname()[1]
        if port not in _issued_ports:
            _issued_ports.add(port)
            return port
    raise RuntimeError("could not find a free port")


def _run(cmd, timeout, **kw):
    return subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=timeout,
                          **kw)


def _as_postgres(args):
    return ["runuser", "-u", "postgres", "--"] + [str(a) for a in args]


# ------------------------------------------------------------------------------------------------
# PostgreSQL
# ------------------------------------------------------------------------------------------------
class PgCluster:
    """One PostgreSQL cluster on 127.0.0.1:port, data dir owned by the postgres OS user."""

    def __init__(self, datadir):
        self.datadir = Path(datadir)
        self.sockdir = self.datadir.parent / (self.datadir.name + ".sock")
        self.logfile = self.datadir.parent / (self.datadir.name + ".log")
        self.port = None
        self._dbseq = 0

    # lifecycle ------------------------------------------------------------------------------
    def start(self, timeout=30):
        self.sockdir.mkdir(exist_ok=True)
        shutil.chown(self.sockdir, "postgres", "postgres")
        if not self.logfile.exists():
            self.logfile.touch()
            shutil.chown(self.logfile, "postgres", "postgres")
        last = None
        for _ in range(3):  # a port can be taken between free_port() and bind; retry
            port = self.port or free_port()
            opts = ("-c listen_addresses=%s -c port=%d -c unix_socket_directories=%s "
                    "-c fsync=off -c full_page_writes=off -c max_connections=300"
                    % (HOST, port, self.sockdir))
            r = _run(_as_postgres([PG_BIN / "pg_ctl", "-D", self.datadir, "-l", self.logfile,
                                   "-w", "-t", str(timeout), "-o", opts, "start"]),
                     timeout=timeout + 10)
            if r.returncode == 0:
                self.port = port
                return
            last = r.stdout.decode(errors="replace") + self.log_tail()
            if self.port is not None:
                break  # restart on a fixed port: do not silently move
        raise RuntimeError("pg_ctl start failed:\n%s" % last)

    def stop(self, mode="fast", timeout=30):
        r = _run(_as_postgres([PG_BIN / "pg_ctl", "-D", self.datadir, "-m", mode, "-w", "-t",
                               str(timeout), "stop"]), timeout=timeout + 10)
        if r.returncode != 0:
            raise RuntimeError("pg_ctl stop -m %s failed: %s" % (mode, r.stdout.decode(errors="replace")))

    def is_running(self):
        r = _run(_as_postgres([PG_BIN / "pg_ctl", "-D", self.datadir, "status"]), timeout=10)
        return r.returncode == 0

    def log_tail(self, n=40):
        try:
            return "\n".join(self.logfile.read_text(errors="replace").splitlines()[-n:])
        except OSError:
            return ""

    # access ---------------------------------------------------------------------------------
    def url(self, db):
        return "postgresql://postgres@%s:%d/%s" % (HOST, self.port, db)

    def connect(self, db="postgres"):
        import psycopg2
        conn = psycopg2.connect(host=HOST, port=self.port, user="postgres", dbname=db,
                                connect_timeout=5)
        conn.autocommit = True
        return conn

    def query(self, db, sql, params=None):
        conn = self.connect(db)
        try:
            with conn.cursor() as cur:
                cur.execute(sql, params)
                return cur.fetchall() if cur.description else None
        finally:
            conn.close()

    def create_database(self, name=None):
        if name is None:
            self._dbseq += 1
            name = "t%d_%s" % (self._dbseq, uuid.uuid4().hex[:10])
        conn = self.connect("postgres")
        try:
            with conn.cursor() as cur:
                cur.execute('CREATE DATABASE "%s"' % name)
        finally:
            conn.close()
        return name

    def psql_file(self, db, path, timeout=60):
        """Run an SQL file with psql, stopping at the first error. Returns CompletedProcess."""
        psql = PG_BIN / "psql"
        return _run([psql, "-X", "-q", "-v", "ON_ERROR_STOP=1", "-h", HOST, "-p", str(self.port),
                     "-U", "postgres", "-d", db, "-f", str(path)], timeout=timeout)


def _pg_available():
    if not (PG_BIN / "initdb").exists() or not (PG_BIN / "pg_ctl").exists():
        return "PostgreSQL binaries not found in %s" % PG_BIN
    if shutil.which("runuser") is None:
        return "runuser not found"
    try:
        import pwd
        pwd.getpwnam("postgres")
    except KeyError:
        return "no postgres OS user"
    try:
        import psycopg2  # noqa: F401
    except ImportError:
        return "python3-psycopg2 missing (run with /usr/bin/python3)"
    return None


@pytest.fixture(scope="session")
def workdir():
    """The session's temp directory (owned by postgres so clusters can live inside)."""
    base = Path(tempfile.mkdtemp(prefix="engram-it-"))
    try:
        shutil.chown(base, "postgres", "postgres")
    except (KeyError, LookupError, PermissionError):
        pass
    os.chmod(base, 0o755)
    yield base
    shutil.rmtree(base, ignore_errors=True)


@pytest.fixture(scope="session")
def pg_template(workdir):
    """An initdb'd, stopped data directory, copied by every cluster of the session."""
    why = _pg_available()
    if why:
        pytest.skip(why)
    tmpl = workdir / "pg-template"
    tmpl.mkdir()
    shutil.chown(tmpl, "postgres", "postgres")
    os.chmod(tmpl, 0o700)
    r = _run(_as_postgres([PG_BIN / "initdb", "-D", tmpl, "--auth=trust", "-E", "UTF8",
                           "--locale=C.UTF-8", "-U", "postgres", "--no-sync"]), timeout=120)
    if r.returncode != 0:
        pytest.fail("initdb failed:\n%s" % r.stdout.decode(errors="replace"))
    return tmpl


def _clone_cluster(template, workdir, name):
    dest = workdir / name
    r = _run(["cp", "-a", str(template), str(dest)], timeout=60)
    assert r.returncode == 0, r.stdout
    os.chmod(dest, 0o700)
    return PgCluster(dest)


def _destroy_cluster(cluster):
    try:
        if cluster.is_running():
            cluster.stop("immediate", timeout=20)
    except Exception:  # noqa: BLE001 - best effort at teardown, then remove the files anyway
        pass
    shutil.rmtree(cluster.datadir, ignore_errors=True)
    shutil.rmtree(cluster.sockdir, ignore_errors=True)


@pytest.fixture(scope="session")
def pg(pg_template, workdir):
    """The session's shared PostgreSQL cluster. Use pg.create_database() per test."""
    cluster = _clone_cluster(pg_template, workdir, "pg-shared")
    cluster.start()
    yield cluster
    _destroy_cluster(cluster)


_private_seq = [0]


@pytest.fixture
def private_pg(pg_template, workdir):
    """A PostgreSQL cluster of this test's own, free to be stopped and restarted."""
    _private_seq[0] += 1
    cluster = _clone_cluster(pg_template, workdir, "pg-private-%d" % _private_seq[0])
    cluster.start()
    yield cluster
    _destroy_cluster(cluster)


@pytest.fixture
def fresh_db(pg):
    """Name of a new, empty database on the shared cluster."""
    return pg.create_database()


# ------------------------------------------------------------------------------------------------
# Redis
# ------------------------------------------------------------------------------------------------
class RedisServer:
    def __init__(self, workdir):
        self.port = free_port()
        self.dir = workdir / ("redis-%d" % self.port)
        self.dir.mkdir()
        self.logfile = self.dir / "redis.log"
        self.start()

    def start(self):
        """Starts redis-server on self.port (again, after kill(): same port, empty data)."""
        self.proc = subprocess.Popen(
            ["redis-server", "--port", str(self.port), "--bind", HOST, "--save", "",
             "--appendonly", "no", "--dir", str(self.dir), "--logfile", str(self.logfile)],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if self.ping():
                return
            if self.proc.poll() is not None:
                break
            time.sleep(0.05)
        self.kill()
        raise RuntimeError("redis-server did not start on port %d" % self.port)

    @property
    def url(self):
        return "redis://%s:%d" % (HOST, self.port)

    def ping(self):
        try:
            with socket.create_connection((HOST, self.port), timeout=1) as s:
                s.sendall(b"PING\r\n")
                return s.recv(64).startswith(b"+PONG")
        except OSError:
            return False

    def kill(self):
        if self.proc.poll() is None:
            self.proc.kill()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                pass


@pytest.fixture
def redis_factory(workdir):
    if shutil.which("redis-server") is None:
        pytest.skip("redis-server not installed")
    servers = []

    def make():
        srv = RedisServer(workdir)
        servers.append(srv)
        return srv

    yield make
    for srv in servers:
        srv.kill()


# ------------------------------------------------------------------------------------------------
# engramd
# ------------------------------------------------------------------------------------------------
_snapshot = []  # the copy of $ENGRAMD this session runs (see engramd_snapshot)


def engramd_path():
    """The binary under test: the session's snapshot of $ENGRAMD once taken, else $ENGRAMD."""
    return _snapshot[0] if _snapshot else ENGRAMD


def require_engramd():
    path = engramd_path()
    if not os.path.isfile(path) or not os.access(path, os.X_OK):
        pytest.fail("engramd binary not found at %s (build it, or set ENGRAMD)" % path,
                    pytrace=False)


@pytest.fixture(scope="session", autouse=True)
def engramd_snapshot(workdir):
    """Copy $ENGRAMD once per session, so a rebuild during the run cannot swap or remove the
    binary under the tests (every test of a run exercises the same build)."""
    if os.path.isfile(ENGRAMD) and os.access(ENGRAMD, os.X_OK):
        dest = workdir / "engramd"
        shutil.copy2(ENGRAMD, dest)
        _snapshot.append(str(dest))
    yield
    _snapshot.clear()


def engram_env(port=None, db_url=None, extra=None):
    """The environment engramd runs with: inherited minus engram/PG config, plus ours.
    A value of None in extra removes that variable."""
    env = {k: v for k, v in os.environ.items()
           if not (k.startswith(_SCRUB_PREFIXES) or k in _SCRUB_NAMES)}
    env["ENGRAM_BIND"] = HOST
    env["ENGRAM_LOG_LEVEL"] = "info"
    # API keys are on by default in engramd; the suites written against CORE's open API run with
    # them off. Auth tests pass {"ENGRAM_AUTH": "on"} (tests/integration/test_auth.py).
    env["ENGRAM_AUTH"] = "off"
    if port is not None:
        env["PORT"] = str(port)
    if db_url is not None:
        env["DATABASE_URL"] = db_url
    for k, v in (extra or {}).items():
        if v is None:
            env.pop(k, None)
        else:
            env[k] = str(v)
    return env


def run_engramd(args, env, timeout=MIGRATE_TIMEOUT_S):
    """Run engramd with args; returns CompletedProcess with .stdout/.stderr as str."""
    require_engramd()
    try:
        r = subprocess.run([engramd_path()] + list(args), env=env, stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE, timeout=timeout, stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired as e:
        pytest.fail("engramd %s did not finish within %ss; output: %r %r"
                    % (" ".join(args), timeout, e.stdout, e.stderr))
    r.stdout = r.stdout.decode("utf-8", errors="replace")
    r.stderr = r.stderr.decode("utf-8", errors="replace")
    return r


class Engram:
    """A running `engramd serve`."""

    def __init__(self, rundir, env, port):
        self.host = HOST
        self.port = port
        self.base_url = "http://%s:%d" % (HOST, port)
        self.env = env
        self.rundir = rundir
        self.stdout_path = rundir / "stdout.log"
        self.stderr_path = rundir / "stderr.log"
        self.proc = None
        self.returncode = None
        self.stopped = False

    def start(self):
        require_engramd()
        with open(self.stdout_path, "wb") as out, open(self.stderr_path, "wb") as err:
            self.proc = subprocess.Popen([engramd_path(), "serve"], env=self.env, stdout=out, stderr=err,
                                         stdin=subprocess.DEVNULL, start_new_session=True)
        return self

    @property
    def pid(self):
        return self.proc.pid

    # logs -------------------------------------------------------------------------------------
    def stdout_text(self):
        return self.stdout_path.read_text(encoding="utf-8", errors="replace")

    def stderr_text(self):
        return self.stderr_path.read_text(encoding="utf-8", errors="replace")

    def log_text(self):
        return self.stdout_text() + self.stderr_text()

    def log_tail(self, n=60):
        lines = self.log_text().splitlines()
        return "\n".join(lines[-n:])

    # readiness --------------------------------------------------------------------------------
    def wait_ready(self, timeout=READY_TIMEOUT_S):
        deadline = time.monotonic() + timeout
        last = None
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError("engramd serve exited with %s before becoming ready:\n%s"
                                     % (self.proc.returncode, self.log_tail()))
            try:
                r = one_request(self.host, self.port, "GET", "/health/ready", timeout=2)
                last = r
                if r.status == 200:
                    return r
            except (OSError, ConnClosed) as e:
                last = e
            time.sleep(0.1)
        raise AssertionError("GET /health/ready not 200 within %ss (last: %r)\n%s"
                             % (timeout, last, self.log_tail()))

    # requests ---------------------------------------------------------------------------------
    def request(self, method, path, headers=None, body=None, timeout=5.0):
        return one_request(self.host, self.port, method, path, headers, body, timeout)

    def get(self, path, headers=None, timeout=5.0):
        return self.request("GET", path, headers, timeout=timeout)

    def conn(self, timeout=5.0):
        return RawConn(self.host, self.port, timeout=timeout)

    def assert_alive(self, what="after the attack"):
        """GET /health/live answers 200 within 1 s and the process is still running."""
        assert self.proc.poll() is None, "engramd died %s (exit %s):\n%s" % (
            what, self.proc.returncode, self.log_tail())
        r = self.get("/health/live", timeout=1.0)
        assert r.status == 200, "GET /health/live %s: %r" % (what, r)

    def rss_kib(self):
        with open("/proc/%d/status" % self.pid) as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
        return None

    def fd_count(self):
        return len(os.listdir("/proc/%d/fd" % self.pid))

    # shutdown ---------------------------------------------------------------------------------
    def terminate(self):
        """Send SIGTERM (the caller waits; teardown then only checks the exit code)."""
        self.terminated = True
        self.proc.send_signal(signal.SIGTERM)

    def wait_exit(self, timeout=STOP_TIMEOUT_S):
        try:
            self.returncode = self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=10)
            self.stopped = True
            raise AssertionError("engramd did not exit within %ss of SIGTERM (killed):\n%s"
                                 % (timeout, self.log_tail()))
        self.stopped = True
        return self.returncode

    def stop(self, timeout=STOP_TIMEOUT_S):
        """SIGTERM and assert a clean exit (code 0) within timeout."""
        if self.stopped:
            return self.returncode
        if getattr(self, "terminated", False):  # the test sent SIGTERM itself
            rc = self.wait_exit(timeout)
            assert rc == 0, "engramd exited with %s after SIGTERM (expected 0):\n%s" % (
                rc, self.log_tail())
            return rc
        if self.proc.poll() is not None:
            self.stopped = True
            self.returncode = self.proc.returncode
            raise AssertionError("engramd had already exited with %s before teardown:\n%s"
                                 % (self.returncode, self.log_tail()))
        self.terminate()
        rc = self.wait_exit(timeout)
        assert rc == 0, "engramd exited with %s after SIGTERM (expected 0):\n%s" % (
            rc, self.log_tail())
        return rc

    def kill(self):
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=10)
        self.stopped = True


class _Launcher:
    """Shared code of the function- and module-scoped engram fixtures."""

    def __init__(self, pg, workdir, node=None):
        self.pg = pg
        self.workdir = workdir
        self.node = node
        self.started = []

    def migrate(self, db_url, env=None):
        r = run_engramd(["migrate"], engram_env(db_url=db_url, extra=env))
        assert r.returncode == 0, "engramd migrate exited %s:\n%s%s" % (
            r.returncode, r.stdout, r.stderr)
        return r

    def __call__(self, env=None, db=None, migrate=True, wait_ready=True, cluster=None):
        """Start engramd serve. env: extra variables (None removes one); db: database name on
        `cluster` (default the session cluster; a fresh database when omitted)."""
        require_engramd()
        cluster = cluster or self.pg
        if db is None:
            db = cluster.create_database()
        db_url = cluster.url(db)
        if migrate:
            self.migrate(db_url, env)
        port = free_port()
        rundir = self.workdir / ("engramd-%d-%s" % (port, uuid.uuid4().hex[:6]))
        rundir.mkdir()
        srv = Engram(rundir, engram_env(port, db_url, env), port)
        srv.db = db
        srv.cluster = cluster
        srv.start()
        self.started.append(srv)
        if self.node is not None:
            self.node._engram_servers = getattr(self.node, "_engram_servers", []) + [srv]
        if wait_ready:
            srv.wait_ready()
        return srv

    def teardown(self):
        errors = []
        for srv in reversed(self.started):
            try:
                srv.stop()
            except AssertionError as e:
                errors.append(str(e))
            finally:
                srv.kill()
        if errors:
            pytest.fail("graceful shutdown failed:\n" + "\n\n".join(errors), pytrace=False)


@pytest.fixture
def engram(pg, workdir, request):
    """Factory: engram(env={...}, db=name, migrate=True, wait_ready=True, cluster=pg)."""
    launcher = _Launcher(pg, workdir, request.node)
    yield launcher
    launcher.teardown()


@pytest.fixture(scope="module")
def shared_engram(pg, workdir):
    """One engramd per test module, for cheap attack tests that each check liveness afterwards."""
    launcher = _Launcher(pg, workdir)
    srv = launcher()
    yield srv
    launcher.teardown()


@pytest.fixture
def engram_server(shared_engram, request):
    """The module's shared server, attached to this test for log reporting and checked alive."""
    request.node._engram_servers = [shared_engram]
    shared_engram.assert_alive("before the test")
    return shared_engram


@pytest.fixture
def engramd_cli(pg):
    """engramd_cli(args, env=None, db=None) -> CompletedProcess (str stdout/stderr).
    Without db the command gets no DATABASE_URL."""

    def run(args, env=None, db=None, timeout=MIGRATE_TIMEOUT_S, port=None):
        url = pg.url(db) if db else None
        return run_engramd(args, engram_env(port=port, db_url=url, extra=env), timeout=timeout)

    return run


# ------------------------------------------------------------------------------------------------
# Reporting: attach engramd's output to failed tests.
# ------------------------------------------------------------------------------------------------
@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    rep = outcome.get_result()
    if rep.failed:
        for i, srv in enumerate(getattr(item, "_engram_servers", [])):
            try:
                rep.sections.append(("engramd[%d] port %d output (tail)" % (i, srv.port),
                                     srv.log_tail(40)))
            except OSError:
                pass
