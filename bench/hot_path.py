"""The credential hot path: fresh-token lookups per second in one process with warm OAuth
tokens (an hour left), as a sync does before every listing: load the holder, then
``credentials.auth_headers``. Counts the outbound requests (at ``requests``, under ``Http``)
and the SQL statements (at the engine) per lookup.

Baseline: the least such a lookup can cost, a primary-key read of the ciphertext and its
decryption, in the same loop shape.
"""

import time
from datetime import timedelta

from bench.common import Figure, SqlCounter, make_app, outbound_counter, workdir


def run(quick: bool = False) -> list[Figure]:
    from mcpadmin.crypto import seal
    from mcpadmin.extensions import db
    from mcpadmin.models import Agent, AgentConnection, Connector, utcnow
    from mcpadmin.services.agents import connection_for
    from mcpadmin.services.credentials import auth_headers

    lookups = 300 if quick else 2000
    app = make_app(workdir("hot-path"))
    with app.app_context():
        later = utcnow() + timedelta(hours=1)
        shared = Connector(name="shared", url="https://mcp.example.com/mcp", auth_type="oauth",
                           access_token_enc=seal("shared-access"), refresh_token_enc=seal("r"),
                           token_expires_at=later, status="connected")  # fmt: skip
        per_agent = Connector(name="per agent", url="https://mcp2.example.com/mcp",
                              auth_type="oauth", credential_mode="per_agent")  # fmt: skip
        agent = Agent(name="Ada")
        db.session.add_all([shared, per_agent, agent])
        db.session.add(
            AgentConnection(
                agent=agent,
                connector=per_agent,
                access_token_enc=seal("ada-access"),
                refresh_token_enc=seal("r"),
                token_expires_at=later,
                status="connected",
            )  # fmt: skip
        )
        db.session.commit()
        ids = shared.id, per_agent.id, agent.id
        engine = db.engine

    sql = SqlCounter(engine)

    def shared_lookup():
        with app.app_context():
            sql.on = False  # the caller (a sync, a view) has the connector already
            connector = db.session.get(Connector, ids[0])
            sql.on = True
            assert auth_headers(connector) == {"Authorization": "Bearer shared-access"}

    def per_agent_lookup():
        with app.app_context():
            sql.on = False  # … and the agent
            connector = db.session.get(Connector, ids[1])
            agent = db.session.get(Agent, ids[2])
            sql.on = True
            connection = connection_for(agent, connector)
            assert auth_headers(connector, connection)["Authorization"] == "Bearer ada-access"

    def floor_lookup():
        with app.app_context():
            sealed = db.session.scalar(
                db.select(Connector.access_token_enc).where(Connector.id == ids[0])
            )
            assert sealed.reveal() == "shared-access"

    figures = []
    floor_rate = _rate(floor_lookup, lookups)
    for label, lookup in (("shared", shared_lookup), ("per-agent", per_agent_lookup)):
        sql.count = 0
        with outbound_counter() as sent, sql:
            rate = _rate(lookup, lookups)
        figures += [
            Figure(f"hot path, {label} OAuth token: lookups per second", rate, floor_rate,
                   "/s", "(info; baseline: PK read + decrypt)", note="holder loaded each time"),
            Figure(f"hot path, {label}: outbound requests per lookup", len(sent) / lookups,
                   None, "", "0", not sent),
            Figure(f"hot path, {label}: SQL statements per lookup", sql.count / (lookups + 5),
                   1, "", "≤ 1", sql.count <= lookups + 5),
        ]  # fmt: skip
    return figures


def _rate(fn, lookups) -> float:
    for _ in range(5):
        fn()
    began = time.perf_counter()
    for _ in range(lookups):
        fn()
    return lookups / (time.perf_counter() - began)
