"""A legacy-only MCP server: the official SDK's 1.x line (1.30.0, installed into
``.venv-mcp1`` by ``scripts/test``) only knows the ``initialize`` handshake, so
``server/discover`` gets a JSON-RPC error and clients must fall back.

Run with ``.venv-mcp1/bin/python``: ``mcp_legacy_server.py --port N [--tools 3]
[--tools-file F] [--json] [--stateless] [--bearer T] [--api-key NAME=VALUE] [--call-tools]``;
``tools/call`` answers the tools of ``call_tools.py`` (listed too with ``--call-tools``).
"""

import argparse
import contextlib

import call_tools
import mcp.types as types
import uvicorn
from mcp.server.lowlevel import Server
from mcp.server.streamable_http_manager import StreamableHTTPSessionManager
from mcp.server.transport_security import TransportSecuritySettings
from mcp.shared.exceptions import McpError
from mcp_wrap import Wrapped, add_arguments
from starlette.applications import Starlette
from starlette.routing import Route


def build(args):
    server = Server("legacy-peer", version="1.0.0")

    @server.list_tools()
    async def list_tools() -> list[types.Tool]:
        return [types.Tool.model_validate(t) for t in call_tools.served(args)]

    async def call_tool(request: types.CallToolRequest) -> types.ServerResult:
        # Registered directly, not with ``@server.call_tool()``, which turns every exception
        # into an ``isError`` result: ``refuse`` must answer a JSON-RPC error.
        name, arguments = request.params.name, request.params.arguments
        context = server.request_context
        token = context.meta.progressToken if context.meta else None
        request = context.request
        headers = {k.lower(): v for k, v in request.headers.items()} if request else {}

        async def progress(done, total, message):
            if token is not None:
                await context.session.send_progress_notification(
                    token, done, total, message, related_request_id=context.request_id
                )

        async def log(text):
            await context.session.send_log_message("info", text, "peer", context.request_id)

        try:
            result = await call_tools.run(name, arguments or {}, progress, log, headers)
        except call_tools.Refusal as exc:
            raise McpError(types.ErrorData(code=exc.code, message=exc.message)) from None
        return types.ServerResult(types.CallToolResult.model_validate(result))

    server.request_handlers[types.CallToolRequest] = call_tool

    manager = StreamableHTTPSessionManager(
        app=server,
        json_response=args.json,
        stateless=args.stateless,
        security_settings=TransportSecuritySettings(
            enable_dns_rebinding_protection=True,
            allowed_hosts=["127.0.0.1:*", "localhost:*"],
            allowed_origins=["http://127.0.0.1:*", "http://localhost:*"],
        ),
    )

    @contextlib.asynccontextmanager
    async def lifespan(app):
        async with manager.run():
            yield

    class Endpoint:  # an ASGI app, so Starlette routes /mcp to it without a redirect
        async def __call__(self, scope, receive, send):
            await manager.handle_request(scope, receive, send)

    routes = [Route("/mcp", endpoint=Endpoint(), methods=["GET", "POST", "DELETE"])]
    app = Starlette(routes=routes, lifespan=lifespan)
    return Wrapped(app, args)


def main():
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    parser.add_argument("--call-tools", action="store_true", help="list call_tools.TOOLS too")
    args = parser.parse_args()
    uvicorn.run(build(args), host="127.0.0.1", port=args.port, log_level="warning")


if __name__ == "__main__":
    main()
