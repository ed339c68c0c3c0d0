"""What keeps a plugin's sandbox process from the host, and which of it this machine allows.

Applied by the sandbox process to itself, after it started fresh (exec'd, never forked from a
process that holds secrets) and before it reads a line of plugin code:

1. it dies with the process that started it (``PR_SET_PDEATHSIG``);
2. no network, unless the plugin holds ``network``: a network namespace of its own, with only a
   loopback interface that is down (as root; else inside an unprivileged user namespace where the
   kernel allows one);
3. resource limits: address space, CPU time, open files, file size, no core files, and no new
   processes or threads (``RLIMIT_NPROC``);
4. an unprivileged user of its own (one per plugin), when the host runs as root: it cannot read
   the host's files (``/proc/<host>/environ``, the database file, other sandboxes' folders) or
   write plugin code;
5. ``PR_SET_NO_NEW_PRIVS``: nothing it runs can gain privileges.

The host adds what the sandbox cannot do to itself: a clean environment (none of the host's
variables), its own working folder, plugin code read-only, wall-clock time limits, and the
checks on every reply. ``probe()`` says which of these hold on this machine (``status`` shows
it). Not done: a system-call filter (seccomp), and restricting a plugin with ``network`` to the
hosts it lists; a deployment can add both around the worker (see docs/SECURITY.md).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import errno
import functools
import importlib
import os
import resource
import stat
import subprocess
import sys
import zlib
from dataclasses import dataclass
from typing import Any

__all__ = ["Limits", "apply", "can_switch_users", "probe", "sandbox_uid"]

_PR_SET_PDEATHSIG = 1
_PR_SET_NO_NEW_PRIVS = 38
_CLONE_NEWNS = 0x00020000
_CLONE_NEWUSER = 0x10000000
_CLONE_NEWNET = 0x40000000
_MS_RDONLY = 1
_MS_NOSUID = 2
_MS_NODEV = 4
_MS_NOEXEC = 8
_MS_REMOUNT = 32
_MS_BIND = 4096
_MS_REC = 16384
_MS_PRIVATE = 1 << 18
#: Sandbox users: one per plugin, far above any real account's uid.
UID_BASE = 1_900_000_000
UID_SPAN = 100_000_000


@dataclass(frozen=True)
class Limits:
    """Resource limits of one sandbox process."""

    memory_mb: int = 512
    cpu_seconds: int = 600
    max_files: int = 64
    max_file_mb: int = 64
    #: New processes or threads it may start (0: none).
    max_processes: int = 0


@functools.cache
def can_switch_users() -> bool:
    """Running as root with every uid at hand (not a root mapped alone in a user namespace)."""
    if os.geteuid() != 0:
        return False
    try:
        with open("/proc/self/uid_map") as fh:
            ranges = [tuple(int(x) for x in line.split()) for line in fh if line.strip()]
    except (OSError, ValueError):
        return True  # no user namespaces here: root is root
    want = UID_BASE + UID_SPAN
    return any(inside == 0 and count >= want for inside, _outside, count in ranges)


def sandbox_uid(plugin_id: str) -> int:
    """The plugin's own unprivileged user (and group) id."""
    return UID_BASE + zlib.crc32(plugin_id.encode()) % UID_SPAN


@functools.cache
def _libc() -> Any:
    name = ctypes.util.find_library("c")
    return ctypes.CDLL(name, use_errno=True) if name else None


def _prctl(option: int, value: int) -> bool:
    libc = _libc()
    return libc is not None and libc.prctl(option, value, 0, 0, 0) == 0


def _unshare(flags: int) -> int:
    libc = _libc()
    if libc is None:
        return errno.ENOSYS
    return 0 if libc.unshare(flags) == 0 else ctypes.get_errno()


def _mount(
    source: str | None, target: str, flags: int, fstype: str | None = None, data: str | None = None
) -> None:
    libc = _libc()
    if (
        libc is None
        or libc.mount(
            source.encode() if source else None,
            target.encode(),
            fstype.encode() if fstype else None,
            ctypes.c_ulong(flags),
            data.encode() if data else None,
        )
        != 0
    ):
        raise OSError(ctypes.get_errno(), f"mount {source} on {target}")


def _reachable(path: str) -> bool:
    """Can a user who is neither owner nor group read the folder (and reach it)?"""
    parts = os.path.realpath(path).split(os.sep)
    for i in range(2, len(parts) + 1):
        try:
            mode = os.stat(os.sep.join(parts[:i]) or os.sep).st_mode
        except OSError:
            return False
        need = stat.S_IXOTH | (stat.S_IROTH if i == len(parts) else 0)
        if mode & need != need:
            return False
    return True


