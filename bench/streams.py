"""Held streams: 1,000 legacy clients (200 with ``--quick``), each initialized and holding its
GET stream, on the production recipe (``gunicorn -c gunicorn.conf.py asgi:app``, 2 uvicorn
workers), spread over 100 agents with 10 streams per key (under the per-key cap).

1. All streams open (status 200), counted by the clients.
2. ``/healthz``, the sign-in page, a signed-in page (``/connectors/``, signed in as
   ``tests.test_load.signed_in`` does) and another agent's ``tools/call`` (modern, the weather
   peer), each p50 while the streams are held vs its own p50 idle, measured first in the same
   run: ≤ 2×. Each answers 200 (a call: no error), or the figure fails.
3. An operator unticks the held agents' tool (one commit, as the agent page does); each
   stream's ``notifications/tools/list_changed`` is timed from that commit: p50 and max,
   against 2× ``GATEWAY_WATCH_SECONDS`` (the default, 2 s).
4. Memory per held stream: the workers' RSS (``VmRSS``) before and after opening the streams,
   ÷ streams (the second half alone in the note: what one more stream costs once the thread
   pools and caches are warm).
5. The server's CPU while the streams are held and quiet (the watcher's and keep-alives'
   cost), as a share of one CPU (info).

The clients are raw asyncio connections in one thread of this process (the leanest a client
can be; ``tests/test_held_streams.py`` holds 200 the same way): a GET with the session's
headers, then every line read as it comes. A figure that misses gets a py-spy profile of the
workers in its note.
"""

import asyncio
import collections
import os
import resource
import signal
import statistics
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import requests

from bench.common import (
    PYTHON,
    ROOT,
    SERVED_ADMIN,
    Figure,
    McpPeer,
    Server,
    add_served_admin,
    cli_env,
    cpu_seconds,
    make_app,
    rss_kib,
    top_frames,
    workdir,
)
from bench.gateway import Lean
from tests.peers import free_port, terminate

PER_KEY = 10  # streams per agent key (the per-key cap is 32)
WATCH_SECONDS = 2.0  # the default GATEWAY_WATCH_SECONDS, stated so the target can use it
LEGACY_VERSION = "2025-11-25"
LIST_CHANGED = b"notifications/tools/list_changed"
TRACED = 400  # streams held under tracemalloc when the memory figure misses


