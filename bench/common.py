"""What every benchmark shares: the figure a benchmark reports, the table they form, timing,
throwaway apps on SQLite, real peers from ``tests/peers``, counters (SQL statements at the
engine, outbound HTTP requests at ``requests``), the app as a real server process (the
production recipe, or the one before it) with the CPU and memory of its processes, the floor
of any ASGI answer (a bare Starlette app on uvicorn) and a sampled profile of a process."""

import collections
import contextlib
import logging
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

import requests  # noqa: E402

from tests.peers import Peer, free_port, start, terminate  # noqa: E402

PYTHON = os.path.join(ROOT, ".venv", "bin", "python")
LEGACY_PYTHON = os.path.join(ROOT, ".venv-mcp1", "bin", "python")
# A fixed key for throwaway databases only; never used outside bench/.
BENCH_KEY = "4U4pZOZcFE5hAY2yYc-8-cI4lLQH3xSnt3bGvnMZ3Rk="
BENCH_SECRET_KEY = "bench-only-session-key-not-a-secret-0123456789"  # noqa: S105 (bench only)
MODERN = "2026-07-28"
META = "io.modelcontextprotocol/"
CONCURRENCY = 16  # the concurrent clients of the throughput figures
SERVED_ADMIN = "bench-admin"


@dataclass
class Figure:
    """One row of the results table. ``met`` is None when the figure has no target. A
    ``skipped`` row is a note (an optional arm that could not run here), never a failure."""

    name: str
    measured: float | None
    baseline: float | None = None
    unit: str = ""
    target: str = "—"
    met: bool | None = None
    note: str = ""
    skipped: bool = False

    @property
    def ratio(self) -> float | None:
        if self.measured is None or not self.baseline:
            return None
        return self.measured / self.baseline


def fmt(value: float | None, unit: str = "") -> str:
    if value is None:
        return "—"
    if isinstance(value, int) or float(value).is_integer() and abs(value) >= 1:
        text = f"{int(value)}"
    elif abs(value) >= 100:
        text = f"{value:.0f}"
    elif abs(value) >= 1:
        text = f"{value:.2f}"
    else:
        text = f"{value:.3g}"
    return f"{text} {unit}".rstrip()


def table(figures: list[Figure]) -> str:
    """The figures as a Markdown table: figure | measured | baseline | ratio | target | met?"""
    lines = [
        "| figure | measured | baseline | ratio | target | met? |",
        "|---|---:|---:|---:|---|:---:|",
    ]
    for f in figures:
        ratio = "—" if f.ratio is None else f"{f.ratio:.2f}"
        met = "skipped" if f.skipped else {True: "yes", False: "**NO**", None: ""}[f.met]
        name = f.name + (f" ({f.note})" if f.note else "")
        row = [name, fmt(f.measured, f.unit), fmt(f.baseline, f.unit), ratio, f.target, met]
        lines.append("| " + " | ".join(row) + " |")
    return "\n".join(lines)


