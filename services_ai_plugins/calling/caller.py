"""The one path every hook call takes: lifecycle, events, widgets, the settings page, exports.

``HookCaller`` hands the calls to the executor (inline or sandboxed), then applies the hook's
policy to each reply: the size cap, the shape check and sanitising, and the one redaction rule
for errors and traceback frames (the plugin's secret values and the call's personal data never
reach a stored error). A plugin whose settings could not be read, or whose breaker is open, gets
an outcome that says so instead of a call.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from schemas.manifest import Manifest
from services_ai_plugins.calling.executor import (
    CRASHED,
    ERROR,
    SUCCESS,
    TIMEOUT,
    Call,
    Executor,
    Frame,
    Job,
    PluginCode,
    Reply,
)
from services_ai_plugins.calling.policy import HookPolicy, policy_for
from services_ai_plugins.calling.redaction import Redactor
from services_ai_plugins.calling.requests import covered
from services_ai_plugins.config import Config
from services_ai_plugins.errors import MAX_LINE

__all__ = ["Gate", "HookCaller", "Observer", "Outcome", "Target"]

log = logging.getLogger(__name__)

_encode = json.JSONEncoder(allow_nan=False, separators=(",", ":"), ensure_ascii=False).encode


@dataclass(frozen=True)
class Target:
    """A plugin to call, as the host knows it: its grants, its settings and its checked code."""

    plugin_id: str
    version: str
    manifest: Manifest
    granted: frozenset[str]
    enabled: bool
    #: The plugin's own typed settings, secrets decrypted (sent for this plugin alone).
    settings: Mapping[str, Any]
    #: The values of its secret settings, redacted from everything it leaves behind.
    secrets: tuple[str, ...] = ()
    code: PluginCode | None = None
    #: Why the plugin cannot be called as it stands (e.g. its secrets cannot be decrypted).
    problem: str | None = None

    @property
    def name(self) -> str:
        return self.manifest.name


@dataclass(frozen=True)
class Outcome:
    """What one call came to, as it is stored: the checked result already encoded as JSON,
    or a one-line error and the plugin's own traceback frames, redacted."""

    status: str
    result_json: str | None = None
    error: str | None = None
    frames: tuple[Frame, ...] = field(default=())
    duration_ms: float = 0.0

    @property
    def ok(self) -> bool:
        return self.status == SUCCESS

    @property
    def result(self) -> Any:
        """The result as JSON data (a fresh copy)."""
        return json.loads(self.result_json) if self.result_json is not None else None

    def frames_data(self) -> list[dict[str, Any]] | None:
        if not self.frames:
            return None
        return [{"file": f.file, "line": f.line, "function": f.function, "text": f.text} for f in self.frames]


#: Before each plugin's calls: ``None`` to go ahead, or the outcome to record instead (skipped).
Gate = Callable[[Target], Outcome | None]
#: After each call: the plugin and what its call came to (breakers count timeouts here).
Observer = Callable[[Target, Outcome], None]


