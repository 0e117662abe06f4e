"""The try-it console's form: fields generated from a tool's input schema (JSON Schema, as
``tools/list`` gives it), and a submitted form read back into typed arguments.

Pure: no Flask, no database. A schema is an upstream's text and may be hostile or merely odd,
so nothing in it is trusted: objects nested deeper than ``MAX_DEPTH``, ``$ref`` and the
combinators (``anyOf``…), arrays of anything but plain items, and any type this form cannot
edit become a JSON box for that one value; more than ``MAX_FIELDS`` fields, or a root that is
not an object with properties, leave only the raw JSON box. Property names are used as
argument keys only, never in a form field's name or id (``arg-0-2``: the property's position),
so a name is text on the page and nothing else.
"""

import json
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum

MAX_DEPTH = 4  # objects nested deeper than this are written as JSON
MAX_FIELDS = 200  # more fields than this in one schema: the raw JSON box only
MAX_CHOICES = 100  # an enum of more values is typed (strings) or written as JSON
MAX_TITLE = 100
MAX_DESCRIPTION = 1000
PREFIX = "arg"  # form field names: ``arg-<i>``, ``arg-<i>-<j>`` for nested properties
RAW = "raw"  # the raw JSON box
RAW_ON = "raw-on"  # "send the raw JSON instead of the form"
# Input types for string formats a browser helps with; the rest are plain text.
INPUT_TYPES = {"email": "email", "uri": "url", "date": "date"}
UNSUPPORTED = ("$ref", "anyOf", "oneOf", "allOf", "not", "if")
SCALARS = (str, int, float, bool, type(None))


class Kind(StrEnum):
    TEXT = "text"  # <input>; ``attrs["type"]`` from the string's format
    NUMBER = "number"
    INTEGER = "integer"
    CHECKBOX = "checkbox"  # a required boolean: unticked is false
    CHOICE = "choice"  # <select>: an enum, or a boolean that may be left unset
    LINES = "lines"  # an array of plain items, one per line
    OBJECT = "object"  # a fieldset of its properties
    JSON = "json"  # a JSON box for this one value


@dataclass
class Field:
    """One argument's input. ``name`` is the form field's name and id, ``key`` the argument's
    name in the arguments object."""

    key: str
    name: str
    kind: Kind = Kind.JSON
    required: bool = False
    title: str = ""
    description: str | None = None
    attrs: dict = field(default_factory=dict)  # HTML attributes: type, min, max, step, …
    limits: dict = field(default_factory=dict)  # the schema's bounds, checked on parse
    choices: list = field(default_factory=list)  # CHOICE: option i sends choices[i]
    item: "Field | None" = None  # LINES: how each line is read
    children: list["Field"] = field(default_factory=list)  # OBJECT
    note: str | None = None  # why it is a JSON box, or how to fill it in
    default: object = None


@dataclass
class Form:
    """A tool's form: its fields, or none and a ``note`` saying why only JSON will do."""

    fields: list[Field]
    note: str | None = None

    @property
    def raw_only(self) -> bool:
        return self.note is not None


class _TooMany(Exception):
    pass


def form_for(schema) -> Form:
    """The form for a tool's input schema (anything: it comes from an upstream)."""
    if not isinstance(schema, dict) or any(k in schema for k in UNSUPPORTED):
        return Form([], "This tool's input schema is more than a form can show: write the "
                        "arguments as JSON.")  # fmt: skip
    if _type(schema) not in ("object", None):
        return Form([], "This tool's input schema is not an object: write the arguments as JSON.")
    counter = [0]
    try:
        return Form(_properties(schema, PREFIX, 0, counter))
    except _TooMany:
        return Form([], f"This tool's input has more than {MAX_FIELDS} fields: write the "
                        "arguments as JSON.")  # fmt: skip


def _properties(schema: dict, prefix: str, depth: int, counter: list) -> list[Field]:
    properties = schema.get("properties")
    if not isinstance(properties, dict):
        return []
    required = schema.get("required")
    required = {r for r in required if isinstance(r, str)} if isinstance(required, list) else set()
    fields = []
    for i, (key, sub) in enumerate(properties.items()):
        counter[0] += 1
        if counter[0] > MAX_FIELDS:
            raise _TooMany
        fields.append(_field(str(key), sub, f"{prefix}-{i}", str(key) in required, depth, counter))
    return fields


