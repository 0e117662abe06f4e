"""Whether a URI is one a resource template describes (RFC 6570 URI Templates, as MCP uses them
for ``resources/templates/list`` [26/resources §Resource Templates]).

Pure. Matching is by expression operator (RFC 6570 §3.2): a simple ``{var}`` matches one
path segment's characters (no ``/``, ``?`` or ``#``), reserved ``{+var}`` and fragment
``{#var}`` anything, a path ``{/var}`` one or more ``/segment``s, a label ``{.var}`` one or more
``.label``s, and the query forms ``{?…}``/``{&…}`` an optional query. Literal text must be
equal. A template that is not well formed matches nothing.
"""

import re
from functools import lru_cache

_EXPRESSION = re.compile(r"\{([^{}]*)\}")
_OPERATOR = {
    "": r"[^/?#]*",
    "+": r"[^?#]*(?:\?[^#]*)?",
    "#": r"(?:#.*)?",
    "/": r"(?:/[^/?#]*)*",
    ".": r"(?:\.[^/?#.]*)*",
    ";": r"(?:;[^/?#]*)*",
    "?": r"(?:\?[^#]*)?",
    "&": r"(?:&[^#]*)?",
}


def matches(template: str, uri: str) -> bool:
    """Whether ``uri`` is an expansion of ``template``."""
    pattern = _pattern(template)
    return pattern is not None and pattern.fullmatch(uri) is not None


@lru_cache(maxsize=1024)
def _pattern(template: str) -> re.Pattern | None:
    parts, end = [], 0
    for found in _EXPRESSION.finditer(template):
        parts.append(re.escape(template[end : found.start()]))
        body = found.group(1)
        operator = body[:1] if body[:1] in _OPERATOR and body[:1] else ""
        if not body[len(operator) :]:
            return None  # "{}" or "{+}": no variable
        parts.append(_OPERATOR[operator])
        end = found.end()
    rest = template[end:]
    if "{" in rest or "}" in rest:
        return None
    parts.append(re.escape(rest))
    return re.compile("".join(parts), re.DOTALL)
