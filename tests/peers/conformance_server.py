"""The upstream the official conformance suite is run through: an MCP server on the SDK's 2.x
line (both eras on one endpoint) serving the test tools the suite's server scenarios call,
with the names, arguments and results those scenarios check
(``@modelcontextprotocol/conformance`` 0.2.0-alpha.12), plus a few the real-client tests use:

- ``echo`` returns its ``text`` as text and as ``structuredContent`` (declares an output schema);
- ``slow_progress`` sends ``steps`` progress notifications ``delay`` seconds apart, then
  answers; a client cancels it after the first one.

Declined by the gateway, so not served here: resources, prompts, completion, sampling and
elicitation. ``logging/setLevel`` is answered (the legacy logging scenario sets a level first).

Run: ``python conformance_server.py --port N [--bearer TOKEN] [--json] [--stateless]``
"""

import argparse
import asyncio
import base64
import struct
import warnings

import mcp_types as types
import uvicorn
from mcp.server import Server, ServerRequestContext
from mcp.shared.exceptions import MCPError
from mcp_wrap import Wrapped, add_arguments

# A 1x1 red PNG, as the suite suggests.
RED_PIXEL_PNG = (
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8DwHwAFBQIAX8jx0gAAAABJRU5ErkJggg"
    "=="
)


def silent_wav() -> str:
    """A valid 8 kHz mono 8-bit WAV of 8 silent samples, base64."""
    samples = b"\x80" * 8
    header = b"RIFF" + struct.pack("<I", 36 + len(samples)) + b"WAVE"
    fmt = b"fmt " + struct.pack("<IHHIIHH", 16, 1, 1, 8000, 8000, 1, 8)
    data = b"data" + struct.pack("<I", len(samples)) + samples
    return base64.b64encode(header + fmt + data).decode()


NO_ARGUMENTS = {"type": "object", "properties": {}}

# The input schema the json-schema-2020-12 scenario expects back, keyword for keyword.
SCHEMA_2020_12 = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "type": "object",
    "$defs": {
        "address": {
            "$anchor": "addressDef",
            "type": "object",
            "properties": {"street": {"type": "string"}, "city": {"type": "string"}},
        }
    },
    "properties": {
        "name": {"type": "string"},
        "address": {"$ref": "#/$defs/address"},
        "contactMethod": {"type": "string", "enum": ["phone", "email"]},
        "phone": {"type": "string"},
        "email": {"type": "string"},
    },
    "allOf": [{"anyOf": [{"required": ["phone"]}, {"required": ["email"]}]}],
    "if": {"properties": {"contactMethod": {"const": "phone"}}, "required": ["contactMethod"]},
    "then": {"required": ["phone"]},
    "else": {"required": ["email"]},
    "additionalProperties": False,
}

TOOLS = [
    {"name": "test_simple_text", "description": "Returns simple text"},
    {"name": "test_image_content", "description": "Returns a 1x1 PNG image"},
    {"name": "test_audio_content", "description": "Returns a short WAV"},
    {"name": "test_embedded_resource", "description": "Returns an embedded text resource"},
    {"name": "test_multiple_content_types", "description": "Returns text, image and resource"},
    {"name": "test_tool_with_logging", "description": "Logs three messages while it runs"},
    {"name": "test_error_handling", "description": "Always fails with isError"},
    {"name": "test_tool_with_progress", "description": "Reports progress 0, 50, 100 of 100"},
    {
        "name": "json_schema_2020_12_tool",
        "description": "Tool with JSON Schema 2020-12 features",
        "inputSchema": SCHEMA_2020_12,
    },
    {
        "name": "echo",
        "title": "Echo",
        "description": "Returns its text, as text and as structured content",
        "inputSchema": {
            "type": "object",
            "properties": {"text": {"type": "string"}},
            "required": ["text"],
        },
        "outputSchema": {
            "type": "object",
            "properties": {"text": {"type": "string"}},
            "required": ["text"],
        },
        "annotations": {"readOnlyHint": True},
    },
    {
        "name": "slow_progress",
        "description": "Reports progress `steps` times, `delay` seconds apart, then answers",
        "inputSchema": {
            "type": "object",
            "properties": {"steps": {"type": "integer"}, "delay": {"type": "number"}},
        },
    },
]