def _field(key, schema, name, required, depth, counter) -> Field:
    f = Field(key, name, required=required, title=key)
    if not isinstance(schema, dict):
        f.note = "Any JSON value."
        return f
    title, description = schema.get("title"), schema.get("description")
    f.title = title[:MAX_TITLE] if isinstance(title, str) and title.strip() else key
    f.description = description[:MAX_DESCRIPTION] if isinstance(description, str) else None
    f.default = schema.get("default")
    if any(k in schema for k in UNSUPPORTED):
        f.note = "Written as JSON: its schema uses a reference or a combination of schemas."
        return f
    enum = [schema["const"]] if "const" in schema else schema.get("enum")
    if isinstance(enum, list) and enum:
        return _choice(f, enum)
    kind = _type(schema)
    if kind == "string":
        return _text(f, schema)
    if kind in ("number", "integer"):
        return _number(f, schema, Kind(kind))
    if kind == "boolean":
        f.kind, f.choices = (Kind.CHECKBOX, []) if required else (Kind.CHOICE, [True, False])
        return f
    if kind == "array":
        return _lines(f, schema)
    if kind == "object" and isinstance(schema.get("properties"), dict) and schema["properties"]:
        if depth >= MAX_DEPTH:
            f.note = f"Written as JSON: nested more than {MAX_DEPTH} levels deep."
            return f
        f.kind = Kind.OBJECT
        f.children = _properties(schema, name, depth + 1, counter)
        return f
    f.note = "An object, as JSON." if kind == "object" else "Any JSON value."
    return f


def _type(schema: dict) -> str | None:
    """The one type the schema names (``["string", "null"]`` is a string), else None."""
    kind = schema.get("type")
    if isinstance(kind, list):
        named = [k for k in kind if k != "null"]
        kind = named[0] if len(named) == 1 else None
    if kind is None and isinstance(schema.get("properties"), dict):
        return "object"
    return kind if isinstance(kind, str) else None


def _choice(f: Field, enum: list) -> Field:
    if not all(isinstance(v, SCALARS) for v in enum):
        f.note = "One of a list of values, written as JSON."
    elif len(enum) <= MAX_CHOICES:
        f.kind, f.choices = Kind.CHOICE, enum
    elif all(isinstance(v, str) for v in enum):
        f.kind, f.choices = Kind.TEXT, enum
        f.note = f"One of {len(enum)} allowed values."
    else:
        f.note = f"One of {len(enum)} allowed values, written as JSON."
    return f


def _text(f: Field, schema: dict) -> Field:
    f.kind = Kind.TEXT
    fmt = schema.get("format")
    f.attrs["type"] = INPUT_TYPES.get(fmt, "text") if isinstance(fmt, str) else "text"
    for word, attr in (("minLength", "minlength"), ("maxLength", "maxlength")):
        if _whole(schema.get(word)) and schema[word] >= 0:
            f.limits[word] = f.attrs[attr] = schema[word]
    pattern = schema.get("pattern")
    if isinstance(pattern, str) and pattern:
        # Shown, not set as the ``pattern`` attribute: browsers read it with their own regular
        # expression syntax, and the upstream checks it anyway.
        f.note = f"Pattern: {pattern[:200]}"
    return f


def _number(f: Field, schema: dict, kind: Kind) -> Field:
    f.kind = kind
    for word in ("minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum"):
        if _finite(schema.get(word)):
            f.limits[word] = schema[word]
    if "minimum" in f.limits:
        f.attrs["min"] = f.limits["minimum"]
    if "maximum" in f.limits:
        f.attrs["max"] = f.limits["maximum"]
    step = schema.get("multipleOf")
    f.attrs["step"] = step if _finite(step) and step > 0 else (1 if kind == Kind.INTEGER else "any")
    return f


def _lines(f: Field, schema: dict) -> Field:
    items = schema.get("items")
    plain = isinstance(items, dict) and _type(items) in ("string", "number", "integer")
    item = _field("", items, f.name, True, MAX_DEPTH, [0]) if plain else None
    if item is None or item.kind not in (Kind.TEXT, Kind.NUMBER, Kind.INTEGER):
        f.note = "A list, written as JSON."
        return f
    f.kind, f.item = Kind.LINES, item
    for word in ("minItems", "maxItems"):
        if _whole(schema.get(word)):
            f.limits[word] = schema[word]
    f.note = "One item per line."
    return f


