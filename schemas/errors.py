"""Validation errors that name the field and say what is wrong."""

from __future__ import annotations

import re
from dataclasses import dataclass

from pydantic import ValidationError

_HEAD_RE = re.compile(r"^([a-z_][a-z0-9_]*): (.+)$", re.DOTALL)


@dataclass(frozen=True)
class FieldError:
    """One problem with one field: ``field`` is a dotted path such as ``settings.2.options``."""

    field: str
    reason: str

    def __str__(self) -> str:
        return f"{self.field}: {self.reason}" if self.field else self.reason


class ContractError(ValueError):
    """A document (manifest or event) broke its contract; ``errors`` lists every field at fault."""

    def __init__(self, what: str, errors: list[FieldError]) -> None:
        self.what = what
        self.errors = errors
        super().__init__(f"{what}: " + "; ".join(str(e) for e in errors))

    @property
    def field(self) -> str:
        """The first field at fault (the one a one-line message leads with)."""
        return self.errors[0].field if self.errors else ""

    @classmethod
    def from_validation_error(cls, what: str, exc: ValidationError, prefix: str = "") -> ContractError:
        return cls(what, field_errors(exc, prefix))


_PLAIN_KEY_RE = re.compile(r"^[\w-]{1,64}$")


def _part(p: int | str) -> str:
    """A path part as it may be shown: a key sent by whoever wrote the document is quoted and
    escaped unless it is a plain name (one with a newline would have forged a log line)."""
    text = str(p)
    return text if isinstance(p, int) or _PLAIN_KEY_RE.match(text) else repr(text[:64])


def _loc(loc: tuple[int | str, ...], prefix: str) -> str:
    # Discriminated unions put the tag in the location ("lead.created"); it means nothing to the
    # reader, who wants the path inside their own document.
    parts = [_part(p) for p in loc if not (isinstance(p, str) and "." in p and p[0].islower())]
    path = ".".join(parts)
    return f"{prefix}.{path}" if prefix and path else (prefix or path)


def field_errors(exc: ValidationError, prefix: str = "") -> list[FieldError]:
    """Turn a pydantic error into field errors with short, human reasons."""
    out: list[FieldError] = []
    for err in exc.errors(include_url=False):
        loc = tuple(err.get("loc", ()))
        msg = str(err.get("msg", "invalid"))
        kind = err.get("type", "")
        if kind == "extra_forbidden":
            field = _loc(loc, prefix)
            out.append(FieldError(field, "unknown field (not part of the contract)"))
            continue
        if kind == "missing":
            out.append(FieldError(_loc(loc, prefix), "is required"))
            continue
        # pydantic prefixes messages from our validators with "Value error, ".
        for noise in ("Value error, ", "Assertion failed, "):
            if msg.startswith(noise):
                msg = msg[len(noise) :]
        # Whole-model checks name their field at the head of the message ("options: ...").
        head = _HEAD_RE.match(msg)
        if head:
            loc = (*loc, head[1])
            msg = head[2]
        out.append(FieldError(_loc(loc, prefix), msg[:1].lower() + msg[1:]))
    return out
