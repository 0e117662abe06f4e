"""Parsing JSON a remote server wrote: the one place a response body or an event's data is
turned into Python values, with a bound on nesting.

RFC 8259 §9 lets a parser limit the depth of nesting. Deeper documents are refused here,
before anything else (hashing, storing, rendering a schema) walks them recursively.
"""

import json

# Deepest nesting accepted. A JSON-RPC answer wraps a tool's input schema about six levels
# down; real schemas stay well within the rest.
MAX_JSON_DEPTH = 64


class NotJson(ValueError):
    """The text is not JSON mcpadmin accepts; ``str()`` names what it is instead, as a noun
    phrase for the operator ("something that is not JSON")."""


class TooDeep(NotJson):
    """JSON nested deeper than ``MAX_JSON_DEPTH``."""


def parse_json(raw: bytes | str):
    """The JSON value in ``raw`` (UTF-8 when bytes).

    :raise NotJson: not UTF-8 or not JSON; :raise TooDeep: nested deeper than
        ``MAX_JSON_DEPTH``.
    """
    try:
        text = raw.decode("utf-8") if isinstance(raw, bytes) else raw
        value = json.loads(text)
    except RecursionError:
        raise TooDeep(_too_deep()) from None
    except (UnicodeDecodeError, ValueError):
        raise NotJson("something that is not JSON") from None
    if _depth_exceeds(value, MAX_JSON_DEPTH):
        raise TooDeep(_too_deep())
    return value


def _too_deep() -> str:
    return f"JSON nested more than {MAX_JSON_DEPTH} levels deep"


def _depth_exceeds(value, limit: int) -> bool:
    """Whether arrays and objects in ``value`` nest deeper than ``limit`` (walked without
    recursion)."""
    stack = [(value, 1)]
    while stack:
        node, depth = stack.pop()
        if isinstance(node, dict):
            children = node.values()
        elif isinstance(node, list):
            children = node
        else:
            continue
        if depth > limit:
            return True
        stack.extend((child, depth + 1) for child in children if isinstance(child, dict | list))
    return False
