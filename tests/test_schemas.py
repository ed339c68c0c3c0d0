"""The wire contracts: strict where a person would be surprised by leniency, every error naming
its field, and the JSON Schema files in step with the models."""

from __future__ import annotations

import json

import jsonschema
import pytest
from hypothesis import given
from hypothesis import strategies as st

from schemas import ContractError, normalised_id, parse_event, parse_manifest, slugify
from schemas.export import JSON_DIR, documents, render
from schemas.manifest import SLUG_RE, semver_key

GOOD = {
    "name": "Lead Scorer",
    "version": "1.0.0",
    "description": "Scores leads",
    "author": "A",
    "email": "a@example.com",
}


def _manifest_error(doc: object) -> str:
    raw = doc if isinstance(doc, bytes | str) else json.dumps(doc)
    with pytest.raises(ContractError) as caught:
        parse_manifest(raw)
    return str(caught.value)


# -- manifest -----------------------------------------------------------------------------------


def test_id_is_derived_from_the_name() -> None:
    assert parse_manifest(GOOD).plugin_id == "lead-scorer"
    assert slugify("  Lead -- Scorer!! v2 ") == "lead-scorer-v2"
    assert parse_manifest({**GOOD, "id": "custom-id"}).plugin_id == "custom-id"


def test_both_seed_formats_parse() -> None:
    plan = parse_manifest(
        {
            **GOOD,
            "is_pluggy_plugin": True,
            "entry_point": "main.py",
            "hook_specs": ["lead_created"],
            "permissions": ["read_leads", "create_bookings"],
        }
    )
    assert (plan.entry_module, plan.hooks, plan.permission_names) == (
        "main",
        ["lead_created"],
        ["read_leads", "create_bookings"],
    )
    readme = parse_manifest(
        {
            **GOOD,
            "entry_point": "main",
            "plugin_class": "Thing",
            "requires_python": ">=3.8.0",
            "permissions": [{"name": "lead_access", "description": "leads"}],
            "hooks": ["lead_created"],
        }
    )
    assert readme.permissions[0].description == "leads"


