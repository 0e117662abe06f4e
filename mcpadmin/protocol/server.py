"""Serving MCP over Streamable HTTP: reading one POSTed JSON-RPC message into a typed request,
checking it against its era's rules, and writing answers as JSON or server-sent events.

Pure: no Flask, no database. The gateway blueprint feeds it a body and headers and sends
what it returns. Both eras share one endpoint [26/ver §Backward Compatibility]: a request
whose ``_meta`` names a protocol version is modern (2026-07-28, stateless); anything else is
legacy (``initialize`` and sessions) [26/ver §Compatibility Matrix].
"""

import base64
import binascii
import json
import re
from dataclasses import dataclass, field

from .jsonbody import NotJson, parse_json
from .versions import LEGACY_VERSIONS, MODERN_VERSIONS, WITHOUT_VERSION_HEADER

META = "io.modelcontextprotocol/"
SERVER_INFO = {"name": "mcpadmin", "version": "0.1.0"}
# The _meta key stamping each frame of a subscriptions/listen stream with the request's id.
SUBSCRIPTION_ID = META + "subscriptionId"

# Log levels (RFC 5424 names) a client may ask for [25N/logging; 26/base §_meta logLevel].
LOG_LEVELS = ("debug", "info", "notice", "warning", "error", "critical", "alert", "emergency")
LOG_LEVEL = META + "logLevel"

# JSON-RPC and MCP error codes [26/base §Error Codes].
PARSE_ERROR = -32700
INVALID_REQUEST = -32600
METHOD_NOT_FOUND = -32601
INVALID_PARAMS = -32602
INTERNAL_ERROR = -32603
HEADER_MISMATCH = -32020
MISSING_CLIENT_CAPABILITY = -32021
UNSUPPORTED_VERSION = -32022

# Methods whose request carries an ``Mcp-Name`` header naming its target [26/http §Standard
# Request Headers], and where the name is in the params.
NAMED_METHODS = {"tools/call": "name", "resources/read": "uri", "prompts/get": "name"}
# A tool parameter whose input schema property carries ``x-mcp-header`` rides in this header
# too [26/http §Custom Headers from Tool Parameters]; a plain value is printable ASCII (a
# value that is not goes as ``=?base64?…?=``) [26/http §Value Encoding].
PARAM_HEADER = "Mcp-Param-"
PLAIN_VALUE = re.compile(r"[\x20-\x7e]*")
# An integer as a header may carry it: ``42`` or ``42.0`` [26/http §Value Encoding: numbers
# SHOULD compare numerically].
DECIMAL = re.compile(r"-?[0-9]+(\.0+)?")


class RpcFailure(Exception):
    """A request answered with a JSON-RPC error: ``status`` is the HTTP status to send it with."""

    def __init__(self, code: int, message: str, status: int = 400, data=None, request_id=None):
        super().__init__(message)
        self.code, self.message, self.status = code, message, status
        self.data, self.request_id = data, request_id

    def body(self) -> dict:
        return error(self.request_id, self.code, self.message, self.data)


@dataclass
class Message:
    """One JSON-RPC message a client POSTed.

    ``kind`` is "request" (has an id and a method), "notification" (a method, no id) or
    "response" (a legacy client answering a server request). ``version`` is the modern version
    a modern request names in ``_meta``; None for legacy messages.
    """

    kind: str
    method: str | None
    id: str | int | None
    params: dict = field(default_factory=dict)
    version: str | None = None
    # A response's ``result`` or ``error`` member, as sent ({"result": …} or {"error": …}).
    answer: dict | None = None

    @property
    def modern(self) -> bool:
        return self.version is not None

    @property
    def meta(self) -> dict:
        meta = self.params.get("_meta")
        return meta if isinstance(meta, dict) else {}

    @property
    def progress_token(self):
        token = self.meta.get("progressToken")
        return token if isinstance(token, str | int) and not isinstance(token, bool) else None


