"""The names an agent's MCP client sees for its tools.

The rule (README, "Agents connect here"): a tool is ``<connector slug>__<tool name>``; with
the agent's ``keep_tool_names`` on, a tool keeps its own name wherever no other tool of the
agent has that name (the colliding ones are all prefixed). A name that would be longer than
``MAX_NAME`` characters, or holds characters outside ``[A-Za-z0-9_.-]``, keeps what fits and
ends in ``_`` plus 8 hex digits of the SHA-256 of the full name, so it stays unique and never
changes while the tool does not. Clients that add their own prefix (Claude Code's
``mcp__<server>__``) and APIs that cap names at 64 characters (Claude, Copilot) both fit.
"""

import hashlib
import re
from collections import Counter

SEPARATOR = "__"
MAX_NAME = 64
_SAFE = re.compile(r"[A-Za-z0-9_.-]+")
_UNSAFE_RUN = re.compile(r"[^A-Za-z0-9_.-]+")
_HASH_DIGITS = 8


def exposed_names(tools: list[tuple[str, str]], keep_names: bool) -> dict[tuple[str, str], str]:
    """The exposed name of each (connector slug, tool name) pair; all distinct."""
    prefixed = {pair: f"{pair[0]}{SEPARATOR}{pair[1]}" for pair in tools}
    if keep_names:
        counts = Counter(name for _, name in tools)
        taken = set(prefixed.values())
        for pair in tools:
            if counts[pair[1]] == 1 and pair[1] not in taken:
                prefixed[pair] = pair[1]
    exposed = {pair: _fitting(name) for pair, name in prefixed.items()}
    seen = Counter()
    for pair in sorted(exposed):  # a fitted name equal to another's: numbered, in pair order
        name = exposed[pair]
        seen[name] += 1
        if seen[name] > 1:
            exposed[pair] = _fitting(f"{name}_{seen[name]}")
    return exposed


def _fitting(name: str) -> str:
    if len(name) <= MAX_NAME and _SAFE.fullmatch(name):
        return name
    digest = hashlib.sha256(name.encode()).hexdigest()[:_HASH_DIGITS]
    safe = _UNSAFE_RUN.sub("_", name)[: MAX_NAME - _HASH_DIGITS - 1]
    return f"{safe}_{digest}"