def run(quick: bool = False) -> list[Figure]:
    from tests.gateway_helpers import agent_with_tools, synced_connector

    count = 200 if quick else 1000
    samples = 40 if quick else 100
    _allow_open_files(count + 200)
    peer = McpPeer("mcp_server.py", "--call-tools", "--tools", "0", "--json", "--stateless")
    directory = workdir("streams")
    app = make_app(directory)
    try:
        with app.app_context():
            weather = synced_connector(peer.url, "Weather")
            held = [agent_with_tools([weather], name=f"held {n}") for n in range(count // PER_KEY)]
            held = [(agent.id, key) for agent, key in held]
            other, other_key = agent_with_tools([weather], name="busy")
            other_id, tool = other.id, f"{weather.slug}__weather"
        add_served_admin(app)
        with Server(directory, workers=2, GATEWAY_WATCH_SECONDS=WATCH_SECONDS) as server:
            sessions = _initialize(server.url, held, count)
            probes = Probes(server.url, other_id, other_key, tool)
            idle = probes.measure(samples)
            holders = Holders(server.port)
            try:
                figures, by_probe = _held(app, server, holders, sessions, probes, idle, samples,
                                          held)  # fmt: skip
            finally:
                holders.close()
            again = probes.measure(samples)  # the machine is shared: did the idle p50 drift?
            for probe in Probes.LABELS:
                by_probe[probe].note += (f"; idle again once the streams closed: "
                                         f"{again.p50(probe):.2f} ms")  # fmt: skip
        if by_probe["memory"].met is False:
            by_probe["memory"].note += "; " + where_memory_goes(directory, sessions[:TRACED])
        return figures
    finally:
        peer.stop()


def _held(app, server, holders, sessions, probes, idle, samples, held):
    """The figures while the streams are held, and the probes' and memory figures by name."""
    count = len(sessions)
    before = rss_kib(server.worker_pids())
    half = count // 2
    began = time.monotonic()
    statuses = holders.open(sessions[:half])
    middle = rss_kib(server.worker_pids())
    statuses += holders.open(sessions[half:])
    opened_in = time.monotonic() - began
    time.sleep(1)  # the last streams' first bytes sent, nothing else in flight
    after = rss_kib(server.worker_pids())
    opened = statuses.count(200)
    quiet = 3 if count < 1000 else 5
    cpu_before = cpu_seconds(server.pids())
    time.sleep(quiet)
    quiet_cpu = (cpu_seconds(server.pids()) - cpu_before) / quiet
    busy = probes.measure(samples)
    figures = [
        Figure(f"{count} legacy GET streams held on 2 workers: streams open", opened, count, "",
               "all", opened == count,
               note=f"opened in {opened_in:.1f} s; refused: {_refusals(statuses)}"),
    ]  # fmt: skip
    missed, by_probe = [], {}
    for probe, label in Probes.LABELS.items():
        ratio_met = busy.p50(probe) <= 2 * idle.p50(probe)
        met = ratio_met and not idle.failures[probe] and not busy.failures[probe]
        note = f"{samples} each, interleaved; not 200 (held/idle): {busy.failures[probe]}/" \
               f"{idle.failures[probe]}"  # fmt: skip
        figures.append(Figure(f"{label} p50 with the streams held vs idle", busy.p50(probe),
                              idle.p50(probe), "ms", "≤ 2× idle", met, note=note))  # fmt: skip
        by_probe[probe] = figures[-1]
        if not met:
            missed.append(figures[-1])
    if missed:
        profile = top_frames(server.worker_pids(), 5, during=lambda: probes.measure(samples))
        for figure in missed:
            figure.note += "; " + profile
    figures += _told(app, holders, held, count)
    per_stream = (after - before) / max(opened, 1)
    second = (after - middle) / max(opened - half, 1)
    by_probe["memory"] = Figure(
        "memory per held stream (workers' RSS after - before, ÷ streams)", per_stream, None,
        "KiB", "≤ 50 KB", per_stream * 1024 <= 50_000,
        note=f"workers {before / 1024:.0f} → {after / 1024:.0f} MiB; the second half alone: "
             f"{second:.1f} KiB per stream")  # fmt: skip
    figures += [
        by_probe["memory"],
        Figure(f"server CPU while {count} streams are held and quiet (share of one CPU)",
               quiet_cpu * 100, None, "%", "(info)",
               note=f"over {quiet} s, gunicorn master + workers; watch every "
                    f"{WATCH_SECONDS:g} s"),
    ]  # fmt: skip
    return figures, by_probe


def _told(app, holders, held, count) -> list[Figure]:
    """An operator unticks the held agents' tool; the time each stream takes to be told."""
    from mcpadmin.extensions import db
    from mcpadmin.models import AgentConnection

    agent_ids = [agent_id for agent_id, _ in held]
    with app.app_context():
        connections = db.session.query(AgentConnection).filter(
            AgentConnection.agent_id.in_(agent_ids)
        )
        for connection in connections:
            connection.enabled_tools = []
        db.session.commit()
        committed = time.monotonic()
    limit = 2 * WATCH_SECONDS
    deadline = committed + limit + 10
    while len(holders.told) < count and time.monotonic() < deadline:
        time.sleep(0.05)
    delays = sorted(t - committed for t in holders.told.values())
    told = len(delays)
    p50 = statistics.median(delays) if delays else None
    worst = delays[-1] if delays else None
    note = f"{told} of {count} told; p50 {p50:.2f} s" if delays else f"0 of {count} told"
    return [
        Figure("tools/list_changed after an untick: the last of the streams told (max)", worst,
               WATCH_SECONDS, "s", f"all within {limit:g} s (2× the watch interval)",
               told == count and worst <= limit, note=note),
    ]  # fmt: skip


def _refusals(statuses) -> str:
    counted = collections.Counter(str(s) for s in statuses if s != 200)
    return ", ".join(f"{n} × {s}" for s, n in sorted(counted.items())) or "none"


def _allow_open_files(needed: int):
    """Raise this process's open-file limit (soft, up to the hard one) for the clients."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != resource.RLIM_INFINITY and soft < needed:
        wanted = needed if hard == resource.RLIM_INFINITY else min(needed, hard)
        resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, hard))
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != resource.RLIM_INFINITY and soft < needed:
        raise RuntimeError(f"{needed} open files needed and the hard limit is {hard}")


# -- where the memory goes ------------------------------------------------------------------


def where_memory_goes(directory: str, sessions) -> str:
    """One line: what each held stream keeps alive, by package, per tracemalloc in one
    uvicorn process (``_traced_app``) holding ``sessions``' streams, beside that process's
    RSS growth per stream (the rest is memory outside Python's allocator: uvloop and
    libuv, the HTTP parser, allocator arenas)."""
    import tracemalloc

    port = free_port()
    snapshot = os.path.join(directory, "streams.tracemalloc")
    env = {**cli_env(directory), "MCPADMIN_PUBLIC_BASE_URL": f"http://127.0.0.1:{port}",
           "BENCH_TRACEMALLOC_SNAPSHOT": snapshot}  # fmt: skip
    command = [PYTHON, "-m", "uvicorn", "--factory", "bench.streams:_traced_app",
               "--host", "127.0.0.1", "--port", str(port), "--no-access-log",
               "--log-level", "warning"]  # fmt: skip
    process = subprocess.Popen(command, cwd=ROOT, env=env, stdout=subprocess.DEVNULL)
    holders = None
    try:
        _wait_for(f"http://127.0.0.1:{port}/healthz", process)
        holders = Holders(port)
        holders.open(sessions[:20])  # the first streams warm the pools and caches
        time.sleep(1)
        before = rss_kib([process.pid])
        os.kill(process.pid, signal.SIGUSR1)  # tracing on
        time.sleep(0.5)
        statuses = holders.open(sessions[20:])
        time.sleep(1)
        grown = rss_kib([process.pid]) - before
        os.kill(process.pid, signal.SIGUSR1)  # a snapshot, tracing off
        deadline = time.monotonic() + 120
        while not os.path.exists(snapshot) and time.monotonic() < deadline:
            time.sleep(0.5)
        time.sleep(1)  # written whole
        traced = tracemalloc.Snapshot.load(snapshot).statistics("filename")
    finally:
        if holders is not None:
            holders.close()
        terminate(process)
    streams = max(statuses.count(200), 1)
    packages = collections.Counter()
    for statistic in traced:
        packages[_package_of(statistic.traceback[0].filename)] += statistic.size
    total = sum(packages.values())
    parts = ", ".join(f"{name} {size / streams / 1024:.1f}" for name, size in
                      packages.most_common(7))  # fmt: skip
    return (f"tracemalloc, one uvicorn process, {streams} more streams: RSS +"
            f"{grown / streams:.1f} KiB per stream, of which Python objects "
            f"{total / streams / 1024:.1f} KiB ({parts}); the rest is outside Python's "
            "allocator")  # fmt: skip


def _traced_app():
    """The ASGI application, with tracemalloc switched by SIGUSR1: on at the first signal,
    then at the second a snapshot to ``$BENCH_TRACEMALLOC_SNAPSHOT`` and off."""
    import tracemalloc

    from mcpadmin.gateway.app import create_asgi_app

    def switch(*_):
        if not tracemalloc.is_tracing():
            tracemalloc.start()
            return
        tracemalloc.take_snapshot().dump(os.environ["BENCH_TRACEMALLOC_SNAPSHOT"] + ".part")
        tracemalloc.stop()
        os.rename(os.environ["BENCH_TRACEMALLOC_SNAPSHOT"] + ".part",
                  os.environ["BENCH_TRACEMALLOC_SNAPSHOT"])  # fmt: skip

    signal.signal(signal.SIGUSR1, switch)
    return create_asgi_app()


def _package_of(filename: str) -> str:
    """``uvicorn``, ``asyncio``, ``mcpadmin``… for a source file."""
    for marker in ("site-packages/", "/python3.11/", ROOT + "/"):
        if marker in filename:
            return filename.split(marker, 1)[1].split("/", 1)[0].removesuffix(".py")
    return "other"


def _wait_for(url: str, process):
    deadline = time.monotonic() + 60
    while process.poll() is None and time.monotonic() < deadline:
        try:
            if requests.get(url, timeout=2).status_code == 200:
                return
        except requests.RequestException:
            time.sleep(0.2)
    raise RuntimeError(f"{url} did not answer")


# -- the legacy clients ---------------------------------------------------------------------


def _initialize(base: str, held, count: int) -> list[tuple[str, str, str]]:
    """``count`` legacy sessions (initialize, then notifications/initialized, as an SDK 1.x
    client does), ``PER_KEY`` per agent: (path, key, session id) each."""

    def one(n):
        agent_id, key = held[n // PER_KEY]
        path = f"/agents/{agent_id}/mcp"
        http = local.__dict__.setdefault("http", requests.Session())
        http.trust_env = False
        headers = {"Authorization": f"Bearer {key}",
                   "Accept": "application/json, text/event-stream"}  # fmt: skip
        body = {"jsonrpc": "2.0", "id": 0, "method": "initialize",
                "params": {"protocolVersion": LEGACY_VERSION, "capabilities": {},
                           "clientInfo": {"name": "bench", "version": "1"}}}  # fmt: skip
        answer = http.post(base + path, json=body, headers=headers, timeout=30)
        answer.raise_for_status()
        session = answer.headers["Mcp-Session-Id"]
        headers |= {"Mcp-Session-Id": session, "MCP-Protocol-Version": LEGACY_VERSION}
        done = http.post(base + path, json={"jsonrpc": "2.0", "method":
                         "notifications/initialized"}, headers=headers, timeout=30)  # fmt: skip
        assert done.status_code == 202, done.status_code
        return path, key, session

    local = threading.local()
    with ThreadPoolExecutor(8) as pool:
        return list(pool.map(one, range(count)))


class Holders:
    """Legacy clients' GET streams on raw asyncio connections, on an event loop in a thread of
    its own: each stream's status, and when each was first told its tools changed."""

    OPENING = 100  # streams being opened at once

    def __init__(self, port: int):
        self.port = port
        self.told: dict[int, float] = {}  # stream → time.monotonic() of its list_changed
        self.writers = []
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.tasks = []

    def open(self, sessions, timeout: float = 120) -> list:
        """Open one stream per (path, key, session); the status each answered (or the
        exception's name), once every one has answered."""
        first = len(self.tasks)
        work = asyncio.run_coroutine_threadsafe(self._open(first, sessions), self.loop)
        return work.result(timeout)

    async def _open(self, first, sessions) -> list:
        gate = asyncio.Semaphore(self.OPENING)
        answered = [self.loop.create_future() for _ in sessions]
        for n, (session, status) in enumerate(zip(sessions, answered, strict=True)):
            self.tasks.append(asyncio.create_task(self._hold(first + n, *session, gate, status)))
        return list(await asyncio.gather(*answered))

    async def _hold(self, n, path, key, session, gate, status):
        try:
            async with gate:
                reader, writer = await asyncio.open_connection("127.0.0.1", self.port)
                self.writers.append(writer)
                request = (f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{self.port}\r\n"
                           f"Authorization: Bearer {key}\r\nAccept: text/event-stream\r\n"
                           f"Mcp-Session-Id: {session}\r\n"
                           f"MCP-Protocol-Version: {LEGACY_VERSION}\r\n\r\n")  # fmt: skip
                writer.write(request.encode())
                await writer.drain()
                line = await asyncio.wait_for(reader.readline(), 60)
                code = int(line.split()[1]) if line.startswith(b"HTTP/1.1 ") else 0
                status.set_result(code)
            if code != 200:
                return
            while line := await reader.readline():
                if line.startswith(b"data:") and LIST_CHANGED in line and n not in self.told:
                    self.told[n] = time.monotonic()
        except (OSError, TimeoutError, ValueError) as exc:
            if not status.done():
                status.set_result(type(exc).__name__)

    def close(self):
        async def closing():
            for task in self.tasks:
                task.cancel()
            await asyncio.gather(*self.tasks, return_exceptions=True)
            for writer in self.writers:
                writer.close()

        asyncio.run_coroutine_threadsafe(closing(), self.loop).result(60)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
        self.loop.close()


# -- what else the app answers meanwhile ----------------------------------------------------


class Probes:
    """One request of each kind, timed: the app's health, its sign-in page, a signed-in page
    and another agent's tool call, each on its own keep-alive client."""

    LABELS = {
        "healthz": "GET /healthz",
        "login": "GET /login (the sign-in page)",
        "page": "GET /connectors/ signed in",
        "call": "another agent's tools/call",
    }

    def __init__(self, base: str, agent_id: int, key: str, tool: str):
        from tests.test_load import signed_in

        self.base, self.tool = base, tool
        self.plain = _session()
        self.browser = signed_in(base, SERVED_ADMIN)
        self.agent = Lean(f"{base}/agents/{agent_id}/mcp", key)

    def measure(self, samples: int) -> "Timings":
        timings = Timings()
        for _ in range(3):  # warm
            self._each(Timings())
        for _ in range(samples):
            self._each(timings)
        return timings

    def _each(self, timings):
        requests_ = {
            "healthz": lambda: self.plain.get(self.base + "/healthz", timeout=30),
            "login": lambda: self.plain.get(self.base + "/login", timeout=30),
            "page": lambda: self.browser.get(self.base + "/connectors/", timeout=30,
                                             allow_redirects=False),
            "call": self._call,
        }  # fmt: skip
        for probe, request in requests_.items():
            began = time.perf_counter()
            try:
                ok = request()
            except (requests.RequestException, RuntimeError):
                ok = False
            timings.add(probe, (time.perf_counter() - began) * 1000, ok)

    def _call(self) -> bool:
        self.agent.weather(self.tool)  # raises on an error status or isError
        return True


class Timings:
    def __init__(self):
        self.times = {probe: [] for probe in Probes.LABELS}
        self.failures = dict.fromkeys(Probes.LABELS, 0)

    def add(self, probe, ms, answer):
        self.times[probe].append(ms)
        ok = answer if isinstance(answer, bool) else answer.status_code == 200
        if not ok:
            self.failures[probe] += 1

    def p50(self, probe) -> float:
        return statistics.median(self.times[probe])


def _session() -> requests.Session:
    http = requests.Session()
    http.trust_env = False
    return http


if __name__ == "__main__":  # one benchmark alone: python -m bench.streams [--quick]
    from bench.common import table

    print(table(run(quick="--quick" in sys.argv)))