def parse(raw: bytes) -> Message:
    """The message in a POST body.

    :raise RpcFailure: not JSON (-32700), a batch, or not a JSON-RPC 2.0 message (-32600).
    """
    try:
        value = parse_json(raw)
    except NotJson as exc:
        raise RpcFailure(PARSE_ERROR, f"Parse error: the body is {exc}.") from None
    if isinstance(value, list):
        # 25M allowed batches; 25J removed them [25J/chg]. No client of ours sends one.
        raise RpcFailure(INVALID_REQUEST, "Batches of JSON-RPC messages are not supported.")
    if not isinstance(value, dict) or value.get("jsonrpc") != "2.0":
        raise RpcFailure(INVALID_REQUEST, "Invalid request: not a JSON-RPC 2.0 message.")
    request_id = value.get("id")
    if request_id is not None and (
        isinstance(request_id, bool) or not isinstance(request_id, str | int)
    ):
        raise RpcFailure(INVALID_REQUEST, "Invalid request: the id must be a string or a number.")
    method = value.get("method")
    if method is None:
        if "result" in value or "error" in value:
            member = "result" if "result" in value else "error"
            return Message("response", None, request_id, answer={member: value[member]})
        raise RpcFailure(INVALID_REQUEST, "Invalid request: no method.", request_id=request_id)
    if not isinstance(method, str):
        raise RpcFailure(
            INVALID_REQUEST, "Invalid request: the method must be a string.", request_id=request_id
        )
    params = value.get("params", {})
    if params is None:
        params = {}
    if not isinstance(params, dict):
        raise RpcFailure(
            INVALID_PARAMS, "Invalid params: params must be an object.", request_id=request_id
        )
    kind = "notification" if "id" not in value else "request"
    if kind == "request" and request_id is None:
        raise RpcFailure(INVALID_REQUEST, "Invalid request: the id must not be null.")
    meta = params.get("_meta")
    version = meta.get(META + "protocolVersion") if isinstance(meta, dict) else None
    return Message(kind, method, request_id, params, version if version is not None else None)


def check_modern(message: Message, headers) -> None:
    """The checks every modern request passes before it is served [26/base §_meta; 26/http
    §Server Validation, §Protocol Version Header], in the spec's order.

    :raise RpcFailure: -32602 for a ``_meta`` without version or capabilities, -32020 for a
        header that is missing or disagrees with the body, -32022 for a version not served.
    """
    fail = _failing(message)
    meta = message.meta
    if not isinstance(message.version, str) or not isinstance(
        meta.get(META + "clientCapabilities"), dict
    ):
        fail(INVALID_PARAMS, "Invalid params: _meta must carry protocolVersion and "
                             "clientCapabilities.")  # fmt: skip
    if headers.get("MCP-Protocol-Version") != message.version:
        fail(HEADER_MISMATCH, "Header mismatch: MCP-Protocol-Version must equal the _meta "
                              "protocolVersion.")  # fmt: skip
    if message.kind == "request" and headers.get("Mcp-Method") != message.method:
        fail(HEADER_MISMATCH, "Header mismatch: Mcp-Method must equal the request's method.")
    target = NAMED_METHODS.get(message.method)
    if target and decode_header_value(headers.get("Mcp-Name")) != message.params.get(target):
        fail(HEADER_MISMATCH, f"Header mismatch: Mcp-Name must equal params.{target}.")
    if message.version not in MODERN_VERSIONS:
        raise RpcFailure(
            UNSUPPORTED_VERSION,
            "Unsupported protocol version",
            data={"supported": list(MODERN_VERSIONS), "requested": message.version},
            request_id=message.id,
        )


