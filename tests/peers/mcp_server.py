"""An MCP server on the official SDK's 2.x line, which serves both protocol eras on one
endpoint: ``server/discover`` + stateless requests (2026-07-28) and the ``initialize``
handshake with sessions (2025-xx). Built on the low-level ``Server`` so every list can be
paged (``--page-size``) and re-read from ``--tools-file`` / ``--surface-file`` on every call.

Run: ``python mcp_server.py --port N [--tools 50] [--page-size 100] [--json] [--stateless]
[--bearer TOKEN] [--api-key NAME=VALUE] [--drop] [--slow S] [--ttl-ms MS] [--notify]
[--call-tools] [--listen] [--noisy-surface] [--surface-file F | --no-surface]``;
``tools/call`` answers the
tools of ``call_tools.py`` (listed too with ``--call-tools``); resources, templates, prompts
and completions are ``surface.py``'s. ``--listen`` serves 2026-07-28 ``subscriptions/listen``
(so the modern era declares ``resources.subscribe``), and publishes one
``notifications/resources/updated`` per URI a listen stream asks for, soon after its ack.
``--noisy-surface``: each resources/read and prompts/get sends progress (for the request's
token) and an info log message before its answer, and reading ``peer://items/slow`` counts
slowly (40 steps of 0.25 s, progress at each), counted as a run of ``call_tools.STATS``
(``count_stats``, with ``--call-tools``), so a test sees it cancelled.
"""

import argparse
import asyncio
import contextlib

import call_tools
import mcp_types as types
import surface
import uvicorn
from mcp.server import Server, ServerRequestContext
from mcp.server.subscriptions import InMemorySubscriptionBus, ListenHandler, ResourceUpdated
from mcp.shared.exceptions import MCPError
from mcp_types.version import MODERN_PROTOCOL_VERSIONS
from mcp_wrap import Wrapped, add_arguments


