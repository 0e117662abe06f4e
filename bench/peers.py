"""The agent gateway beside a peer gateway: IBM's ContextForge (``mcp-contextforge-gateway``
1.1.0) behind the same upstream as bench/gateway.py, with the same lean client, in one run.

    .venv/bin/python bench/run.py --only gateway --peers [--quick]
    .venv/bin/python -m bench.peers [--quick]          # this arm alone

Optional: when the peer cannot be installed or started here, the arm is one "skipped" row
saying why, never a failure. The bare-Starlette floor (``bare_floor``) does not need the
peer; bench/gateway.py reports it beside mcpadmin's own ``/healthz`` floor.

What it took to run the peer (the issue's facts, each checked on 1.1.0):

- **Python 3.12, and pip on 3.11 installs 1.0.7 instead**: confirmed, more exactly: the
  1.1.0 wheel says ``Requires-Python >=3.12,<3.14`` (3.13 would do too) while its README
  still says "Python ≥ 3.11". Unpinned on 3.11, pip quietly takes
  ``1.0.7.post20260921``, the last release that allows 3.11; pinned to 1.1.0 on 3.11 it
  fails ("Ignored the following versions that require a different python version").
  Here: a venv of the first 3.12/3.13 found (``python3.12`` on PATH is often a pyenv shim
  that refuses to run, so each candidate is tried, then ``$PYENV_ROOT/versions/3.12*``),
  cached in ``~/.cache/mcpadmin-bench/contextforge-1.1.0`` and reused while it holds
  exactly 1.1.0; anything else is refused. It brings its own SDK: ``mcp`` 2.3.0, the line
  our peers run.
- **The wheel ships no run-gunicorn.sh**: confirmed, nor ``gunicorn.config.py``; its README
  starts production with ``make serve`` (gunicorn on :4444) from a checkout, and the
  ``mcpgateway`` console script runs plain uvicorn. The settings below are those of the
  project's ``run-gunicorn.sh`` and ``gunicorn.config.py``, rewritten here: the uvicorn
  worker class, ``--timeout 600``, ``--max-requests 100000 --max-requests-jitter 100``,
  ``--preload`` (its default on Linux), access log off (its ``DISABLE_ACCESS_LOG`` default),
  ``--forwarded-allow-ips=*``, ``reuse_port``, and a ``post_fork`` hook that drops the
  SQLAlchemy pool inherited from the preloaded master. Workers: 2, as the issue asks and as
  its ``gunicorn.config.py`` says; its script's own default here would be 2×CPU+1 = 5. (The
  script now names a ``ContextForgeUvicornWorker``; it differs only in TLS settings.)
- **Its rate limit (100 MCP requests a minute per user) must be off**: confirmed and wider:
  ``RATE_LIMITING_ENABLED`` (default true) limits ``/mcp``, ``/servers``, ``/tools``…
  to 100 a minute plus a burst of 20 per client address and per user (and per team), kept
  in each worker's memory without Redis, and 5 violations lock the client out for 15
  minutes (``/health``: 500 a minute). ``RATE_LIMITING_ENABLED=false`` removes it.
- **A JWT from ``python -m mcpgateway.utils.create_jwt_token``**: confirmed, as
  ``--username admin@example.com --exp <minutes> --secret $JWT_SECRET_KEY`` (the bootstrap
  admin made at first start). The module loads the gateway's settings, so it needs the
  same environment as the server, secrets included.
- **``POST /gateways``, ``POST /servers``, clients on ``/servers/<id>/mcp``**: these work,
  but in 1.1.0 they are deprecated shims (``LEGACY_API_ENABLED``, default true) answering
  with ``Deprecation: true`` and ``Sunset: Sat, 26 Sep 2026``, already past. The bench uses
  the canonical routes: ``POST /v1/gateways`` (``{"name", "url", "transport":
  "STREAMABLEHTTP"}``), ``GET /v1/tools?gateway_id=…&limit=0``, ``POST /v1/virtual-servers``
  (``{"server": {"name", "associated_tools": [tool ids]}}``) and clients on
  ``/v1/virtual-servers/<id>/mcp``. (The shims' ``Link: rel="successor-version"`` names
  ``/v1/servers/<id>/mcp``, which answers 404.)

And what the issue did not list:

- Startup refuses weak secrets: ``JWT_SECRET_KEY`` and ``AUTH_ENCRYPTION_SECRET`` (≥ 32
  characters, entropy checked), ``PLATFORM_ADMIN_PASSWORD`` and ``DEFAULT_USER_PASSWORD``
  (≥ 12, no placeholder). Each run makes fresh ones, as its ``init_secrets`` would.
- Its SSRF guard refuses a loopback upstream: ``SSRF_ALLOW_LOCALHOST=true``.
- The first start on an empty SQLite file migrates it (the first figure of each mode says
  how long start took); it runs from an empty working directory so no stray ``.env`` is read.
- Tools are exposed as ``<gateway slug>-<tool>`` (``upstream-weather``).
- "Stateful" is ``USE_STATEFUL_SESSIONS=true`` (default false; ``JSON_RESPONSE_ENABLED``
  stays at its default, true). 1.1.0 answers the modern, sessionless protocol (2026-07-28)
  in either mode, so the mode only changes anything for a client that does the
  ``initialize`` handshake and keeps ``Mcp-Session-Id``. In "defaults" the lean client is the
  modern one, as in bench/gateway.py; in "stateful" it is the same client in the handshake
  era (2025-11-25) holding one session; each mode also times the other client. A session
  lives in one worker's memory: without Redis, a session request on a new connection that
  lands on the other worker gets 404 "Session not found" (a figure counts them).
- Per call it sends the upstream ``server/discover``, ``tools/call`` and ``tools/list``
  (3 requests) unless the client holds a stateful session (1); a figure counts them.

Method, per mode: the server is started, three repetitions of (1) ``tools/call weather``
one client, sequential, interleaved with the direct call, the other era's client, ``GET
/health`` and the bare floor; (2) 16 concurrent clients, direct then through ContextForge,
with the CPU of its processes (the gunicorn master and every descendant,
``/proc/<pid>/stat``) and of the upstream; (3) a 50-tool ``tools/list`` through a virtual
server of a 50-tool upstream, interleaved with that upstream's own listing. Each figure is
the median of the three runs, the range in its note. The SQLite file and registrations
carry over from "defaults" to "stateful".
"""

