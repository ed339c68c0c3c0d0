"""Packaging a plugin folder into a deterministic ZIP that passes every archive check.

The folder is walked in name order; caches and VCS folders are skipped (an author's folder with
``__pycache__`` packages fine), while symbolic links, special files and broken limits are
refused as they are met. The finished archive is then inspected like any uploaded one.
"""

from __future__ import annotations

import io
import os
import stat
import zipfile
from dataclasses import dataclass
from pathlib import Path

from services_ai_plugins.errors import ArchiveError
from services_ai_plugins.lifecycle.archive import MANIFEST_NAME, inspect_zip
from services_ai_plugins.lifecycle.archiverules import (
    CHUNK_BYTES,
    DEFAULT_LIMITS,
    O_BINARY,
    O_CLOEXEC,
    O_NOFOLLOW,
    O_NONBLOCK,
    ArchiveLimits,
    check_path,
    nfc,
)

__all__ = ["package_dir"]

_ZIP_EPOCH = (1980, 1, 1, 0, 0, 0)
_UNIX = 3  # "version made by" host: the high 16 bits of external_attr hold st_mode
_MSDOS_DIRECTORY = 0x10

_SKIP_NAMES = frozenset(
    {"__pycache__", ".git", ".hg", ".svn", ".DS_Store", ".pytest_cache", ".mypy_cache", ".ruff_cache"}
)
_SKIP_SUFFIXES = (".pyc", ".pyo", ".egg-info")


def package_dir(src: Path, limits: ArchiveLimits = DEFAULT_LIMITS) -> bytes:
    """A deterministic ZIP of a plugin folder, its entries at the archive root.

    Names are sorted, timestamps fixed at 1980-01-01, modes 0o644/0o755, members deflated:
    the same content gives the same bytes on every call. Caches and VCS folders are skipped;
    symlinks, special files, a missing ``manifest.json`` and broken limits are refused. The
    result passes :func:`~services_ai_plugins.lifecycle.archive.inspect_zip` with the same limits.
    """
    src = Path(src)
    if not src.is_dir():
        raise ArchiveError("not a folder", str(src))
    try:
        manifest_mode = os.lstat(src / MANIFEST_NAME).st_mode
    except FileNotFoundError:
        raise ArchiveError("no manifest.json in the plugin folder", str(src)) from None
    if not stat.S_ISREG(manifest_mode) and not stat.S_ISLNK(manifest_mode):
        raise ArchiveError("manifest.json is not a regular file", str(src))

    walk = _Walk(limits, [])
    _collect(str(src), "", walk)
    items = sorted(walk.items, key=lambda item: item[0])

    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for arcname, fs_path, is_dir, size in items:
            info = zipfile.ZipInfo(arcname, date_time=_ZIP_EPOCH)
            info.create_system = _UNIX  # the default depends on the platform we run on
            if is_dir:
                info.external_attr = ((stat.S_IFDIR | 0o755) << 16) | _MSDOS_DIRECTORY
                info.file_size = info.compress_size = info.CRC = 0  # mkdir(ZipInfo) expects them set
                zf.mkdir(info)
            else:
                info.external_attr = (stat.S_IFREG | 0o644) << 16
                info.compress_type = zipfile.ZIP_DEFLATED
                info.file_size = size
                _copy_file_into(zf, info, fs_path, limits)
    data = buf.getvalue()
    if len(data) > limits.max_archive_bytes:
        raise ArchiveError(
            f"packaged archive is {len(data)} bytes; the limit is {limits.max_archive_bytes}", str(src)
        )
    # The folder was checked as it was read; this proves the archive obeys every archive rule
    # too (names differing only in case, for one, are distinct files on this disk but not on all).
    inspect_zip(data, limits)
    return data


def _skipped(name: str) -> bool:
    return name in _SKIP_NAMES or name.endswith(_SKIP_SUFFIXES)


@dataclass
class _Walk:
    """What packaging a folder has found so far."""

    limits: ArchiveLimits
    items: list[tuple[str, str, bool, int]]  # (name in the archive, path on disk, folder?, size)
    total: int = 0


def _collect(folder: str, prefix: str, walk: _Walk) -> None:
    """Add the folder's entries to ``walk``, refusing links, special files and broken limits."""
    limits = walk.limits
    with os.scandir(folder) as it:
        children = sorted(it, key=lambda e: e.name)
    for child in children:
        if _skipped(child.name):
            continue
        # NFC: macOS file systems hand back decomposed names; the archive holds composed ones.
        name = nfc(prefix + child.name)
        check_path(name, name, limits)
        st = child.stat(follow_symlinks=False)
        if stat.S_ISLNK(st.st_mode):
            raise ArchiveError("symbolic links are not allowed", name)
        if len(walk.items) >= limits.max_files:
            # Stop at once: a folder like node_modules is not walked to the end to count it.
            raise ArchiveError(
                f"too many entries: more than {limits.max_files}; the limit is {limits.max_files} "
                "(folders count too)"
            )
        if stat.S_ISDIR(st.st_mode):
            walk.items.append((name + "/", child.path, True, 0))
            _collect(child.path, name + "/", walk)
        elif stat.S_ISREG(st.st_mode):
            if st.st_size > limits.max_member_bytes:
                raise ArchiveError(
                    f"entry is {st.st_size} bytes uncompressed; the limit is {limits.max_member_bytes}",
                    name,
                )
            walk.total += st.st_size
            if walk.total > limits.max_total_bytes:
                raise ArchiveError(
                    f"uncompressed total is over {limits.max_total_bytes} bytes (the limit)", name
                )
            walk.items.append((name, child.path, False, st.st_size))
        else:
            raise ArchiveError("special files (fifo, device, socket) are not allowed", name)


def _copy_file_into(zf: zipfile.ZipFile, info: zipfile.ZipInfo, fs_path: str, limits: ArchiveLimits) -> None:
    # O_NOFOLLOW and O_NONBLOCK: a file swapped for a link or a fifo since it was listed must
    # neither be followed nor block the open.
    try:
        fd = os.open(fs_path, os.O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC | O_BINARY)
    except OSError as exc:
        raise ArchiveError(f"cannot read ({exc.strerror or exc})", info.filename) from None
    with os.fdopen(fd, "rb") as fh:
        if not stat.S_ISREG(os.fstat(fh.fileno()).st_mode):
            raise ArchiveError("changed into a special file while being packaged", info.filename)
        copied = 0
        with zf.open(info, "w") as dst:
            while chunk := fh.read(CHUNK_BYTES):
                copied += len(chunk)
                if copied > limits.max_member_bytes:
                    raise ArchiveError(
                        f"entry is over {limits.max_member_bytes} bytes uncompressed (the limit)",
                        info.filename,
                    )
                dst.write(chunk)
