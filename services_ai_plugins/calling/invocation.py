"""The plugin's side of a call: build its arguments and context, call it, encode what it returns.

The same code runs wherever the plugin does: in this process (the inline executor,
``PluginHarness``) and inside a sandbox process. It trusts nothing it gets back: the value is
encoded to JSON at once (so a plugin that changes the object later changes nothing), and an
exception becomes its type, message and the frames that are inside the plugin's own files.
"""

from __future__ import annotations

import json
import linecache
import logging
import os
import time
from collections.abc import Mapping
from types import TracebackType
from typing import Any

from services_ai_plugins.calling.context import build_context
from services_ai_plugins.calling.executor import (
    ERROR,
    RETRY,
    SUCCESS,
    TIMEOUT,
    Call,
    Failure,
    Frame,
    Inspection,
    Reply,
)
from services_ai_plugins.calling.loader import LoadedPlugin
from services_ai_plugins.calling.records import fresh
from services_ai_plugins.calling.timelimit import PluginTimeout, call_with_time_limit
from services_ai_plugins.errors import TransientError

__all__ = ["MAX_FRAMES", "Invoker", "encode_value", "inspect_loaded", "plugin_frames"]

MAX_FRAMES = 20
MAX_MESSAGE = 1000
MAX_FRAME_TEXT = 200

_encode = json.JSONEncoder(allow_nan=False, separators=(",", ":"), ensure_ascii=False).encode


def encode_value(value: Any) -> tuple[str | None, str | None]:
    """``(json_text, None)``, or ``(None, why it cannot be encoded)``."""
    try:
        encoded = _encode(value)
    except (TypeError, ValueError) as exc:
        return None, f"returned a value that is not JSON-serialisable ({type(value).__name__}: {exc})"[:500]
    except RecursionError:
        return None, "returned a value nested too deeply to serialise"
    try:
        encoded.encode("utf-8")
    except UnicodeEncodeError:
        return None, "returned text that is not valid Unicode (a lone surrogate)"
    return encoded, None


def plugin_frames(tb: TracebackType | None, roots: tuple[str, ...]) -> tuple[Frame, ...]:
    """The frames of a traceback that are in the plugin's own files, paths relative to them."""
    frames: list[Frame] = []
    while tb is not None:
        code = tb.tb_frame.f_code
        filename = code.co_filename
        for root in roots:
            if filename.startswith(root + os.sep):
                line = tb.tb_lineno
                text = linecache.getline(filename, line).strip()[:MAX_FRAME_TEXT]
                frames.append(Frame(filename[len(root) + 1 :], line, code.co_name, text))
                break
        tb = tb.tb_next
    return tuple(frames[-MAX_FRAMES:])


def inspect_loaded(loaded: LoadedPlugin) -> Inspection:
    return Inspection({hook: call.argnames for hook, call in loaded.hooks.items()})


def _ms(start: float) -> float:
    return round((time.perf_counter() - start) * 1000.0, 3)


class Invoker:
    """Calls one loaded plugin's hooks with its own settings and logger."""

    def __init__(self, loaded: LoadedPlugin, settings: Mapping[str, Any], logger: logging.Logger) -> None:
        self.loaded = loaded
        self.settings = dict(settings)
        self.logger = logger
        self.roots = loaded.roots

    def arguments(self, hook: str, call: Call) -> dict[str, Any]:
        """The keyword arguments the implementation asks for: its own copies of the data."""
        impl = self.loaded.hooks[hook]
        context = build_context(
            self.loaded.manifest,
            fresh(self.settings),
            self.logger,
            extra={k: fresh(v) for k, v in call.context.items()},
        )
        available = {**call.args, "context": context}
        return {
            name: (available[name] if name == "context" else fresh(available[name]))
            for name in impl.argnames
            if name in available
        }

    def call(self, hook: str, call: Call, time_limit: float | None) -> Reply:
        """One call; never raises for what the plugin does (``KeyboardInterrupt`` aside)."""
        impl = self.loaded.hooks.get(hook)
        if impl is None:
            return Reply(ERROR, reason=f"does not implement {hook}")
        kwargs = self.arguments(hook, call)
        start = time.perf_counter()
        try:
            if time_limit is None:
                value = impl.function(**kwargs)
            else:
                value = call_with_time_limit(lambda: impl.function(**kwargs), time_limit)
        except PluginTimeout as exc:
            return Reply(TIMEOUT, reason=str(exc), duration_ms=_ms(start))
        except KeyboardInterrupt:
            raise
        except BaseException as exc:  # SystemExit and friends from plugin code are its own fault
            status = RETRY if isinstance(exc, TransientError) else ERROR
            return Reply(status, failure=self.failure(exc), duration_ms=_ms(start))
        duration = _ms(start)
        encoded, problem = encode_value(value)
        if problem is not None:
            return Reply(ERROR, reason=problem, duration_ms=duration)
        return Reply(SUCCESS, value_json=encoded, duration_ms=duration)

    def failure(self, exc: BaseException) -> Failure:
        try:
            message = " ".join(str(exc).split())[:MAX_MESSAGE]
        except Exception:  # a plugin's exception whose __str__ raises
            message = "(its message could not be read)"
        return Failure(type(exc).__name__[:100], message, plugin_frames(exc.__traceback__, self.roots))
