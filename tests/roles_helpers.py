"""The objects the role tests name: connectors, agents of different people, keys, a webhook
(``tests/test_authorization.py``, ``tests/browser/test_role_pages.py``)."""

from dataclasses import dataclass

from sqlalchemy import select

from mcpadmin.crypto import seal
from mcpadmin.extensions import db
from mcpadmin.models import (
    AdminUser,
    Agent,
    AgentConnection,
    CatalogItem,
    Connector,
    ItemKind,
    Tool,
    utcnow,
)
from mcpadmin.services import agent_keys, webhooks

# The member's agent, member2's, and nobody's (the operators').
NAMES = {"own": "Ada's editor", "other": "Bo's laptop", "unowned": "Team triage"}
WHOSE = tuple(NAMES)
# No server listens there: syncs, Connect and webhook deliveries fail at once.
DEAD_URL = "http://127.0.0.1:1/mcp"


@dataclass
class World:
    shared: int  # a shared bearer connector, not available to members
    per_agent: int  # a per-agent OAuth connector available to members
    tool: int  # the shared connector's tool
    prompt: int  # the shared connector's prompt
    agents: dict  # whose -> agent id
    names: dict  # whose -> agent name
    keys: dict  # whose -> the id of that agent's key
    webhook: int
    person: int  # member2, for the People routes

    def available(self, connector_id) -> bool:
        return connector_id == self.per_agent

    def whose(self, agent_id) -> str | None:
        """ "own", "other" or "unowned" for one of the agents' ids, else None."""
        return next((whose for whose, id_ in self.agents.items() if id_ == agent_id), None)


def build_world(app) -> World:
    """Two connectors with a tool and a prompt; an agent of the member's, one of member2's and
    one of nobody's, each with a key and connections whose tools and prompts changed since they
    were enabled (so their cards offer every action); a webhook."""
    with app.app_context():
        people = {p.username: p for p in db.session.scalars(select(AdminUser))}
        shared = Connector(
            name="Shared",
            url=DEAD_URL,
            auth_type="bearer",
            secret_enc=seal("shared-secret"),
            status="connected",
            last_synced_at=utcnow(),
        )
        per_agent = Connector(
            name="Own accounts",
            url=DEAD_URL + "/own",
            auth_type="oauth",
            credential_mode="per_agent",
            members_may_use=True,
        )
        tool = Tool(
            connector=shared,
            name="search",
            description="Finds things.",
            input_schema={"type": "object"},
            definition_hash="1" * 64,
        )
        Tool(
            connector=per_agent,
            name="lookup",
            input_schema={"type": "object"},
            definition_hash="2" * 64,
        )
        prompt = CatalogItem(
            connector=shared,
            kind=ItemKind.PROMPT,
            key="summarise",
            definition={"name": "summarise"},
            definition_hash="3" * 64,
        )
        CatalogItem(
            connector=per_agent,
            kind=ItemKind.PROMPT,
            key="explain",
            definition={"name": "explain"},
            definition_hash="4" * 64,
        )
        owners = {"own": people["member"].id, "other": people["member2"].id, "unowned": None}
        agents = {whose: Agent(name=NAMES[whose], owner_id=owners[whose]) for whose in WHOSE}
        for whose, agent in agents.items():
            connector, name, item = (
                (shared, "search", "summarise")
                if whose == "unowned"
                else (per_agent, "lookup", "explain")
            )
            AgentConnection(
                agent=agent,
                connector=connector,
                status="connected",
                access_token_enc=seal("token") if connector.per_agent else None,
                last_synced_at=utcnow(),
                enabled_tools=[name],
                changed_tools=[name],
                enabled_prompts=[item],
                changed_prompts=[item],
            )
        keys = {whose: agent_keys.create(agent, "laptop")[0] for whose, agent in agents.items()}
        webhook, _ = webhooks.create("http://127.0.0.1:1/hook", "generic")
        db.session.add_all([shared, per_agent, *agents.values()])
        db.session.commit()
        return World(
            shared=shared.id,
            per_agent=per_agent.id,
            tool=tool.id,
            prompt=prompt.id,
            agents={whose: a.id for whose, a in agents.items()},
            names={whose: a.name for whose, a in agents.items()},
            keys={whose: k.id for whose, k in keys.items()},
            webhook=webhook.id,
            person=people["member2"].id,
        )
