"""The try-it console's form (``services.console``): fields generated from input schemas,
ordinary and hostile, and submitted values read back into typed arguments."""

from werkzeug.datastructures import MultiDict

from mcpadmin.services import console
from mcpadmin.services.console import Kind

SCHEMA = {
    "type": "object",
    "properties": {
        "city": {"type": "string", "title": "City", "maxLength": 20, "format": "email"},
        "days": {"type": "integer", "minimum": 1, "maximum": 14},
        "ratio": {"type": "number", "exclusiveMinimum": 0, "multipleOf": 0.5},
        "metric": {"type": "boolean"},
        "strict": {"type": "boolean"},
        "unit": {"enum": ["celsius", "fahrenheit", 3, None]},
        "tags": {"type": "array", "items": {"type": "string"}, "maxItems": 3},
        "scores": {"type": "array", "items": {"type": "integer"}},
        "place": {
            "type": "object",
            "properties": {"region": {"type": "string"}, "zip": {"type": "string"}},
            "required": ["region"],
        },
        "extra": {"type": "object"},
    },
    "required": ["city", "strict"],
}


def fields_by_key(form):
    return {f.key: f for f in form.fields}


def test_each_schema_type_gets_its_input():
    fields = fields_by_key(console.form_for(SCHEMA))
    assert fields["city"].kind == Kind.TEXT and fields["city"].required
    assert fields["city"].attrs == {"type": "email", "maxlength": 20}
    assert fields["days"].kind == Kind.INTEGER
    assert fields["days"].attrs == {"min": 1, "max": 14, "step": 1}
    assert fields["ratio"].kind == Kind.NUMBER and fields["ratio"].attrs == {"step": 0.5}
    assert fields["metric"].kind == Kind.CHOICE and fields["metric"].choices == [True, False]
    assert fields["strict"].kind == Kind.CHECKBOX
    assert fields["unit"].kind == Kind.CHOICE and fields["unit"].choices[2] == 3
    assert fields["tags"].kind == Kind.LINES and fields["tags"].item.kind == Kind.TEXT
    assert fields["scores"].item.kind == Kind.INTEGER
    assert fields["place"].kind == Kind.OBJECT
    assert [(c.key, c.required, c.name) for c in fields["place"].children] == [
        ("region", True, "arg-8-0"),
        ("zip", False, "arg-8-1"),
    ]
    assert fields["extra"].kind == Kind.JSON


def filled(**values):
    """Form values by property key (top level) mapped to their field names."""
    names = {f.key: f.name for f in console.form_for(SCHEMA).fields}
    return MultiDict({names.get(k, k): v for k, v in values.items()})


def test_a_filled_form_reads_as_typed_arguments():
    values = filled(city="a@b.c", days="3", ratio="1.5", metric="1", strict="on", unit="2",
                    tags="red\n\nblue\n", scores="1\n2", extra='{"k": [1]}')  # fmt: skip
    values["arg-8-0"] = "north"
    arguments, errors = console.arguments(console.form_for(SCHEMA), values)
    assert errors == {}
    assert arguments == {
        "city": "a@b.c", "days": 3, "ratio": 1.5, "metric": False, "strict": True, "unit": 3,
        "tags": ["red", "blue"], "scores": [1, 2], "place": {"region": "north"},
        "extra": {"k": [1]},
    }  # fmt: skip


def test_empty_optional_fields_are_left_out_and_required_ones_are_named():
    arguments, errors = console.arguments(console.form_for(SCHEMA), MultiDict())
    assert arguments == {"strict": False}  # an unticked required box is false
    assert errors == {"arg-0": "Required: fill this in."}


def test_a_number_that_is_not_one_and_values_out_of_range_get_sentences():
    values = filled(city="x", days="three", ratio="0", tags="a\nb\nc\nd", scores="1\nx")
    _, errors = console.arguments(console.form_for(SCHEMA), values)
    assert errors["arg-1"] == "“three” is not a whole number."
    assert errors["arg-2"] == "Too small: more than 0."
    assert errors["arg-6"] == "Too many: at most 3 items."
    assert errors["arg-7"] == "Line 2: “x” is not a whole number."
    _, errors = console.arguments(console.form_for(SCHEMA), filled(city="x" * 21, days="15"))
    assert errors == {"arg-0": "Too long: at most 20 characters.",
                      "arg-1": "Too large: at most 14."}  # fmt: skip


def test_not_a_number_and_infinity_are_refused():
    for text in ("nan", "inf", "1e999"):
        _, errors = console.arguments(console.form_for(SCHEMA), filled(city="x", ratio=text))
        assert errors == {"arg-2": f"“{text}” is not a number."}


def test_json_that_does_not_parse_is_named_with_its_place():
    _, errors = console.arguments(console.form_for(SCHEMA), filled(city="x", extra="{oops"))
    assert errors == {
        "arg-9": "This is not valid JSON: Expecting property name enclosed in double quotes "
        "(line 1, column 2)."
    }


def test_an_unknown_choice_is_refused():
    _, errors = console.arguments(console.form_for(SCHEMA), filled(city="x", unit="9"))
    assert errors == {"arg-5": "Choose one of the listed values."}


