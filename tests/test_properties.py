"""Property-based tests (hypothesis) of the validators that face untrusted input: whatever they
are given, they answer with the contract's own error (never another exception), what they
accept holds to the contract, and the sanitiser's output is safe and stable."""

from __future__ import annotations

import json
import re
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from schemas.errors import ContractError
from schemas.events import MAX_CUSTOM_ITEMS, parse_event
from schemas.manifest import SettingSpec, parse_manifest
from services_ai_plugins.calling.sanitize import plain_text, sanitize_html
from services_ai_plugins.lifecycle.settings import check_value, parse_text

FAST = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=True) | st.text(max_size=30),
    lambda inner: st.lists(inner, max_size=6) | st.dictionaries(st.text(max_size=12), inner, max_size=6),
    max_leaves=40,
)
event_types = st.sampled_from(["lead.created", "lead-created", "booking.created", "booking.updated", "x"])
lead_fields = st.fixed_dictionaries(
    {"id": st.text(min_size=1, max_size=20) | st.integers()},
    optional={
        "name": st.text(max_size=40) | st.none(),
        "email": st.text(max_size=40) | st.integers(),
        "custom_fields": st.dictionaries(st.text(max_size=10), json_values, max_size=8),
        "unexpected": json_values,
    },
)


@FAST
@given(
    st.one_of(json_values, st.fixed_dictionaries({"type": event_types, "data": lead_fields | json_values}))
)
def test_the_event_validator_answers_anything_with_its_own_error(raw: Any) -> None:
    for form in (raw, json.dumps(raw, allow_nan=True)):
        try:
            event = parse_event(form)
        except ContractError as exc:
            assert str(exc).startswith("event: ") and "\n" not in str(exc)  # noqa: PT017
            continue
        dumped = event.model_dump(mode="json")
        assert dumped["type"] in ("lead.created", "booking.created", "booking.updated")
        assert json.loads(json.dumps(dumped)) == dumped  # what is accepted is plain JSON
        assert isinstance(dumped["data"]["id"], str)


@FAST
@given(
    st.dictionaries(
        st.text(st.characters(blacklist_categories=("Cs", "Cc")), max_size=8),
        st.integers(-1000, 1000),
        max_size=MAX_CUSTOM_ITEMS + 50,
    )
)
def test_custom_fields_are_accepted_exactly_up_to_the_cap(fields: dict[str, int]) -> None:
    raw = {"type": "lead.created", "data": {"id": "L", "custom_fields": fields}}
    try:
        parse_event(raw)
        accepted = True
    except ContractError as exc:
        assert "more than 1000 keys" in str(exc)  # noqa: PT017
        accepted = False
    assert accepted == (len(fields) <= MAX_CUSTOM_ITEMS)


manifest_docs = st.fixed_dictionaries(
    {"name": st.text(max_size=30) | st.integers()},
    optional={
        "version": st.sampled_from(["1.0.0", "1", "x.y", ""]) | st.text(max_size=10),
        "description": st.text(max_size=30),
        "author": st.text(max_size=10),
        "email": st.text(max_size=20),
        "hooks": st.lists(st.sampled_from(["lead_created", "nope", "dashboard_widget"]) | st.integers()),
        "permissions": st.lists(st.sampled_from(["lead_access", "x"]) | json_values, max_size=3),
        "settings": st.lists(json_values, max_size=3),
        "id": st.text(max_size=30),
    },
)


@FAST
@given(manifest_docs | json_values)
def test_the_manifest_validator_answers_anything_with_its_own_error(raw: Any) -> None:
    try:
        manifest = parse_manifest(json.dumps(raw, allow_nan=True))
    except ContractError as exc:
        assert str(exc).startswith("manifest.json") and "\n" not in str(exc)  # noqa: PT017
        return
    assert re.fullmatch(r"[a-z0-9][a-z0-9-]*", manifest.plugin_id)


NUMBER = SettingSpec(name="n", type="number", min=0, max=100)
TEXT = SettingSpec(name="t", type="text", max_length=50)
CHECKBOX = SettingSpec(name="c", type="checkbox")


@FAST
@given(st.sampled_from([NUMBER, TEXT, CHECKBOX]), json_values | st.text(max_size=80))
def test_the_settings_validator_accepts_only_what_the_spec_allows(spec: SettingSpec, value: Any) -> None:
    for candidate in (value, *([value] if not isinstance(value, str) else [])):
        try:
            typed = check_value(
                spec, parse_text(spec, candidate) if isinstance(candidate, str) else candidate
            )
        except ValueError as exc:
            assert str(exc) and "\n" not in str(exc)  # noqa: PT017
            continue
        if typed is None:
            continue
        if spec is NUMBER:
            assert isinstance(typed, int | float) and not isinstance(typed, bool) and 0 <= typed <= 100
        elif spec is TEXT:
            assert isinstance(typed, str) and len(typed) <= 50
        else:
            assert isinstance(typed, bool)


hostile_html = st.lists(
    st.sampled_from(
        [
            "<script>alert(1)</script>",
            "<img src=x onerror=alert(1)>",
            '<a href="javascript:alert(1)">x</a>',
            "<style>body{display:none}</style>",
            '<div style="position:fixed;inset:0">',
            "<iframe src=//evil.example>",
            "<svg onload=alert(1)>",
            '<form action="//evil.example"><input name=p></form>',
            "<p>ok</p>",
            "<b>",
            "</div>",
            "&lt;script&gt;",
            '<img src="https://evil.example/x.png">',
        ]
    )
    | st.text(max_size=20),
    max_size=12,
).map("".join)


@FAST
@given(hostile_html)
def test_sanitised_html_carries_no_script_handler_or_foreign_load_and_is_stable(html: str) -> None:
    clean = sanitize_html(html)
    lowered = clean.lower()
    assert "<script" not in lowered and "<iframe" not in lowered and "<form" not in lowered
    assert "<style" not in lowered and "<svg" not in lowered
    assert not re.search(r"<[^>]+\son\w+\s*=", lowered)
    assert "javascript:" not in lowered
    assert not re.search(r"<[^>]+style\s*=", lowered)  # no inline style could overlay the page
    assert sanitize_html(clean) == clean


@FAST
@given(hostile_html | st.text(max_size=300))
def test_plain_text_has_no_markup_controls_or_excess(text: str) -> None:
    shown = plain_text(text, max_chars=80)
    # Tags are gone (what is left is text, escaped where a page shows it).
    if "&" not in text:  # "&lt;img" is text that reads "<img", not a tag
        assert "<img" not in shown and "<svg" not in shown
    assert len(shown) <= 80
    assert not any(ord(c) < 32 or 0x7F <= ord(c) < 0xA0 for c in shown)
    assert shown == " ".join(shown.split())


def test_a_hostile_key_cannot_forge_a_line_of_the_error() -> None:
    """Found by the property test above: an unknown key holding a newline was echoed raw."""
    try:
        parse_event({"type": "lead.created", "data": {"id": "L", "x\nERROR forged line": 1}})
    except ContractError as exc:
        message = str(exc)
    assert message == "event: data.'x\\nERROR forged line': unknown field (not part of the contract)"
