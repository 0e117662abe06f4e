"""The upstream the official conformance suite is run through: an MCP server on the SDK's 2.x
line (both eras on one endpoint) serving the tools, resources, prompts and completions the
suite's server scenarios use, with the names, arguments and results those scenarios check
(``@modelcontextprotocol/conformance`` 0.2.0-alpha.12), plus a few the real-client tests use:

- ``echo`` returns its ``text`` as text and as ``structuredContent`` (declares an output schema);
- ``slow_progress`` sends ``steps`` progress notifications ``delay`` seconds apart, then
  answers; a client cancels it after the first one.

Requests back to the client (sampling, elicitation, roots) go the way the session's era allows
[26/mrtr]: at 2025-11-25 as JSON-RPC requests on the call's stream, at 2026-07-28 as an
``input_required`` result the client answers by retrying with ``inputResponses`` (and the
``requestState``, sealed by the SDK's ``RequestStateBoundary``). The same tool serves both, so
a client of either era (and the gateway between eras) meets the same peer.

What the peer alone cannot pass is named in ``tests/test_conformance.py`` (``PEER_SIDE``).

Run: ``python conformance_server.py --port N [--bearer TOKEN] [--json] [--stateless]``
"""

import argparse
import asyncio
import base64
import json
import re
import struct
import warnings

import mcp_types as types
import uvicorn
from mcp.server import Server, ServerRequestContext
from mcp.server.request_state import RequestStateBoundary, RequestStateSecurity
from mcp.server.streamable_http import EventMessage, EventStore
from mcp.shared.exceptions import MCPError
from mcp.shared.message import ServerMessageMetadata
from mcp_types.version import MODERN_PROTOCOL_VERSIONS
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
    {
        "name": "test_sampling",
        "description": "Asks the client's model to answer a prompt",
        "inputSchema": {
            "type": "object",
            "properties": {"prompt": {"type": "string"}},
            "required": ["prompt"],
        },
    },
    {
        "name": "test_elicitation",
        "description": "Asks the user for a username and an email",
        "inputSchema": {
            "type": "object",
            "properties": {"message": {"type": "string"}},
            "required": ["message"],
        },
    },
    {"name": "test_elicitation_sep1034_defaults", "description": "Asks with default values"},
    {"name": "test_elicitation_sep1330_enums", "description": "Asks with the five enum shapes"},
    {
        "name": "test_custom_header",
        "description": "Echoes its region, which a 2026 client also sends as Mcp-Param-Region",
        "inputSchema": {
            "type": "object",
            "properties": {"region": {"type": "string", "x-mcp-header": "Region"}},
            "required": ["region"],
        },
    },
    {
        "name": "test_reconnection",
        "description": "Closes its stream, then answers on the resumed one",
    },
    {"name": "test_missing_capability", "description": "Needs sampling, which it checks first"},
    {"name": "test_streaming_elicitation", "description": "Asks the user while it runs"},
    {"name": "test_logging_tool", "description": "Logs while it runs (when asked to)"},
    *[
        {"name": f"test_input_required_result_{kind}", "description": f"Input-required: {kind}"}
        for kind in (
            "elicitation",
            "sampling",
            "list_roots",
            "request_state",
            "multiple_inputs",
            "multi_round",
            "tampered_state",
            "capabilities",
        )
    ],  # fmt: skip
]

RESOURCES = {
    "test://static-text": {
        "name": "static-text",
        "description": "A static text resource",
        "mimeType": "text/plain",
        "text": "This is the content of the static text resource.",
    },
    "test://static-binary": {
        "name": "static-binary",
        "description": "A static binary resource (a PNG)",
        "mimeType": "image/png",
        "blob": RED_PIXEL_PNG,
    },
    "test://watched-resource": {
        "name": "watched-resource",
        "description": "The resource the subscription scenarios watch",
        "mimeType": "text/plain",
        "text": "Watched resource content.",
    },
}
TEMPLATE = "test://template/{id}/data"
TEMPLATE_URI = re.compile(r"test://template/([^/]+)/data")