def check_param_headers(message: Message, headers, input_schema) -> None:
    """A modern ``tools/call``'s ``Mcp-Param-*`` headers against its arguments, for the tool's
    ``input_schema`` (the upstream's, as listed to the agent) [26/http §Server Behavior for
    Custom Headers]: each argument an ``x-mcp-header`` property names is present in the body
    (not null) exactly when its header is sent once, and the header, after ``=?base64?…?=``
    decoding, equals it. Schemas are ones ``mcp.checked_tools`` kept: annotations sit only on
    statically reachable scalar properties.

    :raise RpcFailure: -32020 with HTTP 400 for the first header that is missing, unexpected,
        sent twice, badly encoded (base64 padding or alphabet, characters HTTP cannot carry as
        they are) or disagreeing with the body.
    """
    fail = _failing(message)
    arguments = message.params.get("arguments")
    for path, token, kind in _annotated(input_schema):
        name, where = PARAM_HEADER + token, "params.arguments." + ".".join(path)
        sent = _values(headers, name)
        value = _at(arguments, path)
        if len(sent) > 1:
            fail(HEADER_MISMATCH, f"Header mismatch: {name} is sent more than once.")
        if value is None:
            if sent:
                fail(HEADER_MISMATCH, f"Header mismatch: {name} is sent but {where} is absent.")
            continue
        if not sent:
            fail(HEADER_MISMATCH, f"Header mismatch: {name} is missing; it must carry {where}.")
        decoded = decode_header_value(sent[0])
        if decoded is None or not PLAIN_VALUE.fullmatch(sent[0]):
            fail(HEADER_MISMATCH, f"Header mismatch: {name} is not a valid header value (plain "
                                  "printable ASCII, or =?base64?…?= over UTF-8).")  # fmt: skip
        if not _same(decoded, value, kind):
            fail(HEADER_MISMATCH, f"Header mismatch: {name} must equal {where}.")


def _annotated(schema, path=(), depth=0):
    """``(property path, header token, JSON type)`` of each ``x-mcp-header`` property reachable
    from ``schema`` through ``properties``."""
    properties = schema.get("properties") if isinstance(schema, dict) else None
    if not isinstance(properties, dict) or depth > 32:
        return
    for key, prop in properties.items():
        if not isinstance(prop, dict):
            continue
        token = prop.get("x-mcp-header")
        if isinstance(token, str):
            yield (*path, key), token, prop.get("type")
        yield from _annotated(prop, (*path, key), depth + 1)


def _values(headers, name: str) -> list[str]:
    """Every value of header ``name`` (a repeated header shows up as several)."""
    getlist = getattr(headers, "getlist", None)
    if getlist is not None:
        return getlist(name)
    value = headers.get(name)
    return [] if value is None else [value]


def _at(arguments, path):
    """The argument at ``path``; None when absent, null, or under a value that is not an
    object."""
    for key in path:
        if not isinstance(arguments, dict):
            return None
        arguments = arguments.get(key)
    return arguments


def _same(decoded: str, value, kind) -> bool:
    """Whether a header's decoded text carries ``value``: a boolean as ``true``/``false``, an
    integer (a whole float for an integer property too) compared numerically, a string as it
    is; a value no header can carry (an object, a list) never matches."""
    if isinstance(value, bool):
        return decoded == ("true" if value else "false")
    whole = isinstance(value, int) or (isinstance(value, float) and value.is_integer()
                                       and kind == "integer")  # fmt: skip
    if whole:
        return DECIMAL.fullmatch(decoded) is not None and int(decoded.split(".")[0]) == value
    if isinstance(value, float):
        return decoded == repr(value)
    return isinstance(value, str) and decoded == value


def legacy_version(headers, session_version: str | None) -> str:
    """The version of a legacy request after ``initialize``: its ``MCP-Protocol-Version``
    header, else the session's, else 2025-03-26, which had no header [25N/http §Protocol
    Version Header].

    :raise RpcFailure: the header names a version this server does not speak (MUST 400).
    """
    version = headers.get("MCP-Protocol-Version")
    if version is None:
        return session_version or WITHOUT_VERSION_HEADER
    if version not in LEGACY_VERSIONS:
        supported = list(LEGACY_VERSIONS)
        raise RpcFailure(
            INVALID_REQUEST,
            f"Unsupported MCP-Protocol-Version {version[:40]!r}: this session speaks "
            f"{', '.join(supported)}.",
        )
    return version


