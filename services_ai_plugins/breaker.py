"""A circuit breaker per plugin, per process: a plugin that keeps timing out stops being called.

Every timed-out call costs its whole time limit; a plugin that hangs on every call would cost
every other plugin that much per event. After ``threshold`` consecutive timeouts the breaker
opens: the plugin is not called (its results are stored as ``skipped`` with the reason, and
can be re-run later with ``services-ai replay``). After the cool-down one call is let through;
a success closes the breaker, another timeout re-opens it for twice as long (up to an hour).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from services_ai_plugins.dispatch import TIMEOUT

MAX_COOLDOWN = 3600.0


@dataclass
class _State:
    consecutive: int = 0
    open_until: float = 0.0
    cooldown: float = 0.0


class Breakers:
    def __init__(self, threshold: int, cooldown: float) -> None:
        self.threshold = threshold
        self.base_cooldown = cooldown
        self._states: dict[str, _State] = {}

    def blocked_until(self, plugin_id: str) -> datetime | None:
        """When the plugin may be called again, or ``None`` if it may be called now."""
        state = self._states.get(plugin_id)
        if state is None or state.open_until == 0.0:
            return None
        left = state.open_until - time.monotonic()
        if left <= 0:
            return None  # half-open: this call is the probe
        return datetime.now(UTC) + timedelta(seconds=left)

    def record(self, plugin_id: str, status: str) -> None:
        state = self._states.setdefault(plugin_id, _State())
        if status != TIMEOUT:
            if state.consecutive or state.open_until:
                self._states[plugin_id] = _State()
            return
        state.consecutive += 1
        if state.open_until:  # the probe failed: open again, for longer
            state.cooldown = min(state.cooldown * 2, MAX_COOLDOWN)
            state.open_until = time.monotonic() + state.cooldown
        elif state.consecutive >= self.threshold:
            state.cooldown = self.base_cooldown
            state.open_until = time.monotonic() + state.cooldown

    def open_plugins(self) -> list[str]:
        now = time.monotonic()
        return [pid for pid, s in self._states.items() if s.open_until > now]
