"""What reading a plugin ZIP (``archive``) and packaging a plugin folder (``packaging``) share.

The caps every archive obeys, the rules an entry name must pass (including the files refused
because Python would run them in place of the reviewed source), how two names are compared (the
way the strictest file system would: case-folded and NFC), how a path written on disk is proven
to stay inside its folder, and the ``os.open`` flags that keep a swapped-in link or fifo from
being followed or blocking. Every refusal is an :class:`~services_ai_plugins.errors.ArchiveError`
naming the entry.
"""

from __future__ import annotations

import contextlib
import os
import re
import stat
import unicodedata
from dataclasses import dataclass

from services_ai_plugins.errors import ArchiveError

__all__ = [
    "CHUNK_BYTES",
    "DEFAULT_LIMITS",
    "O_BINARY",
    "O_CLOEXEC",
    "O_NOFOLLOW",
    "O_NONBLOCK",
    "ArchiveLimits",
    "NameSet",
    "check_path",
    "check_source_only",
    "fold",
    "is_within",
    "make_dirs",
    "nfc",
    "target_path",
]

#: Bytes read, inflated or written at a time: a member is never held in memory whole.
CHUNK_BYTES = 64 * 1024

# Windows has no O_NOFOLLOW; there the containment checks below are the only guard.
O_NOFOLLOW: int = getattr(os, "O_NOFOLLOW", 0)
O_CLOEXEC: int = getattr(os, "O_CLOEXEC", 0)
O_NONBLOCK: int = getattr(os, "O_NONBLOCK", 0)
O_BINARY: int = getattr(os, "O_BINARY", 0)  # Windows only: no newline translation

_DRIVE_RE = re.compile(r"^[A-Za-z]:")
_CACHE_FOLDER = "__pycache__"
_BYTECODE_SUFFIXES = (".pyc", ".pyo")
_NATIVE_SUFFIXES = (".so", ".pyd", ".dll", ".dylib")
_PTH_SUFFIX = ".pth"


@dataclass(frozen=True)
class ArchiveLimits:
    """Caps applied to every archive and packaged folder; the defaults suit plugins."""

    max_archive_bytes: int = 20 * 1024 * 1024  # size of the ZIP file itself
    max_total_bytes: int = 100 * 1024 * 1024  # sum of uncompressed sizes
    max_member_bytes: int = 20 * 1024 * 1024  # one uncompressed member
    max_ratio: int = 100  # uncompressed:compressed, per member and overall, above 1 MiB
    max_files: int = 2000  # entries, directories included
    max_depth: int = 16  # path components
    max_path_length: int = 255  # characters in one entry name
    max_component_length: int = 100


DEFAULT_LIMITS = ArchiveLimits()


# -- names ------------------------------------------------------------------------------------


def check_path(path: str, shown: str, limits: ArchiveLimits) -> None:
    """Refuse a relative '/'-separated path that could escape, mislead, or break a limit.

    ``shown`` is the name as the error should show it (the archive's own spelling).
    """
    for ch in path:
        category = unicodedata.category(ch)
        if category == "Cc":
            raise ArchiveError(f"unsafe entry name (control character U+{ord(ch):04X})", shown)
        if category == "Cs":  # a lone surrogate: undecodable bytes of a name on disk
            raise ArchiveError("non-UTF-8 entry name (invalid UTF-8)", shown)
    if "\\" in path:
        raise ArchiveError("unsafe entry name (backslash)", shown)
    if path.startswith("/"):
        raise ArchiveError("unsafe entry name (absolute path)", shown)
    if _DRIVE_RE.match(path):
        raise ArchiveError("unsafe entry name (drive letter)", shown)
    if not path:
        raise ArchiveError("unsafe entry name (empty name)", shown)
    parts = path.split("/")
    for part in parts:
        if part == "..":
            raise ArchiveError("unsafe entry name (parent directory '..')", shown)
        if part == ".":
            raise ArchiveError("unsafe entry name (current directory '.')", shown)
        if not part:
            raise ArchiveError("unsafe entry name (empty path component)", shown)
    if len(path) > limits.max_path_length:
        raise ArchiveError(
            f"entry name is {len(path)} characters; the limit is {limits.max_path_length}", shown
        )
    if len(parts) > limits.max_depth:
        raise ArchiveError(f"entry path has {len(parts)} components; the limit is {limits.max_depth}", shown)
    for part in parts:
        if len(part) > limits.max_component_length:
            raise ArchiveError(
                f"path component is {len(part)} characters; the limit is {limits.max_component_length}",
                shown,
            )


