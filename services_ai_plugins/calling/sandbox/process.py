"""The sandbox executor (``SERVICES_AI_PLUGIN_ISOLATION=process``, the default): each plugin's
code runs only in a process of its own, started fresh, long-lived and reused across calls and
batches, talking to the host over a pipe.

The host alone holds the database, the broker and the key. Per call it sends only the call's
arguments (already filtered by the plugin's grants) and, once, that plugin's own settings; it
enforces each call's time limit on the wall clock (a sandbox that overruns is killed and
replaced, whatever the plugin did inside), and it validates and caps every reply. The sandboxes
of several plugins run side by side: a batch's calls go to every plugin at once.
"""

from __future__ import annotations

import contextlib
import logging
import os
import selectors
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from services_ai_plugins.calling.context import plugin_logger
from services_ai_plugins.calling.executor import (
    CRASHED,
    ERROR,
    RETRY,
    SUCCESS,
    TIMEOUT,
    Failure,
    Frame,
    Inspection,
    Job,
    PluginCode,
    Reply,
)
from services_ai_plugins.calling.inline import secret_values
from services_ai_plugins.calling.loader import manifest_info
from services_ai_plugins.calling.sandbox import protocol
from services_ai_plugins.calling.sandbox.protections import Limits, can_switch_users, probe, sandbox_uid
from services_ai_plugins.errors import PluginLoadError, one_line
from services_ai_plugins.procstat import cpu_seconds

__all__ = ["ProcessExecutor"]

log = logging.getLogger(__name__)

#: Seconds a sandbox is given beyond a call's own limit before it is stopped: its own interval
#: timer answers first in the ordinary case (stored as a timeout, the sandbox kept); this is for
#: code that defeats it, and room for a busy machine to schedule the sandbox.
GRACE = 1.0
#: Seconds a sandbox may take to start (interpreter and host code), before the import limit.
START_ALLOWANCE = 20.0
MAX_FRAME_OVERHEAD = 64 * 1024
_REPLY_STATUSES = frozenset({SUCCESS, ERROR, TIMEOUT, RETRY})
_CPUS = os.cpu_count() or 1
#: ``(plugin_id, reason)``: a plugin's sandbox died under a call (quarantine counts these).
CrashSink = Callable[[str, str], object]


def _died(proc: subprocess.Popen[bytes]) -> str:
    code = proc.poll()
    if code is None:
        return "stopped answering"
    if code < 0:
        try:
            name = signal.Signals(-code).name
        except ValueError:
            name = f"signal {-code}"
        hint = " (out of memory?)" if -code == signal.SIGKILL else ""
        return f"killed by {name}{hint}"
    return f"exited with code {code}"


@dataclass
class _Sandbox:
    code: PluginCode
    network: bool
    settings: Mapping[str, Any]
    proc: subprocess.Popen[bytes]
    folder: Path
    hooks: Mapping[str, tuple[str, ...]]
    protections: list[str]
    started: float = field(default_factory=time.monotonic)
    calls: int = 0
    cpu_check_at: float = 0.0  # monotonic time before which its CPU time cannot be near the limit

    def log_tail(self, lines: int = 20) -> str:
        try:
            text = (self.folder / "sandbox.log").read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])

    def kill(self) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGKILL)
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            log.error("sandbox of %s did not die after SIGKILL", self.code.plugin_id)
        for stream in (self.proc.stdin, self.proc.stdout):
            if stream is not None:
                stream.close()
        shutil.rmtree(self.folder, ignore_errors=True)


@dataclass
class _Run:
    """One job in flight."""

    job: Job
    sandbox: _Sandbox
    out: bytes
    reader: protocol.FrameReader
    replies: list[Reply] = field(default_factory=list)
    deadline: float = 0.0
    last: float = 0.0
    done: bool = False
    restart: bool = False
    logger: logging.Logger | None = None  # the plugin's, made at its first log line of the run


