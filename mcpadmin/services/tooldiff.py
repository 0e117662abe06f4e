"""What changed between two definitions of a tool or a prompt, as plain data a page renders
(and escapes: every string here is a remote server's text): a word diff of the title and
description, then for a tool the changes of the input and output schemas property by
property and the annotations side by side, for a prompt the changes of its arguments
(``compare_prompt``). Pure: no Flask, no database.

A tool definition is anything with ``title``, ``description``, ``input_schema``,
``output_schema`` and ``annotations`` attributes (a ``Tool`` row or one of its recorded
versions); a prompt definition anything with ``title``, ``description`` and ``definition``
(the server's whole prompt object: a ``CatalogItem`` or one of its recorded versions).
"""

import difflib
import json
import re
from dataclasses import dataclass, field
from enum import StrEnum

# The changed middle of two texts is compared word by word while (its words before) × (its
# words after) stays under this (two 4096-character descriptions of prose do).
MAX_PAIRS = 4_000_000
# An unchanged stretch longer than twice this is shown as its two ends around a gap.
CONTEXT = 160
# Schema changes listed at most, and how deep nested schemas are followed.
MAX_CHANGES = 200
MAX_DEPTH = 16
# A JSON value shown as a before/after is cut to this many characters.
MAX_VALUE = 400
# The annotations the spec defines, shown first and always (MCP 2025-06-18, ToolAnnotations).
HINTS = ("title", "readOnlyHint", "destructiveHint", "idempotentHint", "openWorldHint")
# Keywords shown first when a property's schema changed; the rest follow in name order.
KEYWORDS = ("type", "description", "enum", "default", "format", "const")
# Keywords compared structurally rather than as values.
STRUCTURE = ("properties", "required", "items")

# Words, runs of blanks and punctuation marks.
_TOKENS = re.compile(r"\s+|\w+|[^\w\s]")


class Op(StrEnum):
    SAME = "same"
    ADDED = "ins"
    REMOVED = "del"
    GAP = "gap"  # unchanged text left out; ``text`` says how much


@dataclass(frozen=True)
class Segment:
    op: Op
    text: str


class Kind(StrEnum):
    ADDED = "added"
    REMOVED = "removed"
    CHANGED = "changed"
    REQUIRED = "now required"
    OPTIONAL = "no longer required"


@dataclass(frozen=True)
class Change:
    """One change to a schema: at ``path`` (dotted property names, ``[]`` for an array's
    items, empty for the schema itself), of ``keyword`` when ``kind`` is CHANGED; ``before``
    and ``after`` as compact JSON (None: not there), ``words`` a word diff when both are
    text."""

    path: str
    kind: Kind
    keyword: str | None = None
    before: str | None = None
    after: str | None = None
    words: tuple[Segment, ...] = ()


@dataclass
class SchemaDiff:
    changes: list[Change] = field(default_factory=list)
    truncated: bool = False  # more than MAX_CHANGES changes: the rest are not listed

    def __bool__(self):
        return bool(self.changes)


@dataclass(frozen=True)
class Annotation:
    key: str
    before: str | None
    after: str | None

    @property
    def changed(self) -> bool:
        return self.before != self.after


@dataclass
class DefinitionDiff:
    title: list[Segment] | None  # None: unchanged
    description: list[Segment] | None
    input: SchemaDiff
    output: SchemaDiff
    annotations: list[Annotation]

    @property
    def annotations_changed(self) -> bool:
        return any(a.changed for a in self.annotations)

    @property
    def unchanged(self) -> bool:
        parts = (self.title, self.description, self.input, self.output)
        return not any(parts) and not self.annotations_changed


def compare(before, after) -> DefinitionDiff:
    """What changed from definition ``before`` to definition ``after``."""
    return DefinitionDiff(
        title=_text_change(before.title, after.title),
        description=_text_change(before.description, after.description),
        input=schema_diff(before.input_schema, after.input_schema),
        output=schema_diff(before.output_schema, after.output_schema),
        annotations=annotations(before.annotations, after.annotations),
    )


@dataclass
class PromptDiff:
    title: list[Segment] | None  # None: unchanged
    description: list[Segment] | None
    arguments: SchemaDiff  # one Change per argument added, removed, or changed; path = its name

    @property
    def unchanged(self) -> bool:
        return not any((self.title, self.description, self.arguments))


def compare_prompt(before, after) -> PromptDiff:
    """What changed from prompt definition ``before`` to ``after`` [26/prompts §Data Types]:
    its title, description and arguments."""
    return PromptDiff(
        title=_text_change(before.title, after.title),
        description=_text_change(before.description, after.description),
        arguments=arguments_diff(before.definition, after.definition),
    )


