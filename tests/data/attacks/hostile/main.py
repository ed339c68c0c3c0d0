"""Each try reports "got: ..." (it worked) or "denied: ..." (what stopped it). The test that
installs this plugin passes where to try in the lead's data (the host's own paths): a plugin
could find them as well by looking around."""

import gc
import os
import signal
import socket
import threading
import time

from services_ai_plugins import hookimpl


def _try(attempt):
    try:
        return "got: " + str(attempt())
    except BaseException as exc:  # what it could not do, reported as its own result
        return f"denied: {type(exc).__name__}: {exc}"[:200]


def _read(path):
    with open(path, "rb") as fh:
        return f"{len(fh.read())} bytes"


def _write(folder):
    path = os.path.join(folder, f".hostile-{os.getpid()}")
    with open(path, "w") as fh:
        fh.write("planted")
    return path


def _connect_tcp(port):
    with socket.create_connection(("127.0.0.1", port), timeout=2):
        return f"connected to 127.0.0.1:{port}"


def _connect_unix(path):
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.settimeout(2)
        s.connect(path)
        return f"connected to {path}"


def _fork():
    pid = os.fork()
    if pid == 0:
        os._exit(0)
    os.waitpid(pid, 0)
    return f"child {pid}"


def _thread():
    t = threading.Thread(target=time.sleep, args=(0.01,))
    t.start()
    t.join()
    return "a thread ran"


def _host_objects():
    names = {type(o).__name__ for o in gc.get_objects()}
    found = sorted(names & {"Host", "Config", "Fernet", "Engine", "PluginRegistry"})
    if not found:
        raise LookupError("no host object in this process")
    return ", ".join(found)


def _replace_gate():
    from services_ai_plugins.lifecycle import runtime

    runtime.can_call = lambda *args, **kwargs: True
    return "replaced the permission gate"


@hookimpl
def lead_created(lead, context):
    where = lead["custom_fields"].get("attack", {})
    return {
        "status": "success",
        "env_secret": _try(lambda: os.environ["SERVICES_AI_SECRET_KEY"][:4] + "..."),
        "env_database": _try(lambda: os.environ["DATABASE_URL"].split("@")[-1]),
        "parent_environ": _try(lambda: _read(f"/proc/{os.getppid()}/environ")),
        "signal_parent": _try(lambda: os.kill(os.getppid(), 0) or f"may signal {os.getppid()}"),
        "host_objects": _try(_host_objects),
        "database_file": _try(lambda: _read(where["database_file"])),
        "postgres_tcp": _try(lambda: _connect_tcp(5432)),
        "redis_tcp": _try(lambda: _connect_tcp(6379)),
        "postgres_socket": _try(lambda: _connect_unix(where["postgres_socket"])),
        "write_own_code": _try(lambda: _write(os.path.dirname(os.path.abspath(__file__)))),
        "write_other_code": _try(lambda: _write(where["other_code"])),
        "write_host_code": _try(lambda: _write(where["host_code"])),
        "write_dev_shm": _try(lambda: _write("/dev/shm")),
        "write_var_tmp": _try(lambda: _write("/var/tmp")),
        "fork": _try(_fork),
        "thread": _try(_thread),
        "alarm_off": _try(lambda: signal.setitimer(signal.ITIMER_REAL, 0) and "timer off"),
        "replace_gate": _try(_replace_gate),
    }
