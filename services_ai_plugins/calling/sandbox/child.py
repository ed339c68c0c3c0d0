"""The sandbox process: ``python -I -B -m services_ai_plugins.calling.sandbox.child``.

Started fresh by the host for one plugin, with an empty environment, in a working folder of its
own. It reads its setup from the pipe, protects itself (``protections.apply``), and only then
imports the plugin's code; from there on it answers the host's requests, one reply frame per
call, written as soon as the call is over (so the host sees progress against its deadline). What
the plugin prints goes to the sandbox's log file, never into the pipe.
"""

from __future__ import annotations

import gc
import logging
import os
import sys
import threading
from pathlib import Path
from typing import Any

__all__ = ["main"]

MAX_LOG_LINES = 20
MAX_LOG_CHARS = 500


def _read_exact(fd: int, size: int) -> bytes:
    chunks = []
    while size:
        chunk = os.read(fd, min(size, 1 << 20))
        if not chunk:
            raise EOFError
        chunks.append(chunk)
        size -= len(chunk)
    return b"".join(chunks)


class _Pipe:
    def __init__(self, rfd: int, wfd: int) -> None:
        from services_ai_plugins.calling.sandbox import protocol

        self.protocol = protocol
        self.rfd, self.wfd = rfd, wfd

    def read(self) -> dict[str, Any]:
        (size,) = self.protocol.HEADER.unpack(_read_exact(self.rfd, self.protocol.HEADER.size))
        return self.protocol.decode(_read_exact(self.rfd, size))

    def write(self, message: dict[str, Any], value_json: str | None = None) -> None:
        body = self.protocol.encode(message)[self.protocol.HEADER.size :]
        if value_json is not None:  # the value as the plugin's side encoded it, spliced in
            body = body[:-1] + b',"value":' + value_json.encode("utf-8") + b"}"
        data = self.protocol.HEADER.pack(len(body)) + body
        view = memoryview(data)
        while view:
            view = view[os.write(self.wfd, view) :]


class _Collect(logging.Handler):
    """What the plugin logs during a call, sent with the call's reply (the host logs it)."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.lines: list[list[Any]] = []

    def emit(self, record: logging.LogRecord) -> None:
        if len(self.lines) < MAX_LOG_LINES:
            try:
                text = record.getMessage()
            except Exception:
                text = str(record.msg)
            self.lines.append([record.levelno, text[:MAX_LOG_CHARS]])

    def take(self) -> list[list[Any]]:
        lines, self.lines = self.lines, []
        return lines


def main() -> None:
    # The pipe to the host on private descriptors; 0 and 1 become /dev/null and the log file.
    rfd, wfd = os.dup(0), os.dup(1)
    devnull = os.open(os.devnull, os.O_RDWR)
    os.dup2(devnull, 0)
    os.dup2(2, 1)
    pipe = _Pipe(rfd, wfd)
    setup = pipe.read()

    from services_ai_plugins.calling.sandbox.protections import Limits, apply

    active, code_root = apply(
        Limits(**setup["limits"]),
        setup["plugin_id"],
        bool(setup["network"]),
        setup.get("host_pid"),
        setup["root"],
    )
    sys.dont_write_bytecode = True

    from schemas.manifest import parse_manifest
    from services_ai_plugins.calling.executor import Call, PluginCode
    from services_ai_plugins.calling.inline import load_code
    from services_ai_plugins.calling.invocation import Invoker, inspect_loaded
    from services_ai_plugins.calling.loader import PluginLoader
    from services_ai_plugins.errors import ServicesAIError, one_line

    collect = _Collect()
    root_logger = logging.getLogger()
    root_logger.handlers[:] = [collect]
    root_logger.setLevel(logging.INFO)
    logger = logging.getLogger(f"services_ai.plugin.{setup['plugin_id']}")
    try:
        manifest = parse_manifest(setup["manifest"], "stored manifest")
        code = PluginCode(
            setup["plugin_id"],
            setup["version"],
            setup["sha256"],
            manifest,
            root=None if code_root is None else Path(code_root),
            entry_point=setup["entry_point"],
        )
        loaded = load_code(PluginLoader(import_time_limit=float(setup["import_time_limit"])), code)
    except ServicesAIError as exc:
        pipe.write({"op": "error", "reason": str(exc)[:1000]})
        return
    except BaseException as exc:  # plugin code may raise anything while it is imported
        pipe.write({"op": "error", "reason": f"could not be loaded: {one_line(exc, 500)}"})
        return
    # What start-up made (the host's modules, the plugin's code) is kept out of later garbage
    # collections, which would otherwise walk all of it while a batch waits (workers/state.py).
    gc.collect()
    gc.freeze()
    pipe.write({"op": "ready", "protections": active, "hooks": dict(inspect_loaded(loaded).hooks)})
    collect.take()
    invoker = Invoker(loaded, setup["settings"], logger)
    while True:
        try:
            request = pipe.read()
        except EOFError:
            return
        op = request.get("op")
        if op == "settings":
            invoker = Invoker(loaded, request["settings"], logger)
        elif op == "run":
            hook, limit = request["hook"], float(request["time_limit"])
            for i, raw in enumerate(request["calls"]):
                reply = invoker.call(hook, Call(raw["args"], raw.get("context") or {}), limit)
                message: dict[str, Any] = {"op": "reply", "i": i, "status": reply.status}
                if reply.reason is not None:
                    message["reason"] = reply.reason
                if reply.failure is not None:
                    f = reply.failure
                    message["failure"] = {
                        "kind": f.kind,
                        "message": f.message,
                        "frames": [[x.file, x.line, x.function, x.text] for x in f.frames],
                    }
                logs = collect.take()
                if logs:
                    message["logs"] = logs
                alive = threading.active_count()
                if alive > 1:
                    message["threads"] = alive - 1
                pipe.write(message, reply.value_json)
                if reply.status == "timeout":
                    break  # the host decides whether the rest of the calls go
        elif op == "stop":
            return


if __name__ == "__main__":
    main()