PROMPTS = [
    {"name": "test_simple_prompt", "description": "A prompt without arguments"},
    {
        "name": "test_prompt_with_arguments",
        "description": "A prompt with two arguments",
        "arguments": [
            {"name": "arg1", "description": "First test argument", "required": True},
            {"name": "arg2", "description": "Second test argument", "required": True},
        ],
    },
    {
        "name": "test_prompt_with_embedded_resource",
        "description": "A prompt embedding a resource",
        "arguments": [
            {"name": "resourceUri", "description": "URI of the resource", "required": True}
        ],
    },
    {"name": "test_prompt_with_image", "description": "A prompt with an image"},
    {"name": "test_input_required_result_prompt", "description": "A prompt that asks first"},
]

# What completion/complete offers, by reference and argument name.
COMPLETIONS = {
    ("ref/prompt", "test_prompt_with_arguments", "arg1"): ["paris", "park", "party"],
    ("ref/prompt", "test_prompt_with_arguments", "arg2"): ["world", "wonder"],
    ("ref/resource", TEMPLATE, "id"): ["1", "2", "3", "123"],
}


def text(value: str) -> dict:
    return {"type": "text", "text": value}


async def progress(ctx: ServerRequestContext, value: float, total: float, message=None):
    token = (ctx.meta or {}).get("progress_token")
    if token is not None:
        await ctx.session.send_progress_notification(
            token, value, total, message=message, related_request_id=ctx.request_id
        )


def elicit(message: str, properties: dict, required: list[str] | None = None) -> dict:
    schema = {"type": "object", "properties": properties}
    if required:
        schema["required"] = required
    return {
        "method": "elicitation/create",
        "params": {"message": message, "requestedSchema": schema},
    }


def sample(prompt: str, max_tokens: int = 100) -> dict:
    message = {"role": "user", "content": text(prompt)}
    return {
        "method": "sampling/createMessage",
        "params": {"messages": [message], "maxTokens": max_tokens},
    }


ROOTS = {"method": "roots/list", "params": {}}

# The result type of each request the peer makes of the client, for the 2025 era.
ANSWER_TYPES = {
    "elicitation/create": (types.ElicitRequest, types.ElicitResult),
    "sampling/createMessage": (types.CreateMessageRequest, types.CreateMessageResult),
    "roots/list": (types.ListRootsRequest, types.ListRootsResult),
}

SEP1034_SCHEMA = {
    "name": {"type": "string", "default": "John Doe"},
    "age": {"type": "integer", "default": 30},
    "score": {"type": "number", "default": 95.5},
    "status": {"type": "string", "enum": ["active", "inactive", "pending"], "default": "active"},
    "verified": {"type": "boolean", "default": True},
}
SEP1330_SCHEMA = {
    "untitledSingle": {"type": "string", "enum": ["option1", "option2", "option3"]},
    "titledSingle": {
        "type": "string",
        "oneOf": [
            {"const": "value1", "title": "First Option"},
            {"const": "value2", "title": "Second Option"},
            {"const": "value3", "title": "Third Option"},
        ],
    },
    "legacyEnum": {
        "type": "string",
        "enum": ["opt1", "opt2", "opt3"],
        "enumNames": ["Option One", "Option Two", "Option Three"],
    },
    "untitledMulti": {
        "type": "array",
        "items": {"type": "string", "enum": ["option1", "option2", "option3"]},
    },
    "titledMulti": {
        "type": "array",
        "items": {
            "anyOf": [
                {"const": "value1", "title": "First Choice"},
                {"const": "value2", "title": "Second Choice"},
                {"const": "value3", "title": "Third Choice"},
            ]
        },
    },
}


class InputRequired(Exception):  # noqa: N818 - a result, not a failure
    """Raised by ``ask`` at 2026-07-28 while answers are missing: the handler's result is
    ``result`` (``resultType: input_required``)."""

    def __init__(self, requests: dict, state: str | None = None):
        super().__init__("input required")
        self.result = types.InputRequiredResult.model_validate(
            {"inputRequests": requests, **({"requestState": state} if state else {})}
        )


