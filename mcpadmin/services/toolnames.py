"""The names an agent's MCP client sees for its tools.

The rule (README, "Agents connect here"):

1. A tool is ``<connector slug>__<tool name>``: its *prefixed* name. A prefixed name longer
   than ``MAX_NAME`` characters, or holding characters outside ``[A-Za-z0-9_.-]``, keeps what
   fits and ends in ``_`` plus 8 hex digits of the SHA-256 of the full name (it is *fitted*).
2. With the agent's ``keep_tool_names`` on, a tool keeps its own name unchanged when that name
   is already fit to expose (``MAX_NAME`` characters at most, safe characters only), no other
   tool of the agent has the same name, and it does not start with ``<slug>__`` for the slug
   of any of the agent's connectors. Otherwise it is prefixed.
3. Every name starting with ``<slug>__`` belongs to that connector: a tool of another connector
   never gets one (slugs never hold ``__`` nor end in ``_``: ``models.slug_base``), so no
   connector can take over another's names, and a kept name never equals a prefixed one.
4. A connector's tools share out the names of its prefix among themselves: each of them, kept
   or not, claims its prefixed name; names needing no fitting are claimed before fitted ones,
   each kind in tool-name order, and the first claim of a name wins it. Once every claim is
   made, each tool that lost one gets the first of ``<name>_2``, ``<name>_3`` … (cut to fit
   ``MAX_NAME``) that no tool was given or claimed. A tool's prefixed name so depends on its
   own connector's tools only, whatever another connector lists.

Names are unique by construction (each is chosen among those still free), and the same tools
give the same names whatever order they come in. Clients that add their own prefix (Claude
Code's ``mcp__<server>__``) and APIs that cap names at 64 characters (Claude, Copilot) fit.
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
    """The exposed name of each (connector slug, tool name) pair, by the module's rule: all
    distinct, at most ``MAX_NAME`` characters of ``[A-Za-z0-9_.-]``."""
    tools = sorted(set(tools))
    kept = _kept(tools) if keep_names else set()
    prefixed = _prefixed(tools, taken={name for _, name in kept})
    return {pair: pair[1] if pair in kept else prefixed[pair] for pair in tools}


def _kept(tools: list[tuple[str, str]]) -> set[tuple[str, str]]:
    """The tools that keep their own name (rule 2)."""
    counts = Counter(name for _, name in tools)
    prefixes = tuple({slug + SEPARATOR for slug, _ in tools})
    return {(slug, name) for slug, name in tools
            if counts[name] == 1 and _fit(name) and not name.startswith(prefixes)}  # fmt: skip


def _prefixed(tools: list[tuple[str, str]], taken: set[str]) -> dict[tuple[str, str], str]:
    """Each tool's prefixed name (rules 1 and 4), none of them in ``taken``."""
    wanted = {}
    for slug, name in tools:
        full = f"{slug}{SEPARATOR}{name}"
        wanted[slug, name] = full if _fit(full) else _fitting(full)
    # Names needing no fitting first, then by (slug, name): sorted already.
    order = sorted(tools, key=lambda pair: wanted[pair] != f"{pair[0]}{SEPARATOR}{pair[1]}")
    taken, given = set(taken), {}
    for pair in order:
        if wanted[pair] not in taken:
            given[pair] = wanted[pair]
            taken.add(wanted[pair])
    for pair in order:
        if pair not in given:
            given[pair] = _numbered(wanted[pair], taken)
            taken.add(given[pair])
    return given


def _fit(name: str) -> bool:
    return len(name) <= MAX_NAME and bool(_SAFE.fullmatch(name))


def _fitting(name: str) -> str:
    digest = hashlib.sha256(name.encode()).hexdigest()[:_HASH_DIGITS]
    safe = _UNSAFE_RUN.sub("_", name)[: MAX_NAME - _HASH_DIGITS - 1]
    return f"{safe}_{digest}"


def _numbered(name: str, taken: set[str]) -> str:
    """The first of ``name_2``, ``name_3`` … (``name`` cut so that it fits) not in ``taken``."""
    number = 2
    while True:
        suffix = f"_{number}"
        found = name[: MAX_NAME - len(suffix)] + suffix
        if found not in taken:
            return found
        number += 1
