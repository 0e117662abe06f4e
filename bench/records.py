"""The Calls and Audit pages and the usage charts at 10 rows and at 1,000,000 rows of each log:
SQL statements per request (counted at the engine) and the time ratio of the big log to the
small one. Pages: the first page, a filtered page and a deep page (``?before=`` the middle id),
rendered by the Flask test client, signed in, on SQLite; the usage query (``services.usage``:
one GROUP BY over day × latency bucket, plus the last failures) timed on its own.

Rows are inserted with executemany in batches of 20,000; ``--quick`` uses 100,000 rows.
"""

import random
import statistics
import time
from datetime import UTC, datetime, timedelta

from bench.common import Figure, SqlCounter, log_in, make_app, workdir
from bench.pages import _measure as measure_page  # (statements, median seconds) of one page

SMALL, BIG, QUICK_BIG = 10, 1_000_000, 100_000
AGENTS, CONNECTORS, TOOLS_PER_CONNECTOR = 20, 10, 5
DAYS_OF_LOG = 30  # the default retention (CALL_LOG_DAYS): what a live log holds
BATCH = 20_000
OUTCOMES = ["ok"] * 95 + ["tool_error"] * 2 + ["upstream_timeout", "upstream_down", "cancelled"]
ACTIONS = ["signin.succeeded", "connector.updated", "agent.updated", "key.created", "tools.chosen"]


def run(quick: bool = False) -> list[Figure]:
    big = QUICK_BIG if quick else BIG
    runs = 3 if quick else 7
    measured = {size: _measure_size(size, runs) for size in (SMALL, big)}
    figures = []
    for name in measured[SMALL]:
        (small_sql, small_time), (big_sql, big_time) = measured[SMALL][name], measured[big][name]
        figures.append(
            Figure(
                f"{name}, {big:,} rows: SQL statements per request",
                big_sql,
                small_sql,
                "",
                "same as at 10 rows",
                big_sql == small_sql,
            )  # fmt: skip
        )
        figures.append(
            Figure(
                f"{name}: median time at {big:,} rows vs {SMALL}",
                big_time * 1000,
                small_time * 1000,
                "ms",
                "(info: ratio)",
            )  # fmt: skip
        )
    return figures


def _measure_size(size: int, runs: int) -> dict:
    """{figure name: (statements, median seconds)} on a fresh database of ``size`` rows."""
    app = make_app(workdir(f"records-{size}"))
    ids = _seed(app, size)
    client = log_in(app)
    from mcpadmin.extensions import db

    with app.app_context():
        engine = db.engine
    deep = ids["middle_call"]
    paths = {
        "Calls, first page": "/calls/",
        "Calls, filtered (agent + outcome)": f"/calls/?agent={ids['agent']}&outcome=tool_error",
        "Calls, deep page": f"/calls/?before={deep}",
        "Audit, first page": "/audit/",
        "Audit, filtered (admin + action)": "/audit/?admin=alice&action=agent.updated",
        "Audit, deep page": f"/audit/?before={ids['middle_event']}",
        "Agent page's usage section (charts, last failures)": f"/agents/{ids['agent']}/usage",
    }
    results = {name: measure_page(client, engine, path, runs) for name, path in paths.items()}
    results["Usage query alone (14 days, one agent)"] = _usage(app, ids["agent"], runs)
    return results


def _usage(app, agent_id, runs) -> tuple[int, float]:
    from mcpadmin.extensions import db
    from mcpadmin.services import usage

    with app.app_context():
        with SqlCounter(db.engine) as counter:
            usage.usage(agent_id=agent_id)
            usage.recent_failures(agent_id=agent_id)
        times = []
        for _ in range(runs):
            began = time.perf_counter()
            usage.usage(agent_id=agent_id)
            usage.recent_failures(agent_id=agent_id)
            times.append(time.perf_counter() - began)
    return counter.count, statistics.median(times)


def _seed(app, size: int) -> dict:
    """``size`` call records and ``size`` audit events over the last ``DAYS_OF_LOG`` days,
    oldest first (ids follow time, as the gateway writes them), for ``AGENTS`` agents."""
    from mcpadmin.extensions import db
    from mcpadmin.models import Agent, AuditEvent, CallRecord, Connector

    rng = random.Random(15)  # noqa: S311 (made-up rows, not secrets)
    now = datetime.now(UTC)
    step = timedelta(days=DAYS_OF_LOG) / size
    start = now - timedelta(days=DAYS_OF_LOG)
    with app.app_context():
        agents = [Agent(name=f"agent {i:02d}") for i in range(AGENTS)]
        connectors = [
            Connector(name=f"server {i:02d}", url=f"https://mcp{i}.example.com/mcp")
            for i in range(CONNECTORS)
        ]
        db.session.add_all(agents + connectors)
        db.session.commit()
        agent_ids = [a.id for a in agents]
        connector_ids = [c.id for c in connectors]
        with db.engine.begin() as conn:
            calls, events = [], []
            for i in range(size):
                at = start + step * i
                connector = rng.randrange(CONNECTORS)
                outcome = rng.choice(OUTCOMES)
                calls.append({
                    "at": at, "request_id": f"{i:016x}", "agent_id": agent_ids[i % AGENTS],
                    "agent_name": f"agent {i % AGENTS:02d}", "key_id": 1, "key_label": "ci",
                    "connector_id": connector_ids[connector],
                    "connector_name": f"server {connector:02d}",
                    "tool": f"server_{connector:02d}__tool_{rng.randrange(TOOLS_PER_CONNECTOR)}",
                    "upstream_tool": "tool", "era": "modern", "outcome": outcome,
                    "total_ms": rng.lognormvariate(3.5, 1.0), "upstream_ms": None,
                    "error": None if outcome == "ok" else "the upstream said no",
                    "request_bytes": 200, "response_bytes": 1500, "arguments": None,
                })  # fmt: skip
                events.append({
                    "at": at, "admin_name": rng.choice(("alice", "bob", "carol")),
                    "address": "10.0.0.1", "action": rng.choice(ACTIONS),
                    "target_type": "agent", "target_id": 1, "target_name": "agent 00",
                    "details": {"name": ["a", "b"]},
                })  # fmt: skip
                if len(calls) == BATCH:
                    conn.execute(CallRecord.__table__.insert(), calls)
                    conn.execute(AuditEvent.__table__.insert(), events)
                    calls, events = [], []
            if calls:
                conn.execute(CallRecord.__table__.insert(), calls)
                conn.execute(AuditEvent.__table__.insert(), events)
        return {"agent": agent_ids[0], "middle_call": size // 2 + 1, "middle_event": size // 2 + 1}
