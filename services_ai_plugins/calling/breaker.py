"""A circuit breaker per plugin: a plugin that keeps timing out stops being called.

Every timed-out call costs its whole time limit (and a crashed sandbox a restart); a plugin that
hangs on every call would cost every other plugin that much per event. After ``threshold``
consecutive timeouts or crashes the breaker opens: the plugin is not called (its results are stored as ``skipped`` with the reason, and
can be re-run later with ``services-ai replay``). After the cool-down one call is let through;
a success closes the breaker, another timeout re-opens it for twice as long (up to an hour).

Breakers are shared through the database (``plugin_breakers``): a breaker opened in one worker
process is adopted by every other within a registry poll interval, so a hanging plugin costs the
deployment its threshold of timeouts once, not once per process. The probe after a cool-down is
claimed through the database too: one process makes it while the others keep skipping, so a
plugin that still hangs costs the deployment one time limit per cool-down, not one per process
(all of which would otherwise stall at the same moment, having adopted the same breaker).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from services_ai_plugins.calling.executor import CRASHED, TIMEOUT

__all__ = ["MAX_COOLDOWN", "Breakers", "Trip"]

MAX_COOLDOWN = 3600.0
#: What counts against a plugin: a call that ran out of time, or whose process died under it.
_TRIPPING = (TIMEOUT, CRASHED)


@dataclass
class _State:
    consecutive: int = 0
    open_until: datetime | None = None
    cooldown: float = 0.0
    probing: bool = False  # this process holds the probe of an expired breaker


@dataclass(frozen=True)
class Trip:
    """A breaker as shared: open until a time (``None``: closed again), and its cool-down."""

    plugin_id: str
    open_until: datetime | None
    cooldown: float


class Breakers:
    def __init__(self, threshold: int, cooldown: float) -> None:
        self.threshold = threshold
        self.base_cooldown = cooldown
        self._states: dict[str, _State] = {}
        self._changed: dict[str, Trip] = {}

    def blocked_until(self, plugin_id: str) -> datetime | None:
        """When the plugin may be called again, or ``None`` if it may be called now."""
        state = self._states.get(plugin_id)
        if state is None or state.open_until is None or state.probing:
            return None
        if state.open_until <= datetime.now(UTC):
            return None  # half-open: this call is the probe
        return state.open_until

    def record(self, plugin_id: str, status: str) -> None:
        state = self._states.get(plugin_id)
        if status not in _TRIPPING:
            if state is not None and (state.consecutive or state.open_until):
                was_open = state.open_until is not None
                self._states[plugin_id] = _State()
                if was_open:
                    self._changed[plugin_id] = Trip(plugin_id, None, 0.0)
            return
        if state is None:
            state = self._states[plugin_id] = _State()
        state.consecutive += 1
        if state.open_until is not None:  # the probe failed: open again, for longer
            state.cooldown = min(state.cooldown * 2, MAX_COOLDOWN)
            state.probing = False
        elif state.consecutive >= self.threshold:
            state.cooldown = self.base_cooldown
        else:
            return
        state.open_until = datetime.now(UTC) + timedelta(seconds=state.cooldown)
        self._changed[plugin_id] = Trip(plugin_id, state.open_until, state.cooldown)

    def adopt(self, trips: list[Trip], complete: bool = False) -> None:
        """Open the breakers other processes opened (a later or longer opening wins).

        ``complete``: ``trips`` are all the breakers open in the deployment, so one open here
        and missing there was closed by another process's successful probe: close it here too.
        """
        for trip in trips:
            if trip.open_until is None:
                continue
            state = self._states.setdefault(trip.plugin_id, _State())
            if state.open_until is None or trip.open_until > state.open_until:
                state.open_until = trip.open_until
                state.cooldown = max(state.cooldown, trip.cooldown)
                state.consecutive = max(state.consecutive, self.threshold)
        if complete:
            shared = {t.plugin_id for t in trips if t.open_until is not None}
            now = datetime.now(UTC)
            for plugin_id, state in list(self._states.items()):
                if (
                    state.open_until is not None
                    and state.open_until > now
                    and not state.probing
                    and plugin_id not in shared
                ):
                    self._states[plugin_id] = _State()

    def due_probes(self) -> list[Trip]:
        """Breakers whose cool-down has passed and whose probe this process has not claimed."""
        now = datetime.now(UTC)
        return [
            Trip(pid, s.open_until, s.cooldown)
            for pid, s in self._states.items()
            if s.open_until is not None and s.open_until <= now and not s.probing
        ]

    def claimed(self, plugin_id: str) -> None:
        """This process makes the probe: its next call of the plugin goes through."""
        state = self._states.get(plugin_id)
        if state is not None:
            state.probing = True

    def take_changes(self) -> list[Trip]:
        """What opened or closed here since the last call, to share."""
        changes, self._changed = list(self._changed.values()), {}
        return changes

    def open_plugins(self) -> list[str]:
        now = datetime.now(UTC)
        return [pid for pid, s in self._states.items() if s.open_until is not None and s.open_until > now]