import glob
import os
import secrets
import shutil
import statistics
import subprocess
import sys
import threading
import time

import requests
import uvicorn

from bench.common import (
    CONCURRENCY,
    Figure,
    Lean,
    McpPeer,
    bare_starlette,
    concurrent_calls,
    cpu_seconds,
    interleaved_times,
    percentile,
    workdir,
)
from tests.peers import free_port, terminate

PACKAGE, VERSION = "mcp-contextforge-gateway", "1.1.0"
CACHE = os.path.join(os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"),
                     "mcpadmin-bench", f"contextforge-{VERSION}")  # fmt: skip
WORKERS = 2
REPETITIONS = 3
HANDSHAKE = "2025-11-25"  # the protocol of the initialize era the "stateful" client speaks
ADMIN = "admin@example.com"  # its bootstrap admin (PLATFORM_ADMIN_EMAIL's default)
INSTALL_TIMEOUT = 900
START_TIMEOUT = 180
FRESH_CONNECTIONS = 20


class Skip(Exception):
    """The peer cannot be installed or started here; the message is the one-line note."""


def run(quick: bool = False) -> list[Figure]:
    sizes = {"calls": 40, "concurrent": 96, "listings": 20} if quick else \
        {"calls": 150, "concurrent": 240, "listings": 40}  # fmt: skip
    began = time.perf_counter()
    try:
        python, versions = install()
    except Skip as exc:
        return [skipped(str(exc))]
    installed = time.perf_counter() - began
    peer = McpPeer("mcp_server.py", "--call-tools", "--tools", "0", "--json", "--stateless")
    fifty = McpPeer("mcp_server.py", "--tools", "50", "--json", "--stateless")
    directory = workdir("peers")
    settings = _settings(directory)
    figures, ids = [], None
    try:
        with bare_starlette() as bare:
            for mode in ("defaults", "stateful"):
                try:
                    with ContextForge(python, directory, settings, mode == "stateful") as server:
                        ids = ids or _register(server, peer, fifty)
                        figures += _mode(mode, server, ids, peer, fifty, bare, sizes, versions,
                                         installed)  # fmt: skip
                except Skip as exc:
                    figures.append(skipped(f"ContextForge {mode}: {exc}"))
                    if ids is None:
                        break  # it never ran here: one note is enough
    finally:
        peer.stop()
        fifty.stop()
    return figures


