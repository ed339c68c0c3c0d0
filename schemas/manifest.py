"""The plugin manifest (``manifest.json``): what a plugin is, needs, and offers.

Both seed formats are accepted unchanged: the README seed's ``hooks`` and ``plugin_class``, and
the plan seed's ``hook_specs``, ``is_pluggy_plugin`` and ``entry_point: "main.py"``.
"""

from __future__ import annotations

import math
import re
import unicodedata
from functools import cached_property
from typing import Annotated, Any, Literal

from packaging.specifiers import InvalidSpecifier, SpecifierSet
from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StrictBool,
    StrictFloat,
    StrictInt,
    StrictStr,
    ValidationError,
    WithJsonSchema,
    field_validator,
    model_validator,
)

from schemas.errors import ContractError, FieldError
from schemas.jsonload import strict_json_loads

__all__ = [
    "EMAIL_RE",
    "HOOK_NAMES",
    "MAX_ID_LENGTH",
    "MAX_SETTINGS",
    "MODULE_RE",
    "PERMISSION_NAMES",
    "SEMVER_RE",
    "SETTING_NAME_RE",
    "SETTING_TYPES",
    "SLUG_RE",
    "Manifest",
    "OptionValue",
    "PermissionSpec",
    "SettingOption",
    "SettingSpec",
    "SettingType",
    "default_problem",
    "normalised_id",
    "parse_manifest",
    "semver_key",
    "slugify",
]

HOOK_NAMES: tuple[str, ...] = (
    "plugin_installed",
    "plugin_uninstalled",
    "plugin_enabled",
    "plugin_disabled",
    "lead_created",
    "booking_created",
    "booking_updated",
    "dashboard_widget",
    "settings_page",
    "data_export",
)
PERMISSION_NAMES: tuple[str, ...] = (
    "lead_access",
    "booking_access",
    "dashboard_widget",
    "data_export",
    "network",
    "read_leads",
    "read_bookings",
    "create_bookings",
)
#: A host a plugin with ``network`` says it calls: a DNS name or an IPv4 address, an optional port.
HOST_RE = re.compile(
    r"^(?=.{1,253}(?::\d{1,5})?$)[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?(?:\.[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?)*(?::\d{1,5})?$"
)
SETTING_TYPES = ("text", "number", "checkbox", "select", "textarea", "password")
SettingType = Literal["text", "number", "checkbox", "select", "textarea", "password"]

# semver.org's own regular expression.
SEMVER_RE = re.compile(
    r"^(0|[1-9]\d*)\.(0|[1-9]\d*)\.(0|[1-9]\d*)"
    r"(?:-((?:0|[1-9]\d*|\d*[a-zA-Z-][0-9a-zA-Z-]*)(?:\.(?:0|[1-9]\d*|\d*[a-zA-Z-][0-9a-zA-Z-]*))*))?"
    r"(?:\+([0-9a-zA-Z-]+(?:\.[0-9a-zA-Z-]+)*))?$"
)
SLUG_RE = re.compile(r"^[a-z0-9]+(?:-[a-z0-9]+)*$")
SETTING_NAME_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,63}$")
MODULE_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,99}$")
EMAIL_RE = re.compile(r"^[^@\s]{1,64}@[^@\s]+\.[^@\s]+$")
_CONTROL_RE = re.compile(r"[\x00-\x1f\x7f]")
# Characters that show nothing or reorder what is shown ("Trojan Source", CVE-2021-42574): an id
# or name holding one reads as another plugin's. The categories are format, control, private
# use, surrogate, line and paragraph separators; the listed characters are the bidirectional
# controls and zero-width characters, named even where the categories cover them.
_INVISIBLE_CATEGORIES = frozenset({"Cf", "Cc", "Co", "Cs", "Zl", "Zp"})
_INVISIBLE_CHARS = frozenset(
    chr(c)
    for c in (
        *range(0x202A, 0x202F),  # LRE, RLE, PDF, LRO, RLO
        *range(0x2066, 0x206A),  # LRI, RLI, FSI, PDI
        0x200E,  # LEFT-TO-RIGHT MARK
        0x200F,  # RIGHT-TO-LEFT MARK
        0x061C,  # ARABIC LETTER MARK
        *range(0x200B, 0x200E),  # ZERO WIDTH SPACE, NON-JOINER, JOINER
        0x2060,  # WORD JOINER
        0xFEFF,  # ZERO WIDTH NO-BREAK SPACE (byte-order mark)
    )
)
_SEPARATOR_RUN_RE = re.compile(r"[-_]+")
MAX_ID_LENGTH = 64
MAX_SETTINGS = 100


