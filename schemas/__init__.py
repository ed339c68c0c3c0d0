"""Wire contracts of Services AI plugins: the manifest and the events.

This package is language-neutral at heart: the pydantic models here are the source of the JSON
Schema files in ``schemas/json/`` that non-Python publishers and plugin authors validate against.
It imports nothing else of the project, so a platform service can depend on it alone.
"""

from schemas.errors import ContractError, FieldError
from schemas.events import (
    EVENT_MODELS,
    EVENT_TYPES,
    Booking,
    BookingCreated,
    BookingUpdated,
    Event,
    Lead,
    LeadCreated,
    canonical_type,
    parse_event,
)
from schemas.jsonload import strict_json_loads
from schemas.manifest import (
    HOOK_NAMES,
    PERMISSION_NAMES,
    Manifest,
    PermissionSpec,
    SettingOption,
    SettingSpec,
    normalised_id,
    parse_manifest,
    slugify,
)

__all__ = [
    "EVENT_MODELS",
    "EVENT_TYPES",
    "HOOK_NAMES",
    "PERMISSION_NAMES",
    "Booking",
    "BookingCreated",
    "BookingUpdated",
    "ContractError",
    "Event",
    "FieldError",
    "Lead",
    "LeadCreated",
    "Manifest",
    "PermissionSpec",
    "SettingOption",
    "SettingSpec",
    "canonical_type",
    "normalised_id",
    "parse_event",
    "parse_manifest",
    "slugify",
    "strict_json_loads",
]