def skipped(note: str) -> Figure:
    return Figure(f"peer arm skipped: {note}"[:300], None, skipped=True)


# -- installing and starting the peer -------------------------------------------------------------


def find_python() -> tuple[str, str]:
    """A Python that ContextForge 1.1.0 installs on (``>=3.12,<3.14``): its path and version.
    Each candidate is run, since a pyenv shim on PATH may exist and still refuse to run."""
    root = os.environ.get("PYENV_ROOT") or os.path.expanduser("~/.pyenv")
    candidates = [shutil.which("python3.12"), shutil.which("python3.13")]
    for minor in ("3.12", "3.13"):
        candidates += sorted(glob.glob(os.path.join(root, "versions", f"{minor}.*", "bin",
                                                    "python3")), reverse=True)  # fmt: skip
        candidates += [f"/usr/local/bin/python{minor}", f"/usr/bin/python{minor}"]
    for candidate in dict.fromkeys(c for c in candidates if c and os.access(c, os.X_OK)):
        try:
            answer = subprocess.run(
                [candidate, "-c", "import sys, venv; print('%d.%d.%d' % sys.version_info[:3])"],
                capture_output=True, text=True, timeout=30, check=False)  # fmt: skip
        except (OSError, subprocess.TimeoutExpired):
            continue
        version = answer.stdout.strip()
        if answer.returncode == 0 and version.startswith(("3.12.", "3.13.")):
            return candidate, version
    raise Skip(
        f"no Python 3.12 or 3.13 found (on PATH or under {root}/versions); "
        f"{PACKAGE} {VERSION} requires >=3.12,<3.14, and on 3.11 pip installs 1.0.7"
    )


def install() -> tuple[str, dict]:
    """The venv's python with exactly ContextForge 1.1.0, and the versions that matter.
    A venv in the cache is reused while it holds 1.1.0; a broken or other one is redone."""
    python = os.path.join(CACHE, "bin", "python")
    versions = _versions(python)
    if versions.get(PACKAGE) == VERSION:
        return python, versions
    base, base_version = find_python()
    shutil.rmtree(CACHE, ignore_errors=True)
    os.makedirs(os.path.dirname(CACHE), exist_ok=True)
    log_path = CACHE + ".install.log"
    try:
        with open(log_path, "wb") as log:
            subprocess.run([base, "-m", "venv", CACHE], check=True, stdout=log,
                           stderr=subprocess.STDOUT, timeout=120)  # fmt: skip
            subprocess.run([python, "-m", "pip", "install", "--quiet",
                            "--disable-pip-version-check", f"{PACKAGE}=={VERSION}"], check=True,
                           stdout=log, stderr=subprocess.STDOUT,
                           timeout=INSTALL_TIMEOUT)  # fmt: skip
    except (OSError, subprocess.SubprocessError) as exc:
        shutil.rmtree(CACHE, ignore_errors=True)
        raise Skip(
            f"pip could not install {PACKAGE}=={VERSION} on Python {base_version} "
            f"({type(exc).__name__}; log: {log_path}): {_last_line(log_path)}"
        ) from exc
    versions = _versions(python)
    if versions.get(PACKAGE) != VERSION:
        shutil.rmtree(CACHE, ignore_errors=True)
        raise Skip(f"pip installed {PACKAGE} {versions.get(PACKAGE)}, not {VERSION}; refused")
    return python, versions