def median_time(fn: Callable[[], object], runs: int, warmup: int = 1) -> float:
    """Median wall time of ``fn()`` in seconds over ``runs`` calls, after ``warmup`` calls."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(runs):
        began = time.perf_counter()
        fn()
        times.append(time.perf_counter() - began)
    return statistics.median(times)


def interleaved(fns: dict[str, Callable[[], object]], runs: int, warmup: int = 1) -> dict:
    """Median wall time of each function (seconds), the runs interleaved."""
    times = interleaved_times(fns, runs, warmup)
    return {name: statistics.median(values) / 1000 for name, values in times.items()}


def interleaved_times(fns: dict[str, Callable[[], object]], runs: int,
                      warmup: int = 1) -> dict[str, list[float]]:  # fmt: skip
    """Every run's wall time of each function, in milliseconds, the runs interleaved (a, b,
    c, a, b, c…) so that load from other processes on a shared machine falls on every side
    alike."""
    for _ in range(warmup):
        for fn in fns.values():
            fn()
    times = {name: [] for name in fns}
    for _ in range(runs):
        for name, fn in fns.items():
            began = time.perf_counter()
            fn()
            times[name].append((time.perf_counter() - began) * 1000)
    return times


def repeat_for(seconds: float, fn: Callable[[], object]):
    """Call ``fn()`` over and over for ``seconds`` (a load to profile)."""
    ends = time.monotonic() + seconds
    while time.monotonic() < ends:
        fn()


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(p / 100 * len(ordered) + 0.5) - 1))
    return ordered[index]


# -- apps and databases ------------------------------------------------------------------------


def workdir(prefix: str) -> str:
    return tempfile.mkdtemp(prefix=f"mcpadmin-bench-{prefix}-")


def app_config(directory: str) -> dict:
    """Config for a throwaway app whose SQLite database lives in ``directory``."""
    return {
        "SQLALCHEMY_DATABASE_URI": "sqlite:///" + os.path.join(directory, "bench.sqlite3"),
        "SECRET_KEY": BENCH_SECRET_KEY,
        "ENCRYPTION_KEYS": [BENCH_KEY],
        "ALLOW_PRIVATE_NETWORKS": True,
        "ALLOW_HTTP_LOOPBACK": True,
        "WTF_CSRF_ENABLED": False,
        "EXTRA_HOSTS": ["localhost"],  # the test client's Host
    }


def cli_env(directory: str) -> dict:
    """The environment that points ``flask --app wsgi`` at the same throwaway app."""
    return {
        **os.environ,
        "MCPADMIN_DATABASE_URL": "sqlite:///" + os.path.join(directory, "bench.sqlite3"),
        "MCPADMIN_SECRET_KEY": BENCH_SECRET_KEY,
        "MCPADMIN_ENCRYPTION_KEYS": BENCH_KEY,
        "MCPADMIN_ALLOW_PRIVATE_NETWORKS": "true",
        "MCPADMIN_ALLOW_HTTP_LOOPBACK": "true",
        "MCPADMIN_INSTANCE_PATH": directory,
    }


def make_app(directory: str, **config):
    """A migrated app on a fresh SQLite database in ``directory``."""
    from mcpadmin import create_app

    logging.getLogger("mcpadmin").setLevel(logging.ERROR)
    app = create_app({**app_config(directory), **config}, instance_path=directory)
    app.logger.setLevel(logging.ERROR)
    return app


def add_served_admin(app) -> str:
    """An admin that ``tests.test_load.signed_in(url, name)`` signs in as on a served app
    (through the login form, with its CSRF token); returns the name."""
    from mcpadmin.extensions import db
    from mcpadmin.services import admins
    from tests.conftest import PASSWORD

    with app.app_context():
        admins.create_admin(SERVED_ADMIN, PASSWORD)
        db.session.commit()
    return SERVED_ADMIN


def log_in(app):
    """A test client signed in as a fresh admin (CSRF is off in bench apps)."""
    from mcpadmin.extensions import db
    from mcpadmin.services import admins

    with app.app_context():
        admins.create_admin("bench", "bench password 123")
        db.session.commit()
    client = app.test_client()
    answer = client.post("/login", data={"username": "bench", "password": "bench password 123"})
    assert answer.status_code == 302, answer.status_code
    return client


class SqlCounter:
    """Counts the SQL statements an engine executes while active (``before_cursor_execute``).
    Statements run on a thread named ``apart`` (a background writer, say) are counted in
    ``apart_count`` instead."""

    def __init__(self, engine, apart: str | None = None):
        self.engine, self.count, self.statements = engine, 0, []
        self.apart, self.apart_count = apart, 0
        self.on = True  # set False around statements that are not part of what is measured

    def _seen(self, conn, cursor, statement, parameters, context, executemany):
        if not self.on:
            return
        if self.apart is not None and threading.current_thread().name == self.apart:
            self.apart_count += 1
            return
        self.count += 1
        self.statements.append(statement)

    def __enter__(self):
        from sqlalchemy import event

        event.listen(self.engine, "before_cursor_execute", self._seen)
        return self

    def __exit__(self, *exc):
        from sqlalchemy import event

        event.remove(self.engine, "before_cursor_execute", self._seen)


@contextlib.contextmanager
def outbound_counter():
    """Counts every HTTP request sent through ``requests`` (which ``Http`` uses) meanwhile."""
    seen = []
    original = requests.Session.send

    def send(self, request, **kwargs):
        seen.append((request.method, request.url))
        return original(self, request, **kwargs)

    requests.Session.send = send
    try:
        yield seen
    finally:
        requests.Session.send = original


# -- peers -------------------------------------------------------------------------------------


class McpPeer:
    """A running MCP peer (tests/peers) and the requests it counted."""

    def __init__(self, script: str, *args: str, legacy: bool = False):
        python = LEGACY_PYTHON if legacy else sys.executable
        if legacy and not os.path.exists(python):
            raise RuntimeError(f"{python} is missing: run scripts/test to install the mcp 1.x peer")
        self.peer: Peer = start(script, *args, python=python)

    @property
    def url(self) -> str:
        return self.peer.base_url + "/mcp"

    def request_count(self) -> int:
        answer = requests.get(self.peer.base_url + "/_stats", timeout=10)
        return len(answer.json()["requests"])

    def requests_during(self, fn: Callable[[], object]) -> int:
        before = self.request_count()
        fn()
        return self.request_count() - before

    def stop(self):
        self.peer.stop()


# -- the app as a server process ---------------------------------------------------------------

# How the app is served: ``asgi`` is the production recipe since issue 20 (uvicorn workers,
# ``WEB_CONCURRENCY`` of them); ``gthread`` the one before it, at the same worker count: the
# same settings file (access log, metrics directory, first-start check) with gunicorn's
# threaded WSGI worker serving the Flask app alone (``wsgi.py``), 4 threads per worker.
RECIPES = {
    "asgi": ["-c", "gunicorn.conf.py", "asgi:app"],
    "gthread": ["-c", "gunicorn.conf.py", "-k", "gthread", "--threads", "4", "wsgi:app"],
}


class Server:
    """The app on a bench database (``directory``, so agent keys and admins made in this
    process are valid there) as a gunicorn process tree on a free port of 127.0.0.1.
    ``settings`` become ``MCPADMIN_<name>`` variables. Use as a context manager.

    :raise RuntimeError: it did not answer ``/healthz`` with every worker up within 60 s.
    """

    def __init__(self, directory: str, recipe: str = "asgi", workers: int = 2, **settings):
        self.port, self.recipe, self.workers = free_port(), recipe, workers
        self.url = f"http://127.0.0.1:{self.port}"
        env = {**cli_env(directory), "HOST": "127.0.0.1", "PORT": str(self.port),
               "WEB_CONCURRENCY": str(workers), "MCPADMIN_PUBLIC_BASE_URL": self.url,
               **{f"MCPADMIN_{name}": str(value) for name, value in settings.items()}}  # fmt: skip
        self.log_path = os.path.join(directory, f"{recipe}-{self.port}.log")
        with open(self.log_path, "wb") as log:
            self.process = subprocess.Popen([PYTHON, "-m", "gunicorn", *RECIPES[recipe]],
                                            stdout=log, stderr=subprocess.STDOUT, cwd=ROOT,
                                            env=env)  # fmt: skip
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and self.process.poll() is None:
            try:
                with opener.open(self.url + "/healthz", timeout=2):
                    if len(self.worker_pids()) == workers:
                        return
            except OSError:
                pass
            time.sleep(0.2)
        self.stop()
        with open(self.log_path, encoding="utf-8", errors="replace") as f:
            raise RuntimeError(f"{recipe} did not start on {self.url}:\n{f.read()[-2000:]}")

    def worker_pids(self) -> list[int]:
        pid = self.process.pid
        with open(f"/proc/{pid}/task/{pid}/children", encoding="ascii") as f:
            return [int(p) for p in f.read().split()]

    def pids(self) -> list[int]:
        """The master and its workers: every process of the server."""
        return [self.process.pid, *self.worker_pids()]

    def stop(self):
        terminate(self.process)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.stop()


def cpu_seconds(pids, main_thread: bool = False) -> float:
    """User + system CPU time the processes spent so far (``/proc/<pid>/stat``); with
    ``main_thread``, only their main threads' (a uvicorn worker's event loop)."""
    total = 0
    for pid in pids:
        path = f"/proc/{pid}/task/{pid}/stat" if main_thread else f"/proc/{pid}/stat"
        with open(path, encoding="ascii") as f:
            fields = f.read().rpartition(")")[2].split()
        total += int(fields[11]) + int(fields[12])  # utime, stime (fields 14 and 15)
    return total / os.sysconf("SC_CLK_TCK")


def rss_kib(pids) -> int:
    """Resident memory of the processes together (``VmRSS`` of ``/proc/<pid>/status``)."""
    total = 0
    for pid in pids:
        with open(f"/proc/{pid}/status", encoding="ascii") as f:
            total += next(int(line.split()[1]) for line in f if line.startswith("VmRSS:"))
    return total


@contextlib.contextmanager
def bare_starlette():
    """A bare Starlette app answering ``GET /healthz`` with 200 on uvicorn (uvloop and
    httptools, as the app's workers; one process, no access log), on 127.0.0.1: what any
    answer from an ASGI server costs on this machine. Yields its base URL."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    command = [PYTHON, "-m", "uvicorn", "bench.bare_app:app",
               "--host", "127.0.0.1", "--port", str(port), "--no-access-log",
               "--log-level", "warning"]  # fmt: skip
    process = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.DEVNULL)
    try:
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
        deadline = time.monotonic() + 30
        while True:
            try:
                with opener.open(url + "/healthz", timeout=2):
                    break
            except OSError:
                if time.monotonic() > deadline or process.poll() is not None:
                    raise RuntimeError("the bare Starlette app did not start") from None
                time.sleep(0.1)
        yield url
    finally:
        terminate(process)


