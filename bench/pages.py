"""Pages at 10, 100 and 1,000 connectors (and as many agents): SQL statements per request,
counted at the engine (``before_cursor_execute``), and median render time per row. The
connectors index, one agent's page (a card per connector) and the agents index are rendered
by the Flask test client, signed in, on a SQLite database seeded through the models.

The baseline of each figure is the same page at 10 connectors: the statement count should not
grow with the size, and the time per row should not either.

Then a signed-in page over HTTP, as a browser gets it: the connectors index at 10 connectors
from the production recipe (``gunicorn -c gunicorn.conf.py asgi:app``: uvicorn workers, the
Flask app behind the WSGI adapter) vs the recipe before it (the same settings with gunicorn's
gthread worker serving the Flask app alone, ``wsgi:app``), 2 workers each, on one database,
requests interleaved, each server with a browser signed in through its login form.
"""

import statistics
import time

import requests

from bench.common import (
    Figure,
    Server,
    SqlCounter,
    add_served_admin,
    log_in,
    make_app,
    repeat_for,
    top_frames,
    workdir,
)

SIZES = (10, 100, 1000)
TOOLS_PER_CONNECTOR = 5
MAX_QUERIES = 6
# auth type, credential mode: a mix like an operator's
KINDS = [
    ("none", "shared"),
    ("bearer", "shared"),
    ("api_key_header", "per_agent"),
    ("oauth", "per_agent"),
    ("oauth", "shared"),
]
PAGES = {
    "connectors index": lambda ids: "/connectors/",
    "agent page": lambda ids: f"/agents/{ids['agent']}",
    "agents index": lambda ids: "/agents/",
}


def run(quick: bool = False) -> list[Figure]:
    measured = {}
    for size in SIZES:
        app = make_app(workdir("pages"))
        ids = _seed(app, size)
        client = log_in(app)
        from mcpadmin.extensions import db

        with app.app_context():
            engine = db.engine
        runs = 3 if size >= 1000 or quick else 7
        for page, path in PAGES.items():
            measured[page, size] = _measure(client, engine, path(ids), runs)
    figures = []
    for page in PAGES:
        base_queries, base_time = measured[page, SIZES[0]]
        for size in SIZES:
            queries, seconds = measured[page, size]
            figures.append(
                Figure(
                    f"{page}, {size} connectors: SQL statements per request",
                    queries,
                    base_queries,
                    "",
                    f"same at every size, ≤ {MAX_QUERIES}",
                    queries == base_queries and queries <= MAX_QUERIES,
                )  # fmt: skip
            )
        for size in SIZES[1:]:
            queries, seconds = measured[page, size]
            figures.append(
                Figure(
                    f"{page}, {size} connectors: median render time per row",
                    seconds / size * 1000,
                    base_time / SIZES[0] * 1000,
                    "ms",
                    "(info; baseline: per row at 10)",
                )  # fmt: skip
            )
    return figures + served(quick)


def served(quick: bool = False) -> list[Figure]:
    """The connectors index (10 connectors) signed in, over HTTP: the ASGI stack vs gthread."""
    from tests.test_load import signed_in

    directory = workdir("pages-served")
    app = make_app(directory)
    _seed(app, SIZES[0])
    admin = add_served_admin(app)
    runs = 100 if quick else 400
    with Server(directory, "asgi") as asgi, Server(directory, "gthread") as gthread:
        browsers = {name: signed_in(s.url, admin) for name, s in
                    (("asgi", asgi), ("gthread", gthread))}  # fmt: skip
        urls = {"asgi": asgi.url + "/connectors/", "gthread": gthread.url + "/connectors/"}
        times = {name: [] for name in browsers}
        for _ in range(10):
            for name, browser in browsers.items():
                _get(browser, urls[name])
        for _ in range(runs):  # interleaved, so load from elsewhere falls on both alike
            for name, browser in browsers.items():
                began = time.perf_counter()
                _get(browser, urls[name])
                times[name].append((time.perf_counter() - began) * 1000)
        p50 = {name: statistics.median(values) for name, values in times.items()}
        ratio_met, aim_met = p50["asgi"] <= 1.1 * p50["gthread"], p50["asgi"] <= 3
        profile = ""
        if not (ratio_met and aim_met):
            browser, url = browsers["asgi"], urls["asgi"]
            profile = "; " + top_frames(
                asgi.worker_pids(), 5, during=lambda: repeat_for(4, lambda: _get(browser, url))
            )
    note = f"{runs} each, interleaved; 2 workers each"
    return [
        Figure("signed-in page (connectors index, 10 connectors) over HTTP: ASGI stack vs "
               "gunicorn gthread, p50", p50["asgi"], p50["gthread"], "ms", "≤ 1.1×", ratio_met,
               note=note + (profile if not ratio_met else "")),
        Figure("signed-in page over HTTP, ASGI stack, p50", p50["asgi"], None, "ms",
               "≤ 3 ms (aim)", aim_met, note=profile.removeprefix("; ")),
    ]  # fmt: skip


def _get(browser: requests.Session, url: str):
    answer = browser.get(url, timeout=30, allow_redirects=False)
    assert answer.status_code == 200, (url, answer.status_code)


def _measure(client, engine, path, runs) -> tuple[int, float]:
    """(statements of one request, median seconds per request)."""
    with SqlCounter(engine) as counter:
        answer = client.get(path)
    assert answer.status_code == 200, (path, answer.status_code)
    times = []
    for _ in range(runs):
        began = time.perf_counter()
        answer = client.get(path)
        times.append(time.perf_counter() - began)
        assert answer.status_code == 200
    return counter.count, statistics.median(times)


def _seed(app, size: int) -> dict:
    """``size`` connectors of mixed kinds with tools, ``size`` agents, and one agent ("Ada")
    connected to every connector with some tools enabled."""
    from datetime import timedelta

    from mcpadmin.crypto import seal
    from mcpadmin.extensions import db
    from mcpadmin.models import Agent, AgentConnection, Connector, Tool, utcnow

    with app.app_context():
        ada = Agent(name="Ada")
        db.session.add(ada)
        db.session.add_all(Agent(name=f"agent {i:04d}") for i in range(1, size))
        later = utcnow() + timedelta(hours=1)
        for i in range(size):
            auth, mode = KINDS[i % len(KINDS)]
            connector = Connector(
                name=f"server {i:04d}", url=f"https://mcp{i}.example.com/mcp", auth_type=auth,
                credential_mode=mode, status="connected", last_synced_at=utcnow(),
                api_key_header_name="X-Api-Key" if auth == "api_key_header" else None,
            )  # fmt: skip
            if mode == "shared" and auth == "bearer":
                connector.secret_enc = seal("token")
            if mode == "shared" and auth == "oauth":
                connector.access_token_enc = seal("access")
                connector.token_expires_at = later
            connector.tools = [
                Tool(name=f"tool_{t}", title=f"Tool {t}", description="Does a thing.",
                     input_schema={"type": "object"}, definition_hash="0" * 64)
                for t in range(TOOLS_PER_CONNECTOR)
            ]  # fmt: skip
            connection = AgentConnection(agent=ada, connector=connector, status="connected",
                                         enabled_tools=["tool_0", "tool_1"])  # fmt: skip
            if mode == "per_agent":
                connection.secret_enc = seal("key") if auth == "api_key_header" else None
                if auth == "oauth":
                    connection.access_token_enc = seal("access")
                    connection.token_expires_at = later
            db.session.add(connector)
        db.session.commit()
        return {"agent": ada.id}