@pytest.mark.parametrize(
    ("doc", "message"),
    [
        ({**GOOD, "colour": "red"}, "colour: unknown field (not part of the contract)"),
        ('{"name": "a", "name": "b"}', "name: duplicate key"),
        ('{"version": NaN}', "NaN is not valid JSON"),
        ("\ufeff{}", "starts with a byte-order mark"),
        ({**GOOD, "version": "1.0"}, "version: '1.0' is not a semantic version"),
        ({**GOOD, "version": "v1.0.0"}, "version: 'v1.0.0' is not a semantic version"),
        ({**GOOD, "version": 1}, "version: input should be a valid string"),
        ({**GOOD, "name": "Lead\n"}, "name: name must not contain control characters"),
        ({**GOOD, "name": "!!!"}, "name: name must contain at least one letter or digit"),
        ({**GOOD, "email": "nobody"}, "email: 'nobody' is not an email address"),
        ({**GOOD, "id": "Bad_Id"}, "id: 'Bad_Id' is not a plugin id"),
        ({**GOOD, "hooks": ["lead_deleted"]}, "hooks: unknown hook 'lead_deleted'"),
        ({**GOOD, "hooks": ["lead_created", "lead_created"]}, "hooks: lead_created listed more than once"),
        ({**GOOD, "hooks": [], "hook_specs": []}, "hook_specs: is an alias of hooks"),
        ({**GOOD, "permissions": ["root"]}, "permissions.0.name: unknown permission 'root'"),
        (
            {**GOOD, "permissions": ["lead_access", {"name": "lead_access"}]},
            "permissions: lead_access listed more than once",
        ),
        ({**GOOD, "requires_python": "3.8+"}, "requires_python: '3.8+' is not a version specifier"),
        ({**GOOD, "is_pluggy_plugin": False}, "is_pluggy_plugin: only Pluggy plugins are supported"),
        ({**GOOD, "entry_point": "../evil.py"}, "entry_point: '../evil.py' is not a module of the plugin"),
        (
            {**GOOD, "settings": [{"name": "a", "type": "text"}, {"name": "a", "type": "number"}]},
            "settings: duplicate setting name(s) a",
        ),
        (
            {**GOOD, "settings": [{"name": "s", "type": "select"}]},
            "settings.0.options: a select setting needs at least one {value, label}",
        ),
        (
            {**GOOD, "settings": [{"name": "n", "type": "number", "default": "5"}]},
            "settings.0.default: a number setting takes a number, not str",
        ),
        (
            {**GOOD, "settings": [{"name": "c", "type": "checkbox", "default": "yes"}]},
            "settings.0.default: a checkbox setting takes true or false, not str",
        ),
        (
            {
                **GOOD,
                "settings": [
                    {"name": "s", "type": "select", "default": "z", "options": [{"value": "a", "label": "A"}]}
                ],
            },
            "settings.0.default: 'z' is not one of the options ('a')",
        ),
        (
            {**GOOD, "settings": [{"name": "k", "type": "password", "default": "hunter2"}]},
            "settings.0.default: a secret setting cannot have a default",
        ),
        ({**GOOD, "settings": [{"name": "k", "type": "colour"}]}, "settings.0.type: input should be"),
        (
            {**GOOD, "settings": [{"name": "bad name", "type": "text"}]},
            "settings.0.name: 'bad name' is not a setting name",
        ),
        (
            {**GOOD, "settings": [{"name": "t", "type": "text", "required": "yes"}]},
            "settings.0.required: input should be a valid boolean",
        ),
        ([], "must be a JSON object"),
    ],
)
def test_manifest_refusals_name_the_field(doc: object, message: str) -> None:
    assert message in _manifest_error(doc)


INVISIBLE = [
    "\u202e",  # RIGHT-TO-LEFT OVERRIDE
    "\u202a",  # LEFT-TO-RIGHT EMBEDDING
    "\u2066",  # LEFT-TO-RIGHT ISOLATE
    "\u2069",  # POP DIRECTIONAL ISOLATE
    "\u200e",  # LEFT-TO-RIGHT MARK
    "\u200f",  # RIGHT-TO-LEFT MARK
    "\u061c",  # ARABIC LETTER MARK
    "\u200b",  # ZERO WIDTH SPACE
    "\u200c",  # ZERO WIDTH NON-JOINER
    "\u200d",  # ZERO WIDTH JOINER
    "\u2060",  # WORD JOINER
    "\ufeff",  # ZERO WIDTH NO-BREAK SPACE
    "\u00ad",  # SOFT HYPHEN (Cf)
    "\u0085",  # NEXT LINE (Cc, beyond the C0 range)
    "\ue000",  # private use (Co)
    "\ud800",  # a lone surrogate (Cs), as a JSON escape can carry
    "\u2028",  # LINE SEPARATOR (Zl)
    "\u2029",  # PARAGRAPH SEPARATOR (Zp)
]


@pytest.mark.parametrize("char", INVISIBLE, ids=lambda c: f"U+{ord(c):04X}")
@pytest.mark.parametrize("field", ["name", "id"])
def test_invisible_and_bidi_characters_are_refused_in_ids_and_names(field: str, char: str) -> None:
    value = {"name": f"Lead{char} Scorer", "id": f"lead{char}-scorer"}[field]
    with pytest.raises(ContractError) as caught:
        parse_manifest({**GOOD, field: value})
    assert [(e.field, e.reason) for e in caught.value.errors] == [
        (field, f"contains an invisible or bidirectional control character (U+{ord(char):04X})")
    ]