def slugify(name: str) -> str:
    """The plugin id derived from a name: lower-cased, each run of other characters -> ``-``.

    ``"Lead Scorer"`` -> ``"lead-scorer"``.
    """
    return re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")


def normalised_id(plugin_id: str) -> str:
    """The key under which two plugin ids name the same plugin to a person reading them.

    NFKC, case-folded (and NFKC again, as folding can undo it), each run of ``-`` and ``_`` one
    ``-``: ``Lead_Scorer``, ``lead--scorer`` and ``lead-scorer`` in full-width letters all give
    ``lead-scorer``. For the registry, to refuse an id whose key is an installed plugin's, so
    that one plugin cannot pass for another.
    """
    folded = unicodedata.normalize("NFKC", unicodedata.normalize("NFKC", plugin_id).casefold())
    return _SEPARATOR_RUN_RE.sub("-", folded)


def _refuse_invisible(value: str) -> None:
    for ch in value:
        if ch in _INVISIBLE_CHARS or unicodedata.category(ch) in _INVISIBLE_CATEGORIES:
            raise ValueError(f"contains an invisible or bidirectional control character (U+{ord(ch):04X})")


def semver_key(version: str) -> tuple[Any, ...]:
    """A sort key that orders versions as semver.org says (pre-releases before the release)."""
    m = SEMVER_RE.match(version)
    if not m:
        raise ValueError(f"{version!r} is not a semantic version")
    major, minor, patch, pre = int(m[1]), int(m[2]), int(m[3]), m[4]
    if pre is None:
        return (major, minor, patch, 1, ())
    ids = tuple((0, int(p), "") if p.isdigit() else (1, 0, p) for p in pre.split("."))
    return (major, minor, patch, 0, ids)


def _plain_text(value: str, what: str, max_len: int, *, visible: bool = False) -> str:
    if _CONTROL_RE.search(value):
        raise ValueError(f"{what} must not contain control characters (newline, tab, NUL...)")
    if visible:
        _refuse_invisible(value)
    if value != value.strip():
        raise ValueError(f"{what} must not start or end with spaces")
    if len(value) > max_len:
        raise ValueError(f"{what} is {len(value)} characters; the limit is {max_len}")
    return value


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def _one_of(value: str, allowed: tuple[str, ...], what: str) -> str:
    if value not in allowed:
        raise ValueError(f"unknown {what} {value[:60]!r} (known: {', '.join(allowed)})")
    return value


class PermissionSpec(_Strict):
    """A permission the plugin asks for; an administrator grants or revokes it."""

    name: Annotated[StrictStr, WithJsonSchema({"enum": list(PERMISSION_NAMES)})]
    description: Annotated[StrictStr, Field(max_length=500)] = ""
    #: ``network`` only: the hosts the plugin calls (shown to the administrator who grants it).
    hosts: Annotated[list[Annotated[StrictStr, Field(max_length=260)]], Field(max_length=50)] = Field(
        default_factory=list
    )

    @field_validator("name")
    @classmethod
    def _known(cls, v: str) -> str:
        return _one_of(v, PERMISSION_NAMES, "permission")

    @field_validator("hosts")
    @classmethod
    def _hosts(cls, v: list[str]) -> list[str]:
        for host in v:
            if not HOST_RE.match(host):
                raise ValueError(f"{host[:60]!r} is not a host name (example.com, api.example.com:443)")
        return v

    @model_validator(mode="after")
    def _hosts_are_for_network(self) -> PermissionSpec:
        if self.hosts and self.name != "network":
            raise ValueError("hosts: only the network permission lists hosts")
        return self