# -- where the time goes -----------------------------------------------------------------------

PY_SPY = os.path.join(ROOT, ".venv", "bin", "py-spy")


def top_frames(pids, seconds: float, during: Callable[[], object] | None = None) -> str:
    """Sample ``pids`` with py-spy for ``seconds`` (while ``during()`` runs, if given) and
    say in one line where their Python work went. Only samples of a thread holding the GIL
    count (``--gil``): waits, and C calls that let go of it (a socket read, an SQLite step),
    are left out, so what remains is what the process's one interpreter was busy with. Given:
    how often the GIL was held, the share by package running (self time) and by innermost
    mcpadmin function on the stack (it and whatever it called). A sentence saying why instead
    when py-spy is missing (``.venv/bin/pip install py-spy``) or cannot sample."""
    py_spy = PY_SPY if os.path.exists(PY_SPY) else shutil.which("py-spy")
    if py_spy is None:
        return "no profile: py-spy is not installed (.venv/bin/pip install py-spy)"
    directory = tempfile.mkdtemp(prefix="mcpadmin-bench-profile-")
    duration, rate = max(1, round(seconds)), 200
    samplers = []
    for pid in pids:
        out = os.path.join(directory, f"{pid}.txt")
        command = [py_spy, "record", "--pid", str(pid), "--rate", str(rate), "--format", "raw",
                   "--duration", str(duration), "--gil", "--nonblocking",
                   "--output", out]  # fmt: skip
        samplers.append((subprocess.Popen(command, stdout=subprocess.DEVNULL,
                                          stderr=subprocess.DEVNULL), out))  # fmt: skip
    time.sleep(0.5)  # attached before the load starts
    if during is not None:
        during()
    packages, ours, total = collections.Counter(), collections.Counter(), 0
    for sampler, out in samplers:
        sampler.wait(seconds + 30)
        if not os.path.exists(out):
            continue
        with open(out, encoding="utf-8", errors="replace") as f:
            for line in f:
                stack, _, samples = line.rstrip().rpartition(" ")
                frames = [_frame(f) for f in stack.split(";")[1:]]  # [0] names the thread
                if not samples.isdigit() or not frames:
                    continue
                count = int(samples)
                total += count
                packages[_package(frames[-1])] += count
                mine = [f for f in frames if f.startswith("mcpadmin.")]
                ours[mine[-1].removeprefix("mcpadmin.") if mine else "(outside mcpadmin)"] += count
    shutil.rmtree(directory, ignore_errors=True)
    if not total:
        return "no profile: py-spy could not sample the server's processes"
    held = total / (rate * duration * len(pids))
    by_package = ", ".join(f"{p} {n / total:.0%}" for p, n in packages.most_common(6))
    by_function = ", ".join(f"{f} {n / total:.0%}" for f, n in ours.most_common(5))
    return (f"py-spy: GIL held {held:.0%} of the time per process; by package: {by_package}; "
            f"by innermost mcpadmin frame: {by_function}")  # fmt: skip