def arguments_diff(before, after) -> SchemaDiff:
    """The changes of a prompt's ``arguments`` (PromptArgument: ``name``, ``required``, and
    ``title``, ``description`` and whatever else the server adds): each argument added or
    removed, now required or no longer required, and any other field changed (a word diff
    when both sides are text). An argument without a string name is left out, as the pages
    leave it out; the first of a duplicated name counts."""
    old, new = _arguments(before), _arguments(after)
    diff = SchemaDiff()
    for name, argument in new.items():
        if name not in old:
            _add(diff, Change(name, Kind.ADDED, after=_json(_fields(argument))))
            continue
        was = old[name]
        for keyword in _keywords(_fields(was), _fields(argument)):
            if was.get(keyword, _ABSENT) != argument.get(keyword, _ABSENT):
                _add(diff, _keyword_change(name, keyword, was, argument))
        if (was.get("required") is True) != (argument.get("required") is True):
            kind = Kind.REQUIRED if argument.get("required") is True else Kind.OPTIONAL
            _add(diff, Change(name, kind))
    for name, argument in old.items():
        if name not in new:
            _add(diff, Change(name, Kind.REMOVED, before=_json(_fields(argument))))
    return diff


def _arguments(definition) -> dict:
    found = definition.get("arguments") if isinstance(definition, dict) else None
    arguments = {}
    for argument in found if isinstance(found, list) else []:
        if isinstance(argument, dict) and isinstance(argument.get("name"), str):
            arguments.setdefault(argument["name"], argument)
    return arguments


def _fields(argument: dict) -> dict:
    """An argument's fields but its name and ``required`` (each shown on its own)."""
    return {k: v for k, v in argument.items() if k not in ("name", "required")}


def _text_change(before, after) -> list[Segment] | None:
    return None if before == after else text_diff(before or "", after or "")


def text_diff(before: str, after: str) -> list[Segment]:
    """``after`` as segments kept, added and removed from ``before``, word by word (spaces
    and punctuation are words of their own); long unchanged stretches shortened to their
    ends around a GAP."""
    old, new = _TOKENS.findall(before), _TOKENS.findall(after)
    # The common start and end are kept as they are, and the middle compared with difflib's
    # "popular token" heuristic on (autojunk), which bounds its time on repetitive text (a
    # hostile "a b c a b c…" takes seconds without it); a middle too large to compare is
    # shown removed and added whole.
    start = _common_length(old, new)
    end = _common_length(old[start:][::-1], new[start:][::-1])
    old_middle, new_middle = old[start : len(old) - end], new[start : len(new) - end]
    segments: list[Segment] = []
    _append(segments, Op.SAME, "".join(old[:start]))
    if len(old_middle) * len(new_middle) > MAX_PAIRS:
        opcodes = [("replace", 0, len(old_middle), 0, len(new_middle))]
    else:
        opcodes = difflib.SequenceMatcher(None, old_middle, new_middle).get_opcodes()
    for tag, i1, i2, j1, j2 in opcodes:
        if tag == "equal":
            _append(segments, Op.SAME, "".join(old_middle[i1:i2]))
            continue
        _append(segments, Op.REMOVED, "".join(old_middle[i1:i2]))
        _append(segments, Op.ADDED, "".join(new_middle[j1:j2]))
    _append(segments, Op.SAME, "".join(old[len(old) - end :]))
    return _shorten(_slide(segments))


def _slide(segments: list[Segment]) -> list[Segment]:
    """Move each lone insertion or deletion between kept text as far right as it goes
    ("file{+. More+}." reads as "file.{+ More.+}"), as ``git diff`` does."""
    slid = list(segments)
    for i in range(1, len(slid) - 1):
        before, change, after = slid[i - 1], slid[i], slid[i + 1]
        if change.op == Op.SAME or not before.op == after.op == Op.SAME:
            continue
        moved = _common_length(list(change.text), list(after.text))
        if moved:
            text = change.text[moved:] + after.text[:moved]
            slid[i - 1] = Segment(Op.SAME, before.text + change.text[:moved])
            slid[i] = Segment(change.op, text)
            slid[i + 1] = Segment(Op.SAME, after.text[moved:])
    return [s for s in slid if s.text]


def _common_length(a: list, b: list) -> int:
    n = 0
    for x, y in zip(a, b, strict=False):
        if x != y:
            break
        n += 1
    return n


def _append(segments: list[Segment], op: Op, text: str):
    if not text:
        return
    if segments and segments[-1].op == op:
        segments[-1] = Segment(op, segments[-1].text + text)
    else:
        segments.append(Segment(op, text))


def _shorten(segments: list[Segment]) -> list[Segment]:
    shortened = []
    for i, segment in enumerate(segments):
        text = segment.text
        if segment.op != Op.SAME or len(text) <= 2 * CONTEXT:
            shortened.append(segment)
            continue
        head = text[:CONTEXT] if i > 0 else ""
        tail = text[-CONTEXT:] if i < len(segments) - 1 else ""
        left_out = len(text) - len(head) - len(tail)
        if head:
            shortened.append(Segment(Op.SAME, head))
        shortened.append(Segment(Op.GAP, f"{left_out} unchanged characters"))
        if tail:
            shortened.append(Segment(Op.SAME, tail))
    return shortened