def _option_value(v: Any) -> Any:
    if isinstance(v, bool) or not isinstance(v, str | int):
        raise ValueError("an option value is a string or an integer")
    return v


OptionValue = Annotated[
    str | int,
    BeforeValidator(_option_value),
    WithJsonSchema({"type": ["string", "integer"]}),
]


class SettingOption(_Strict):
    """One choice of a ``select`` setting."""

    value: OptionValue
    label: Annotated[StrictStr, Field(min_length=1, max_length=200)]


class SettingSpec(_Strict):
    """One setting an administrator fills in; the plugin reads it typed from its context."""

    name: StrictStr
    type: SettingType
    label: Annotated[StrictStr, Field(max_length=200)] | None = None
    required: StrictBool = False
    default: Any = None
    description: Annotated[StrictStr, Field(max_length=2000)] = ""
    options: list[SettingOption] | None = None
    secret: StrictBool = False
    min: StrictInt | StrictFloat | None = None
    max: StrictInt | StrictFloat | None = None
    max_length: Annotated[StrictInt, Field(ge=1, le=100_000)] | None = None

    @field_validator("name")
    @classmethod
    def _name(cls, v: str) -> str:
        if not SETTING_NAME_RE.match(v):
            raise ValueError(
                f"{v!r} is not a setting name (letters, digits and _, starting with a letter or _)"
            )
        return v

    @property
    def is_secret(self) -> bool:
        """Secret settings are encrypted at rest and never shown in clear."""
        return self.secret or self.type == "password"

    @property
    def display_label(self) -> str:
        return self.label or self.name.replace("_", " ").capitalize()

    @model_validator(mode="after")
    def _check(self) -> SettingSpec:
        if self.type == "select":
            if not self.options:
                raise ValueError("options: a select setting needs at least one {value, label}")
            values = [o.value for o in self.options]
            dupes = sorted({str(v) for v in values if values.count(v) > 1})
            if dupes:
                raise ValueError(f"options: duplicate option value(s) {', '.join(dupes)}")
        elif self.options is not None:
            raise ValueError(f"options: only a select setting has options, not {self.type}")
        if self.type != "number" and (self.min is not None or self.max is not None):
            raise ValueError(f"min: min and max apply to number settings only, not {self.type}")
        if self.min is not None and self.max is not None and self.min > self.max:
            raise ValueError(f"min: {self.min} is greater than max ({self.max})")
        if self.max_length is not None and self.type not in ("text", "textarea", "password"):
            raise ValueError("max_length: applies to text, textarea and password settings only")
        if self.is_secret and self.type not in ("text", "textarea", "password"):
            raise ValueError(f"secret: a {self.type} setting cannot be secret")
        if self.default is not None:
            if self.is_secret:
                raise ValueError(
                    "default: a secret setting cannot have a default (it would ship in the archive)"
                )
            problem = default_problem(self, self.default)
            if problem:
                raise ValueError(f"default: {problem}")
        return self


def default_problem(spec: SettingSpec, value: Any) -> str | None:
    """Why ``value`` does not fit ``spec`` (``None`` when it does). Shared with settings checks."""
    kind = spec.type
    if kind in ("text", "textarea", "password"):
        if not isinstance(value, str):
            return f"a {kind} setting takes a string, not {type(value).__name__}"
        limit = spec.max_length or 10_000
        if len(value) > limit:
            return f"is {len(value)} characters; the limit is {limit}"
        if kind != "textarea" and ("\n" in value or "\r" in value):
            return f"a {kind} setting takes a single line"
        return None
    if kind == "number":
        if isinstance(value, bool) or not isinstance(value, int | float):
            return f"a number setting takes a number, not {type(value).__name__}"
        if isinstance(value, float) and not math.isfinite(value):
            return "must be a finite number"
        if spec.min is not None and value < spec.min:
            return f"{value} is below the minimum {spec.min}"
        if spec.max is not None and value > spec.max:
            return f"{value} is above the maximum {spec.max}"
        return None
    if kind == "checkbox":
        if not isinstance(value, bool):
            return f"a checkbox setting takes true or false, not {type(value).__name__}"
        return None
    if kind == "select":
        allowed = [o.value for o in spec.options or []]
        if isinstance(value, bool) or value not in allowed:
            shown = ", ".join(repr(a) for a in allowed)
            return f"{value!r} is not one of the options ({shown})"
        return None
    return f"unknown setting type {kind}"  # pragma: no cover - SettingType is closed