# Leaf frames whose own time is C code they called, named for it.
_HAND_OFF = "thread hand-offs"
_NATIVE = {
    "asyncio.runners:Runner.run": "event loop in C (uvloop, httptools)",
    "asyncio.tasks:run_coroutine_threadsafe": _HAND_OFF,
    "anyio._backends._asyncio:WorkerThread.run": _HAND_OFF,
}
# Packages reported together: the synchronous HTTP client, the ASGI server and framework,
# the admin app's stack, and the queues and locks that pass work between loop and threads.
_PACKAGES = {
    "requests": "requests/urllib3/http.client",
    "urllib3": "requests/urllib3/http.client",
    "http": "requests/urllib3/http.client",
    "socket": "requests/urllib3/http.client",
    "uvicorn": "uvicorn/starlette/anyio",
    "starlette": "uvicorn/starlette/anyio",
    "anyio": "uvicorn/starlette/anyio",
    "flask": "flask/werkzeug/jinja2",
    "werkzeug": "flask/werkzeug/jinja2",
    "jinja2": "flask/werkzeug/jinja2",
    "markupsafe": "flask/werkzeug/jinja2",
    "threading": _HAND_OFF,
    "queue": _HAND_OFF,
    "concurrent": _HAND_OFF,
}


def _package(frame: str) -> str:
    if frame in _NATIVE:
        return _NATIVE[frame]
    parts = frame.split(":", 1)[0].split(".")
    if parts[0] == "mcpadmin":
        return ".".join(parts[:2])
    return _PACKAGES.get(parts[0], parts[0])