_VERSIONS = """
import importlib.metadata as m, json, sys
names = ["mcp-contextforge-gateway", "gunicorn", "uvicorn", "uvloop", "httptools", "starlette",
         "fastapi", "mcp", "sqlalchemy"]
found = {"python": "%d.%d.%d" % sys.version_info[:3]}
for name in names:
    try:
        found[name] = m.version(name)
    except m.PackageNotFoundError:
        pass
print(json.dumps(found))
"""


def _versions(python: str) -> dict:
    import json

    if not os.access(python, os.X_OK):
        return {}
    try:
        answer = subprocess.run([python, "-c", _VERSIONS], capture_output=True, text=True,
                                timeout=60, check=True)  # fmt: skip
        return json.loads(answer.stdout)
    except (OSError, subprocess.SubprocessError, ValueError):
        return {}


def _last_line(path: str) -> str:
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            lines = [line.strip() for line in f if line.strip() and "is ignored" not in line]
    except OSError:
        return ""
    return lines[-1][:200] if lines else ""


def _settings(directory: str) -> dict:
    """Its environment: fresh secrets (as its ``init_secrets`` makes them), SQLite in the
    bench's work dir, the rate limit off, loopback upstreams allowed. Nothing else is set."""
    return {
        "JWT_SECRET_KEY": secrets.token_urlsafe(32),
        "AUTH_ENCRYPTION_SECRET": secrets.token_urlsafe(32),
        "BASIC_AUTH_PASSWORD": secrets.token_urlsafe(18),
        "PLATFORM_ADMIN_PASSWORD": secrets.token_urlsafe(18),
        "DEFAULT_USER_PASSWORD": secrets.token_urlsafe(18),
        "PLATFORM_ADMIN_EMAIL": ADMIN,
        "DATABASE_URL": "sqlite:///" + os.path.join(directory, "contextforge.sqlite3"),
        "RATE_LIMITING_ENABLED": "false",
        "SSRF_ALLOW_LOCALHOST": "true",
    }


SETTINGS_NOTE = "SQLite, RATE_LIMITING_ENABLED=false, SSRF_ALLOW_LOCALHOST=true"

GUNICORN_CONF = '''"""gunicorn settings of the bench's ContextForge (bench/peers.py): what its own
gunicorn.config.py adds to the command line."""

reuse_port = True


def post_fork(server, worker):
    from mcpgateway.db import engine

    engine.dispose(close=False)  # the pool inherited from the preloaded master stays its own
'''