def _manifest_schema_extra(schema: dict[str, Any]) -> None:
    # hook_specs is folded into hooks before validation, so pydantic cannot see it.
    schema["properties"]["hook_specs"] = {
        "description": "Alias of `hooks` (plan seed style); give one or the other.",
        "type": "array",
        "items": {"enum": list(HOOK_NAMES)},
    }


class Manifest(_Strict):
    """``manifest.json``. Unknown keys are refused so that a typo never passes silently."""

    schema_: StrictStr | None = Field(default=None, alias="$schema")
    name: StrictStr
    version: StrictStr
    description: Annotated[StrictStr, Field(max_length=5000)]
    author: Annotated[StrictStr, Field(min_length=1, max_length=200)]
    email: StrictStr
    id: StrictStr | None = None
    entry_point: StrictStr = "main"
    plugin_class: StrictStr | None = None
    requires_python: StrictStr | None = None
    is_pluggy_plugin: StrictBool = True
    permissions: Annotated[
        list[PermissionSpec],
        WithJsonSchema(
            {
                "type": "array",
                "items": {
                    "anyOf": [
                        {"enum": list(PERMISSION_NAMES)},
                        {
                            "type": "object",
                            "properties": {
                                "name": {"enum": list(PERMISSION_NAMES)},
                                "description": {"type": "string", "maxLength": 500},
                            },
                            "required": ["name"],
                            "additionalProperties": False,
                        },
                    ]
                },
            }
        ),
    ] = Field(default_factory=list)
    settings: Annotated[list[SettingSpec], Field(max_length=MAX_SETTINGS)] = Field(default_factory=list)
    hooks: Annotated[
        list[StrictStr],
        WithJsonSchema(
            {
                "type": "array",
                "items": {"enum": list(HOOK_NAMES)},
                "description": "Implemented hooks; the plan seed's `hook_specs` is an alias.",
            }
        ),
    ] = Field(default_factory=list)

    model_config = ConfigDict(
        extra="forbid",
        frozen=True,
        populate_by_name=True,
        title="Services AI plugin manifest",
        json_schema_extra=_manifest_schema_extra,
    )

    @model_validator(mode="before")
    @classmethod
    def _aliases(cls, data: Any) -> Any:
        if isinstance(data, dict) and "hook_specs" in data:
            if "hooks" in data:
                raise ValueError("hook_specs: is an alias of hooks; give one or the other, not both")
            data = dict(data)
            data["hooks"] = data.pop("hook_specs")
        return data

    @field_validator("permissions", mode="before")
    @classmethod
    def _permission_strings(cls, v: Any) -> Any:
        # The plan seed lists bare names; the README seed lists {name, description}.
        if isinstance(v, list):
            return [{"name": p} if isinstance(p, str) else p for p in v]
        return v

    @field_validator("hooks")
    @classmethod
    def _hooks(cls, v: list[str]) -> list[str]:
        for hook in v:
            _one_of(hook, HOOK_NAMES, "hook")
        return v

    @field_validator("name")
    @classmethod
    def _name(cls, v: str) -> str:
        _plain_text(v, "name", 100, visible=True)
        if not v:
            raise ValueError("name must not be empty")
        if not slugify(v):
            raise ValueError("name must contain at least one letter or digit")
        return v

    @field_validator("version")
    @classmethod
    def _version(cls, v: str) -> str:
        if not SEMVER_RE.match(v):
            raise ValueError(f"{v!r} is not a semantic version (MAJOR.MINOR.PATCH, e.g. 1.0.0)")
        return v

    @field_validator("author")
    @classmethod
    def _author(cls, v: str) -> str:
        return _plain_text(v, "author", 200)

    @field_validator("email")
    @classmethod
    def _email(cls, v: str) -> str:
        if not EMAIL_RE.match(v) or len(v) > 254:
            raise ValueError(f"{v!r} is not an email address")
        return v

    @field_validator("id")
    @classmethod
    def _id(cls, v: str | None) -> str | None:
        if v is None:
            return v
        _refuse_invisible(v)
        if not SLUG_RE.match(v) or len(v) > MAX_ID_LENGTH:
            raise ValueError(
                f"{v!r} is not a plugin id (lower-case letters, digits and single hyphens, "
                f"at most {MAX_ID_LENGTH} characters)"
            )
        return v

    @field_validator("entry_point")
    @classmethod
    def _entry_point(cls, v: str) -> str:
        module = v[:-3] if v.endswith(".py") else v
        if not MODULE_RE.match(module):
            raise ValueError(f"{v!r} is not a module of the plugin (e.g. main or main.py)")
        return v

    @field_validator("plugin_class")
    @classmethod
    def _plugin_class(cls, v: str | None) -> str | None:
        if v is not None and not MODULE_RE.match(v):
            raise ValueError(f"{v!r} is not a Python class name")
        return v

    @field_validator("requires_python")
    @classmethod
    def _requires_python(cls, v: str | None) -> str | None:
        if v is None:
            return v
        try:
            SpecifierSet(v)
        except InvalidSpecifier:
            raise ValueError(f"{v!r} is not a version specifier (e.g. >=3.10)") from None
        return v

    @field_validator("is_pluggy_plugin")
    @classmethod
    def _pluggy(cls, v: bool) -> bool:
        if not v:
            raise ValueError("only Pluggy plugins are supported; set it to true or leave it out")
        return v

    @model_validator(mode="after")
    def _check(self) -> Manifest:
        names = [p.name for p in self.permissions]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"permissions: {', '.join(dupes)} listed more than once")
        setting_names = [s.name for s in self.settings]
        dupes = sorted({n for n in setting_names if setting_names.count(n) > 1})
        if dupes:
            raise ValueError(f"settings: duplicate setting name(s) {', '.join(dupes)}")
        dupes = sorted({h for h in self.hooks if self.hooks.count(h) > 1})
        if dupes:
            raise ValueError(f"hooks: {', '.join(dupes)} listed more than once")
        if self.id is None and len(slugify(self.name)) > MAX_ID_LENGTH:
            raise ValueError(f"id: the name gives an id over {MAX_ID_LENGTH} characters; set id")
        return self

    # -- derived values ---------------------------------------------------------------------

    @cached_property
    def plugin_id(self) -> str:
        """The id commands take: ``id`` if given, else derived from ``name`` (worked out once:
        the hot path asks for it on every call)."""
        return self.id or slugify(self.name)

    @property
    def entry_module(self) -> str:
        """The entry point as a module name relative to the plugin package (``main``)."""
        return self.entry_point[:-3] if self.entry_point.endswith(".py") else self.entry_point

    @property
    def permission_names(self) -> list[str]:
        return [p.name for p in self.permissions]

    def setting(self, name: str) -> SettingSpec | None:
        return next((s for s in self.settings if s.name == name), None)


def parse_manifest(raw: bytes | str | dict[str, Any], what: str = "manifest.json") -> Manifest:
    """Parse and validate a manifest, raising :class:`ContractError` naming each bad field."""
    data = raw if isinstance(raw, dict) else strict_json_loads(raw, what, max_bytes=256 * 1024)
    if not isinstance(data, dict):
        raise ContractError(what, [FieldError("", "must be a JSON object")])
    try:
        return Manifest.model_validate(data)
    except ValidationError as exc:
        raise ContractError.from_validation_error(what, exc) from None