class ProcessExecutor:
    """Runs each plugin in a sandbox process of its own."""

    mode = "process"

    def __init__(
        self,
        work_dir: Path,
        limits: Limits | None = None,
        import_time_limit: float = 10.0,
        on_crash: CrashSink | None = None,
        on_recover: Callable[[str], None] | None = None,
    ) -> None:
        self.work_dir = work_dir
        self.limits = limits or Limits()
        self.import_time_limit = import_time_limit
        self.on_crash = on_crash
        self.on_recover = on_recover
        self._sandboxes: dict[str, _Sandbox] = {}
        self._crashed: set[str] = set()
        self._deaths: list[tuple[str, str]] = []  # reported once the run is over

    # -- sandboxes --------------------------------------------------------------------------

    def _start(
        self, code: PluginCode, settings: Mapping[str, Any], network: bool, import_limit: float
    ) -> _Sandbox:
        """A fresh sandbox with the plugin's code loaded; raises PluginLoadError (and only that:
        whatever goes wrong starting one fails that plugin's calls, never the batch)."""
        try:
            return self._spawn(code, settings, network, import_limit)
        except PluginLoadError:
            raise
        except Exception as exc:
            log.exception("the sandbox of plugin %s could not be started", code.plugin_id)
            raise PluginLoadError(
                code.plugin_id, f"its sandbox could not be started: {one_line(exc, 300)}"
            ) from None

    def _spawn(
        self, code: PluginCode, settings: Mapping[str, Any], network: bool, import_limit: float
    ) -> _Sandbox:
        root = self.work_dir
        root.mkdir(parents=True, exist_ok=True)
        os.chmod(root, 0o711)  # noqa: S103 - sandboxes may enter it, not list it
        folder = Path(tempfile.mkdtemp(dir=root, prefix=f"{code.plugin_id}."))
        if can_switch_users():
            uid = sandbox_uid(code.plugin_id)
            os.chown(folder, uid, uid)
        log_file = (folder / "sandbox.log").open("ab")
        if can_switch_users():
            os.chown(folder / "sandbox.log", sandbox_uid(code.plugin_id), sandbox_uid(code.plugin_id))
        env = {"PATH": "/usr/bin:/bin", "LANG": "C.UTF-8", "HOME": str(folder), "TMPDIR": str(folder)}
        proc = subprocess.Popen(
            [sys.executable, "-I", "-B", "-m", "services_ai_plugins.calling.sandbox.child"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=log_file,
            cwd=folder,
            env=env,
            close_fds=True,
            start_new_session=True,
        )
        log_file.close()
        sandbox = _Sandbox(code, network, settings, proc, folder, {}, [])
        setup = {
            "op": "setup",
            "plugin_id": code.plugin_id,
            "version": code.version,
            "sha256": code.sha256,
            "manifest": manifest_info(code.manifest),
            "root": str(code.root) if code.root is not None else None,
            "entry_point": code.entry_point,
            "settings": dict(settings),
            "network": network,
            "limits": self.limits.__dict__,
            "host_pid": os.getpid(),
            "import_time_limit": import_limit,
        }
        try:
            assert proc.stdin is not None
            assert proc.stdout is not None
            proc.stdin.write(protocol.encode(setup))
            proc.stdin.flush()
            os.set_blocking(proc.stdin.fileno(), False)
            frame = self._read_one(proc, START_ALLOWANCE + import_limit, code.plugin_id)
        except (OSError, protocol.FrameError) as exc:
            sandbox.kill()
            raise PluginLoadError(code.plugin_id, f"its sandbox did not start: {exc}") from None
        if frame is None:
            reason = _died(proc)
            tail = sandbox.log_tail()
            sandbox.kill()
            log.error(
                "the sandbox of plugin %s did not start (%s); its last output:\n%s",
                code.plugin_id,
                reason,
                tail,
            )
            raise PluginLoadError(
                code.plugin_id, f"its sandbox did not start ({reason}); see the worker's log"
            )
        if frame.get("op") == "error":
            sandbox.kill()
            raise PluginLoadError(code.plugin_id, str(frame.get("reason", "could not be loaded"))[:1000])
        hooks = frame.get("hooks")
        if frame.get("op") != "ready" or not isinstance(hooks, dict):
            sandbox.kill()
            raise PluginLoadError(code.plugin_id, "its sandbox broke the protocol at start")
        sandbox.hooks = {
            str(h)[:64]: tuple(str(a)[:64] for a in args)
            for h, args in list(hooks.items())[:64]
            if isinstance(args, list)
        }
        sandbox.protections = [str(p)[:200] for p in frame.get("protections", [])][:20]
        return sandbox

    @staticmethod
    def _read_one(proc: subprocess.Popen[bytes], timeout: float, plugin_id: str) -> dict[str, Any] | None:
        """The next frame from a sandbox, ``None`` if it died or went silent for ``timeout``."""
        assert proc.stdout is not None
        fd = proc.stdout.fileno()
        reader = protocol.FrameReader(MAX_FRAME_OVERHEAD)
        deadline = time.monotonic() + timeout
        with selectors.DefaultSelector() as sel:
            sel.register(fd, selectors.EVENT_READ)
            while True:
                left = deadline - time.monotonic()
                if left <= 0 or not sel.select(left):
                    return None
                data = os.read(fd, 1 << 16)
                if not data:
                    return None
                frames = reader.feed(data)
                if frames:
                    return frames[0]

    def _sandbox(self, job: Job) -> _Sandbox:
        code = job.code
        sandbox = self._sandboxes.get(code.plugin_id)
        if sandbox is not None and (
            sandbox.code != code
            or sandbox.network != job.network
            or sandbox.proc.poll() is not None
            or self._spent(sandbox)
        ):
            self.forget(code.plugin_id)
            sandbox = None
        if sandbox is None:
            sandbox = self._sandboxes[code.plugin_id] = self._start(
                code, job.settings, job.network, self.import_time_limit
            )
        elif sandbox.settings != job.settings:
            sandbox.settings = job.settings
            self._send_now(sandbox, {"op": "settings", "settings": dict(job.settings)})
        return sandbox

    def _spent(self, sandbox: _Sandbox) -> bool:
        """Replace a sandbox before its CPU-time limit would end it in the middle of a call.

        Its CPU time is read from /proc only when it could have reached half the limit: it
        grows at most as fast as the wall clock times the machine's CPUs, so after a reading
        of ``used`` the next is due ``(half - used) / CPUs`` seconds later. Read every batch,
        it was a tenth of the host's CPU per batch with 5 plugins (docs/BENCHMARKS.md).
        """
        now = time.monotonic()
        if now < sandbox.cpu_check_at:
            return False
        used = cpu_seconds(sandbox.proc.pid)
        if used is None:
            return False
        half = self.limits.cpu_seconds / 2
        if used > half:
            return True
        sandbox.cpu_check_at = now + (half - used) / _CPUS
        return False

    @staticmethod
    def _send_now(sandbox: _Sandbox, message: dict[str, Any]) -> None:
        assert sandbox.proc.stdin is not None
        data = memoryview(protocol.encode(message))
        deadline = time.monotonic() + 5
        while data and time.monotonic() < deadline:
            try:
                data = data[os.write(sandbox.proc.stdin.fileno(), data) :]
            except BlockingIOError:
                time.sleep(0.001)

    # -- the executor interface ---------------------------------------------------------------

    def prepare(self, jobs: Sequence[Job]) -> None:
        """Start each plugin's sandbox now. A fresh interpreter per plugin takes a few hundred
        ms; started lazily, a worker's first events waited for all of them (seconds of latency
        with 5 plugins and 2 pool processes)."""
        for job in jobs:
            try:
                self._sandbox(job)
            except Exception:  # the first call starts it again and reports why it cannot
                log.warning("the sandbox of plugin %s could not be started ahead", job.code.plugin_id)

    def inspect(self, code: PluginCode, time_limit: float) -> Inspection:
        self.forget(code.plugin_id)
        sandbox = self._start(code, {}, network=False, import_limit=time_limit)
        self._sandboxes[code.plugin_id] = sandbox  # kept for the plugin_installed call that follows
        return Inspection(dict(sandbox.hooks))

    def run(self, jobs: Sequence[Job]) -> list[list[Reply]]:
        out: list[list[Reply]] = [[] for _ in jobs]
        runs: dict[int, _Run] = {}
        for index, job in enumerate(jobs):
            if not job.calls:
                continue
            try:
                sandbox = self._sandbox(job)
            except PluginLoadError as exc:
                out[index] = [Reply(ERROR, reason=exc.reason)] * len(job.calls)
                continue
            if job.hook not in sandbox.hooks:
                out[index] = [Reply(ERROR, reason=f"does not implement {job.hook}")] * len(job.calls)
                continue
            request = {
                "op": "run",
                "hook": job.hook,
                "time_limit": job.time_limit,
                "calls": [{"args": dict(c.args), "context": dict(c.context)} for c in job.calls],
            }
            now = time.monotonic()
            runs[index] = _Run(
                job,
                sandbox,
                protocol.encode(request),
                protocol.FrameReader(job.max_bytes + MAX_FRAME_OVERHEAD),
                deadline=now + job.time_limit + GRACE,
                last=now,
            )
        if runs:
            self._drive(runs)
        for index, run in runs.items():
            out[index] = run.replies
            if run.restart:
                self.forget(run.job.code.plugin_id)
        deaths, self._deaths = self._deaths, []
        for plugin_id, reason in deaths:
            if self.on_crash is not None:
                try:
                    self.on_crash(plugin_id, reason)
                except Exception:
                    log.warning("could not record the crash of plugin %s", plugin_id, exc_info=True)
        return out

    def _drive(self, runs: dict[int, _Run]) -> None:
        """Send every job's calls, then read replies as they come, against each deadline."""
        with selectors.DefaultSelector() as sel:
            for run in runs.values():
                proc = run.sandbox.proc
                assert proc.stdin is not None
                assert proc.stdout is not None
                sel.register(proc.stdout.fileno(), selectors.EVENT_READ, run)
                self._write(run, sel)
            while any(not r.done for r in runs.values()):
                now = time.monotonic()
                pending = [r for r in runs.values() if not r.done]
                timeout = max(0.0, min(r.deadline for r in pending) - now)
                for key, events in sel.select(timeout):
                    run = key.data
                    if run.done:
                        continue
                    if events & selectors.EVENT_WRITE:
                        self._write(run, sel)
                    if events & selectors.EVENT_READ:
                        self._read(run, sel)
                now = time.monotonic()
                for run in pending:
                    if not run.done and now >= run.deadline:
                        self._overran(run, sel)

    def _write(self, run: _Run, sel: selectors.BaseSelector) -> None:
        stdin = run.sandbox.proc.stdin
        assert stdin is not None
        try:
            sent = os.write(stdin.fileno(), run.out) if run.out else 0
        except BlockingIOError:
            sent = 0
        except OSError:  # it died; reading will say so
            run.out = b""
            return
        run.out = run.out[sent:]
        if not run.out:  # every call is on its way: each call's clock starts now
            now = time.monotonic()
            run.last, run.deadline = now, now + run.job.time_limit + GRACE
        fd = stdin.fileno()
        try:
            if run.out:
                sel.register(fd, selectors.EVENT_WRITE, run)
            else:
                sel.unregister(fd)
        except (KeyError, ValueError):
            pass

    def _finish(self, run: _Run, sel: selectors.BaseSelector, restart: bool = False) -> None:
        run.done = True
        run.restart = run.restart or restart
        for stream in (run.sandbox.proc.stdout, run.sandbox.proc.stdin):
            if stream is not None:
                with contextlib.suppress(KeyError, ValueError):
                    sel.unregister(stream.fileno())

    def _read(self, run: _Run, sel: selectors.BaseSelector) -> None:
        stdout = run.sandbox.proc.stdout
        assert stdout is not None
        try:
            data = os.read(stdout.fileno(), 1 << 20)
        except OSError:
            data = b""
        if not data:
            self._crashed_under(run, sel)
            return
        try:
            frames = run.reader.feed(data)
        except protocol.TooLarge as exc:
            reason = f"returned about {exc.size} bytes of JSON; the limit is {run.job.max_bytes}"
            run.replies.append(Reply(ERROR, reason=reason, duration_ms=self._ms(run)))
            self._finish(run, sel, restart=True)
            return
        except protocol.FrameError as exc:
            run.replies.append(
                Reply(ERROR, reason=f"its sandbox broke the protocol: {exc}", duration_ms=self._ms(run))
            )
            self._finish(run, sel, restart=True)
            return
        for frame in frames:
            reply = self._reply(run, frame)
            run.replies.append(reply)
            self._relay_logs(run, frame)
            now = time.monotonic()
            run.last, run.deadline = now, now + run.job.time_limit + GRACE
            run.sandbox.calls += 1
            if frame.get("threads"):
                run.restart = True  # threads left running after the call: a new sandbox next time
            if reply.status == SUCCESS and run.job.code.plugin_id in self._crashed:
                self._crashed.discard(run.job.code.plugin_id)
                if self.on_recover is not None:
                    self.on_recover(run.job.code.plugin_id)
            if reply.status in (TIMEOUT, CRASHED):
                self._finish(run, sel, restart=reply.status != TIMEOUT)
                return
            if len(run.replies) >= len(run.job.calls):
                self._finish(run, sel)
                return

    def _ms(self, run: _Run) -> float:
        return round((time.monotonic() - run.last) * 1000, 3)

    def _reply(self, run: _Run, frame: dict[str, Any]) -> Reply:
        """A reply frame made into a Reply, or an error saying what was wrong with it."""
        ms = self._ms(run)
        status = frame.get("status")
        if frame.get("op") != "reply" or frame.get("i") != len(run.replies) or status not in _REPLY_STATUSES:
            run.restart = True
            return Reply(ERROR, reason="its sandbox broke the protocol (an unexpected reply)", duration_ms=ms)
        if status == SUCCESS:
            if "value" not in frame:
                return Reply(ERROR, reason="its sandbox sent no value", duration_ms=ms)
            try:
                value_json = protocol.dumps(frame["value"])
            except (TypeError, ValueError, RecursionError):
                return Reply(ERROR, reason="returned a value that cannot be stored", duration_ms=ms)
            return Reply(SUCCESS, value_json=value_json, duration_ms=ms)
        reason = frame.get("reason")
        return Reply(
            str(status),
            reason=str(reason)[:1000] if reason is not None else None,
            failure=self._failure(frame.get("failure")),
            duration_ms=ms,
        )

    @staticmethod
    def _failure(raw: Any) -> Failure | None:
        if not isinstance(raw, dict):
            return None
        frames = []
        for item in list(raw.get("frames") or [])[:20]:
            if isinstance(item, list) and len(item) == 4 and isinstance(item[1], int):
                frames.append(Frame(str(item[0])[:200], item[1], str(item[2])[:100], str(item[3])[:200]))
        return Failure(str(raw.get("kind", "Error"))[:100], str(raw.get("message", ""))[:1000], tuple(frames))

    @staticmethod
    def _relay_logs(run: _Run, frame: dict[str, Any]) -> None:
        lines = frame.get("logs")
        if not isinstance(lines, list):
            return
        logger = run.logger
        if logger is None:
            code = run.job.code
            logger = run.logger = plugin_logger(code.plugin_id, secret_values(code, run.job.settings))
        for item in lines[:20]:
            if isinstance(item, list) and len(item) == 2 and isinstance(item[0], int):
                logger.log(max(logging.DEBUG, min(item[0], logging.CRITICAL)), "%s", str(item[1])[:500])

    def _overran(self, run: _Run, sel: selectors.BaseSelector) -> None:
        """The current call ran past its limit on the wall clock: the sandbox is stopped."""
        run.sandbox.kill()
        self._sandboxes.pop(run.job.code.plugin_id, None)
        run.replies.append(
            Reply(
                TIMEOUT,
                reason=f"ran past its time limit of {run.job.time_limit:g}s (its sandbox was stopped)",
                duration_ms=self._ms(run),
            )
        )
        self._finish(run, sel, restart=True)

    def _crashed_under(self, run: _Run, sel: selectors.BaseSelector) -> None:
        with contextlib.suppress(subprocess.TimeoutExpired):
            run.sandbox.proc.wait(timeout=5)
        reason = f"its sandbox died ({_died(run.sandbox.proc)})"
        run.replies.append(Reply(CRASHED, reason=reason, duration_ms=self._ms(run)))
        self._finish(run, sel, restart=True)
        plugin_id = run.job.code.plugin_id
        self._crashed.add(plugin_id)
        self._deaths.append((plugin_id, reason))
        log.error("plugin %s: %s", plugin_id, reason)

    def forget(self, plugin_id: str) -> None:
        sandbox = self._sandboxes.pop(plugin_id, None)
        if sandbox is not None:
            sandbox.kill()

    def close(self) -> None:
        for plugin_id in list(self._sandboxes):
            self.forget(plugin_id)

    def protections(self) -> dict[str, Any]:
        return probe()
