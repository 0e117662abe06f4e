"""An MCP server on the official SDK's 2.x line, which serves both protocol eras on one
endpoint: ``server/discover`` + stateless requests (2026-07-28) and the ``initialize``
handshake with sessions (2025-xx). Built on the low-level ``Server`` so ``tools/list`` can be
paged (``--page-size``) and the list re-read from ``--tools-file`` on every call.

Run: ``python mcp_server.py --port N [--tools 50] [--page-size 100] [--json] [--stateless]
[--bearer TOKEN] [--api-key NAME=VALUE] [--drop] [--slow S] [--ttl-ms MS] [--notify]
[--call-tools]``; ``tools/call`` answers the tools of ``call_tools.py`` (listed too with
``--call-tools``).
"""

import argparse
import base64

import call_tools
import mcp_types as types
import uvicorn
from mcp.server import Server, ServerRequestContext
from mcp.shared.exceptions import MCPError
from mcp_wrap import Wrapped, add_arguments


def cursor_for(offset: int) -> str:
    return base64.urlsafe_b64encode(f"offset:{offset}".encode()).decode()


def offset_of(cursor: str) -> int:
    try:
        kind, _, value = base64.urlsafe_b64decode(cursor.encode()).decode().partition(":")
        if kind != "offset":
            raise ValueError(cursor)
        return int(value)
    except ValueError:
        raise MCPError(types.INVALID_PARAMS, "Invalid cursor") from None


def build(args):
    async def list_tools(ctx: ServerRequestContext, params: types.PaginatedRequestParams | None):
        tools = [types.Tool.model_validate(t) for t in call_tools.served(args)]
        if args.notify:  # a notification before the answer turns it into an SSE stream
            await ctx.session.send_progress_notification(
                "peer", 0.5, message="listing", related_request_id=ctx.request_id
            )
        start = offset_of(params.cursor) if params and params.cursor is not None else 0
        size = args.page_size or len(tools) or 1
        page = tools[start : start + size]
        more = start + size < len(tools)
        return types.ListToolsResult(
            tools=page,
            next_cursor=cursor_for(start + size) if more else None,
            ttl_ms=args.ttl_ms,
            cache_scope="public",
        )

    async def call_tool(ctx: ServerRequestContext, params: types.CallToolRequestParams):
        token = (ctx.meta or {}).get("progress_token")
        headers = {k.lower(): v for k, v in ctx.request.headers.items()} if ctx.request else {}

        async def progress(done, total, message):
            if token is not None:
                await ctx.session.send_progress_notification(
                    token, done, total, message, related_request_id=ctx.request_id
                )

        async def log(text):
            await ctx.session.send_log_message("info", text, "peer", ctx.request_id)

        try:
            result = await call_tools.run(params.name, params.arguments or {}, progress, log,
                                          headers)  # fmt: skip
        except call_tools.Refusal as exc:
            raise MCPError(exc.code, exc.message) from None
        return types.CallToolResult.model_validate(result)

    server = Server("peer", version="1.0.0", on_list_tools=list_tools, on_call_tool=call_tool)
    app = server.streamable_http_app(json_response=args.json, stateless_http=args.stateless)
    return Wrapped(app, args)


def main():
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    parser.add_argument("--page-size", type=int, default=0)
    parser.add_argument("--ttl-ms", type=int, default=0)
    parser.add_argument("--notify", action="store_true", help="progress before tools/list")
    parser.add_argument("--call-tools", action="store_true", help="list call_tools.TOOLS too")
    args = parser.parse_args()
    uvicorn.run(build(args), host="127.0.0.1", port=args.port, log_level="warning")


if __name__ == "__main__":
    main()
