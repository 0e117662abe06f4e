"""What the MCP peers share, whichever SDK line runs them (imports no ``mcp``): generated tool
definitions, and an ASGI wrapper that counts requests, checks a credential, and can misbehave
on ``tools/list`` (drop the connection mid-stream, or answer slowly).

``GET /_stats`` answers ``{"requests": [[http_method, jsonrpc_method_or_null], ...]}`` for
every request the MCP endpoint received, so tests assert on what the peer saw. ``POST
/_accept`` with ``{"bearer": ..., "api_key": "NAME=VALUE"}`` changes the credential the peer
accepts from then on (a token revoked, or replaced, under the client's feet).
"""

import asyncio
import json


def generated_tools(count: int, variant: str = "") -> list[dict]:
    """``count`` tool definitions named ``tool_000``…; ``variant`` changes every description."""
    return [
        {
            "name": f"tool_{i:03d}",
            "title": f"Tool {i}",
            "description": f"Does thing number {i}.{variant}",
            "inputSchema": {
                "type": "object",
                "properties": {"text": {"type": "string", "description": "What to work on"}},
                "required": ["text"],
            },
            "annotations": {"readOnlyHint": i % 2 == 0},
        }
        for i in range(count)
    ]


def load_tools(args) -> list[dict]:
    """The tool list the peer serves now: read from ``--tools-file`` on every call (tests
    rewrite it between syncs), else ``--tools`` generated ones."""
    if args.tools_file:
        with open(args.tools_file, encoding="utf-8") as f:
            return json.load(f)
    return generated_tools(args.tools)


def add_arguments(parser):
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--tools", type=int, default=3)
    parser.add_argument("--tools-file")
    parser.add_argument("--json", action="store_true", help="answer JSON, not SSE")
    parser.add_argument("--stateless", action="store_true")
    parser.add_argument("--bearer", help="require Authorization: Bearer <this>")
    parser.add_argument("--api-key", help="require NAME=VALUE as a request header")
    parser.add_argument("--key-refusal", type=int, default=403, help="status for a wrong key")
    parser.add_argument("--drop", action="store_true", help="cut tools/list answers short")
    parser.add_argument("--slow", type=float, default=0.0, help="seconds before tools/list")


class Wrapped:
    """ASGI middleware around the SDK's Starlette app (see the module docstring)."""

    def __init__(self, app, args, path="/mcp"):
        self.app, self.args, self.path = app, args, path
        self.requests = []

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        if scope["path"] == "/_stats":
            return await _answer(send, 200, {"requests": self.requests})
        if scope["path"] == "/_accept":
            accepted = json.loads((await receive()).get("body") or b"{}")
            for name in ("bearer", "api_key"):
                if name in accepted:
                    setattr(self.args, name, accepted[name])
            return await _answer(send, 200, accepted)
        if scope["path"] != self.path:
            return await self.app(scope, receive, send)

        body, more = b"", True
        while more:
            message = await receive()
            body += message.get("body", b"")
            more = message.get("more_body", False)
        try:
            rpc_method = json.loads(body).get("method") if body else None
        except (ValueError, AttributeError):
            rpc_method = None
        self.requests.append([scope["method"], rpc_method])

        refusal = self._refusal(scope)
        if refusal:
            return await _answer(send, *refusal)
        if rpc_method == "tools/list" and self.args.slow:
            await asyncio.sleep(self.args.slow)
        if rpc_method == "tools/list" and self.args.drop:
            return await _drop(send)

        replayed = False

        async def replay():
            nonlocal replayed
            if replayed:
                return await receive()
            replayed = True
            return {"type": "http.request", "body": body, "more_body": False}

        await self.app(scope, replay, send)

    def _refusal(self, scope):
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        if self.args.bearer and headers.get("authorization") != f"Bearer {self.args.bearer}":
            return 401, {"error": "invalid_token"}, [(b"www-authenticate", b'Bearer realm="peer"')]
        if self.args.api_key:
            name, _, value = self.args.api_key.partition("=")
            if headers.get(name.lower()) != value:
                return self.args.key_refusal, {"error": "forbidden"}, []
        return None


async def _answer(send, status, payload, headers=()):
    body = json.dumps(payload).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [(b"content-type", b"application/json"), *headers],
        }
    )
    await send({"type": "http.response.body", "body": body})


class Dropped(Exception):
    """Raised on purpose so the server closes the connection mid-answer."""


async def _drop(send):
    await send(
        {
            "type": "http.response.start",
            "status": 200,
            "headers": [(b"content-type", b"text/event-stream")],
        }
    )
    await send(
        {
            "type": "http.response.body",
            "body": b'event: message\r\ndata: {"jsonrpc": "2.0", "id"',
            "more_body": True,
        }
    )
    raise Dropped("connection dropped on purpose")
