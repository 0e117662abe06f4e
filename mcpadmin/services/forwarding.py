"""Where an agent's prompts/get, resources/read, resources/(un)subscribe or completion/complete
goes, and with which params: the agent-side prompt name, URI or URI template looked up in its
catalog (``agent_surface.Surface``), the params rewritten to the upstream's own names.

Pure (no database, no I/O). A request that names nothing the agent's connections ticked is a
``Refusal``: one sentence naming the connector when it can, and what to tick.
"""

from .agent_surface import SCHEME, Route, Surface
from .calllog import Outcome
from .toolnames import SEPARATOR

MAX_QUOTED = 200  # characters of an agent's name or URI quoted in a sentence


class Refusal(Exception):
    """The request cannot be routed: ``str()`` is the agent's sentence, ``outcome`` the call
    log's, ``name`` what the agent named (for the row), ``data`` the JSON-RPC error's
    ``data`` member (an unknown resource's ``{"uri": …}``), or None."""

    def __init__(self, text: str, name: str | None, outcome: Outcome = Outcome.NOT_ALLOWED,
                 data: dict | None = None):  # fmt: skip
        super().__init__(text)
        self.name, self.outcome, self.data = name, outcome, data


def route(surface: Surface, agent_name: str, message) -> tuple[Route, dict]:
    """The route of ``message`` and the params the upstream gets (the agent's ``_meta`` left
    out: the upstream request carries its own envelope).

    :raise Refusal: malformed params, or nothing ticked serves what it names.
    """
    params = {k: v for k, v in message.params.items() if k != "_meta"}
    method = message.method
    if method == "prompts/get":
        name = params.get("name")
        if not isinstance(name, str) or not isinstance(params.get("arguments", {}), dict):
            raise Refusal("Invalid params: prompts/get needs a name and an arguments object.",
                          None, Outcome.PROTOCOL)  # fmt: skip
        found = _prompt(surface, agent_name, name)
        return found, {**params, "name": found.upstream}
    if method == "completion/complete":
        return _completion(surface, agent_name, params)
    uri = params.get("uri")
    if not isinstance(uri, str):
        raise Refusal(f"Invalid params: {method} needs a uri.", None, Outcome.PROTOCOL)
    found = _resource(surface, agent_name, uri)
    return found, {**params, "uri": found.upstream}


def _prompt(surface: Surface, agent_name: str, name: str) -> Route:
    item = surface.prompts.get(name)
    if item is not None:
        return Route(item, name, item.key)
    slug = name.partition(SEPARATOR)[0] if SEPARATOR in name else None
    card = _card(surface, slug)
    raise Refusal(f"The prompt '{name[:MAX_QUOTED]}' is not one of agent '{agent_name}''s "
                  f"prompts: tick it on {card} of the agent's page.", name)  # fmt: skip


def _resource(surface: Surface, agent_name: str, uri: str) -> Route:
    """The route of an agent-side URI. One no ticked connector serves is refused as a
    resource not found: -32602 with the requested URI in ``data.uri`` [26/resources §Error
    Handling, SEP-2164], the sentence saying what to tick."""
    found = surface.resource(uri)
    if found is not None:
        return found
    slug = uri[len(SCHEME) :].partition("/")[0] if uri.startswith(SCHEME) else None
    card = _card(surface, slug)
    raise Refusal(f"No connector of agent '{agent_name}' serves the resource "
                  f"'{uri[:MAX_QUOTED]}': tick it (or 'All resources') on {card} of the "
                  "agent's page.", uri, data={"uri": uri})  # fmt: skip


def _completion(surface: Surface, agent_name: str, params: dict) -> tuple[Route, dict]:
    """``completion/complete`` routes by its ``ref`` [26/completion §Reference Types]: a
    prompt by its agent-side name, a resource template (or URI) by its agent-side one."""
    ref = params.get("ref")
    argument = params.get("argument")
    if not isinstance(ref, dict) or not isinstance(argument, dict):
        raise Refusal("Invalid params: completion/complete needs a ref and an argument.", None,
                      Outcome.PROTOCOL)  # fmt: skip
    if ref.get("type") == "ref/prompt" and isinstance(ref.get("name"), str):
        found = _prompt(surface, agent_name, ref["name"])
        return found, {**params, "ref": {**ref, "name": found.upstream}}
    if ref.get("type") == "ref/resource" and isinstance(ref.get("uri"), str):
        uri = ref["uri"]
        found = surface.template(uri) or _resource(surface, agent_name, uri)
        return found, {**params, "ref": {**ref, "uri": found.upstream}}
    raise Refusal("Invalid params: the ref must be a ref/prompt with a name or a ref/resource "
                  "with a uri.", None, Outcome.PROTOCOL)  # fmt: skip


def _card(surface: Surface, slug: str | None) -> str:
    """Which card of the agent's page to tick it on."""
    name = surface.connectors.get(slug) if slug else None
    return f"the {name} card" if name else "the connector's card"
