"""The resources, resource templates, prompts and completions both MCP peers serve, whichever
SDK line runs them (imports no ``mcp``): wire dicts the servers validate into their SDK's
result types.

The fixtures (small and fixed, so tests can count on them):

- resources ``peer://static/readme`` (text/plain, text ``"Read me."``) and
  ``peer://static/logo`` (image/png, a blob);
- template ``peer://items/{id}``: reading ``peer://items/7`` answers text ``"Item 7"``;
- prompts ``greeting`` (argument ``name``, required: one user message ``"Hello, <name>!"``)
  and ``summary`` (no arguments);
- completion: prompt ``greeting`` argument ``name`` from ``["Ada", "Alan", "Grace"]``,
  template ``peer://items/{id}`` argument ``id`` from ``["1", "2", "3"]``, each filtered by
  the typed prefix.

``--surface-file F`` (JSON ``{"resources": [...], "templates": [...], "prompts": [...]}``,
re-read on every request, so a test changes the listing between syncs) replaces them;
``--no-surface`` serves tools only, without the resources/prompts/completions capabilities.
A listed resource or prompt a surface file adds reads as ``"Content of <uri>."`` / one user
message naming the prompt and its arguments.
"""

import base64
import json
import re

README = "peer://static/readme"
LOGO = "peer://static/logo"
ITEMS = "peer://items/{id}"

RESOURCES = [
    {
        "uri": README,
        "name": "readme",
        "title": "Read me",
        "description": "A short text to read first.",
        "mimeType": "text/plain",
    },
    {"uri": LOGO, "name": "logo", "title": "Logo", "mimeType": "image/png"},
]
TEMPLATES = [
    {
        "uriTemplate": ITEMS,
        "name": "item",
        "title": "Item",
        "description": "One item, by its id.",
        "mimeType": "text/plain",
    }
]
PROMPTS = [
    {
        "name": "greeting",
        "title": "Greeting",
        "description": "Greets someone by name.",
        "arguments": [{"name": "name", "description": "Who to greet", "required": True}],
    },
    {"name": "summary", "title": "Summary", "description": "Asks for a summary."},
]
COMPLETIONS = {
    ("ref/prompt", "greeting", "name"): ["Ada", "Alan", "Grace"],
    ("ref/resource", ITEMS, "id"): ["1", "2", "3"],
}


class NotFound(Exception):
    """No such resource or prompt (the server answers a JSON-RPC error)."""


class Invalid(Exception):
    """A required prompt argument is missing (JSON-RPC invalid params)."""


def add_arguments(parser):
    parser.add_argument("--surface-file", help="JSON resources/templates/prompts, re-read")
    parser.add_argument("--no-surface", action="store_true", help="tools only")
    parser.add_argument("--page-size", type=int, default=0)


def load(args) -> dict:
    """What the peer serves now: ``{"resources", "templates", "prompts"}`` lists."""
    if args.surface_file:
        with open(args.surface_file, encoding="utf-8") as f:
            loaded = json.load(f)
        return {kind: loaded.get(kind, []) for kind in ("resources", "templates", "prompts")}
    return {"resources": RESOURCES, "templates": TEMPLATES, "prompts": PROMPTS}


def cursor_for(offset: int) -> str:
    return base64.urlsafe_b64encode(f"offset:{offset}".encode()).decode()


def offset_of(cursor: str) -> int:
    """:raise Invalid: not a cursor this peer handed out."""
    try:
        kind, _, value = base64.urlsafe_b64decode(cursor.encode()).decode().partition(":")
        if kind != "offset":
            raise ValueError(cursor)
        return int(value)
    except ValueError:
        raise Invalid("Invalid cursor") from None


def page(items: list, cursor: str | None, size: int) -> tuple[list, str | None]:
    """One page of ``items`` (all of them when ``size`` is 0) and the next page's cursor."""
    start = offset_of(cursor) if cursor is not None else 0
    size = size or len(items) or 1
    more = start + size < len(items)
    return items[start : start + size], cursor_for(start + size) if more else None


def _matches(template: str, uri: str) -> dict | None:
    """The variables of ``uri`` under a level-1 URI template (``{name}`` segments), or None."""
    pattern = "".join(
        f"(?P<{part[1:-1]}>[^/]+)" if part.startswith("{") else re.escape(part)
        for part in re.split(r"(\{[A-Za-z0-9_]+\})", template)
        if part
    )
    found = re.fullmatch(pattern, uri)
    return found.groupdict() if found else None


def read(args, uri: str) -> list[dict]:
    """The ``contents`` of ``resources/read`` for ``uri``.

    :raise NotFound: no listed resource or template has it.
    """
    from call_tools import _png  # as the peer scripts import it (tests import this module)

    surface = load(args)
    if any(r.get("uri") == uri for r in surface["resources"]):
        if uri == LOGO:
            return [{"uri": uri, "mimeType": "image/png", "blob": _png(8, 8)}]
        text = "Read me." if uri == README else f"Content of {uri}."
        return [{"uri": uri, "mimeType": "text/plain", "text": text}]
    for template in surface["templates"]:
        found = _matches(template.get("uriTemplate", ""), uri)
        if found is not None:
            item = template["uriTemplate"] == ITEMS
            text = f"Item {found['id']}" if item else f"Content of {uri}."
            return [{"uri": uri, "mimeType": "text/plain", "text": text}]
    raise NotFound(f"Resource not found: {uri}")


def get_prompt(args, name: str, arguments: dict | None) -> dict:
    """The ``prompts/get`` result for ``name``.

    :raise NotFound: no such prompt is listed.
    :raise Invalid: a required argument is missing.
    """
    arguments = arguments or {}
    prompt = next((p for p in load(args)["prompts"] if p.get("name") == name), None)
    if prompt is None:
        raise NotFound(f"Unknown prompt: {name}")
    for argument in prompt.get("arguments") or []:
        if argument.get("required") and argument["name"] not in arguments:
            raise Invalid(f"Missing required argument: {argument['name']}")
    if name == "greeting":
        text = f"Hello, {arguments['name']}!"
    elif name == "summary":
        text = "Summarise the conversation so far."
    else:
        text = f"Prompt {name} with {json.dumps(arguments, sort_keys=True)}"
    message = {"role": "user", "content": {"type": "text", "text": text}}
    return {"description": prompt.get("description"), "messages": [message]}


def complete(ref: dict, argument: dict) -> dict:
    """The ``completion`` of ``completion/complete``: the known values starting with the
    typed prefix (none for an unknown reference)."""
    key = ref.get("name") if ref.get("type") == "ref/prompt" else ref.get("uri")
    known = COMPLETIONS.get((ref.get("type"), key, argument.get("name")), [])
    values = [v for v in known if v.startswith(argument.get("value") or "")]
    return {"values": values, "total": len(values), "hasMore": False}