def test_a_trojan_source_name_is_refused_in_one_line() -> None:
    # "Lead Scorer" followed by an override that shows "gnp.exe" as "exe.png".
    error = _manifest_error({**GOOD, "name": "Lead Scorer \u202egnp.exe"})
    assert error == "manifest.json: name: contains an invisible or bidirectional control character (U+202E)"


def test_visible_unicode_names_are_kept() -> None:
    for name in ("Café Scorer", "Лид Скорер 2", "リード Scorer", "Lead \u2014 Scorer", "Ünïcode\u00a0Lead"):
        assert parse_manifest({**GOOD, "name": name}).name == name


@pytest.mark.parametrize(
    ("plugin_id", "key"),
    [
        ("lead-scorer", "lead-scorer"),
        ("Lead-Scorer", "lead-scorer"),
        ("lead_scorer", "lead-scorer"),
        ("lead--scorer", "lead-scorer"),
        ("lead-_-scorer", "lead-scorer"),
        ("LEAD__SCORER", "lead-scorer"),
        ("\uff4c\uff45\uff41\uff44\uff0dscorer", "lead-scorer"),  # full-width letters and hyphen
        ("lead\ufe4dscorer", "lead-scorer"),  # DASHED LOW LINE: NFKC makes it '_'
        ("\ufb01lter", "filter"),  # the fi ligature
        ("stra\u00dfe", "strasse"),  # case folding, not lower-casing
        ("\u212bngstrom", "\u00e5ngstrom"),  # ANGSTROM SIGN: NFKC, then folded
        ("lead-scorer-2", "lead-scorer-2"),
    ],
)
def test_normalised_id(plugin_id: str, key: str) -> None:
    assert normalised_id(plugin_id) == key


def test_normalised_id_keeps_different_ids_apart() -> None:
    ids = ["lead-scorer", "lead-scorers", "leadscorer", "lead-scorer-2", "lead-s-corer"]
    assert len({normalised_id(i) for i in ids}) == len(ids)


@given(st.text(max_size=40))
def test_normalised_id_is_idempotent(plugin_id: str) -> None:
    key = normalised_id(plugin_id)
    assert normalised_id(key) == key
    assert "--" not in key
    assert "_" not in key


@given(st.from_regex(SLUG_RE, fullmatch=True))
def test_a_valid_id_is_its_own_key(plugin_id: str) -> None:
    assert normalised_id(plugin_id) == plugin_id


def test_missing_required_fields_are_all_listed() -> None:
    error = _manifest_error({"name": "x"})
    for field in ("version", "description", "author", "email"):
        assert f"{field}: is required" in error


def test_semver_ordering() -> None:
    ordered = [
        "1.0.0-alpha",
        "1.0.0-alpha.1",
        "1.0.0-beta",
        "1.0.0-rc.1",
        "1.0.0",
        "1.0.1",
        "1.10.0",
        "2.0.0",
    ]
    assert sorted(ordered, key=semver_key) == ordered


# -- events ------------------------------------------------------------------------------------

LEAD = {"type": "lead.created", "data": {"id": "l1", "name": "Ada", "email": "ada@example.com"}}
BOOKING = {"id": "b1", "starts_at": "2026-03-01T10:00:00+01:00", "ends_at": "2026-03-01T11:00:00+01:00"}


def _event_error(doc: object) -> str:
    with pytest.raises(ContractError) as caught:
        parse_event(doc if isinstance(doc, str | bytes) else json.dumps(doc))
    return str(caught.value)


def test_envelope_fields_are_filled_in() -> None:
    event = parse_event(LEAD)
    assert len(event.event_id) == 36
    assert event.occurred_at.tzinfo is not None
    assert event.source == "unknown"


def test_booking_updated_carries_previous_state_in_data_or_envelope() -> None:
    inside = parse_event({"type": "booking.updated", "data": {**BOOKING, "previous_state": BOOKING}})
    beside = parse_event({"type": "booking.updated", "data": BOOKING, "previous_state": BOOKING})
    assert inside.data == beside.data
    assert inside.data.current().model_dump() == beside.data.previous_state.model_dump()


