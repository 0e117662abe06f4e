"""Tools both MCP peers answer on ``tools/call``, whichever SDK line runs them (imports no
``mcp``). They are callable always and listed only with ``--call-tools``, so the tool lists
other tests count stay as they were.

- ``count(steps=3, delay=0.2)``: one ``notifications/progress`` per step (when the call carries
  a ``progressToken``) and a log message, ``delay`` seconds apart, then ``"counted N"``.
  Started, finished and cancelled runs are counted.
- ``count_stats()``: those counters, as ``structuredContent``.
- ``weather(city)``: text ``content`` plus ``structuredContent`` matching its
  ``outputSchema``, and a ``_meta`` entry.
- ``fail(text)``: a result with ``isError: true``.
- ``refuse(text)``: a JSON-RPC error whose message echoes the request's credential headers,
  as a careless server might; whoever relays it must scrub them.
- ``picture()`` and ``echo(...)``, callable but never listed (a console test lists them with
  ``--tools-file``): a small PNG as image content; the arguments back as ``structuredContent``.
- ``locate(place: {region})``: ``region`` carries ``x-mcp-header: Region``; answers the
  ``Mcp-Param-Region`` header it got (a modern 2.x peer also checks it against the body).
- ``mirror()``, callable but never listed (the bench counts the listed ones): a result whose
  ``structuredContent`` has each credential header's value as a key, and that value less its
  last 3 characters as another; its text repeats the value less its first 3.
"""

import asyncio
import base64
import struct
import zlib

STATS = {"started": 0, "finished": 0, "cancelled": 0}
CREDENTIAL_HEADERS = ("authorization", "x-api-key")

TOOLS = [
    {
        "name": "count",
        "description": "Counts slowly, reporting progress at each step.",
        "inputSchema": {
            "type": "object",
            "properties": {"steps": {"type": "integer"}, "delay": {"type": "number"}},
        },
    },
    {
        "name": "count_stats",
        "description": "How many counts started, finished and were cancelled.",
        "inputSchema": {"type": "object", "properties": {}},
    },
    {
        "name": "weather",
        "description": "The weather in a city, as text and as structured data.",
        "inputSchema": {
            "type": "object",
            "properties": {"city": {"type": "string"}},
            "required": ["city"],
        },
        "outputSchema": {
            "type": "object",
            "properties": {"city": {"type": "string"}, "celsius": {"type": "number"}},
            "required": ["city", "celsius"],
        },
    },
    {
        "name": "fail",
        "description": "Always fails, as a tool result with isError.",
        "inputSchema": {"type": "object", "properties": {"text": {"type": "string"}}},
    },
    {
        "name": "refuse",
        "description": "Answers a JSON-RPC error that repeats the request's credential.",
        "inputSchema": {"type": "object", "properties": {"text": {"type": "string"}}},
    },
    {
        "name": "locate",
        "description": "Says which region header it received.",
        "inputSchema": {
            "type": "object",
            "properties": {
                "place": {
                    "type": "object",
                    "properties": {"region": {"type": "string", "x-mcp-header": "Region"}},
                }
            },
        },
    },
]
NAMES = {tool["name"] for tool in TOOLS}
# The console's tools (listed with ``--tools-file``): a form of every kind, and a picture.
CONSOLE_TOOLS = [
    {
        "name": "echo",
        "description": "Sends its arguments back as structured content.",
        "inputSchema": {
            "type": "object",
            "properties": {
                "city": {"type": "string", "title": "City"},
                "days": {"type": "integer", "minimum": 1, "maximum": 14},
                "metric": {"type": "boolean"},
                "unit": {"enum": ["celsius", "fahrenheit"]},
                "tags": {"type": "array", "items": {"type": "string"}},
                "place": {"type": "object", "properties": {"region": {"type": "string"}}},
            },
            "required": ["city"],
        },
    },
    {
        "name": "picture",
        "description": "A small picture.",
        "inputSchema": {"type": "object", "properties": {}},
        "annotations": {"readOnlyHint": True},
    },
]


def served(args) -> list[dict]:
    """The peer's tool list: ``mcp_wrap.load_tools``, then ``TOOLS`` with ``--call-tools``."""
    from mcp_wrap import load_tools  # as the peer scripts import it (tests import this module)

    return load_tools(args) + (TOOLS if args.call_tools else [])


class Refusal(Exception):
    """Answer the call with this JSON-RPC error."""

    def __init__(self, code: int, message: str):
        super().__init__(message)
        self.code, self.message = code, message


def _text(text: str) -> list[dict]:
    return [{"type": "text", "text": text}]


async def run(name: str, arguments: dict, progress, log, headers: dict) -> dict:
    """The ``CallToolResult`` (wire names) of tool ``name``.

    :param progress: ``async (done, total, message)``, a no-op without a progress token.
    :param log: ``async (text)``, a ``notifications/message`` where the SDK sends one.
    :param headers: the HTTP request's headers, names in lower case.
    :raise Refusal: the call gets a JSON-RPC error.
    """
    if name == "count":
        steps, delay = int(arguments.get("steps", 3)), float(arguments.get("delay", 0.2))
        STATS["started"] += 1
        try:
            for step in range(1, steps + 1):
                await progress(step, steps, f"step {step} of {steps}")
                await log(f"counted {step}")
                await asyncio.sleep(delay)
        except asyncio.CancelledError:
            STATS["cancelled"] += 1
            raise
        STATS["finished"] += 1
        return {"content": _text(f"counted {steps}")}
    if name == "count_stats":
        return {"content": _text(str(STATS)), "structuredContent": dict(STATS)}
    if name == "weather":
        city = str(arguments.get("city", ""))
        return {
            "content": _text(f"{city}: 21.5 °C"),
            "structuredContent": {"city": city, "celsius": 21.5},
            "_meta": {"peer/source": "made up"},
        }
    if name == "fail":
        return {"content": _text(f"it failed: {arguments.get('text', '')}"), "isError": True}
    if name == "refuse":
        sent = ", ".join(f"{k}={headers[k]}" for k in CREDENTIAL_HEADERS if k in headers)
        raise Refusal(-32603, f"refused {arguments.get('text', '')}; you sent {sent}")
    if name == "mirror":
        sent = [headers[k] for k in CREDENTIAL_HEADERS if k in headers]
        return {
            "content": _text(" ".join(value[3:] for value in sent)),
            "structuredContent": {key: "sent" for value in sent for key in (value, value[:-3])},
        }
    if name == "picture":
        image = {"type": "image", "mimeType": "image/png", "data": _png()}
        return {"content": [*_text("a test card"), image]}
    if name == "echo":
        return {"content": _text("echoed"), "structuredContent": {"received": arguments}}
    if name == "locate":
        return {"content": _text(f"Mcp-Param-Region: {headers.get('mcp-param-region')}")}
    raise Refusal(-32602, f"Unknown tool: {name}")


def _png(width: int = 48, height: int = 24) -> str:
    """A small PNG (three colour bands), base64-encoded."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

    bands = [(220, 38, 38), (22, 163, 74), (37, 99, 235)]
    rows = b"".join(
        b"\0" + b"".join(bytes(bands[x * 3 // width]) for x in range(width)) for _ in range(height)
    )
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    png = b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(rows))
    return base64.b64encode(png + chunk(b"IEND", b"")).decode()