class ContextForge:
    """ContextForge under gunicorn with its production settings (see the module's docstring)
    on 127.0.0.1 and a free port; ``stateful`` sets ``USE_STATEFUL_SESSIONS=true``."""

    def __init__(self, python: str, directory: str, settings: dict, stateful: bool):
        self.python, self.port = python, free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        home = os.path.join(directory, "contextforge-stateful" if stateful else "contextforge")
        os.makedirs(home, exist_ok=True)  # its working directory: empty, so no .env is read
        conf = os.path.join(home, "gunicorn_conf.py")
        with open(conf, "w", encoding="utf-8") as f:
            f.write(GUNICORN_CONF)
        self.env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": home,
                    "LANG": "C.UTF-8", **settings, "HOST": "127.0.0.1", "PORT": str(self.port),
                    "USE_STATEFUL_SESSIONS": "true" if stateful else "false"}  # fmt: skip
        self.command = [
            python, "-m", "gunicorn", "-c", conf, "mcpgateway.main:app",
            "--worker-class", "uvicorn.workers.UvicornWorker", "--workers", str(WORKERS),
            "--timeout", "600", "--max-requests", "100000", "--max-requests-jitter", "100",
            "--preload", "--access-logfile", "/dev/null", "--error-logfile", "-",
            "--forwarded-allow-ips", "*", "--bind", f"127.0.0.1:{self.port}",
        ]  # fmt: skip
        self.log_path = os.path.join(home, f"gunicorn-{self.port}.log")
        self.log = open(self.log_path, "wb")  # noqa: SIM115 (closed in stop)
        began = time.perf_counter()
        self.process = subprocess.Popen(self.command, stdout=self.log, stderr=subprocess.STDOUT,
                                        cwd=home, env=self.env)  # fmt: skip
        http = _session()
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline and self.process.poll() is None:
            try:
                if http.get(self.url + "/health", timeout=2).status_code == 200:
                    self.started_in = time.perf_counter() - began
                    self.http = _session()
                    self.http.headers["Authorization"] = f"Bearer {self.token()}"
                    return
            except requests.RequestException:
                pass
            time.sleep(0.25)
        code = self.process.poll()
        self.stop()
        raise Skip(("exited with " + str(code) if code is not None else
                    f"no 200 from /health within {START_TIMEOUT} s") +
                   f" (log: {self.log_path}): {_last_line(self.log_path)}")  # fmt: skip

    def token(self) -> str:
        """A JWT for the bootstrap admin from its own tool (the settings give it the secret)."""
        answer = subprocess.run(
            [self.python, "-m", "mcpgateway.utils.create_jwt_token", "--username", ADMIN,
             "--exp", "180", "--secret", self.env["JWT_SECRET_KEY"]],
            capture_output=True, text=True, env=self.env, cwd=self.env["HOME"], timeout=60,
            check=False)  # fmt: skip
        token = answer.stdout.strip().splitlines()[-1] if answer.stdout.strip() else ""
        if answer.returncode != 0 or token.count(".") != 2:
            raise Skip(f"create_jwt_token failed: {_tail(answer.stderr)}")
        return token

    def api(self, method: str, path: str, body: dict | None = None):
        answer = self.http.request(method, self.url + path, json=body, timeout=60)
        if answer.status_code >= 300:
            raise Skip(f"{method} {path} answered {answer.status_code}: {answer.text[:150]}")
        return answer.json()

    def pids(self) -> list[int]:
        """The gunicorn master and every process under it."""
        found, todo = [], [self.process.pid]
        while todo:
            pid = todo.pop()
            found.append(pid)
            for task in glob.glob(f"/proc/{pid}/task/*/children"):
                try:
                    with open(task, encoding="ascii") as f:
                        todo += [int(p) for p in f.read().split()]
                except OSError:
                    pass
        return found

    def stop(self):
        terminate(self.process)
        self.log.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.stop()


def _tail(text: str) -> str:
    lines = [line for line in (text or "").strip().splitlines() if line.strip()]
    return lines[-1][:200] if lines else "(no output)"


def _session() -> requests.Session:
    http = requests.Session()
    http.trust_env = False
    return http


def _register(server: ContextForge, peer: McpPeer, fifty: McpPeer) -> dict:
    """The two upstreams as gateways, and a virtual server of each one's tools."""
    ids = {}
    for name, upstream in (("upstream", peer), ("fifty", fifty)):
        gateway = server.api(
            "POST",
            "/v1/gateways",
            {"name": name, "url": upstream.url, "transport": "STREAMABLEHTTP"},
        )
        tools = server.api("GET", f"/v1/tools?gateway_id={gateway['id']}&limit=0")
        if not tools:
            raise Skip(f"the gateway {name} registered no tools")
        virtual = server.api(
            "POST",
            "/v1/virtual-servers",
            {"server": {"name": f"bench {name}", "associated_tools": [t["id"] for t in tools]}},
        )
        ids[name] = {"server": virtual["id"], "tools": {t["originalName"]: t["name"]
                                                        for t in tools}}  # fmt: skip
    if len(ids["fifty"]["tools"]) != 50 or "weather" not in ids["upstream"]["tools"]:
        raise Skip(f"unexpected tools: {sorted(ids['upstream']['tools'])[:8]}…")
    return ids


# -- the clients ----------------------------------------------------------------------------------


