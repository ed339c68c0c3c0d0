"""Plugin settings: typed validation per setting type, and encryption of secret ones at rest.

A plugin sees only its own settings, typed, with defaults applied and secrets decrypted for it
alone. Secret values are Fernet tokens (MultiFernet, so keys can rotate) bound to the plugin and
the setting they were written for: a token copied into another plugin's row does not decrypt.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from cryptography.fernet import Fernet, InvalidToken, MultiFernet

from schemas.errors import FieldError
from schemas.manifest import Manifest, SettingSpec, default_problem
from services_ai_plugins.errors import SecretKeyError

#: What the CLI and the API show in place of a stored secret. Sending it back means "unchanged".
MASK = "********"
MAX_TEXT_LENGTH = 10_000

_TRUE = {"true", "1", "yes", "on", "y"}
_FALSE = {"false", "0", "no", "off", "n", ""}


class Keyring:
    """The Fernet keys from ``SERVICES_AI_SECRET_KEY`` (newest first)."""

    def __init__(self, keys: Iterable[str]) -> None:
        self._keys = list(keys)
        fernets = []
        for i, key in enumerate(self._keys):
            try:
                fernets.append(Fernet(key.encode()))
            except (ValueError, TypeError):
                raise SecretKeyError(
                    f"SERVICES_AI_SECRET_KEY: key #{i + 1} is not a Fernet key "
                    "(32 url-safe base64-encoded bytes; make one with `services-ai secret-key`)"
                ) from None
        self._multi = MultiFernet(fernets) if fernets else None

    @property
    def available(self) -> bool:
        return self._multi is not None

    def _require(self, setting: str) -> MultiFernet:
        if self._multi is None:
            raise SecretKeyError(
                f"SERVICES_AI_SECRET_KEY is not set, so secret setting {setting!r} cannot be "
                "stored or read (make a key with `services-ai secret-key`); nothing was written"
            )
        return self._multi

    def encrypt(self, plugin_id: str, name: str, value: str) -> str:
        """A token that only decrypts back to ``value`` for this plugin and setting."""
        payload = json.dumps({"p": plugin_id, "n": name, "v": value}, separators=(",", ":"))
        return self._require(name).encrypt(payload.encode()).decode()

    def decrypt(self, plugin_id: str, name: str, token: str) -> str:
        multi = self._require(name)
        try:
            payload = json.loads(multi.decrypt(token.encode()))
        except (InvalidToken, ValueError):
            raise SecretKeyError(
                f"secret setting {name!r} of plugin {plugin_id} cannot be decrypted with "
                "SERVICES_AI_SECRET_KEY (was the key changed without keeping the old one?)"
            ) from None
        if payload.get("p") != plugin_id or payload.get("n") != name:
            raise SecretKeyError(
                f"secret setting {name!r} of plugin {plugin_id} holds a value written for "
                "another plugin or setting; set it again"
            )
        return str(payload["v"])

    def rotate(self, token: str) -> str:
        """Re-encrypt with the newest key (after a new key is put first)."""
        return self._require("").rotate(token.encode()).decode()


def parse_text(spec: SettingSpec, text: str) -> Any:
    """Turn what a person typed (CLI argument, form field) into the setting's typed value."""
    kind = spec.type
    if kind == "number":
        stripped = text.strip()
        try:
            value: Any = int(stripped)
        except ValueError:
            try:
                value = float(stripped)
            except ValueError:
                raise ValueError(f"{text[:40]!r} is not a number") from None
            if not math.isfinite(value):
                raise ValueError(f"{text[:40]!r} is not a finite number") from None
        return value
    if kind == "checkbox":
        lowered = text.strip().lower()
        if lowered in _TRUE:
            return True
        if lowered in _FALSE:
            return False
        raise ValueError(f"{text[:40]!r} is not true or false")
    if kind == "select":
        for option in spec.options or []:
            if str(option.value) == text:
                return option.value
        shown = ", ".join(str(o.value) for o in spec.options or [])
        raise ValueError(f"{text[:40]!r} is not one of the options ({shown})")
    return text


def check_value(spec: SettingSpec, value: Any) -> Any:
    """Validate a typed value (JSON from the API, or parsed text); returns it normalised."""
    if value is None or (spec.required and isinstance(value, str) and not value.strip()):
        if spec.required:
            raise ValueError("is required")
        return None
    problem = default_problem(spec, value)
    if problem:
        raise ValueError(problem)
    return value


@dataclass(frozen=True)
class StoredSetting:
    """A row as stored: a plain JSON value, or a ciphertext for secrets."""

    value: Any = None
    ciphertext: str | None = None