def modern(ctx: ServerRequestContext) -> bool:
    return ctx.protocol_version in MODERN_PROTOCOL_VERSIONS


def answers_of(ctx: ServerRequestContext) -> dict:
    """The ``inputResponses`` the client retried with, as plain JSON (keys as sent)."""
    return dict((ctx.params or {}).get("inputResponses") or {})


def state_of(ctx: ServerRequestContext) -> str | None:
    """The client-echoed ``requestState``, already verified and unsealed by the boundary."""
    return (ctx.params or {}).get("requestState")


async def ask(ctx: ServerRequestContext, requests: dict, state: str | None = None) -> dict:
    """The client's answers to ``requests`` (``{key: {"method", "params"}}``), as JSON.

    At 2025-11-25 each is sent as a JSON-RPC request on the call's stream, in turn, each
    awaited 30 s at most (the client's refusal, e.g. an undeclared capability, propagates as
    the SDK raises it). At
    2026-07-28 the answers come with the retried request [26/mrtr]; while one is missing this
    raises ``InputRequired`` asking for the missing ones (the SHOULD of SEP-2322: re-request,
    don't fail), with ``state`` as the ``requestState``. Answers to keys not asked are ignored.
    """
    if not modern(ctx):
        # On the call's own stream: the client may not have opened its GET stream yet.
        on_the_call = ServerMessageMetadata(related_request_id=ctx.request_id)
        answers = {}
        for key, request in requests.items():
            request_type, result_type = ANSWER_TYPES[request["method"]]
            answer = await ctx.session.send_request(
                request_type.model_validate(request),
                result_type,
                request_read_timeout_seconds=30,
                metadata=on_the_call,
            )
            answers[key] = answer.model_dump(mode="json", by_alias=True, exclude_none=True)
        return answers
    given = answers_of(ctx)
    missing = {key: request for key, request in requests.items() if key not in given}
    if missing:
        raise InputRequired(missing, state)
    return {key: given[key] for key in requests}


def declared(ctx: ServerRequestContext, capability: str) -> bool:
    capabilities = ctx.session.client_capabilities
    return capabilities is not None and getattr(capabilities, capability, None) is not None