class Handshake(Lean):
    """The lean client in the ``initialize`` era (2025-11-25): one handshake, then each request
    carries the ``Mcp-Session-Id`` the server gave, if it gave one. Against a stateful server
    this is the fewest steps a client can take per call. The session lives in the worker that
    made it, and gunicorn closes a connection idle for 2 s (its ``keepalive``), so a request
    may reach another worker and get 404: the client then does what the protocol asks (a new
    handshake, the request again), and ``lost`` counts it."""

    lost = 0
    _lock = threading.Lock()

    def __init__(self, url: str, key: str | None = None):
        super().__init__(url, key)
        self.handshake()

    def handshake(self):
        self.headers = {"Accept": "application/json, text/event-stream"}
        hello = {"protocolVersion": HANDSHAKE, "capabilities": {},
                 "clientInfo": {"name": "mcpadmin-bench", "version": "1"}}  # fmt: skip
        body = {"jsonrpc": "2.0", "id": 0, "method": "initialize", "params": hello}
        answer = self.http.post(self.url, json=body, headers=self.headers, timeout=30)
        self.result("initialize", answer)
        self.session = answer.headers.get("Mcp-Session-Id")
        self.headers["MCP-Protocol-Version"] = HANDSHAKE
        if self.session:
            self.headers["Mcp-Session-Id"] = self.session
        body = {"jsonrpc": "2.0", "method": "notifications/initialized"}
        self.http.post(self.url, json=body, headers=self.headers, timeout=30).raise_for_status()

    def rpc(self, method: str, params: dict) -> dict:
        self.next_id += 1
        body = {"jsonrpc": "2.0", "id": self.next_id, "method": method, "params": params}
        answer = self.http.post(self.url, json=body, headers=self.headers, timeout=30)
        if answer.status_code == 404 and self.session:
            with Handshake._lock:
                Handshake.lost += 1
            self.handshake()
            answer = self.http.post(self.url, json=body, headers=self.headers, timeout=30)
        return self.result(method, answer)


class Getter:
    """``GET url`` with the same kind of client (a no-op request: the server's floor)."""

    def __init__(self, url: str):
        self.url, self.http = url, _session()

    def get(self):
        self.http.get(self.url, timeout=30).raise_for_status()


# -- the bare floor -------------------------------------------------------------------------------


def bare_floor(runs: int = 300) -> Figure:
    """p50 of ``GET /healthz`` on a bare Starlette app under uvicorn (uvloop, httptools), the
    same lean client: the floor under any no-op GET of an ASGI server on this machine."""
    with bare_starlette() as base:
        floor = Getter(base + "/healthz")
        for _ in range(20):
            floor.get()
        times = []
        for _ in range(runs):
            began = time.perf_counter()
            floor.get()
            times.append((time.perf_counter() - began) * 1000)
    return Figure("floor: bare Starlette GET /healthz on uvicorn, p50", statistics.median(times),
                  None, "ms", note=f"{runs} requests; one uvicorn {uvicorn.__version__} process, "
                  "bench/common.bare_starlette")  # fmt: skip


# -- one mode -------------------------------------------------------------------------------------