def schema_diff(before, after) -> SchemaDiff:
    """The changes from JSON schema ``before`` to ``after`` (either may be None: no schema):
    properties added and removed, keywords changed (recursively for nested objects and array
    items), and required names added and removed. At most ``MAX_CHANGES``."""
    diff = SchemaDiff()
    _walk(_object(before), _object(after), "", 0, diff)
    return diff


def _walk(old: dict, new: dict, path: str, depth: int, diff: SchemaDiff):
    if depth > MAX_DEPTH:  # too deep to follow: compared as a whole
        if old != new:
            _add(diff, Change(path, Kind.CHANGED, "(nested schema)", _json(old), _json(new)))
        return
    for keyword in _keywords(old, new):
        if old.get(keyword, _ABSENT) != new.get(keyword, _ABSENT):
            _add(diff, _keyword_change(path, keyword, old, new))

    old_props, new_props = old.get("properties", {}), new.get("properties", {})
    if isinstance(old_props, dict) and isinstance(new_props, dict):
        _walk_properties(old_props, new_props, path, depth, diff)
    elif old_props != new_props:
        _add(diff, _keyword_change(path, "properties", old, new))

    old_required, new_required = old.get("required", []), new.get("required", [])
    if _names(old_required) is not None and _names(new_required) is not None:
        before, after = _names(old_required), _names(new_required)
        for name in [n for n in after if n not in before]:
            _add(diff, Change(_join(path, name), Kind.REQUIRED))
        for name in [n for n in before if n not in after]:
            _add(diff, Change(_join(path, name), Kind.OPTIONAL))
    elif old_required != new_required:
        _add(diff, _keyword_change(path, "required", old, new))

    old_items, new_items = old.get("items"), new.get("items")
    if isinstance(old_items, dict) and isinstance(new_items, dict):
        _walk(old_items, new_items, path + "[]", depth + 1, diff)
    elif old_items != new_items:
        _add(diff, _keyword_change(path, "items", old, new))


def _walk_properties(old: dict, new: dict, path: str, depth: int, diff: SchemaDiff):
    for name, schema in new.items():
        if name not in old:
            _add(diff, Change(_join(path, name), Kind.ADDED, after=_json(schema)))
        elif isinstance(old[name], dict) and isinstance(schema, dict):
            _walk(old[name], schema, _join(path, name), depth + 1, diff)
        elif old[name] != schema:
            _add(diff, Change(_join(path, name), Kind.CHANGED, "(schema)",
                              _json(old[name]), _json(schema)))  # fmt: skip
    for name, schema in old.items():
        if name not in new:
            _add(diff, Change(_join(path, name), Kind.REMOVED, before=_json(schema)))


def _keyword_change(path: str, keyword: str, old: dict, new: dict) -> Change:
    before, after = old.get(keyword, _ABSENT), new.get(keyword, _ABSENT)
    words = ()
    if isinstance(before, str) and isinstance(after, str):
        words = tuple(text_diff(before, after))
    return Change(path, Kind.CHANGED, keyword, _json(before), _json(after), words)


def _keywords(old: dict, new: dict) -> list[str]:
    present = (set(old) | set(new)) - set(STRUCTURE)
    first = [k for k in KEYWORDS if k in present]
    return first + sorted(present - set(first))


def _add(diff: SchemaDiff, change: Change):
    if len(diff.changes) < MAX_CHANGES:
        diff.changes.append(change)
    else:
        diff.truncated = True


def _join(path: str, name: str) -> str:
    return f"{path}.{name}" if path else name


def _names(value) -> list[str] | None:
    """A ``required`` list as names, or None when it is not a list of strings."""
    if isinstance(value, list) and all(isinstance(n, str) for n in value):
        return value
    return None


def _object(value) -> dict:
    return value if isinstance(value, dict) else {}


def annotations(before, after) -> list[Annotation]:
    """Each annotation's value before and after: the spec's hints always (None: not set),
    then any other key either side has, in name order."""
    old, new = _object(before), _object(after)
    others = sorted((set(old) | set(new)) - set(HINTS))
    return [
        Annotation(key, _json(old.get(key, _ABSENT)), _json(new.get(key, _ABSENT)))
        for key in (*HINTS, *others)
    ]


_ABSENT = object()


def _json(value) -> str | None:
    """``value`` as compact JSON cut to ``MAX_VALUE`` characters; None when absent."""
    if value is _ABSENT:
        return None
    text = json.dumps(value, ensure_ascii=False, sort_keys=True, separators=(", ", ": "))
    return text if len(text) <= MAX_VALUE else text[: MAX_VALUE - 1] + "…"