async def asking(ctx: ServerRequestContext, name: str, arguments: dict) -> dict | None:
    """The result of a tool that asks the client something, or None for any other tool."""
    if name == "test_sampling":
        answer = await ask(ctx, {"sample": sample(str(arguments.get("prompt", "")))})
        reply = answer["sample"].get("content", {})
        return {"content": [text(f"LLM response: {reply.get('text', json.dumps(reply))}")]}
    if name == "test_elicitation":
        request = elicit(
            str(arguments.get("message", "Please provide your information")),
            {
                "username": {"type": "string", "description": "User's response"},
                "email": {"type": "string", "description": "User's email address"},
            },
            ["username", "email"],
        )
        answer = (await ask(ctx, {"user": request}))["user"]
        return {"content": [text(f"User response: {json.dumps(answer, sort_keys=True)}")]}
    if name in ("test_elicitation_sep1034_defaults", "test_elicitation_sep1330_enums"):
        schema = SEP1034_SCHEMA if name.endswith("defaults") else SEP1330_SCHEMA
        answer = (await ask(ctx, {"form": elicit("Please review the form", schema)}))["form"]
        content = json.dumps(answer.get("content"), sort_keys=True)
        return {
            "content": [
                text(f"Elicitation completed: action={answer.get('action')}, content={content}")
            ]
        }
    if name == "test_missing_capability":
        # [26/base: a server MUST NOT rely on an undeclared client capability: -32021]
        if not declared(ctx, "sampling"):
            raise MCPError(
                types.MISSING_REQUIRED_CLIENT_CAPABILITY,
                "This tool needs the client's sampling capability",
                data={"requiredCapabilities": {"sampling": {}}},
            )
        answer = await ask(ctx, {"sample": sample("Say hello")})
        return {"content": [text(f"LLM response: {json.dumps(answer['sample'].get('content'))}")]}
    if name in ("test_streaming_elicitation", "test_input_required_result_elicitation"):
        schema = {"name": {"type": "string"}}
        answer = await ask(ctx, {"user_name": elicit("What is your name?", schema, ["name"])})
        if not isinstance(answer["user_name"], dict):
            raise MCPError(types.INVALID_PARAMS, "inputResponses.user_name must be an object")
        name_given = (answer["user_name"].get("content") or {}).get("name", "")
        return {"content": [text(f"Hello, {name_given}!")]}
    if name == "test_input_required_result_sampling":
        answer = await ask(ctx, {"capital_question": sample("What is the capital of France?")})
        return {"content": [text(json.dumps(answer["capital_question"].get("content")))]}
    if name == "test_input_required_result_list_roots":
        roots = (await ask(ctx, {"client_roots": ROOTS}))["client_roots"].get("roots", [])
        return {"content": [text(f"Roots: {', '.join(r.get('uri', '') for r in roots)}")]}
    if name in (
        "test_input_required_result_request_state",
        "test_input_required_result_tampered_state",
    ):
        confirm = elicit("Please confirm", {"ok": {"type": "boolean"}}, ["ok"])
        if modern(ctx) and state_of(ctx) != "confirm-round-1":
            raise InputRequired({"confirm": confirm}, "confirm-round-1")
        await ask(ctx, {"confirm": confirm}, "confirm-round-1")
        return {"content": [text("state-ok: the request state came back as it was sent")]}
    if name == "test_input_required_result_multiple_inputs":
        requests = {
            "user_name": elicit("What is your name?", {"name": {"type": "string"}}, ["name"]),
            "greeting": sample("Generate a greeting", 50),
            "client_roots": ROOTS,
        }
        if modern(ctx) and state_of(ctx) != "all-three":
            raise InputRequired(requests, "all-three")
        answers = await ask(ctx, requests, "all-three")
        return {"content": [text(f"Got {', '.join(sorted(answers))}")]}
    if name == "test_input_required_result_multi_round":
        step1 = elicit("Step 1: What is your name?", {"name": {"type": "string"}}, ["name"])
        step2 = elicit(
            "Step 2: What is your favorite color?", {"color": {"type": "string"}}, ["color"]
        )
        if not modern(ctx):
            answers = await ask(ctx, {"step1": step1, "step2": step2})
            return {"content": [text(f"Done: {json.dumps(answers, sort_keys=True)}")]}
        state = state_of(ctx)
        if state == "round-2" and "step2" in answers_of(ctx):
            return {"content": [text("Done: both steps answered")]}
        if state == "round-1" and "step1" in answers_of(ctx):
            raise InputRequired({"step2": step2}, "round-2")
        raise InputRequired({"step1": step1}, "round-1")
    if name == "test_input_required_result_capabilities":
        # [26/mrtr: input requests MUST match the capabilities the client declared]
        offered = {
            "elicitation": (
                "user_name",
                elicit("What is your name?", {"name": {"type": "string"}}),
            ),
            "sampling": ("greeting", sample("Generate a greeting", 50)),
            "roots": ("client_roots", ROOTS),
        }
        requests = dict(request for cap, request in offered.items() if declared(ctx, cap))
        if not requests:
            raise MCPError(
                types.MISSING_REQUIRED_CLIENT_CAPABILITY,
                "This tool needs one of the client's elicitation, sampling or roots capabilities",
                data={"requiredCapabilities": {"sampling": {}}},
            )
        answers = await ask(ctx, requests)
        return {"content": [text(f"Got {', '.join(sorted(answers))}")]}
    return None


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
    if name == "test_reconnection":  # [25N/http: Resumability; SEP-1699 server-side disconnect]
        if ctx.close_sse_stream is not None:
            await asyncio.sleep(0.1)  # after the priming event went out
            await ctx.close_sse_stream()
            await asyncio.sleep(0.3)  # the client reconnects with Last-Event-ID meanwhile
        return {"content": [text("Reconnection test completed")]}
    if name == "test_custom_header":  # the SDK checked Mcp-Param-Region against the body
        return {"content": [text(f"Region: {arguments.get('region', '')}")]}
    if name == "test_logging_tool":
        # At 2026-07-28 the SDK sends these only when the request's _meta asked for a level.
        for message in ("Logging tool started", "Logging tool finished"):
            await ctx.session.send_log_message("info", message, related_request_id=ctx.request_id)
        return {"content": [text("Logging tool executed")]}
    if (result := await asking(ctx, name, arguments)) is not None:
        return result
    if name == "slow_progress":
        steps, delay = int(arguments.get("steps", 5)), float(arguments.get("delay", 1.0))
        for step in range(1, steps + 1):
            await progress(ctx, step, steps, message=f"step {step}")
            await asyncio.sleep(delay)
        return {"content": [text(f"finished {steps} steps")]}
    raise MCPError(types.INVALID_PARAMS, f"Unknown tool: {name}")