def _mode(mode, server, ids, peer, fifty, bare, sizes, versions, installed) -> list[Figure]:
    stateful = mode == "stateful"
    url = f"{server.url}/v1/virtual-servers/{ids['upstream']['server']}/mcp"
    list_url = f"{server.url}/v1/virtual-servers/{ids['fifty']['server']}/mcp"
    key = server.http.headers["Authorization"].removeprefix("Bearer ")
    tool = ids["upstream"]["tools"]["weather"]
    main_kind, other_kind = (Handshake, Lean) if stateful else (Lean, Handshake)
    era = {Lean: "modern 2026-07-28", Handshake: f"initialize {HANDSHAKE}"}
    if stateful and not Handshake(url, key).session:
        raise Skip("USE_STATEFUL_SESSIONS=true gave no Mcp-Session-Id")

    Handshake.lost = 0
    upstream_requests = {}
    for kind in (main_kind, other_kind):
        client = kind(url, key)
        client.weather(tool)
        upstream_requests[kind] = peer.requests_during(
            lambda c=client: [c.weather(tool) for _ in range(10)]) / 10  # fmt: skip

    reps = [_repetition(server, url, list_url, key, tool, main_kind, other_kind, peer, fifty,
                        bare, sizes) for _ in range(REPETITIONS)]  # fmt: skip

    lost = Handshake.lost

    def med(*path):
        return statistics.median(_pick(r, path) for r in reps)

    def span(*path, ratio_of=None, unit=" ms", digits=1):
        values = [_pick(r, path) / (_pick(r, ratio_of) if ratio_of else 1) for r in reps]
        return f"{min(values):.{digits}f}–{max(values):.{digits}f}{'×' if ratio_of else unit}"

    label = f"ContextForge {mode}"
    runs = f"{REPETITIONS} runs"
    setup = (f"{PACKAGE} {versions.get(PACKAGE)} on Python {versions.get('python')}: gunicorn "
             f"{versions.get('gunicorn')}, {WORKERS} uvicorn {versions.get('uvicorn')} workers "
             f"(uvloop {versions.get('uvloop')}, httptools {versions.get('httptools')}), "
             f"--preload, --timeout 600, --max-requests 100000, mcp {versions.get('mcp')}, "
             f"{SETTINGS_NOTE}, USE_STATEFUL_SESSIONS={'true' if stateful else 'false'}, "
             f"other settings its defaults; clients on /v1/virtual-servers/<id>/mcp")  # fmt: skip
    if mode == "defaults":
        setup = f"install or cache check {installed:.0f} s; " + setup
    figures = [
        Figure(f"{label}: start to first 200 from /health", server.started_in, None, "s",
               note=setup),
        Figure(f"{label}: tools/call p50, lean client ({era[main_kind]}) vs direct",
               med("p50", "main"), med("p50", "direct"), "ms",
               note=f"{runs} of {sizes['calls']}: {span('p50', 'main')}, direct "
                    f"{span('p50', 'direct')}; the {era[other_kind]} client "
                    f"{span('p50', 'other')}"),
        Figure(f"{label}: tools/call added p50 over direct",
               med("p50", "main") - med("p50", "direct"), None, "ms",
               note=f"{runs}: {span('added')}"),
        Figure(f"{label}: tools/call p99 vs direct", med("p99", "main"), med("p99", "direct"),
               "ms", note=f"{runs}: {span('p99', 'main', ratio_of=('p99', 'direct'))}"),
        Figure(f"{label}: tools/call at {CONCURRENCY} clients, calls per second vs direct",
               med("rate", "gateway"), med("rate", "direct"), "/s",
               note=f"{runs} of {sizes['concurrent']} calls: "
                    f"{span('rate', 'gateway', ratio_of=('rate', 'direct'), digits=2)} direct; "
                    f"errors {sum(r['errors'] for r in reps)}"
                    + (f"; sessions lost to the other worker (and made anew) in all of this "
                       f"mode's runs: {lost}" if stateful else "")),
        Figure(f"{label}: server CPU per call at {CONCURRENCY} clients vs the upstream's own",
               med("cpu", "server"), med("cpu", "direct"), "ms",
               note=f"gunicorn master + {WORKERS} workers, user+sys ÷ calls: "
                    f"{span('cpu', 'server')}; the upstream {span('cpu', 'direct')} per "
                    f"direct call, {span('cpu', 'upstream')} per call through ContextForge"),
        Figure(f"{label}: upstream requests per tools/call", upstream_requests[main_kind], None,
               "", note=f"the {era[other_kind]} client: {upstream_requests[other_kind]:.0f}; "
                        "direct: 1"),
        Figure(f"{label}: tools/list of 50 tools vs the upstream's own listing",
               med("listing", "gateway"), med("listing", "direct"), "ms",
               note=f"{runs} of {sizes['listings']}, interleaved: "
                    f"{span('listing', 'gateway', ratio_of=('listing', 'direct'), digits=1)}"),
        Figure(f"{label}: no-op GET /health p50 vs bare Starlette /healthz on uvicorn",
               med("p50", "health"), med("p50", "bare"), "ms",
               note=f"{runs}, interleaved with the calls: /health {span('p50', 'health')}, "
                    f"bare {span('p50', 'bare', digits=2)}"),
    ]  # fmt: skip
    if stateful:
        answered = _fresh_connections(url, key, tool)
        figures.append(Figure(
            f"{label}: session calls on a new connection each, answered", answered,
            FRESH_CONNECTIONS, "", note="the session lives in the memory of the worker that "
            "made it; others answer 404 Session not found (no Redis)"))  # fmt: skip
    return figures


