"""What every benchmark shares: the figure a benchmark reports, the table they form, timing,
throwaway apps on SQLite, real peers from ``tests/peers`` and counters (SQL statements at the
engine, outbound HTTP requests at ``requests``)."""

import contextlib
import logging
import os
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

import requests  # noqa: E402

from tests.peers import Peer, start  # noqa: E402

PYTHON = os.path.join(ROOT, ".venv", "bin", "python")
LEGACY_PYTHON = os.path.join(ROOT, ".venv-mcp1", "bin", "python")
# A fixed key for throwaway databases only; never used outside bench/.
BENCH_KEY = "4U4pZOZcFE5hAY2yYc-8-cI4lLQH3xSnt3bGvnMZ3Rk="
BENCH_SECRET_KEY = "bench-only-session-key-not-a-secret-0123456789"  # noqa: S105 (bench only)
MODERN = "2026-07-28"
META = "io.modelcontextprotocol/"
CONCURRENCY = 16  # clients in the throughput figures


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
    """Median wall time of each function, the runs interleaved (a, b, c, a, b, c…) so that
    load from other processes on a shared machine falls on every side alike."""
    for fn in fns.values():
        for _ in range(warmup):
            fn()
    times = {name: [] for name in fns}
    for _ in range(runs):
        for name, fn in fns.items():
            began = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - began)
    return {name: statistics.median(values) for name, values in times.items()}


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(p / 100 * len(ordered) + 0.5) - 1))
    return ordered[index]


def cpu_seconds(pids) -> float:
    """User + system CPU time the processes spent so far (``/proc/<pid>/stat``)."""
    total = 0
    for pid in pids:
        with open(f"/proc/{pid}/stat", encoding="ascii") as f:
            fields = f.read().rpartition(")")[2].split()
        total += int(fields[11]) + int(fields[12])  # utime, stime (fields 14 and 15)
    return total / os.sysconf("SC_CLK_TCK")


# -- the lean client ----------------------------------------------------------------------------


class Lean:
    """A modern (2026-07-28) JSON-RPC client on one ``requests.Session``: the fewest steps a
    client can take per call, the same for a gateway and the upstream."""

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
        return self.result(method, answer)

    @staticmethod
    def result(method: str, answer: requests.Response) -> dict:
        answer.raise_for_status()
        message = answer.json()
        if "result" not in message or message["result"].get("isError"):
            raise RuntimeError(f"{method} failed: {str(message)[:300]}")
        return message["result"]

    def weather(self, name: str = "weather") -> dict:
        return self.rpc("tools/call", {"name": name, "arguments": {"city": "Oslo"}})


def concurrent_calls(make_client, call, calls, clients: int = CONCURRENCY) -> tuple[float, int]:
    """Calls per second of ``clients`` threads sharing ``calls`` calls, and the errors."""
    made = [make_client() for _ in range(clients)]
    for client in made:
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

    threads = [threading.Thread(target=work, args=(c,)) for c in made]
    began = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return calls / (time.perf_counter() - began), errors[0]


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
    """Counts the SQL statements an engine executes while active (``before_cursor_execute``)."""

    def __init__(self, engine):
        self.engine, self.count, self.statements = engine, 0, []
        self.on = True  # set False around statements that are not part of what is measured

    def _seen(self, conn, cursor, statement, parameters, context, executemany):
        if self.on:
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