def check_source_only(name: str, shown: str) -> None:
    """Refuse a file that would run instead of the reviewed source, or without any source.

    Python imports ``__pycache__/*.pyc`` (an unchecked hash-based one even when it does not
    match the ``.py`` beside it), a sourceless ``.pyc``, and a native extension ahead of the
    ``.py`` of the same name; ``site`` runs the import lines of a ``.pth`` file. Names are
    compared folded, trailing dots and spaces dropped, as a case-insensitive file system or
    Windows would open them.
    """
    parts = [part.rstrip(". ") for part in fold(name).split("/")]
    base = parts[-1]
    if _CACHE_FOLDER in parts[:-1] or base.endswith(_BYTECODE_SUFFIXES):
        raise ArchiveError("compiled Python bytecode is not allowed (ship the .py source)", shown)
    if base.endswith(_NATIVE_SUFFIXES):
        raise ArchiveError("native extension modules are not allowed", shown)
    if base.endswith(_PTH_SUFFIX):
        raise ArchiveError("path configuration (.pth) files are not allowed", shown)


def nfc(name: str) -> str:
    """``name`` in Unicode normalisation form C, the spelling archives and disks hold here."""
    return unicodedata.normalize("NFC", name)


def fold(name: str) -> str:
    """The key under which two names mean the same file on some file system."""
    return nfc(nfc(name).casefold())


def _duplicate_reason(earlier: str, name: str) -> str:
    if earlier == name:
        return "duplicate entry"
    if nfc(earlier) == nfc(name):
        # Both spellings look identical on screen; ascii() shows how the earlier one differs.
        return f"duplicate entry (differs only in Unicode normalisation from {earlier!a})"
    if earlier.casefold() == name.casefold():
        return f"duplicate entry (differs only in case from {earlier!r})"
    return f"duplicate entry (differs only in case and Unicode normalisation from {earlier!a})"


class NameSet:
    """Names seen so far, compared the way the strictest file system would (case, NFC)."""

    def __init__(self) -> None:
        self.entries: dict[str, tuple[str, bool]] = {}  # folded path -> (path, is a folder)
        self.files: dict[str, str] = {}  # folded path -> path of a file entry
        self.folders: dict[str, str] = {}  # folded path -> first spelling of a folder, implied too

    def add(self, path: str, is_dir: bool, shown: str) -> None:
        """Record one entry (``path`` without a folder's trailing '/'), refusing any clash."""
        parts = path.split("/")
        for i in range(1, len(parts)):
            self._folder("/".join(parts[:i]), shown)
        key = fold(path)
        earlier = self.entries.get(key)
        if earlier is not None:
            earlier_path, earlier_is_dir = earlier
            if earlier_is_dir != is_dir:
                raise ArchiveError(f"name used both as a file and as a folder ({earlier_path!r})", shown)
            raise ArchiveError(_duplicate_reason(earlier_path, path), shown)
        if is_dir:
            self._folder(path, shown)
        elif key in self.folders:
            raise ArchiveError(f"name used both as a file and as a folder ({self.folders[key]!r})", shown)
        else:
            self.files[key] = path
        self.entries[key] = (path, is_dir)

    def _folder(self, path: str, shown: str) -> None:
        key = fold(path)
        if key in self.files:
            raise ArchiveError(f"name used both as a file and as a folder ({self.files[key]!r})", shown)
        spelling = self.folders.setdefault(key, path)
        if spelling != path:
            # 'A/x' and 'a/y' are two folders here and one on macOS or Windows.
            raise ArchiveError(_duplicate_reason(spelling, path), shown)


# -- containment on disk ----------------------------------------------------------------------


def is_within(root_real: str, path: str) -> bool:
    """Whether ``path`` resolves inside ``root_real`` (itself resolved).

    ``commonpath`` compares whole components, so ``/x/foo`` does not contain ``/x/foobar``
    as a string prefix test would claim.
    """
    return os.path.commonpath([root_real, os.path.realpath(path)]) == root_real


def make_dirs(root_real: str, name: str, shown: str) -> str:
    """Create the folder ``name`` (and its parents) under ``root_real``; return its path."""
    current = root_real
    for part in name.split("/"):
        current = os.path.join(current, part)
        with contextlib.suppress(FileExistsError):  # an earlier member made it
            os.mkdir(current, 0o755)
        # lstat: a link planted in place of a folder must not be followed.
        if not stat.S_ISDIR(os.lstat(current).st_mode) or not is_within(root_real, current):
            raise ArchiveError("entry would be written outside the extraction folder", shown)
    return current


def target_path(root_real: str, name: str, shown: str) -> str:
    """The path a file member is written to, its parent folders created and proven contained."""
    parent_name, _, base = name.rpartition("/")
    parent = make_dirs(root_real, parent_name, shown) if parent_name else root_real
    parent_real = os.path.realpath(parent)
    if not is_within(root_real, parent_real):
        raise ArchiveError("entry would be written outside the extraction folder", shown)
    return os.path.join(parent_real, base)