@pytest.mark.parametrize(
    ("doc", "message"),
    [
        ({**LEAD, "data": {**LEAD["data"], "age": 3}}, "data.age: unknown field"),
        ({**LEAD, "colour": 1}, "colour: unknown field"),
        ({"type": "lead.deleted", "data": {}}, "type: 'lead.deleted' is not an event type"),
        ({"data": {}}, "type: missing is not an event type"),
        ({"type": "lead.created", "data": {"name": "x"}}, "data.id: is required"),
        ({"type": "lead.created", "data": {"id": 5}}, "data.id: input should be a valid string"),
        (
            {"type": "booking.created", "data": {**BOOKING, "price": "5"}},
            "data.price: input should be a valid number",
        ),
        (
            {"type": "booking.created", "data": {**BOOKING, "price": -1}},
            "data.price: input should be greater than or equal to 0",
        ),
        (
            {"type": "booking.created", "data": {**BOOKING, "starts_at": "2026-03-01T10:00:00"}},
            "data.starts_at: input should have timezone info",
        ),
        (
            {"type": "booking.created", "data": {**BOOKING, "ends_at": "2026-03-01T09:00:00+01:00"}},
            "data.ends_at: is before starts_at",
        ),
        ({"type": "booking.created", "data": {**BOOKING, "status": "lost"}}, "data.status: input should be"),
        ({"type": "booking.updated", "data": BOOKING}, "data.previous_state: is required"),
        (
            {"type": "booking.updated", "data": {**BOOKING, "previous_state": {**BOOKING, "id": "b2"}}},
            "data.previous_state: is booking 'b2', not 'b1'",
        ),
        ({**LEAD, "event_id": "has spaces"}, "event_id: 'has spaces' is not an event id"),
        ('{"type": "lead.created", "data": {"id": "x", "id": "y"}}', "id: duplicate key"),
        (
            '{"type": "booking.created", "data": {"id": "b", "starts_at": "2026-01-01T00:00:00Z", "price": Infinity}}',
            "Infinity is not valid JSON",
        ),
        ("[1, 2]", "must be a JSON object"),
        ("not json", "is not valid JSON"),
    ],
)
def test_event_refusals_name_the_field(doc: object, message: str) -> None:
    assert message in _event_error(doc)


def test_custom_fields_take_anything_json() -> None:
    event = parse_event({**LEAD, "data": {"id": "l", "custom_fields": {"a": [1, {"b": None}], "c": 1.5}}})
    assert event.data.custom_fields == {"a": [1, {"b": None}], "c": 1.5}


def test_oversize_event_is_refused() -> None:
    big = json.dumps({**LEAD, "data": {"id": "l", "custom_fields": {"x": "y" * 300_000}}})
    assert "the limit is 262144" in _event_error(big)


# -- JSON Schema files ---------------------------------------------------------------------------


def test_json_schema_files_match_the_models() -> None:
    """Fails when a model changed and ``python -m schemas.export`` was not run."""
    docs = documents()
    assert sorted(p.name for p in JSON_DIR.glob("*.json")) == sorted(docs)
    for name, doc in docs.items():
        assert (JSON_DIR / name).read_text(encoding="utf-8") == render(doc), f"{name} is stale"


def test_json_schema_validates_what_the_models_accept() -> None:
    manifest_schema = json.loads((JSON_DIR / "manifest.schema.json").read_text())
    jsonschema.validate({**GOOD, "hooks": ["lead_created"], "permissions": ["lead_access"]}, manifest_schema)
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate({**GOOD, "colour": 1}, manifest_schema)
    event_schema = json.loads((JSON_DIR / "event.schema.json").read_text())
    jsonschema.validate(json.loads(parse_event(LEAD).model_dump_json()), event_schema)
