"""An operator's call of one of an agent's tools, made as the agent (the try-it console).

It takes the steps an agent's ``tools/call`` takes through the gateway (``gateway.dispatch``):
the agent's catalog (its effective tools, under the names its ``tools/list`` gives them), the
same refusals in the same words (not one of its tools, a definition held back until reviewed),
then the agent's credential through ``calls.call_tool`` — the path the data plane takes when
it calls through the synchronous client: refresh, one retry after a 401, scrubbing, a refused
credential moving its holder's state — the connection's last call, and one call log row,
which names the operator who made it instead of a key.
"""

import base64
import binascii
import json
import time
from dataclasses import dataclass, field

from .. import requestlog
from ..models import Agent, utcnow
from . import calllog, calls
from . import gateway as service
from .calllog import Outcome

# Images shown in the page (as data: URLs; the CSP allows data: images and nothing else from
# them): raster types only, up to this many base64 characters (about 6 MB).
IMAGE_TYPES = frozenset({"image/png", "image/jpeg", "image/gif", "image/webp"})
MAX_IMAGE_CHARS = 8_000_000


@dataclass
class Part:
    """One piece of a result's content as the page shows it: ``text`` (the upstream's words),
    ``image`` (``src``: a data: URL of a checked image), or ``note`` (our words about a piece
    not shown as it is)."""

    kind: str
    text: str = ""
    src: str | None = None


@dataclass
class Trial:
    """How the operator's call ended, ready to show."""

    tool: str
    arguments: dict
    outcome: Outcome
    is_error: bool
    parts: list[Part]
    structured: str | None  # structuredContent, as indented JSON
    logs: list[str] = field(default_factory=list)  # the tool's log messages, one line each
    request_id: str | None = None
    total_ms: float = 0.0
    upstream_ms: float | None = None

    @property
    def sent(self) -> str:
        """The arguments sent, as indented JSON."""
        return json.dumps(self.arguments, indent=2, ensure_ascii=False)


def catalog(agent: Agent) -> service.Catalog:
    """The agent's tools as the gateway resolves them (built afresh: no version is read)."""
    return service.catalog(service.AgentView(agent.id, agent.name, agent.keep_tool_names))


def call(agent: Agent, tool: str, arguments: dict, operator: str) -> Trial:
    """Call the agent's tool named ``tool`` (its exposed name) with ``arguments``, as the
    agent; the call log row names ``operator``. Never raises for the call's sake: a refusal
    or a failure is an ``isError`` result with the sentence the agent would read.

    Like an agent's call it commits nothing but a token refresh (``tokens``); the caller
    commits what changed (a holder's state, the connection's last call, the era) afterwards.
    """
    started = time.monotonic()
    size = len(json.dumps({"name": tool, "arguments": arguments}, ensure_ascii=False).encode())
    row = calllog.Call(requestlog.current(), agent.id, agent.name, None, None, tool, size,
                       operator_name=operator)  # fmt: skip
    logs: list[str] = []
    upstream_ms = None
    entry = catalog(agent).entries.get(tool)
    if entry is None:
        outcome = _refused(Outcome.NOT_ALLOWED, service.unknown_tool(tool, agent.name))
    else:
        row.connector_id, row.connector_name = entry.connection.connector_id, entry.connector_name
        row.upstream_tool = entry.tool.name
        if entry.changed:
            outcome = _refused(Outcome.DEFINITION_CHANGED, entry.held_back(agent.name))
        else:
            outcome = _upstream(agent, entry, arguments, row, logs)
            upstream_ms = outcome.upstream_ms
        service.record_call(entry, outcome.error, utcnow())
    total_ms = (time.monotonic() - started) * 1000
    result = outcome.result
    response_bytes = len(json.dumps(result, ensure_ascii=False, default=str).encode())
    calllog.record(row, outcome.kind, outcome.error, total_ms, upstream_ms, response_bytes)
    structured = result.get("structuredContent")
    return Trial(
        tool, arguments, Outcome(outcome.kind), result.get("isError") is True, parts(result),
        None if structured is None else json.dumps(structured, indent=2, ensure_ascii=False),
        logs, row.request_id, total_ms, upstream_ms,
    )  # fmt: skip


def _refused(kind: Outcome, text: str) -> calls.Outcome:
    return calls.Outcome({"content": [{"type": "text", "text": text}], "isError": True}, text,
                         kind, 0.0)  # fmt: skip


def _upstream(agent, entry, arguments, row, logs) -> calls.Outcome:
    connector, connection, input_schema = service.call_target(entry)
    if connector.log_arguments:
        row.arguments = calllog.redact(arguments)
    row.era = connector.protocol_era
    updates = calls.call_tool(connector, connection if connector.per_agent else None, agent,
                              entry.tool.name, arguments, input_schema=input_schema)  # fmt: skip
    try:
        for item in updates:
            if isinstance(item, calls.Outcome):
                return item
            logs.append(_log_line(item))
    finally:
        updates.close()
    raise AssertionError("calls.call_tool ends with an Outcome")  # pragma: no cover


def _log_line(message: dict) -> str:
    params = message.get("params") if isinstance(message.get("params"), dict) else {}
    data = params.get("data")
    text = data if isinstance(data, str) else json.dumps(data, ensure_ascii=False)
    return f"{params.get('level', 'info')}: {text}"


def parts(result: dict) -> list[Part]:
    """The result's ``content`` as the page shows it: text as text, a checked raster image as
    a data: URL, anything else described in a note (links are text, never followed)."""
    content = result.get("content")
    return [_part(c) for c in content if isinstance(c, dict)] if isinstance(content, list) else []


def _part(item: dict) -> Part:
    kind = item.get("type")
    if kind == "text":
        return Part("text", str(item.get("text", "")))
    if kind == "image":
        return _image(item)
    if kind == "resource_link":
        name = item.get("title") or item.get("name") or "resource"
        return Part("note", f"Link to {name}: {item.get('uri', '')} ({item.get('mimeType', '')})")
    if kind == "resource":
        resource = item.get("resource") if isinstance(item.get("resource"), dict) else {}
        if isinstance(resource.get("text"), str):
            return Part("text", f"{resource.get('uri', '')}:\n{resource['text']}")
        blob = resource.get("blob")
        size = len(blob) * 3 // 4 if isinstance(blob, str) else 0
        return Part("note", f"Resource {resource.get('uri', '')}: about {size} bytes of "
                            f"{resource.get('mimeType', 'binary data')}, not shown.")  # fmt: skip
    if kind == "audio":
        return Part("note", f"Audio ({item.get('mimeType', 'unknown type')}), not played here.")
    return Part("note", f"Content of type {str(kind)[:40]}, not shown.")


def _image(item: dict) -> Part:
    mime, data = item.get("mimeType"), item.get("data")
    if mime not in IMAGE_TYPES or not isinstance(data, str) or len(data) > MAX_IMAGE_CHARS:
        return Part("note", f"An image ({str(mime)[:60]}) that is not shown here: only PNG, "
                            "JPEG, GIF and WebP images up to 6 MB are.")  # fmt: skip
    data = "".join(data.split())
    try:
        base64.b64decode(data, validate=True)
    except (binascii.Error, ValueError):
        return Part("note", "An image whose data is not valid base64, not shown.")
    return Part("image", f"Image ({mime})", f"data:{mime};base64,{data}")
