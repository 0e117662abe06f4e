"""A tool's page and a prompt's page: the current definition, what changed since the
definition an agent accepted (or the previous one), and the history of definitions and
reviews (``catalog.versions`` / ``catalog.reviews`` keep both)."""

from flask import Blueprint, abort, render_template, request

from .extensions import db
from .models import Agent, CatalogItem, Connector, ItemKind, Tool
from .services import catalog, tooldiff
from .services.agents import connection_for

bp = Blueprint("tools", __name__, url_prefix="/connectors")


def get_tool(connector_id, tool_id) -> Tool:
    """:raise 404: no such connector, or the tool is not one of its tools."""
    connector = db.get_or_404(Connector, connector_id)
    tool = db.get_or_404(Tool, tool_id)
    if tool.connector_id != connector.id:
        abort(404)
    return tool


@bp.get("/<int:connector_id>/tools/<int:tool_id>")
def show(connector_id, tool_id):
    """The tool page. ``?agent=<id>`` compares with what that agent last accepted and offers
    Mark reviewed for it; ``?since=<version id>`` compares with a version from the history.
    An agent id that names no agent is left out, with a note."""
    tool = get_tool(connector_id, tool_id)
    agent_id = request.args.get("agent", type=int)
    agent = db.session.get(Agent, agent_id) if agent_id is not None else None
    kept = catalog.versions(tool)
    base = catalog.baseline(tool, kept, agent.id if agent else None,
                            request.args.get("since", type=int))  # fmt: skip
    same = base.version is None or base.version.definition_hash == tool.definition_hash
    connection = connection_for(agent, tool.connector) if agent else None
    return render_template(
        "tools/show.html",
        tool=tool,
        connector=tool.connector,
        agent=agent,
        unknown_agent=agent_id is not None and agent is None,
        awaiting=connection is not None and tool.name in (connection.changed_tools or []),
        can_review=connection is not None,
        base=base,
        diff=None if same else tooldiff.compare(base.version, tool),
        versions=kept,
        numbers={v.id: len(kept) - i for i, v in enumerate(kept)},
        reviews=catalog.reviews(tool),
        enabled_for=_enabled_for(tool),
    )


def _enabled_for(tool):
    """(agent, flagged) for every agent that has the tool enabled, by name."""
    found = [
        (c.agent, tool.name in (c.changed_tools or []))
        for c in tool.connector.connections
        if tool.name in (c.enabled_tools or [])
    ]
    return sorted(found, key=lambda pair: pair[0].name.lower())


def get_prompt(connector_id, item_id) -> CatalogItem:
    """:raise 404: no such connector, or the item is not one of its prompts."""
    connector = db.get_or_404(Connector, connector_id)
    item = db.get_or_404(CatalogItem, item_id)
    if item.connector_id != connector.id or item.kind != ItemKind.PROMPT:
        abort(404)
    return item


@bp.get("/<int:connector_id>/prompts/<int:item_id>")
def prompt(connector_id, item_id):
    """The prompt page, as the tool page: ``?agent=<id>`` compares with what that agent last
    accepted and offers Mark reviewed for it (the gateway holds a changed prompt until then);
    ``?since=<version id>`` compares with a version from the history."""
    item = get_prompt(connector_id, item_id)
    agent_id = request.args.get("agent", type=int)
    agent = db.session.get(Agent, agent_id) if agent_id is not None else None
    kept = catalog.versions(item)
    base = catalog.baseline(item, kept, agent.id if agent else None,
                            request.args.get("since", type=int))  # fmt: skip
    same = base.version is None or base.version.definition_hash == item.definition_hash
    connection = connection_for(agent, item.connector) if agent else None
    return render_template(
        "tools/prompt.html",
        item=item,
        connector=item.connector,
        agent=agent,
        unknown_agent=agent_id is not None and agent is None,
        awaiting=connection is not None and item.key in (connection.changed_prompts or []),
        can_review=connection is not None,
        base=base,
        diff=None if same else tooldiff.compare_prompt(base.version, item),
        versions=kept,
        numbers={v.id: len(kept) - i for i, v in enumerate(kept)},
        reviews=catalog.reviews(item),
        enabled_for=_prompt_enabled_for(item),
    )


def _prompt_enabled_for(item):
    """(agent, flagged) for every agent that has the prompt enabled, by name."""
    found = [
        (c.agent, item.key in (c.changed_prompts or []))
        for c in item.connector.connections
        if item.key in (c.enabled_prompts or [])
    ]
    return sorted(found, key=lambda pair: pair[0].name.lower())