def negotiate(requested) -> str:
    """The legacy version ``initialize`` answers: the client's when we speak it, else our
    latest legacy one [25N/life §Version Negotiation]."""
    return requested if requested in LEGACY_VERSIONS else LEGACY_VERSIONS[0]


def decode_header_value(value: str | None) -> str | None:
    """An ``Mcp-Name``/``Mcp-Param-*`` value: ``=?base64?…?=`` holds UTF-8 text that is not
    safe as a plain header value [26/http §Value Encoding]."""
    if value and value.startswith("=?base64?") and value.endswith("?="):
        try:
            return base64.b64decode(value[9:-2], validate=True).decode("utf-8")
        except (binascii.Error, UnicodeDecodeError):
            return None
    return value


def modern_result(result: dict) -> dict:
    """A modern result: ``resultType`` and the server's identity in ``_meta`` [26/base
    §ResultType, §_meta]."""
    meta = {**(result.get("_meta") or {}), META + "serverInfo": SERVER_INFO}
    return {"resultType": "complete", **result, "_meta": meta}


# What the gateway serves, declared whatever the agent has ticked (an agent with nothing
# ticked gets empty lists), so that ticking something needs no new session: tools, resources
# with subscriptions, prompts, argument completion and log levels [26/lifecycle
# §Capability Negotiation; 25N/life §Capability Negotiation].
def capabilities(list_changed: bool = True) -> dict:
    return {
        "tools": {"listChanged": list_changed},
        "resources": {"subscribe": True, "listChanged": list_changed},
        "prompts": {"listChanged": list_changed},
        "completions": {},
        "logging": {},
    }


def discover_result(instructions: str) -> dict:
    """The ``server/discover`` answer [26/disc]: only the modern version (both SDK servers list
    only theirs), the capabilities, and no caching (the lists depend on the agent)."""
    return modern_result(
        {
            "supportedVersions": list(MODERN_VERSIONS),
            "capabilities": capabilities(),
            "instructions": instructions,
            "ttlMs": 0,
            "cacheScope": "private",
        }
    )


def initialize_result(version: str, instructions: str, list_changed: bool) -> dict:
    return {
        "protocolVersion": version,
        "capabilities": capabilities(list_changed),
        "serverInfo": SERVER_INFO,
        "instructions": instructions,
    }


def response(request_id, result: dict) -> dict:
    return {"jsonrpc": "2.0", "id": request_id, "result": result}


def response_text(request_id, name: str, encoded: str, result: dict) -> str:
    """``response(request_id, {name: <encoded>, **result})`` as JSON text, with ``encoded``
    (a member's value) already JSON: a long list rendered once is not encoded again."""
    rest = json.dumps(result, separators=(",", ":"), ensure_ascii=False)[1:-1]
    members = f"{json.dumps(name)}:{encoded}" + ("," + rest if rest else "")
    return f'{{"jsonrpc":"2.0","id":{json.dumps(request_id)},"result":{{{members}}}}}'


def error(request_id, code: int, message: str, data=None) -> dict:
    body = {"code": code, "message": message}
    if data is not None:
        body["data"] = data
    return {"jsonrpc": "2.0", "id": request_id, "error": body}


def notification(method: str, params: dict | None = None) -> dict:
    message = {"jsonrpc": "2.0", "method": method}
    if params is not None:
        message["params"] = params
    return message


def sse_event(message: dict) -> bytes:
    """One server-sent event carrying one JSON-RPC message (no id: modern streams have none
    [26/chg Major 9])."""
    data = json.dumps(message, separators=(",", ":"), ensure_ascii=False)
    return f"event: message\ndata: {data}\n\n".encode()


def _failing(message: Message):
    def fail(code, text):
        raise RpcFailure(code, text, request_id=message.id)

    return fail
