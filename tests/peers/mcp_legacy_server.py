"""A legacy-only MCP server: the official SDK's 1.x line (1.30.0, installed into
``.venv-mcp1`` by ``scripts/test``) only knows the ``initialize`` handshake, so
``server/discover`` gets a JSON-RPC error and clients must fall back.

Run with ``.venv-mcp1/bin/python``: ``mcp_legacy_server.py --port N [--tools 3]
[--tools-file F] [--json] [--stateless] [--bearer T] [--api-key NAME=VALUE]``
"""

import argparse
import contextlib

import mcp.types as types
import uvicorn
from mcp.server.lowlevel import Server
from mcp.server.streamable_http_manager import StreamableHTTPSessionManager
from mcp.server.transport_security import TransportSecuritySettings
from mcp_wrap import Wrapped, add_arguments, load_tools
from starlette.applications import Starlette
from starlette.routing import Route


def build(args):
    server = Server("legacy-peer", version="1.0.0")

    @server.list_tools()
    async def list_tools() -> list[types.Tool]:
        return [types.Tool.model_validate(t) for t in load_tools(args)]

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
    args = parser.parse_args()
    uvicorn.run(build(args), host="127.0.0.1", port=args.port, log_level="warning")


if __name__ == "__main__":
    main()