def text(value: str) -> dict:
    return {"type": "text", "text": value}


async def progress(ctx: ServerRequestContext, value: float, total: float, message=None):
    token = (ctx.meta or {}).get("progress_token")
    if token is not None:
        await ctx.session.send_progress_notification(
            token, value, total, message=message, related_request_id=ctx.request_id
        )


async def call(ctx: ServerRequestContext, name: str, arguments: dict) -> dict:
    """The result of tool ``name``, as the suite's scenario for it expects."""
    if name == "test_simple_text":
        return {"content": [text("This is a simple text response for testing.")]}
    if name == "test_image_content":
        return {"content": [{"type": "image", "data": RED_PIXEL_PNG, "mimeType": "image/png"}]}
    if name == "test_audio_content":
        return {"content": [{"type": "audio", "data": silent_wav(), "mimeType": "audio/wav"}]}
    if name == "test_embedded_resource":
        resource = {
            "uri": "test://embedded-resource",
            "mimeType": "text/plain",
            "text": "This is an embedded resource content.",
        }
        return {"content": [{"type": "resource", "resource": resource}]}
    if name == "test_multiple_content_types":
        resource = {
            "uri": "test://mixed-content-resource",
            "mimeType": "application/json",
            "text": '{"test":"data","value":123}',
        }
        return {
            "content": [
                text("Multiple content types test:"),
                {"type": "image", "data": RED_PIXEL_PNG, "mimeType": "image/png"},
                {"type": "resource", "resource": resource},
            ]
        }
    if name == "test_tool_with_logging":
        for i, message in enumerate(
            ["Tool execution started", "Tool processing data", "Tool execution completed"]
        ):
            if i:
                await asyncio.sleep(0.05)
            await ctx.session.send_log_message("info", message, related_request_id=ctx.request_id)
        return {"content": [text("Tool with logging executed successfully")]}
    if name == "test_error_handling":
        return {
            "isError": True,
            "content": [text("This tool intentionally returns an error for testing")],
        }
    if name == "test_tool_with_progress":
        for i, value in enumerate((0, 50, 100)):
            if i:
                await asyncio.sleep(0.05)
            await progress(ctx, value, 100)
        return {"content": [text("Tool with progress executed successfully")]}
    if name == "json_schema_2020_12_tool":
        return {"content": [text(f"Received: {sorted(arguments)}")]}
    if name == "echo":
        value = str(arguments.get("text", ""))
        return {"content": [text(value)], "structuredContent": {"text": value}}
    if name == "slow_progress":
        steps, delay = int(arguments.get("steps", 5)), float(arguments.get("delay", 1.0))
        for step in range(1, steps + 1):
            await progress(ctx, step, steps, message=f"step {step}")
            await asyncio.sleep(delay)
        return {"content": [text(f"finished {steps} steps")]}
    raise MCPError(types.INVALID_PARAMS, f"Unknown tool: {name}")


def build(args):
    async def list_tools(ctx: ServerRequestContext, params: types.PaginatedRequestParams | None):
        tools = [types.Tool.model_validate({"inputSchema": NO_ARGUMENTS, **t}) for t in TOOLS]
        return types.ListToolsResult(tools=tools)

    async def call_tool(ctx: ServerRequestContext, params: types.CallToolRequestParams):
        result = await call(ctx, params.name, params.arguments or {})
        return types.CallToolResult.model_validate(result)

    async def set_level(ctx: ServerRequestContext, params: types.SetLevelRequestParams):
        return types.EmptyResult()

    with warnings.catch_warnings():  # logging is deprecated in 2026-07-28; legacy still has it
        warnings.simplefilter("ignore")
        server = Server(
            "conformance-peer",
            version="1.0.0",
            on_list_tools=list_tools,
            on_call_tool=call_tool,
            on_set_logging_level=set_level,
        )
    app = server.streamable_http_app(json_response=args.json, stateless_http=args.stateless)
    return Wrapped(app, args)


def main():
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    args = parser.parse_args()
    uvicorn.run(build(args), host="127.0.0.1", port=args.port, log_level="warning")


if __name__ == "__main__":
    main()