def _frame(text: str) -> str:
    """``function (path/to/module.py:12)`` as ``package.module:function``."""
    function, _, where = text.partition(" (")
    path = where.rsplit(":", 1)[0]
    for marker in ("site-packages/", "/python3.11/", ROOT + "/"):
        if marker in path:
            path = path.split(marker, 1)[1]
            break
    module = path.removesuffix(".py").replace("/", ".").removesuffix(".__init__")
    return f"{module}:{function.strip()}"


class Lean:
    """A modern (2026-07-28) JSON-RPC client on one ``requests.Session``: the fewest steps a
    client can take per call, the same for the gateway and the upstream."""

    def __init__(self, url: str, key: str | None = None):
        self.url, self.http, self.next_id = url, requests.Session(), 0
        self.http.trust_env = False
        if key:
            self.http.headers["Authorization"] = f"Bearer {key}"

    def rpc(self, method: str, params: dict) -> dict:
        self.next_id += 1
        meta = {META + "protocolVersion": MODERN, META + "clientCapabilities": {}}
        headers = {"Accept": "application/json, text/event-stream", "Mcp-Method": method,
                   "MCP-Protocol-Version": MODERN}  # fmt: skip
        if "name" in params:
            headers["Mcp-Name"] = params["name"]
        body = {"jsonrpc": "2.0", "id": self.next_id, "method": method,
                "params": {**params, "_meta": meta}}  # fmt: skip
        answer = self.http.post(self.url, json=body, headers=headers, timeout=30)
        answer.raise_for_status()
        message = answer.json()
        if "result" not in message or message["result"].get("isError"):
            raise RuntimeError(f"{method} failed: {str(message)[:300]}")
        return message["result"]

    def weather(self, name: str = "weather") -> dict:
        return self.rpc("tools/call", {"name": name, "arguments": {"city": "Oslo"}})


def concurrent_calls(make_client, call, calls, count: int = CONCURRENCY) -> tuple[float, int]:
    """Calls per second of ``count`` threads sharing ``calls`` calls, and the errors."""
    clients = [make_client() for _ in range(count)]
    for client in clients:
        call(client)  # warm: connections open, workers loaded
    left, errors, lock = [calls], [0], threading.Lock()

    def work(client):
        while True:
            with lock:
                if left[0] == 0:
                    return
                left[0] -= 1
            try:
                call(client)
            except Exception:
                with lock:
                    errors[0] += 1

    threads = [threading.Thread(target=work, args=(c,)) for c in clients]
    began = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return calls / (time.perf_counter() - began), errors[0]