def _pick(rep: dict, path: tuple):
    value = rep
    for key in path:
        value = value[key]
    return value


def _repetition(server, url, list_url, key, tool, main_kind, other_kind, peer, fifty, bare,
                sizes) -> dict:  # fmt: skip
    """One run of the three measurements (see the module's docstring)."""
    direct, main, other = Lean(peer.url), main_kind(url, key), other_kind(url, key)
    health, floor = Getter(server.url + "/health"), Getter(bare + "/healthz")
    sides = {
        "direct": direct.weather,
        "main": lambda: main.weather(tool),
        "other": lambda: other.weather(tool),
        "health": health.get,
        "bare": floor.get,
    }
    times = interleaved_times(sides, sizes["calls"], warmup=10)
    p50 = {side: statistics.median(values) for side, values in times.items()}
    p99 = {side: percentile(values, 99) for side, values in times.items()}

    calls, peer_pid = sizes["concurrent"], [peer.peer.process.pid]
    before = cpu_seconds(peer_pid)
    rate_direct, errors_direct = concurrent_calls(lambda: Lean(peer.url), lambda c: c.weather(),
                                                  calls)  # fmt: skip
    cpu_direct = (cpu_seconds(peer_pid) - before) / calls * 1000
    pids = server.pids()
    before = cpu_seconds(peer_pid), cpu_seconds(pids)
    rate, errors = concurrent_calls(lambda: main_kind(url, key), lambda c: c.weather(tool), calls)
    cpu_upstream = (cpu_seconds(peer_pid) - before[0]) / calls * 1000
    cpu_server = (cpu_seconds(pids) - before[1]) / calls * 1000

    lister, own = main_kind(list_url, key), Lean(fifty.url)
    assert len(lister.rpc("tools/list", {})["tools"]) == 50
    assert len(own.rpc("tools/list", {})["tools"]) == 50
    listing = {"gateway": [], "direct": []}
    for _ in range(sizes["listings"]):
        for side, client in (("direct", own), ("gateway", lister)):
            began = time.perf_counter()
            client.rpc("tools/list", {})
            listing[side].append((time.perf_counter() - began) * 1000)
    return {
        "p50": p50, "p99": p99, "added": p50["main"] - p50["direct"],
        "rate": {"direct": rate_direct, "gateway": rate}, "errors": errors + errors_direct,
        "cpu": {"server": cpu_server, "upstream": cpu_upstream, "direct": cpu_direct},
        "listing": {side: statistics.median(values) for side, values in listing.items()},
    }  # fmt: skip


def _fresh_connections(url, key, tool) -> int:
    """Calls of one stateful session, each on a new connection: how many were answered."""
    session = Handshake(url, key)
    answered = 0
    for _ in range(FRESH_CONNECTIONS):
        http = _session()
        body = {"jsonrpc": "2.0", "id": 1, "method": "tools/call",
                "params": {"name": tool, "arguments": {"city": "Oslo"}}}  # fmt: skip
        headers = {**session.headers, "Authorization": f"Bearer {key}"}
        answered += http.post(url, json=body, headers=headers, timeout=30).status_code == 200
        http.close()
    return answered


if __name__ == "__main__":  # this arm alone: python -m bench.peers [--quick]
    from bench.common import table

    print(table(run(quick="--quick" in sys.argv)))