def prepare_update(
    plugin_id: str,
    manifest: Manifest,
    current: Mapping[str, StoredSetting],
    changes: Mapping[str, Any],
    keyring: Keyring,
    *,
    from_text: bool = False,
) -> dict[str, StoredSetting | None]:
    """Validate every change first; return the rows to write (``None`` = delete the row).

    All or nothing: if any value is bad, :class:`SettingsUpdateError` lists every field at fault
    and nothing is returned to be written. A secret sent back as the mask or as an empty string
    keeps its stored value (a form never shows secrets, so it cannot send them back).
    """
    errors: list[FieldError] = []
    out: dict[str, StoredSetting | None] = {}
    for name, raw in changes.items():
        spec = manifest.setting(name)
        if spec is None:
            known = ", ".join(s.name for s in manifest.settings) or "none"
            errors.append(FieldError(name, f"is not a setting of this plugin (settings: {known})"))
            continue
        if spec.is_secret and raw in (MASK, "", None) and name in current:
            continue  # unchanged: the form sent back what it was shown
        try:
            value = parse_text(spec, raw) if from_text and isinstance(raw, str) else raw
            if from_text and raw == "" and spec.type in ("number", "select"):
                value = None  # an empty field clears an optional number or select
            value = check_value(spec, value)
        except ValueError as exc:
            errors.append(FieldError(name, str(exc)))
            continue
        if value is None:
            out[name] = None
        elif spec.is_secret:
            out[name] = StoredSetting(ciphertext=keyring.encrypt(plugin_id, name, value))
        else:
            out[name] = StoredSetting(value=value)
    if errors:
        raise SettingsUpdateError(errors)
    return out


class SettingsUpdateError(Exception):
    """Field errors from :func:`prepare_update` (the registry wraps them in SettingsError)."""

    def __init__(self, errors: list[FieldError]) -> None:
        self.errors = errors
        super().__init__("; ".join(map(str, errors)))


def typed_values(
    plugin_id: str, manifest: Manifest, stored: Mapping[str, StoredSetting], keyring: Keyring
) -> dict[str, Any]:
    """Every declared setting, typed: the stored value, else the default, else ``None``.

    Secrets are decrypted here, for the plugin's own context only.
    """
    out: dict[str, Any] = {}
    for spec in manifest.settings:
        row = stored.get(spec.name)
        if row is None:
            out[spec.name] = spec.default
        elif row.ciphertext is not None:
            out[spec.name] = keyring.decrypt(plugin_id, spec.name, row.ciphertext)
        else:
            out[spec.name] = row.value
    return out


def display_values(manifest: Manifest, stored: Mapping[str, StoredSetting]) -> list[dict[str, Any]]:
    """Settings for people: secrets masked (never decrypted), defaults marked."""
    rows = []
    for spec in manifest.settings:
        row = stored.get(spec.name)
        is_set = row is not None
        if spec.is_secret:
            value: Any = MASK if is_set else None
        else:
            value = row.value if row is not None else spec.default
        rows.append(
            {
                "name": spec.name,
                "type": spec.type,
                "label": spec.display_label,
                "value": value,
                "is_set": is_set,
                "default": spec.default,
                "required": spec.required,
                "secret": spec.is_secret,
                "description": spec.description,
                "options": [o.model_dump() for o in spec.options] if spec.options else None,
                "min": spec.min,
                "max": spec.max,
                "max_length": spec.max_length,
            }
        )
    return rows


def missing_required(manifest: Manifest, stored: Mapping[str, StoredSetting]) -> list[str]:
    """Required settings with neither a stored value nor a default."""
    return [s.name for s in manifest.settings if s.required and s.default is None and s.name not in stored]


def carry_over(
    old: Mapping[str, StoredSetting], manifest: Manifest
) -> tuple[dict[str, StoredSetting], list[str]]:
    """Settings kept across an upgrade or rollback: those still declared, same kind, still valid.

    Returns the kept rows and a note for each value dropped (so the admin is told).
    """
    kept: dict[str, StoredSetting] = {}
    notes: list[str] = []
    for name, row in old.items():
        spec = manifest.setting(name)
        if spec is None:
            notes.append(f"setting {name!r} is no longer declared; its value was removed")
            continue
        if (row.ciphertext is not None) != spec.is_secret:
            notes.append(f"setting {name!r} changed between secret and plain; set it again")
            continue
        if row.ciphertext is None and default_problem(spec, row.value):
            notes.append(f"setting {name!r}: the stored value no longer fits; set it again")
            continue
        kept[name] = row
    return kept, notes