class HookCaller:
    """Calls plugins through an executor and applies each hook's policy to what comes back."""

    def __init__(self, executor: Executor, config: Config) -> None:
        self.executor = executor
        self.config = config
        self._policies: dict[str, HookPolicy] = {}

    def policy(self, hook: str) -> HookPolicy:
        policy = self._policies.get(hook)
        if policy is None:
            policy = self._policies[hook] = policy_for(hook, self.config)
        return policy

    def prepare(self, targets: Iterable[Target]) -> None:
        """Have the executor load or start each target's plugin now (see ``Executor.prepare``)."""
        self.executor.prepare(
            [
                Job(t.code, "", [], t.settings, self.config.plugin_time_limit, network="network" in t.granted)
                for t in targets
                if t.code is not None
            ]
        )

    def call(self, hook: str, target: Target, calls: Sequence[Call]) -> list[Outcome]:
        """Call one plugin's ``hook`` once per call, in order."""
        return self.call_many(hook, [(target, calls)])[0]

    def call_many(
        self,
        hook: str,
        work: Sequence[tuple[Target, Sequence[Call]]],
        gate: Gate | None = None,
        observe: Observer | None = None,
    ) -> list[list[Outcome]]:
        """Call each target's ``hook`` for its calls; every target's calls go to the executor
        together (a sandbox takes them in one message). After a call that timed out or crashed,
        the gate is asked again before the rest of that plugin's calls go."""
        policy = self.policy(hook)
        out: list[list[Outcome | None]] = [[None] * len(calls) for _, calls in work]
        pending = {i: 0 for i, (_, calls) in enumerate(work) if calls}
        while pending:
            jobs: list[Job] = []
            order: list[int] = []
            for i, start in pending.items():
                target, calls = work[i]
                instead = self._instead(target, gate)
                if instead is not None:
                    out[i][start:] = [instead] * (len(calls) - start)
                    continue
                assert target.code is not None
                sent = covered(calls[start:], target.granted)
                jobs.append(
                    Job(
                        target.code,
                        hook,
                        sent,
                        target.settings,
                        policy.time_limit,
                        network="network" in target.granted,
                        max_bytes=policy.max_bytes,
                    )
                )
                order.append(i)
            if not jobs:
                break
            replies = self.executor.run(jobs)
            following: dict[int, int] = {}
            for i, job, got in zip(order, jobs, replies, strict=True):
                target, calls = work[i]
                start = pending[i]
                # An executor must answer at least the first call; never loop on one that does not.
                answered = got[: len(job.calls)] or [Reply(ERROR, reason="the executor returned no reply")]
                for k, reply in enumerate(answered):
                    outcome = self.outcome(policy, target, calls[start + k], reply)
                    out[i][start + k] = outcome
                    if observe is not None:
                        observe(target, outcome)
                nxt = start + len(answered)
                if nxt < len(calls):
                    following[i] = nxt
            pending = following
        return [[o for o in row if o is not None] for row in out]

    @staticmethod
    def _instead(target: Target, gate: Gate | None) -> Outcome | None:
        if target.problem is not None:
            return Outcome(ERROR, error=target.problem[:MAX_LINE])
        if target.code is None:
            return Outcome(ERROR, error="its code is not available on this host")
        return gate(target) if gate is not None else None

    def outcome(self, policy: HookPolicy, target: Target, call: Call, reply: Reply) -> Outcome:
        """A reply made into what is stored: checked, capped, sanitised and redacted."""
        if reply.status == SUCCESS:
            return self._success(policy, target, call, reply)
        redact = Redactor((*target.secrets, *call.redact))
        frames: tuple[Frame, ...] = ()
        if reply.failure is not None:
            failure = reply.failure
            frames = tuple(
                Frame(redact(f.file), f.line, redact(f.function), redact(f.text)) for f in failure.frames
            )
            text = f"{failure.kind}: {failure.message}" if failure.message else failure.kind
            if frames:
                text += f" (at {frames[-1]})"
        else:
            text = reply.reason or ("timed out" if reply.status == TIMEOUT else "failed")
            if reply.status == CRASHED and not text.startswith("its sandbox"):
                text = f"its sandbox died: {text}"
        line = redact(" ".join(text.split()))
        if len(line) > MAX_LINE:
            line = line[: MAX_LINE - 1] + "…"
        return Outcome(reply.status, error=line, frames=frames, duration_ms=reply.duration_ms)

    def _success(self, policy: HookPolicy, target: Target, call: Call, reply: Reply) -> Outcome:
        encoded = reply.value_json if reply.value_json is not None else "null"
        size = len(encoded.encode("utf-8"))
        problem = None
        if size > policy.max_bytes:
            problem = f"returned {size} bytes of JSON; the limit is {policy.max_bytes}"
        elif "\\u0000" in encoded:
            problem = "returned text with a NUL character, which cannot be stored"
        elif policy.shape is not None:
            try:
                encoded = _encode(policy.shape(json.loads(encoded), target.name))
            except (ValueError, TypeError) as exc:
                problem = f"{policy.hook} {exc}"
        if problem is not None:
            redact = Redactor((*target.secrets, *call.redact))
            return Outcome(ERROR, error=redact(problem)[:MAX_LINE], duration_ms=reply.duration_ms)
        return Outcome(SUCCESS, result_json=encoded, duration_ms=reply.duration_ms)