def build(args):
    async def list_tools(ctx: ServerRequestContext, params: types.PaginatedRequestParams | None):
        tools = [types.Tool.model_validate(t) for t in call_tools.served(args)]
        if args.notify:  # a notification before the answer turns it into an SSE stream
            await ctx.session.send_progress_notification(
                "peer", 0.5, message="listing", related_request_id=ctx.request_id
            )
        page, next_cursor = _page(tools, params, args)
        return types.ListToolsResult(
            tools=page, next_cursor=next_cursor, ttl_ms=args.ttl_ms, cache_scope="public"
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

    handlers = {} if args.no_surface else _surface_handlers(args)
    if args.listen:
        handlers["on_subscriptions_listen"] = _listen_handler()
    server = Server("peer", version="1.0.0", on_list_tools=list_tools, on_call_tool=call_tool,
                    **handlers)  # fmt: skip
    app = server.streamable_http_app(json_response=args.json, stateless_http=args.stateless)
    return Wrapped(app, args)


def _page(items, params, args):
    try:
        return surface.page(items, params.cursor if params else None, args.page_size)
    except surface.Invalid as exc:
        raise MCPError(types.INVALID_PARAMS, str(exc)) from None


def _surface_handlers(args) -> dict:
    """The handlers that serve ``surface.py``'s resources, templates, prompts and
    completions; the SDK derives the capabilities from which ones are registered."""

    async def list_resources(ctx, params):
        page, next_cursor = _page(surface.load(args)["resources"], params, args)
        listed = {"resources": page, "nextCursor": next_cursor}
        return types.ListResourcesResult.model_validate(listed)

    async def list_templates(ctx, params):
        page, next_cursor = _page(surface.load(args)["templates"], params, args)
        listed = {"resourceTemplates": page, "nextCursor": next_cursor}
        return types.ListResourceTemplatesResult.model_validate(listed)

    async def list_prompts(ctx, params):
        page, next_cursor = _page(surface.load(args)["prompts"], params, args)
        listed = {"prompts": page, "nextCursor": next_cursor}
        return types.ListPromptsResult.model_validate(listed)

    async def noted(ctx: ServerRequestContext, what: str):
        """``--noisy-surface``: progress for the request's token, and a log message."""
        token = (ctx.meta or {}).get("progress_token")
        if token is not None:
            await ctx.session.send_progress_notification(
                token, 0.5, 1.0, f"working on {what}", related_request_id=ctx.request_id
            )
        await ctx.session.send_log_message("info", f"serving {what}", "peer", ctx.request_id)

    async def slowly(ctx: ServerRequestContext):
        """``peer://items/slow`` with ``--noisy-surface``: a long read, its runs counted."""
        token = (ctx.meta or {}).get("progress_token")
        call_tools.STATS["started"] += 1
        try:
            for step in range(1, 41):
                if token is not None:
                    await ctx.session.send_progress_notification(
                        token, step, 40, f"step {step}", related_request_id=ctx.request_id
                    )
                await asyncio.sleep(0.25)
        except asyncio.CancelledError:
            call_tools.STATS["cancelled"] += 1
            raise
        call_tools.STATS["finished"] += 1

    async def read_resource(ctx: ServerRequestContext, params: types.ReadResourceRequestParams):
        if args.noisy_surface:
            await noted(ctx, str(params.uri))
            if str(params.uri) == "peer://items/slow":
                await slowly(ctx)
        try:
            contents = surface.read(args, str(params.uri))
        except surface.NotFound as exc:
            # [26/server/resources#error-handling] -32602 since 2026-07-28 (-32002 retired);
            # [25N/server/resources#error-handling] -32002 before.
            modern = ctx.protocol_version in MODERN_PROTOCOL_VERSIONS
            raise MCPError(types.INVALID_PARAMS if modern else -32002, str(exc)) from None
        return types.ReadResourceResult.model_validate({"contents": contents})

    async def get_prompt(ctx, params: types.GetPromptRequestParams):
        if args.noisy_surface:
            await noted(ctx, params.name)
        try:
            result = surface.get_prompt(args, params.name, params.arguments)
        except (surface.NotFound, surface.Invalid) as exc:
            raise MCPError(types.INVALID_PARAMS, str(exc)) from None
        return types.GetPromptResult.model_validate(result)

    async def complete(ctx, params: types.CompleteRequestParams):
        ref = params.ref.model_dump(by_alias=True, mode="json")
        argument = params.argument.model_dump(by_alias=True, mode="json")
        completion = surface.complete(ref, argument)
        return types.CompleteResult.model_validate({"completion": completion})

    async def subscribe(ctx: ServerRequestContext, params: types.SubscribeRequestParams):
        # Legacy only: one notifications/resources/updated on the session's GET stream,
        # soon after the answer (so the client has its GET stream open by then).
        async def updated():
            await asyncio.sleep(0.3)
            with contextlib.suppress(Exception):  # the session may be gone by then
                await ctx.session.send_resource_updated(str(params.uri))

        task = asyncio.get_running_loop().create_task(updated())
        _tasks.add(task)
        task.add_done_callback(_tasks.discard)
        return types.EmptyResult()

    async def unsubscribe(ctx, params: types.UnsubscribeRequestParams):
        return types.EmptyResult()

    return {
        "on_list_resources": list_resources,
        "on_list_resource_templates": list_templates,
        "on_read_resource": read_resource,
        "on_subscribe_resource": subscribe,
        "on_unsubscribe_resource": unsubscribe,
        "on_list_prompts": list_prompts,
        "on_get_prompt": get_prompt,
        "on_completion": complete,
    }


def _listen_handler():
    """``subscriptions/listen`` over the SDK's in-memory bus; each URI asked for gets one
    update 0.3 s after the stream opens (the SDK sends the ack first)."""
    bus = InMemorySubscriptionBus()
    listen = ListenHandler(bus)

    async def handler(ctx, params: types.SubscriptionsListenRequestParams):
        uris = list(params.notifications.resource_subscriptions or ())

        async def updated():
            await asyncio.sleep(0.3)
            for uri in uris:
                await bus.publish(ResourceUpdated(uri=uri))

        task = asyncio.get_running_loop().create_task(updated())
        _tasks.add(task)
        task.add_done_callback(_tasks.discard)
        return await listen(ctx, params)

    return handler


_tasks = set()  # the pending resources/updated notifications (a task needs a reference)


def main():
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    surface.add_arguments(parser)
    parser.add_argument("--ttl-ms", type=int, default=0)
    parser.add_argument("--notify", action="store_true", help="progress before tools/list")
    parser.add_argument("--call-tools", action="store_true", help="list call_tools.TOOLS too")
    parser.add_argument("--listen", action="store_true", help="serve subscriptions/listen")
    parser.add_argument("--noisy-surface", action="store_true",
                        help="progress and a log message before each read and get")  # fmt: skip
    args = parser.parse_args()
    uvicorn.run(build(args), host="127.0.0.1", port=args.port, log_level="warning")


if __name__ == "__main__":
    main()