WORK = "/tmp/work"  # noqa: S108 - inside the sandbox's own tmpfs, not the host's /tmp


#: Shared scratch and socket folders the sandbox gets empty ones of its own over (a small tmpfs
#: each): what other processes leave there (files, and unix sockets such as PostgreSQL's in
#: /run/postgresql, which a local "trust" rule would let anyone use) stays out of its reach.
COVERED = ("/tmp", "/var/tmp", "/dev/shm", "/run")  # noqa: S108


def _covered(path: str) -> bool:
    """Under a folder the sandbox's own tmpfs hides (say, a data folder under ``/tmp``)."""
    real = os.path.realpath(path)
    return any(real.startswith(root + os.sep) for root in COVERED)


#: The host's own packages the sandbox imports (an editable install finds them through a
#: finder of its own, not ``sys.path``, so they are exposed one by one, not their folder: the
#: checkout may hold a data folder).
HOST_PACKAGES = ("services_ai_plugins", "schemas")


def _host_packages() -> list[str]:
    found = []
    for name in HOST_PACKAGES:
        module = sys.modules.get(name) or importlib.import_module(name)
        found += [p for p in getattr(module, "__path__", []) if os.path.isdir(p)]
    return found


def _private_view(paths: list[str], packages: list[str] = []) -> dict[str, str] | None:  # noqa: B006
    """A mount namespace of its own: a private ``/tmp`` (a small tmpfs) holding the working
    folder at ``/tmp/work``, and, bound read-only under ``/tmp/.exposed``, the folders the
    sandbox's user could not otherwise reach (the interpreter's standard library under a home
    folder only its owner may enter, say, or plugin code under the host's ``/tmp``, which the
    new tmpfs covers); the import system is pointed at them there. Returns
    where each such folder now is, or ``None`` without a mount namespace."""
    wanted = [p for p in dict.fromkeys(paths) if os.path.isdir(p) and (_covered(p) or not _reachable(p))]
    hidden = [
        p
        for p in dict.fromkeys(packages)
        if (_covered(p) or not _reachable(p)) and not any(p.startswith(w + os.sep) for w in wanted)
    ]
    wanted += [p for p in hidden if p not in wanted]
    if _unshare(_CLONE_NEWNS) != 0:
        if wanted:
            raise OSError(
                f"{wanted[0]} is out of the sandbox user's reach and no mount namespace can be made"
            )
        return None
    _mount(None, "/", _MS_REC | _MS_PRIVATE)
    # The folders made below must be enterable by the sandbox's user whatever umask the host
    # runs under (a deployment's 077 made /tmp/.exposed root's alone: no standard library).
    os.umask(0o022)
    # Held open: /tmp is about to be covered, and what we bind may lie under it.
    held = {p: os.open(p, os.O_RDONLY | os.O_DIRECTORY) for p in [os.getcwd(), *wanted]}
    _mount("tmpfs", "/tmp", _MS_NOSUID | _MS_NODEV, "tmpfs", "size=64m,mode=0755")  # noqa: S108
    for shared in COVERED[1:]:
        if os.path.isdir(shared) and not os.path.islink(shared):
            _mount("tmpfs", shared, _MS_NOSUID | _MS_NODEV | _MS_NOEXEC, "tmpfs", "size=1m,mode=0755")
    os.makedirs(WORK)
    _mount(f"/proc/self/fd/{held[os.getcwd()]}", WORK, _MS_BIND)
    moved: dict[str, str] = {}
    for i, path in enumerate(wanted):
        target = f"/tmp/.exposed/{i}"  # noqa: S108
        if path in hidden:  # a package: bound under its own name, its parent put on sys.path
            sys.path.append(target)
            target = f"{target}/{os.path.basename(path)}"
        os.makedirs(target)
        _mount(f"/proc/self/fd/{held[path]}", target, _MS_BIND | _MS_REC)
        _mount(None, target, _MS_REMOUNT | _MS_BIND | _MS_RDONLY | _MS_NOSUID | _MS_NODEV)
        moved[path] = target
    for fd in held.values():
        os.close(fd)
    os.chdir(WORK)
    os.environ.update(HOME=WORK, TMPDIR=WORK)

    def moved_to(entry: str) -> str:
        for old, new in moved.items():
            if entry == old or entry.startswith(old + os.sep):
                return new + entry[len(old) :]
        return entry

    sys.path[:] = [moved_to(p) for p in sys.path]
    for module in list(sys.modules.values()):
        search = getattr(module, "__path__", None)
        if isinstance(search, list):
            search[:] = [moved_to(p) for p in search]
    sys.path_importer_cache.clear()
    return moved