class Events(EventStore):
    """Every SSE event the session sent, in memory, so a client can resume a stream with
    ``Last-Event-ID`` [25N/http: Resumability and Redelivery]."""

    def __init__(self):
        self.events: list[tuple[str, str, types.JSONRPCMessage | None]] = []

    async def store_event(self, stream_id, message):
        event_id = str(len(self.events) + 1)
        self.events.append((event_id, stream_id, message))
        return event_id

    async def replay_events_after(self, last_event_id, send_callback):
        after = next((i for i, e in enumerate(self.events) if e[0] == last_event_id), None)
        if after is None:
            return None
        stream = self.events[after][1]
        for event_id, stream_id, message in self.events[after + 1 :]:
            if stream_id == stream and message is not None:
                await send_callback(EventMessage(message, event_id))
        return stream


def read(uri: str) -> dict:
    """``resources/read``'s result for ``uri``.

    :raise MCPError: -32602 with ``data.uri`` for a URI the peer does not serve
        [26/resources: Error Handling, SEP-2164].
    """
    if uri in RESOURCES:
        fields = {k: v for k, v in RESOURCES[uri].items() if k in ("mimeType", "text", "blob")}
        return {"contents": [{"uri": uri, **fields}]}
    if match := TEMPLATE_URI.fullmatch(uri):
        data = {"id": match[1], "templateTest": True, "data": f"Data for ID: {match[1]}"}
        return {
            "contents": [{"uri": uri, "mimeType": "application/json", "text": json.dumps(data)}]
        }
    raise MCPError(types.INVALID_PARAMS, "Resource not found", data={"uri": uri})


async def prompt(ctx: ServerRequestContext, name: str, arguments: dict) -> dict:
    """``prompts/get``'s result for prompt ``name``.

    :raise MCPError: -32602 for a prompt the peer does not have.
    """
    if name == "test_simple_prompt":
        return {
            "messages": [{"role": "user", "content": text("This is a simple prompt for testing.")}]
        }
    if name == "test_prompt_with_arguments":
        arg1, arg2 = arguments.get("arg1", ""), arguments.get("arg2", "")
        line = f"Prompt with arguments: arg1='{arg1}', arg2='{arg2}'"
        return {"messages": [{"role": "user", "content": text(line)}]}
    if name == "test_prompt_with_embedded_resource":
        resource = {
            "uri": arguments.get("resourceUri", "test://example-resource"),
            "mimeType": "text/plain",
            "text": "Embedded resource content for testing.",
        }
        return {
            "messages": [
                {"role": "user", "content": {"type": "resource", "resource": resource}},
                {"role": "user", "content": text("Please process the embedded resource above.")},
            ]
        }
    if name == "test_prompt_with_image":
        image = {"type": "image", "data": RED_PIXEL_PNG, "mimeType": "image/png"}
        return {
            "messages": [
                {"role": "user", "content": image},
                {"role": "user", "content": text("Please analyze the image above.")},
            ]
        }
    if name == "test_input_required_result_prompt":
        schema = {"context": {"type": "string"}}
        request = elicit("What context should the prompt use?", schema, ["context"])
        answer = (await ask(ctx, {"user_context": request}))["user_context"]
        context = (answer.get("content") or {}).get("context", "")
        return {"messages": [{"role": "user", "content": text(f"Use this context: {context}")}]}
    raise MCPError(types.INVALID_PARAMS, f"Unknown prompt: {name}")


