"""A legacy-only MCP server: the official SDK's 1.x line (1.30.0, installed into
``.venv-mcp1`` by ``scripts/test``) only knows the ``initialize`` handshake, so
``server/discover`` gets a JSON-RPC error and clients must fall back.

Run with ``.venv-mcp1/bin/python``: ``mcp_legacy_server.py --port N [--tools 3]
[--tools-file F] [--page-size N] [--json] [--stateless] [--bearer T] [--api-key NAME=VALUE]
[--call-tools] [--surface-file F | --no-surface]``; ``tools/call`` answers the tools of
``call_tools.py`` (listed too with ``--call-tools``); resources, templates, prompts and
completions are ``surface.py``'s.
"""

import argparse
import asyncio
import contextlib

import call_tools
import mcp.types as types
import surface
import uvicorn
from mcp.server.lowlevel import Server
from mcp.server.streamable_http_manager import StreamableHTTPSessionManager
from mcp.server.transport_security import TransportSecuritySettings
from mcp.shared.exceptions import McpError
from mcp_wrap import Wrapped, add_arguments
from starlette.applications import Starlette
from starlette.routing import Route


class SubscribingServer(Server):
    """1.30.0 declares ``resources.subscribe: false`` whatever is registered; this one says
    true when ``resources/subscribe`` is handled."""

    def get_capabilities(self, notification_options, experimental_capabilities):
        capabilities = super().get_capabilities(notification_options, experimental_capabilities)
        if capabilities.resources and types.SubscribeRequest in self.request_handlers:
            capabilities.resources.subscribe = True
        return capabilities


def _listed(args, request, items, result_type, key):
    try:
        page, next_cursor = surface.page(items, request.params.cursor if request.params else None,
                                         args.page_size)  # fmt: skip
    except surface.Invalid as exc:
        raise McpError(types.ErrorData(code=types.INVALID_PARAMS, message=str(exc))) from None
    return types.ServerResult(result_type.model_validate({key: page, "nextCursor": next_cursor}))


def build(args):
    server = SubscribingServer("legacy-peer", version="1.0.0")

    async def list_tools(request: types.ListToolsRequest) -> types.ServerResult:
        tools = call_tools.served(args)
        return _listed(args, request, tools, types.ListToolsResult, "tools")

    server.request_handlers[types.ListToolsRequest] = list_tools
    if not args.no_surface:
        _serve_surface(server, args)

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


def _serve_surface(server, args):
    """Handlers for ``surface.py``'s resources, templates, prompts and completions,
    registered directly so the lists can be paged."""

    async def list_resources(request: types.ListResourcesRequest) -> types.ServerResult:
        resources = surface.load(args)["resources"]
        return _listed(args, request, resources, types.ListResourcesResult, "resources")

    async def list_templates(request: types.ListResourceTemplatesRequest) -> types.ServerResult:
        templates = surface.load(args)["templates"]
        return _listed(args, request, templates, types.ListResourceTemplatesResult,
                       "resourceTemplates")  # fmt: skip

    async def list_prompts(request: types.ListPromptsRequest) -> types.ServerResult:
        prompts = surface.load(args)["prompts"]
        return _listed(args, request, prompts, types.ListPromptsResult, "prompts")

    async def read_resource(request: types.ReadResourceRequest) -> types.ServerResult:
        try:
            contents = surface.read(args, str(request.params.uri))
        except surface.NotFound as exc:
            # [25N/server/resources#error-handling] resource not found: -32002
            raise McpError(types.ErrorData(code=-32002, message=str(exc))) from None
        return types.ServerResult(types.ReadResourceResult.model_validate({"contents": contents}))

    async def get_prompt(request: types.GetPromptRequest) -> types.ServerResult:
        params = request.params
        try:
            result = surface.get_prompt(args, params.name, params.arguments)
        except (surface.NotFound, surface.Invalid) as exc:
            raise McpError(types.ErrorData(code=types.INVALID_PARAMS, message=str(exc))) from None
        return types.ServerResult(types.GetPromptResult.model_validate(result))

    async def complete(request: types.CompleteRequest) -> types.ServerResult:
        ref = request.params.ref.model_dump(by_alias=True, mode="json")
        argument = request.params.argument.model_dump(by_alias=True, mode="json")
        completion = surface.complete(ref, argument)
        return types.ServerResult(types.CompleteResult.model_validate({"completion": completion}))

    async def subscribe(request: types.SubscribeRequest) -> types.ServerResult:
        # One notifications/resources/updated on the session's GET stream, soon after the
        # answer (so the client has its GET stream open by then).
        session, uri = server.request_context.session, str(request.params.uri)

        async def updated():
            await asyncio.sleep(0.3)
            with contextlib.suppress(Exception):  # the session may be gone by then
                await session.send_resource_updated(uri)

        task = asyncio.get_running_loop().create_task(updated())
        _tasks.add(task)
        task.add_done_callback(_tasks.discard)
        return types.ServerResult(types.EmptyResult())

    async def unsubscribe(request: types.UnsubscribeRequest) -> types.ServerResult:
        return types.ServerResult(types.EmptyResult())

    server.request_handlers.update(
        {
            types.ListResourcesRequest: list_resources,
            types.ListResourceTemplatesRequest: list_templates,
            types.ReadResourceRequest: read_resource,
            types.SubscribeRequest: subscribe,
            types.UnsubscribeRequest: unsubscribe,
            types.ListPromptsRequest: list_prompts,
            types.GetPromptRequest: get_prompt,
            types.CompleteRequest: complete,
        }
    )


_tasks = set()  # the pending resources/updated notifications (a task needs a reference)


def main():
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    parser.add_argument("--call-tools", action="store_true", help="list call_tools.TOOLS too")
    surface.add_arguments(parser)
    args = parser.parse_args()
    uvicorn.run(build(args), host="127.0.0.1", port=args.port, log_level="warning")


if __name__ == "__main__":
    main()