def _whole(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _finite(value) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


# -- the form's values -------------------------------------------------------------------------


def initial(form: Form) -> dict:
    """The values a fresh form shows: each field's schema ``default`` where it fits."""
    values = {RAW: "{}"}
    for f in _walk(form.fields):
        shown = _shown(f, f.default)
        if shown is not None:
            values[f.name] = shown
    return values


def _shown(f: Field, value) -> str | None:
    if value is None:
        return None
    if f.kind == Kind.CHECKBOX:
        return "on" if value is True else None
    if f.kind == Kind.CHOICE:
        found = [i for i, c in enumerate(f.choices) if c == value and type(c) is type(value)]
        return str(found[0]) if found else None
    if f.kind == Kind.TEXT:
        return value if isinstance(value, str) else None
    if f.kind in (Kind.NUMBER, Kind.INTEGER):
        return str(value) if _finite(value) else None
    if f.kind == Kind.LINES:
        return "\n".join(str(v) for v in value) if isinstance(value, list) else None
    if f.kind == Kind.JSON:
        return json.dumps(value, indent=2, ensure_ascii=False)
    return None


def _walk(fields):
    for f in fields:
        yield f
        yield from _walk(f.children)


def arguments(form: Form, values: Mapping) -> tuple[dict, dict]:
    """The arguments the submitted ``values`` (form field name → text) say, and the errors:
    form field name → one sentence. With ``RAW_ON`` ticked (or a JSON-only form) the raw
    JSON box is the arguments, and the fields are not read."""
    errors: dict[str, str] = {}
    if form.raw_only or values.get(RAW_ON):
        found = _json(values.get(RAW) or "{}", RAW, errors)
        if RAW not in errors and not isinstance(found, dict):
            errors[RAW] = "The arguments must be a JSON object: { … }."
        return (found if not errors else {}), errors
    return _object(form.fields, values, errors), errors


def _object(fields, values, errors) -> dict:
    found = {}
    for f in fields:
        if f.kind == Kind.OBJECT:
            # An optional object left empty is left out, whatever its own fields require.
            if f.required or _touched(f.children, values):
                found[f.key] = _object(f.children, values, errors)
            continue
        text = values.get(f.name) or ""
        if f.kind == Kind.CHECKBOX:
            found[f.key] = bool(text)
        elif not text.strip() and f.kind != Kind.LINES:
            if f.required:
                wanted = "choose one" if f.kind == Kind.CHOICE else "fill this in"
                errors[f.name] = f"Required: {wanted}."
        else:
            value = _read(f, text, f.name, errors)
            if f.name not in errors and (value != [] or f.required):
                found[f.key] = value
    return found


def _touched(fields, values) -> bool:
    return any((values.get(f.name) or "").strip() for f in _walk(fields))


def _read(f: Field, text: str, name: str, errors: dict):
    """One field's value from its text; on failure the sentence goes in ``errors[name]``."""
    if f.kind == Kind.JSON:
        return _json(text, name, errors)
    if f.kind == Kind.CHOICE:
        index = int(text) if text.isdigit() else -1
        if not 0 <= index < len(f.choices):
            errors[name] = "Choose one of the listed values."
            return None
        return f.choices[index]
    if f.kind == Kind.LINES:
        return _list(f, text, name, errors)
    if f.kind in (Kind.NUMBER, Kind.INTEGER):
        return _numeric(f, text.strip(), name, errors)
    return _string(f, text, name, errors)


def _json(text: str, name: str, errors: dict):
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        errors[name] = f"This is not valid JSON: {exc.msg} (line {exc.lineno}, column {exc.colno})."
    except RecursionError:
        errors[name] = "This JSON is nested too deeply."
    return None


def _string(f: Field, text: str, name: str, errors: dict) -> str:
    low, high = f.limits.get("minLength"), f.limits.get("maxLength")
    if f.choices and text not in f.choices:
        errors[name] = "Not one of the allowed values."
    elif low is not None and len(text) < low:
        errors[name] = f"Too short: at least {low} characters."
    elif high is not None and len(text) > high:
        errors[name] = f"Too long: at most {high} characters."
    return text


def _numeric(f: Field, text: str, name: str, errors: dict):
    try:
        value = int(text) if f.kind == Kind.INTEGER else float(text)
    except ValueError:
        value = None
    if value is None or not math.isfinite(value):
        wanted = "a whole number" if f.kind == Kind.INTEGER else "a number"
        errors[name] = f"“{text[:40]}” is not {wanted}."
        return None
    if isinstance(value, float) and value.is_integer() and "." not in text and "e" not in text:
        value = int(value)
    limits = f.limits
    if "minimum" in limits and value < limits["minimum"]:
        errors[name] = f"Too small: at least {limits['minimum']}."
    elif "exclusiveMinimum" in limits and value <= limits["exclusiveMinimum"]:
        errors[name] = f"Too small: more than {limits['exclusiveMinimum']}."
    elif "maximum" in limits and value > limits["maximum"]:
        errors[name] = f"Too large: at most {limits['maximum']}."
    elif "exclusiveMaximum" in limits and value >= limits["exclusiveMaximum"]:
        errors[name] = f"Too large: less than {limits['exclusiveMaximum']}."
    return value


def _list(f: Field, text: str, name: str, errors: dict) -> list:
    items = []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        problems: dict = {}
        items.append(_read(f.item, line, name, problems))
        if problems:
            errors[name] = f"Line {number}: {problems[name]}"
            return []
    low, high = f.limits.get("minItems"), f.limits.get("maxItems")
    if low is not None and len(items) < low:
        errors[name] = f"Too few: at least {low} items, one per line."
    elif high is not None and len(items) > high:
        errors[name] = f"Too many: at most {high} items."
    return items