def complete(params: types.CompleteRequestParams) -> dict:
    key = params.ref.name if isinstance(params.ref, types.PromptReference) else params.ref.uri
    offered = COMPLETIONS.get((params.ref.type, key, params.argument.name), [])
    values = [v for v in offered if v.startswith(params.argument.value)]
    return {"completion": {"values": values, "total": len(values), "hasMore": False}}


def build(args):
    async def list_tools(ctx: ServerRequestContext, params: types.PaginatedRequestParams | None):
        tools = [types.Tool.model_validate({"inputSchema": NO_ARGUMENTS, **t}) for t in TOOLS]
        return types.ListToolsResult(tools=tools)

    async def call_tool(ctx: ServerRequestContext, params: types.CallToolRequestParams):
        try:
            result = await call(ctx, params.name, params.arguments or {})
        except InputRequired as needed:
            return needed.result
        return types.CallToolResult.model_validate(result)

    async def list_resources(ctx: ServerRequestContext, params):
        resources = [
            {"uri": uri, **{k: v for k, v in r.items() if k not in ("text", "blob")}}
            for uri, r in RESOURCES.items()
        ]
        return types.ListResourcesResult.model_validate({"resources": resources})

    async def list_templates(ctx: ServerRequestContext, params):
        template = {
            "uriTemplate": TEMPLATE,
            "name": "template-data",
            "description": "Data for an id",
            "mimeType": "application/json",
        }
        return types.ListResourceTemplatesResult.model_validate({"resourceTemplates": [template]})

    async def read_resource(ctx: ServerRequestContext, params: types.ReadResourceRequestParams):
        return types.ReadResourceResult.model_validate(read(str(params.uri)))

    async def subscribe(ctx: ServerRequestContext, params: types.SubscribeRequestParams):
        read(str(params.uri))  # only what the peer serves
        return types.EmptyResult()

    async def list_prompts(ctx: ServerRequestContext, params):
        return types.ListPromptsResult.model_validate({"prompts": PROMPTS})

    async def get_prompt(ctx: ServerRequestContext, params: types.GetPromptRequestParams):
        try:
            result = await prompt(ctx, params.name, params.arguments or {})
        except InputRequired as needed:
            return needed.result
        return types.GetPromptResult.model_validate(result)

    async def completion(ctx: ServerRequestContext, params: types.CompleteRequestParams):
        return types.CompleteResult.model_validate(complete(params))

    async def set_level(ctx: ServerRequestContext, params: types.SetLevelRequestParams):
        return types.EmptyResult()

    with warnings.catch_warnings():  # logging is deprecated in 2026-07-28; legacy still has it
        warnings.simplefilter("ignore")
        server = Server(
            "conformance-peer",
            version="1.0.0",
            on_list_tools=list_tools,
            on_call_tool=call_tool,
            on_list_resources=list_resources,
            on_list_resource_templates=list_templates,
            on_read_resource=read_resource,
            on_subscribe_resource=subscribe,
            on_unsubscribe_resource=subscribe,
            on_list_prompts=list_prompts,
            on_get_prompt=get_prompt,
            on_completion=completion,
            on_set_logging_level=set_level,
        )
    # [26/mrtr: requestState is attacker-controlled: sealed out, verified in]
    server.middleware.append(
        RequestStateBoundary(RequestStateSecurity.ephemeral(), default_audience=server.name)
    )
    app = server.streamable_http_app(
        json_response=args.json,
        stateless_http=args.stateless,
        event_store=None if args.stateless else Events(),
        retry_interval=500,
    )
    return Wrapped(app, args)


def main():
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    args = parser.parse_args()
    uvicorn.run(build(args), host="127.0.0.1", port=args.port, log_level="warning")


if __name__ == "__main__":
    main()
