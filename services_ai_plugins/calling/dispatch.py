"""Calling plugins: each implementation on its own, with a time limit and its errors captured.

Pluggy stops calling the remaining implementations when one raises, so the host never calls a
hook through Pluggy's fan-out: it takes each plugin's implementation and calls it alone. One
plugin's exception, hang or huge return value never changes another plugin's result.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from services_ai_plugins.calling.loader import HookCall
from services_ai_plugins.calling.timelimit import PluginTimeout, call_with_time_limit
from services_ai_plugins.errors import TransientError

SUCCESS = "success"
ERROR = "error"
TIMEOUT = "timeout"
SKIPPED = "skipped"
RETRY = "retry"
FAILURE_STATUSES = (ERROR, TIMEOUT)

MAX_ERROR_CHARS = 500


@dataclass(frozen=True)
class Outcome:
    """What one call of one plugin's hook came to.

    ``result_json`` is the checked result, already encoded (the hot path stores it as it is);
    ``value`` is what the plugin returned, for callers that asked for no check.
    """

    status: str
    result_json: str | None = None
    error: str | None = None
    duration_ms: float = 0.0
    value: Any = None

    @property
    def ok(self) -> bool:
        return self.status == SUCCESS

    @property
    def result(self) -> Any:
        """The result as JSON data (a fresh copy), or the unchecked value."""
        return json.loads(self.result_json) if self.result_json is not None else self.value


def _scrub(text: str, redact: Iterable[str]) -> str:
    for value in redact:
        if value and len(value) >= 3:
            text = text.replace(value, "[redacted]")
    return text


def describe_exception(exc: BaseException, redact: Iterable[str] = ()) -> str:
    """``Type: message`` on one line, personal data removed, capped in length."""
    text = " ".join(str(exc).split())
    line = f"{type(exc).__name__}: {text}" if text else type(exc).__name__
    return _scrub(line, redact)[:MAX_ERROR_CHARS]


_encode = json.JSONEncoder(allow_nan=False, separators=(",", ":"), ensure_ascii=False).encode


def check_result(value: Any, max_bytes: int) -> tuple[str | None, str | None]:
    """The value encoded as it will be stored, or why it cannot be stored.

    Encoding right after the call also freezes it: a plugin that changes the object it
    returned later changes nothing stored.
    """
    try:
        encoded = _encode(value)
    except (TypeError, ValueError) as exc:
        return None, f"returned a value that is not JSON-serialisable ({type(value).__name__}: {exc})"[
            :MAX_ERROR_CHARS
        ]
    except RecursionError:
        return None, "returned a value nested too deeply to serialise"
    try:
        size = len(encoded.encode("utf-8"))
    except UnicodeEncodeError:
        return None, "returned text that is not valid Unicode (a lone surrogate)"
    if size > max_bytes:
        return None, f"returned {size} bytes of JSON; the limit is {max_bytes}"
    if "\\u0000" in encoded:
        return None, "returned text with a NUL character, which cannot be stored"
    return encoded, None


def invoke(
    call: HookCall,
    kwargs: Mapping[str, Any],
    *,
    time_limit: float,
    max_bytes: int,
    redact: Iterable[str] = (),
    check: bool = True,
) -> Outcome:
    """Call one implementation with the arguments it asks for; never raises for plugin faults."""
    args = {name: kwargs[name] for name in call.argnames if name in kwargs}
    start = time.perf_counter()
    try:
        value = call_with_time_limit(lambda: call.function(**args), time_limit)
    except PluginTimeout as exc:
        return Outcome(TIMEOUT, error=str(exc), duration_ms=_ms(start))
    except TransientError as exc:
        return Outcome(RETRY, error=describe_exception(exc, redact), duration_ms=_ms(start))
    except KeyboardInterrupt:
        raise
    except BaseException as exc:  # SystemExit and friends from plugin code are its own fault
        return Outcome(ERROR, error=describe_exception(exc, redact), duration_ms=_ms(start))
    duration = _ms(start)
    if not check:
        return Outcome(SUCCESS, value=value, duration_ms=duration)
    encoded, problem = check_result(value, max_bytes)
    if problem:
        return Outcome(ERROR, error=problem, duration_ms=duration)
    return Outcome(SUCCESS, result_json=encoded, duration_ms=duration)


def _ms(start: float) -> float:
    return round((time.perf_counter() - start) * 1000.0, 3)