def test_the_raw_json_box_overrides_the_form_and_must_hold_an_object():
    form = console.form_for(SCHEMA)
    raw = MultiDict({"raw-on": "on", "raw": '{"anything": [1, 2]}', "arg-1": "not read"})
    assert console.arguments(form, raw) == ({"anything": [1, 2]}, {})
    _, errors = console.arguments(form, MultiDict({"raw-on": "on", "raw": "[1]"}))
    assert errors == {"raw": "The arguments must be a JSON object: { … }."}
    _, errors = console.arguments(form, MultiDict({"raw-on": "on", "raw": "[" * 100_000}))
    assert errors == {"raw": "This JSON is nested too deeply."}


def test_defaults_fill_a_fresh_form():
    schema = {"properties": {"n": {"type": "integer", "default": 5},
                             "on": {"type": "boolean", "default": True},
                             "tags": {"type": "array", "items": {"type": "string"},
                                      "default": ["a", "b"]},
                             "pick": {"enum": ["x", "y"], "default": "y"}},
              "required": ["on"]}  # fmt: skip
    assert console.initial(console.form_for(schema)) == {
        "raw": "{}", "arg-0": "5", "arg-1": "on", "arg-2": "a\nb", "arg-3": "1",
    }  # fmt: skip


# -- hostile schemas ---------------------------------------------------------------------------


def nested(depth: int) -> dict:
    schema = {"type": "string"}
    for _ in range(depth):
        schema = {"type": "object", "properties": {"inner": schema}}
    return schema


def test_deep_nesting_is_capped_and_the_rest_is_written_as_json():
    form = console.form_for(nested(50))
    f, depth = form.fields[0], 1
    while f.kind == Kind.OBJECT:
        f, depth = f.children[0], depth + 1
    assert depth == console.MAX_DEPTH + 1 and f.kind == Kind.JSON
    assert "nested more than" in f.note
    values = MultiDict({f.name: '{"inner": {"inner": 1}}'})
    arguments, errors = console.arguments(form, values)
    assert errors == {}
    leaf = arguments
    for _ in range(console.MAX_DEPTH + 1):
        leaf = leaf["inner"]
    assert leaf == {"inner": {"inner": 1}}


def test_deeply_nested_arrays_are_json_without_recursing():
    schema = {"type": "string"}
    for _ in range(5000):
        schema = {"type": "array", "items": schema}
    form = console.form_for({"properties": {"a": schema}})
    assert form.fields[0].kind == Kind.JSON


def test_a_huge_enum_is_capped():
    strings = [f"v{i}" for i in range(5000)]
    mixed = [*strings, 1]
    fields = fields_by_key(console.form_for({"properties": {"s": {"enum": strings},
                                                            "m": {"enum": mixed}}}))  # fmt: skip
    assert fields["s"].kind == Kind.TEXT and "5000 allowed values" in fields["s"].note
    assert fields["m"].kind == Kind.JSON
    form = console.form_for({"properties": {"s": {"enum": strings}}})
    assert console.arguments(form, MultiDict({"arg-0": "v4999"})) == ({"s": "v4999"}, {})
    assert console.arguments(form, MultiDict({"arg-0": "nope"}))[1] == {
        "arg-0": "Not one of the allowed values."
    }


def test_too_many_fields_leave_only_the_raw_json_box():
    properties = {f"p{i}": {"type": "string"} for i in range(console.MAX_FIELDS + 1)}
    form = console.form_for({"type": "object", "properties": properties})
    assert form.raw_only and form.fields == []
    assert console.arguments(form, MultiDict({"raw": '{"p1": "x"}'})) == ({"p1": "x"}, {})


def test_refs_and_combinators_are_left_to_json():
    form = console.form_for({"properties": {"a": {"$ref": "#/$defs/a"},
                                            "b": {"anyOf": [{"type": "string"}]},
                                            "c": {"type": ["string", "integer"]},
                                            "d": {"type": ["string", "null"]}}})  # fmt: skip
    kinds = [f.kind for f in form.fields]
    assert kinds == [Kind.JSON, Kind.JSON, Kind.JSON, Kind.TEXT]
    assert console.form_for({"$ref": "#/$defs/args"}).raw_only
    assert console.form_for({"type": "array"}).raw_only


def test_malformed_schemas_do_not_break_the_form():
    for schema in (None, "x", [], {"properties": "x"}, {"properties": {"a": 5}},
                   {"properties": {"a": {"type": 7}}, "required": "a"},
                   {"properties": {"a": {"type": "integer", "minimum": True, "maximum": "9"}}},
                   {"properties": {"a": {"enum": [{"x": 1}]}}}):  # fmt: skip
        form = console.form_for(schema)
        console.arguments(form, MultiDict({"arg-0": "1"}))
    form = console.form_for({"properties": {"a": {"type": "integer", "minimum": True}}})
    assert form.fields[0].limits == {}


def test_odd_property_names_stay_out_of_field_names():
    key = '"><script>alert(1)</script>\u202e.a[b]'
    form = console.form_for({"properties": {key: {"type": "string"}}, "required": [key]})
    f = form.fields[0]
    assert (f.key, f.name, f.title) == (key, "arg-0", key)
    assert console.arguments(form, MultiDict({"arg-0": "v"})) == ({key: "v"}, {})
