"""A tool's page and a prompt's page: the current definition, what changed since the
definition an agent accepted (or the previous one), and the history of definitions and
reviews (``catalog.versions`` / ``catalog.reviews`` keep both)."""

from flask import Blueprint, abort, render_template, request

from .extensions import db
from .models import Agent, CatalogItem, Connector, ItemKind, Tool
from .roles import Access, allow
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
@allow(Access.READ)
def show(connector_id, tool_id):
    """The tool page. ``?agent=<id>`` compares with what that agent last accepted and offers
    Mark reviewed for it; ``?since=<version id>`` compares with a version from the history.
    An agent id that names no agent is left out, with a note."""
    tool = get_tool(connector_id, tool_id)
    return _page("tools/show.html", tool, tool.name, "tools", tooldiff.compare, tool=tool)


def _page(template, subject, name, kind, compare, **context):
    """A tool's or a prompt's page (``subject``, ``name`` as the agent connections list it
    under ``enabled_<kind>`` and ``changed_<kind>``): the comparison with what ``?agent=``
    accepted (or the ``?since=`` version), the history, the reviews, who has it enabled."""
    agent_id = request.args.get("agent", type=int)
    agent = db.session.get(Agent, agent_id) if agent_id is not None else None
    kept = catalog.versions(subject)
    base = catalog.baseline(subject, kept, agent.id if agent else None,
                            request.args.get("since", type=int))  # fmt: skip
    same = base.version is None or base.version.definition_hash == subject.definition_hash
    connection = connection_for(agent, subject.connector) if agent else None

    def changed(each) -> bool:
        return name in (getattr(each, f"changed_{kind}") or [])

    enabled_for = sorted(
        ((c.agent, changed(c)) for c in subject.connector.connections
         if name in (getattr(c, f"enabled_{kind}") or [])),
        key=lambda pair: pair[0].name.lower(),
    )  # fmt: skip
    return render_template(
        template,
        connector=subject.connector,
        agent=agent,
        unknown_agent=agent_id is not None and agent is None,
        awaiting=connection is not None and changed(connection),
        can_review=connection is not None,
        base=base,
        diff=None if same else compare(base.version, subject),
        versions=kept,
        numbers={v.id: len(kept) - i for i, v in enumerate(kept)},
        reviews=catalog.reviews(subject),
        enabled_for=enabled_for,
        **context,
    )


def get_prompt(connector_id, item_id) -> CatalogItem:
    """:raise 404: no such connector, or the item is not one of its prompts."""
    connector = db.get_or_404(Connector, connector_id)
    item = db.get_or_404(CatalogItem, item_id)
    if item.connector_id != connector.id or item.kind != ItemKind.PROMPT:
        abort(404)
    return item


@bp.get("/<int:connector_id>/prompts/<int:item_id>")
@allow(Access.READ)
def prompt(connector_id, item_id):
    """The prompt page, as the tool page: ``?agent=<id>`` compares with what that agent last
    accepted and offers Mark reviewed for it (the gateway holds a changed prompt until then);
    ``?since=<version id>`` compares with a version from the history."""
    item = get_prompt(connector_id, item_id)
    return _page("tools/prompt.html", item, item.key, "prompts", tooldiff.compare_prompt,
                 item=item)  # fmt: skip