def _no_network() -> str | None:
    """A network namespace of its own; which way it was made, or ``None``."""
    if os.geteuid() == 0:
        return "network namespace" if _unshare(_CLONE_NEWNET) == 0 else None
    uid, gid = os.getuid(), os.getgid()
    if _unshare(_CLONE_NEWUSER | _CLONE_NEWNET) != 0:
        return None
    try:  # the same ids inside the new user namespace
        with open("/proc/self/setgroups", "w") as fh:
            fh.write("deny")
        with open("/proc/self/uid_map", "w") as fh:
            fh.write(f"{uid} {uid} 1")
        with open("/proc/self/gid_map", "w") as fh:
            fh.write(f"{gid} {gid} 1")
    except OSError:
        return None
    return "network namespace (in a user namespace)"


def _limit(which: int, value: int) -> None:
    try:
        resource.setrlimit(which, (value, value))
    except (ValueError, OSError):
        _soft, hard = resource.getrlimit(which)  # cannot raise the hard limit: lower what we can
        if hard == resource.RLIM_INFINITY or value <= hard:
            resource.setrlimit(which, (value, hard))


def apply(
    limits: Limits, plugin_id: str, network: bool, host_pid: int | None = None, code_root: str | None = None
) -> tuple[list[str], str | None]:
    """Protect this (sandbox) process; returns what is in force, in words, and where the
    plugin's code is now (it may have been bound elsewhere for the sandbox's user to read)."""
    active = ["separate process", "clean environment"]
    if can_switch_users():  # a user of its own follows: it must still reach Python and the code
        moved = _private_view([*sys.path, *([code_root] if code_root else [])], _host_packages())
        if moved is not None:
            active.append("private /tmp, /var/tmp, /dev/shm and /run, own working folder (mount namespace)")
            if code_root and code_root in moved:
                code_root = moved[code_root]
    if not network:
        made = _no_network()
        if made:
            active.append(f"no network ({made})")
    _limit(resource.RLIMIT_AS, limits.memory_mb * 1024 * 1024)
    _limit(resource.RLIMIT_CPU, limits.cpu_seconds)
    _limit(resource.RLIMIT_NOFILE, limits.max_files)
    _limit(resource.RLIMIT_FSIZE, limits.max_file_mb * 1024 * 1024)
    _limit(resource.RLIMIT_CORE, 0)
    _limit(resource.RLIMIT_NPROC, limits.max_processes)
    active.append(
        f"resource limits ({limits.memory_mb} MB memory, {limits.cpu_seconds} s CPU, {limits.max_files} files, "
        f"{limits.max_processes} new processes)"
    )
    if can_switch_users():
        uid = sandbox_uid(plugin_id)
        os.setgroups([])
        os.setgid(uid)
        os.setuid(uid)
        active.append(f"unprivileged user {uid}")
    # After the change of user, which clears it; and if the host is already gone, so are we.
    if _prctl(_PR_SET_PDEATHSIG, 9):
        active.append("dies with its host")
        if host_pid is not None and os.getppid() != host_pid:
            os._exit(1)
    if _prctl(_PR_SET_NO_NEW_PRIVS, 1):
        active.append("no new privileges")
    return active, code_root


_PROBE = """
import json, sys
from services_ai_plugins.calling.sandbox.protections import Limits, apply
print(json.dumps(apply(Limits(), "probe", network=False)[0]))
"""


@functools.cache
def probe() -> dict[str, Any]:
    """Which protections a sandbox gets on this machine (one throwaway sandbox process)."""
    try:
        done = subprocess.run(
            [sys.executable, "-I", "-c", _PROBE],
            capture_output=True,
            text=True,
            timeout=30,
            env={},
            check=False,
        )
        active: list[str] = __import__("json").loads(done.stdout) if done.returncode == 0 else []
    except (OSError, subprocess.SubprocessError, ValueError):
        active = []
    active += [
        "own working folder",
        "plugin code read-only",
        "wall-clock time limits",
        "replies checked and capped",
    ]
    inactive = []
    if not any(a.startswith("no network") for a in active):
        inactive.append("no network (needs root, or unprivileged user namespaces)")
    if not any(a.startswith("unprivileged user") for a in active):
        inactive.append("a user of its own (the host does not run as root)")
    inactive += ["system-call filter (seccomp)", "network limited to the hosts a plugin lists"]
    return {"mode": "process", "active": active, "inactive": inactive}
