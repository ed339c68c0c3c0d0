"""Plugin settings: typed per setting type, all-or-nothing writes, secrets encrypted at rest."""

from __future__ import annotations

from pathlib import Path

import pytest
from cryptography.fernet import Fernet
from sqlalchemy import select, update

from schemas.manifest import parse_manifest
from services_ai_plugins.errors import SecretKeyError, SettingsError
from services_ai_plugins.host import Host
from services_ai_plugins.infra.models import PluginSetting
from services_ai_plugins.lifecycle.settings import MASK, Keyring, parse_text
from tests.helpers import LEAD_MAIN, SAMPLE_PLUGIN, make_config, manifest_for, write_plugin

ID = "lead-insights"


@pytest.fixture
def sample(host: Host) -> Host:
    host.registry.install(SAMPLE_PLUGIN)
    return host


def test_defaults_apply_until_set(sample: Host) -> None:
    assert sample.registry.typed_settings(ID) == {
        "min_score": 60,
        "notify_sales": True,
        "scoring_model": "basic",
        "greeting": "Lead scores",
        "notes_footer": "Scores update as leads arrive.",
        "api_key": None,
    }


def test_text_values_are_parsed_by_type(sample: Host) -> None:
    sample.registry.set_settings(
        ID,
        {"min_score": "75.5", "notify_sales": "off", "scoring_model": "b2b", "notes_footer": "a\nb"},
        from_text=True,
    )
    typed = sample.registry.typed_settings(ID)
    assert (typed["min_score"], typed["notify_sales"], typed["scoring_model"]) == (75.5, False, "b2b")
    assert typed["notes_footer"] == "a\nb"


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"min_score": "lots"}, "setting min_score: 'lots' is not a number"),
        ({"min_score": "nan"}, "setting min_score: 'nan' is not a finite number"),
        ({"min_score": "101"}, "setting min_score: 101 is above the maximum 100"),
        ({"notify_sales": "maybe"}, "setting notify_sales: 'maybe' is not true or false"),
        ({"scoring_model": "fancy"}, "setting scoring_model: 'fancy' is not one of the options (basic, b2b)"),
        ({"greeting": "two\nlines"}, "setting greeting: a text setting takes a single line"),
        ({"colour": "red"}, "setting colour: is not a setting of this plugin"),
    ],
)
def test_bad_text_values_name_the_field(sample: Host, values: dict, message: str) -> None:
    with pytest.raises(SettingsError) as caught:
        sample.registry.set_settings(ID, values, from_text=True)
    assert message in str(caught.value)


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"min_score": "5"}, "setting min_score: a number setting takes a number, not str"),
        ({"min_score": True}, "setting min_score: a number setting takes a number, not bool"),
        ({"notify_sales": 1}, "setting notify_sales: a checkbox setting takes true or false, not int"),
        ({"greeting": "x" * 10_001}, "setting greeting: is 10001 characters; the limit is 10000"),
    ],
)
def test_json_values_are_strict(sample: Host, values: dict, message: str) -> None:
    with pytest.raises(SettingsError, match=message):
        sample.registry.set_settings(ID, values)


def test_one_bad_value_writes_nothing(sample: Host) -> None:
    revision = sample.registry.revision()
    with pytest.raises(SettingsError) as caught:
        sample.registry.set_settings(
            ID, {"greeting": "Hi", "min_score": "x", "notify_sales": "?"}, from_text=True
        )
    assert [e.field for e in caught.value.errors] == ["min_score", "notify_sales"]
    assert sample.registry.typed_settings(ID)["greeting"] == "Lead scores"
    assert sample.registry.revision() == revision


def test_secret_is_encrypted_at_rest_and_masked_for_people(sample: Host) -> None:
    sample.registry.set_settings(ID, {"api_key": "sk-live-123456"})
    with sample.db.session() as s:
        row = s.scalars(select(PluginSetting).where(PluginSetting.name == "api_key")).one()
        assert row.value is None
        assert row.ciphertext is not None
        assert "sk-live" not in row.ciphertext
    shown = {r["name"]: r for r in sample.registry.get_settings(ID)}
    assert shown["api_key"]["value"] == MASK
    assert "sk-live" not in sample.registry.show(ID).model_dump_json()
    assert sample.registry.typed_settings(ID)["api_key"] == "sk-live-123456"


def test_sending_back_the_mask_keeps_the_secret(sample: Host) -> None:
    sample.registry.set_settings(ID, {"api_key": "sk-live-123456"})
    sample.registry.set_settings(ID, {"api_key": MASK, "greeting": "Hey"})
    sample.registry.set_settings(ID, {"api_key": ""})
    assert sample.registry.typed_settings(ID)["api_key"] == "sk-live-123456"


def test_secret_without_a_key_is_refused_and_nothing_written(tmp_path: Path, database_url: str) -> None:
    config = make_config(tmp_path / "data", database_url, secret_key=None)
    host = Host(config).ready()
    host.registry.install(SAMPLE_PLUGIN)
    with pytest.raises(SecretKeyError, match="SERVICES_AI_SECRET_KEY is not set"):
        host.registry.set_settings(ID, {"greeting": "Hi", "api_key": "sk"})
    assert host.registry.typed_settings(ID)["greeting"] == "Lead scores"
    host.close()


def test_ciphertext_copied_to_another_plugin_does_not_decrypt(host: Host, tmp_path: Path) -> None:
    secret = [{"name": "token", "type": "password"}]
    for name in ("Alpha", "Beta"):
        host.registry.install(write_plugin(tmp_path / name, manifest_for(name, settings=secret), LEAD_MAIN))
    host.registry.set_settings("alpha", {"token": "alpha-secret"})
    host.registry.set_settings("beta", {"token": "beta-secret"})
    with host.db.session() as s:
        stolen = s.scalars(select(PluginSetting.ciphertext).where(PluginSetting.plugin_id == "alpha")).one()
        s.execute(update(PluginSetting).where(PluginSetting.plugin_id == "beta").values(ciphertext=stolen))
    with pytest.raises(SecretKeyError, match="holds a value written for another plugin or setting"):
        host.registry.typed_settings("beta")


def test_keys_rotate(sample: Host) -> None:
    sample.registry.set_settings(ID, {"api_key": "rotate-me"})
    new_key = Fernet.generate_key().decode()
    old_key = sample.config.secret_keys()[0]
    both = Keyring([new_key, old_key])
    with sample.db.session() as s:
        row = s.scalars(select(PluginSetting).where(PluginSetting.name == "api_key")).one()
        assert both.decrypt(ID, "api_key", row.ciphertext) == "rotate-me"
        rotated = both.rotate(row.ciphertext)
    assert Keyring([new_key]).decrypt(ID, "api_key", rotated) == "rotate-me"


def test_bad_key_is_a_clear_error() -> None:
    with pytest.raises(SecretKeyError, match="key #1 is not a Fernet key"):
        Keyring(["not-a-key"])


def test_parse_text_select_with_integer_options() -> None:
    manifest = parse_manifest(
        manifest_for(settings=[{"name": "n", "type": "select", "options": [{"value": 1, "label": "one"}]}])
    )
    spec = manifest.settings[0]
    assert parse_text(spec, "1") == 1
    with pytest.raises(ValueError, match="is not one of the options"):
        parse_text(spec, "2")
