"""Safe handling of plugin archives: reading, inspecting and extracting ZIPs, packaging folders.

A plugin ZIP comes from a third party, so every entry is checked before a single byte is written:
names are refused (never rewritten) when they could escape the target folder or mean different
files on different systems, links and special files are refused, and sizes are capped both as
declared and as actually decompressed. ``zipfile`` is used only to read the central directory;
payloads are located and inflated here, so a forged header cannot make us trust its sizes, and
``ZipFile.extract`` (which silently rewrites ``../`` and absolute names) is never used.

Every refusal is an :class:`~services_ai_plugins.errors.ArchiveError` whose text is one line
naming the entry.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import os
import re
import shutil
import stat
import struct
import tempfile
import unicodedata
import zipfile
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from services_ai_plugins.errors import ArchiveError

MANIFEST_NAME = "manifest.json"
#: Folder of AppleDouble files that macOS Finder adds next to a zipped folder.
MACOSX_FOLDER = "__MACOSX"
#: Compression ratios are only judged above this size, so small text files never trip them.
RATIO_FLOOR_BYTES = 1024 * 1024
#: Bytes read, inflated or written at a time: a member is never held in memory whole.
CHUNK_BYTES = 64 * 1024

NO_MANIFEST = "no manifest.json at the top of the archive (or in its single top folder)"

_FLAG_ENCRYPTED = 0x0001
_FLAG_STRONG_ENCRYPTION = 0x0040
_FLAG_UTF8 = 0x0800
_LOCAL_HEADER = struct.Struct("<4s5H3L2H")  # signature .. extra field length: 30 bytes
_LOCAL_SIGNATURE = b"PK\x03\x04"
_END_SIGNATURE = b"PK\x05\x06"
# The end record is 22 bytes plus a comment of at most 65535 bytes.
_END_SEARCH_BYTES = 22 + 0xFFFF
_DRIVE_RE = re.compile(r"^[A-Za-z]:")
_ZIP_EPOCH = (1980, 1, 1, 0, 0, 0)
_UNIX = 3  # "version made by" host: the high 16 bits of external_attr hold st_mode
_MSDOS_DIRECTORY = 0x10
# Windows has no O_NOFOLLOW; there the containment checks below are the only guard.
_O_NOFOLLOW: int = getattr(os, "O_NOFOLLOW", 0)
_O_CLOEXEC: int = getattr(os, "O_CLOEXEC", 0)
_O_NONBLOCK: int = getattr(os, "O_NONBLOCK", 0)
_O_BINARY: int = getattr(os, "O_BINARY", 0)  # Windows only: no newline translation

_SKIP_NAMES = frozenset(
    {"__pycache__", ".git", ".hg", ".svn", ".DS_Store", ".pytest_cache", ".mypy_cache", ".ruff_cache"}
)
_SKIP_SUFFIXES = (".pyc", ".pyo", ".egg-info")

# Everything zipfile (and zlib under it) raises on malformed input; none may escape raw.
_ZIP_ERRORS: tuple[type[BaseException], ...] = (
    zipfile.BadZipFile,
    zipfile.LargeZipFile,
    zlib.error,
    struct.error,
    EOFError,
    OSError,
    ValueError,
    NotImplementedError,
    RuntimeError,
    IndexError,
    KeyError,
    OverflowError,
)


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


@dataclass(frozen=True)
class Member:
    """One validated entry, relative to the plugin root."""

    name: str  # '/'-separated, NFC, top folder stripped, no trailing '/' for folders
    is_dir: bool
    size: int  # declared uncompressed size (0 for folders)


@dataclass(slots=True)
class _Entry:
    """An entry as found in the archive, with what extraction needs to find its payload."""

    info: zipfile.ZipInfo
    raw: str  # the name exactly as in the archive: what messages show
    path: str  # the name without a folder's trailing '/'
    is_dir: bool
    start: int = 0  # offset of the payload in the archive bytes
    end: int = 0


# -- public API -------------------------------------------------------------------------------


def sha256_hex(data: bytes) -> str:
    """The SHA-256 of ``data`` as 64 lowercase hex digits."""
    return hashlib.sha256(data).hexdigest()


def read_archive_bytes(path: Path, limits: ArchiveLimits = DEFAULT_LIMITS) -> bytes:
    """Read a ZIP file from disk, refusing a non-file or an oversize file before reading it."""
    shown = str(path)
    try:
        st = os.stat(path)
        if not stat.S_ISREG(st.st_mode):
            raise ArchiveError("not a regular file", shown)
        _check_archive_size(st.st_size, limits, shown)
        # O_NONBLOCK: were the file swapped for a fifo since stat(), open() must not hang on it.
        fd = os.open(path, os.O_RDONLY | _O_NONBLOCK | _O_CLOEXEC | _O_BINARY)
        with os.fdopen(fd, "rb") as fh:
            if not stat.S_ISREG(os.fstat(fh.fileno()).st_mode):
                raise ArchiveError("not a regular file", shown)
            # One byte more than allowed: a file that grew since stat() is caught too.
            data = fh.read(limits.max_archive_bytes + 1)
    except OSError as exc:
        raise ArchiveError(f"cannot read the archive ({exc.strerror or exc})", shown) from None
    _check_archive_size(len(data), limits, shown)
    return data


def inspect_zip(data: bytes, limits: ArchiveLimits = DEFAULT_LIMITS) -> list[Member]:
    """Validate every entry of a plugin ZIP without extracting anything.

    Returns the members in archive order, relative to the plugin root: with ``manifest.json`` at
    the archive root every entry is kept as it is; otherwise the single top folder holding it is
    stripped and a ``__MACOSX/`` folder beside it skipped. Raises :class:`ArchiveError` on the
    first problem.
    """
    return [member for member, _entry in _plan(data, limits)]


def extract_zip(data: bytes, dest_parent: Path, limits: ArchiveLimits = DEFAULT_LIMITS) -> Path:
    """Validate a plugin ZIP, then extract its plugin root into a fresh folder in ``dest_parent``.

    The returned folder (``.extract-*``, mode 0o700 as ``mkdtemp`` makes it) directly holds
    ``manifest.json``. On any error, interrupts included, the fresh folder is removed with
    everything in it and the error re-raised. ``dest_parent`` must exist.
    """
    plan = _plan(data, limits)
    root = tempfile.mkdtemp(dir=dest_parent, prefix=".extract-")
    try:
        root_real = os.path.realpath(root)
        view = memoryview(data)
        total = 0
        for member, entry in plan:
            if member.is_dir:
                _make_dirs(root_real, member.name, entry.raw)
            else:
                total += _write_member(
                    view, entry, _target_path(root_real, member.name, entry.raw), limits, total
                )
    except BaseException:
        shutil.rmtree(root, ignore_errors=True)
        raise
    return Path(root)


def package_dir(src: Path, limits: ArchiveLimits = DEFAULT_LIMITS) -> bytes:
    """A deterministic ZIP of a plugin folder, its entries at the archive root.

    Names are sorted, timestamps fixed at 1980-01-01, modes 0o644/0o755, members deflated:
    the same content gives the same bytes on every call. Caches and VCS folders are skipped;
    symlinks, special files, a missing ``manifest.json`` and broken limits are refused. The
    result passes :func:`inspect_zip` with the same limits.
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


# -- inspection -------------------------------------------------------------------------------


def _check_archive_size(size: int, limits: ArchiveLimits, shown: str | None) -> None:
    if size > limits.max_archive_bytes:
        raise ArchiveError(f"archive file is {size} bytes; the limit is {limits.max_archive_bytes}", shown)


def _plan(data: bytes, limits: ArchiveLimits) -> list[tuple[Member, _Entry]]:
    """Every check of :func:`inspect_zip`; pairs each member with what extraction needs."""
    _check_archive_size(len(data), limits, None)
    with _open_zip(data) as zf:
        infos = zf.infolist()
    if len(infos) > limits.max_files:
        raise ArchiveError(
            f"too many entries: {len(infos)}; the limit is {limits.max_files} (folders count too)"
        )

    names = _NameSet()
    entries: list[_Entry] = []
    total = compressed = 0
    for info in infos:
        entry = _check_entry(info, limits)
        names.add(entry)
        entries.append(entry)
        total += info.file_size
        compressed += info.compress_size
    if total > limits.max_total_bytes:
        raise ArchiveError(f"uncompressed total is {total} bytes; the limit is {limits.max_total_bytes}")
    if total > RATIO_FLOOR_BYTES and total > limits.max_ratio * compressed:
        raise ArchiveError(
            f"archive compression ratio is {total // max(compressed, 1)}:1 ({total} bytes from "
            f"{compressed}); the limit is {limits.max_ratio}:1 (possible ZIP bomb)"
        )
    _locate_payloads(data, entries)
    return _plugin_members(entries)


def _open_zip(data: bytes) -> zipfile.ZipFile:
    """The central directory, with zipfile's exceptions turned into one-line reasons."""
    if not data:
        raise ArchiveError("empty file (0 bytes), not a ZIP archive")
    try:
        return zipfile.ZipFile(io.BytesIO(data))
    except UnicodeDecodeError as exc:
        # zipfile decodes names flagged UTF-8 strictly; the failing name is in the exception.
        shown = bytes(exc.object).decode("utf-8", "backslashreplace")
        raise ArchiveError("non-UTF-8 entry name (invalid UTF-8)", shown) from None
    except NotImplementedError:
        raise ArchiveError("unsupported ZIP archive (needs a newer ZIP version)") from None
    except _ZIP_ERRORS:
        if _END_SIGNATURE not in data[-_END_SEARCH_BYTES:]:
            if data.startswith(_LOCAL_SIGNATURE):
                raise ArchiveError("truncated ZIP archive (no end of central directory record)") from None
            raise ArchiveError("not a ZIP archive") from None
        raise ArchiveError("corrupt ZIP archive (bad central directory)") from None


def _check_entry(info: zipfile.ZipInfo, limits: ArchiveLimits) -> _Entry:
    """Name, type, encryption, method and declared sizes of one entry."""
    # orig_filename, not filename: zipfile cuts filename at a NUL and, on Windows, turns
    # backslashes into '/', hiding exactly what must be refused.
    raw = info.orig_filename
    if not info.flag_bits & _FLAG_UTF8 and not raw.isascii():
        # Without the flag the bytes were decoded as cp437, which maps each byte back exactly.
        shown = raw.encode("cp437").decode("utf-8", "backslashreplace")
        raise ArchiveError("non-UTF-8 entry name (non-ASCII name without the ZIP UTF-8 flag)", shown)
    is_dir = raw.endswith("/")
    path = raw[:-1] if is_dir else raw
    _check_path(path, raw, limits)

    mode = info.external_attr >> 16
    kind = stat.S_IFMT(mode)
    if kind == stat.S_IFLNK:
        raise ArchiveError("symbolic link entries are not allowed", raw)
    if kind not in (0, stat.S_IFREG, stat.S_IFDIR):
        raise ArchiveError("special file entries (fifo, device, socket) are not allowed", raw)
    # A trailing '/' makes a folder for every unzip tool; a folder mode without one would be a
    # file to some tools and a folder to others, so it is refused rather than guessed.
    if kind == stat.S_IFDIR and not is_dir:
        raise ArchiveError("folder entry without a trailing '/'", raw)
    if is_dir and info.file_size:
        raise ArchiveError(f"folder entry holds data ({info.file_size} bytes)", raw)

    if info.flag_bits & (_FLAG_ENCRYPTED | _FLAG_STRONG_ENCRYPTION):
        raise ArchiveError("encrypted entries are not supported", raw)
    if info.compress_type not in (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED):
        raise ArchiveError(
            f"compression method {info.compress_type} is not supported (only stored and deflated)", raw
        )
    if info.compress_type == zipfile.ZIP_STORED and info.compress_size != info.file_size:
        raise ArchiveError(
            f"stored entry declares {info.file_size} bytes but holds {info.compress_size} "
            "(corrupt or forged header)",
            raw,
        )
    if info.file_size > limits.max_member_bytes:
        raise ArchiveError(
            f"entry is {info.file_size} bytes uncompressed; the limit is {limits.max_member_bytes}", raw
        )
    if info.file_size > RATIO_FLOOR_BYTES and info.file_size > limits.max_ratio * info.compress_size:
        raise ArchiveError(
            f"compression ratio is {info.file_size // max(info.compress_size, 1)}:1 ({info.file_size} "
            f"bytes from {info.compress_size}); the limit is {limits.max_ratio}:1 (possible ZIP bomb)",
            raw,
        )
    return _Entry(info=info, raw=raw, path=path, is_dir=is_dir)


def _check_path(path: str, shown: str, limits: ArchiveLimits) -> None:
    """Refuse a relative '/'-separated path that could escape, mislead, or break a limit."""
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


def _nfc(name: str) -> str:
    return unicodedata.normalize("NFC", name)


def _fold(name: str) -> str:
    """The key under which two names mean the same file on some file system."""
    return _nfc(_nfc(name).casefold())


def _duplicate_reason(earlier: str, name: str) -> str:
    if earlier == name:
        return "duplicate entry"
    if _nfc(earlier) == _nfc(name):
        # Both spellings look identical on screen; ascii() shows how the earlier one differs.
        return f"duplicate entry (differs only in Unicode normalisation from {earlier!a})"
    if earlier.casefold() == name.casefold():
        return f"duplicate entry (differs only in case from {earlier!r})"
    return f"duplicate entry (differs only in case and Unicode normalisation from {earlier!a})"


class _NameSet:
    """Names seen so far, compared the way the strictest file system would (case, NFC)."""

    def __init__(self) -> None:
        self.entries: dict[str, _Entry] = {}  # folded path -> the entry
        self.files: dict[str, str] = {}  # folded path -> path of a file entry
        self.folders: dict[str, str] = {}  # folded path -> first spelling of a folder, implied too

    def add(self, entry: _Entry) -> None:
        parts = entry.path.split("/")
        for i in range(1, len(parts)):
            self._folder("/".join(parts[:i]), entry.raw)
        key = _fold(entry.path)
        earlier = self.entries.get(key)
        if earlier is not None:
            if earlier.is_dir != entry.is_dir:
                raise ArchiveError(f"name used both as a file and as a folder ({earlier.path!r})", entry.raw)
            raise ArchiveError(_duplicate_reason(earlier.path, entry.path), entry.raw)
        if entry.is_dir:
            self._folder(entry.path, entry.raw)
        elif key in self.folders:
            raise ArchiveError(f"name used both as a file and as a folder ({self.folders[key]!r})", entry.raw)
        else:
            self.files[key] = entry.path
        self.entries[key] = entry

    def _folder(self, path: str, shown: str) -> None:
        key = _fold(path)
        if key in self.files:
            raise ArchiveError(f"name used both as a file and as a folder ({self.files[key]!r})", shown)
        spelling = self.folders.setdefault(key, path)
        if spelling != path:
            # 'A/x' and 'a/y' are two folders here and one on macOS or Windows.
            raise ArchiveError(_duplicate_reason(spelling, path), shown)


def _locate_payloads(data: bytes, entries: list[_Entry]) -> None:
    """Check each local header against the central directory and record where its data lies.

    Refuses payloads past the end of the archive and entries that overlap (the "overlapping
    files" ZIP bomb reuses one payload for many entries).
    """
    for entry in entries:
        info = entry.info
        offset = info.header_offset
        if offset < 0 or offset + _LOCAL_HEADER.size > len(data):
            raise ArchiveError("corrupt ZIP archive (local header out of range)", entry.raw)
        signature, _version, flags, _method, _time, _date, _crc, _csize, _usize, name_len, extra_len = (
            _LOCAL_HEADER.unpack_from(data, offset)
        )
        if signature != _LOCAL_SIGNATURE:
            raise ArchiveError("corrupt ZIP archive (bad local header)", entry.raw)
        name_start = offset + _LOCAL_HEADER.size
        expected = entry.raw.encode("utf-8" if info.flag_bits & _FLAG_UTF8 else "cp437")
        # Different names in the two headers show different files to different tools.
        if data[name_start : name_start + name_len] != expected:
            raise ArchiveError(
                "corrupt ZIP archive (local header name differs from the central directory)", entry.raw
            )
        if flags & (_FLAG_ENCRYPTED | _FLAG_STRONG_ENCRYPTION):
            raise ArchiveError("encrypted entries are not supported", entry.raw)
        entry.start = name_start + name_len + extra_len
        entry.end = entry.start + info.compress_size
        if entry.end > len(data):
            raise ArchiveError("truncated ZIP archive (entry data runs past the end of the file)", entry.raw)
    previous: _Entry | None = None
    for entry in sorted(entries, key=lambda e: e.info.header_offset):
        if previous is not None and entry.info.header_offset < previous.end:
            raise ArchiveError("overlapping entries (possible ZIP bomb)", entry.raw)
        previous = entry


def _plugin_members(entries: list[_Entry]) -> list[tuple[Member, _Entry]]:
    """Find the plugin root (the archive root or its single top folder) and name members from it."""
    if any(not e.is_dir and e.path == MANIFEST_NAME for e in entries):
        prefix = ""
    else:
        tops = {
            e.path.split("/", 1)[0]
            for e in entries
            if not e.is_dir and e.path.count("/") == 1 and e.path.endswith("/" + MANIFEST_NAME)
        }
        if len(tops) != 1:
            raise ArchiveError(NO_MANIFEST)
        prefix = tops.pop() + "/"
    plan: list[tuple[Member, _Entry]] = []
    for entry in entries:
        if prefix:
            if entry.path == prefix[:-1]:
                continue  # the top folder itself
            if not entry.path.startswith(prefix):
                if entry.path.startswith(MACOSX_FOLDER + "/") or (
                    entry.is_dir and entry.path == MACOSX_FOLDER
                ):
                    continue  # Finder's AppleDouble files: metadata, not plugin content
                raise ArchiveError(f"entry outside the plugin's top folder {prefix!r}", entry.raw)
        name = _nfc(entry.path[len(prefix) :])
        plan.append((Member(name=name, is_dir=entry.is_dir, size=entry.info.file_size), entry))
    return plan


# -- extraction -------------------------------------------------------------------------------


def _is_within(root_real: str, path: str) -> bool:
    """Whether ``path`` resolves inside ``root_real`` (itself resolved).

    ``commonpath`` compares whole components, so ``/x/foo`` does not contain ``/x/foobar``
    as a string prefix test would claim.
    """
    return os.path.commonpath([root_real, os.path.realpath(path)]) == root_real


def _make_dirs(root_real: str, name: str, shown: str) -> str:
    """Create the folder ``name`` (and its parents) under ``root_real``; return its path."""
    current = root_real
    for part in name.split("/"):
        current = os.path.join(current, part)
        with contextlib.suppress(FileExistsError):  # an earlier member made it
            os.mkdir(current, 0o755)
        # lstat: a link planted in place of a folder must not be followed.
        if not stat.S_ISDIR(os.lstat(current).st_mode) or not _is_within(root_real, current):
            raise ArchiveError("entry would be written outside the extraction folder", shown)
    return current


def _target_path(root_real: str, name: str, shown: str) -> str:
    """The path a file member is written to, its parent folders created and proven contained."""
    parent_name, _, base = name.rpartition("/")
    parent = _make_dirs(root_real, parent_name, shown) if parent_name else root_real
    parent_real = os.path.realpath(parent)
    if not _is_within(root_real, parent_real):
        raise ArchiveError("entry would be written outside the extraction folder", shown)
    return os.path.join(parent_real, base)


def _payload_chunks(view: memoryview, entry: _Entry) -> Iterator[bytes]:
    """The member's uncompressed bytes, at most ``CHUNK_BYTES`` at a time."""
    payload = view[entry.start : entry.end]
    if entry.info.compress_type == zipfile.ZIP_STORED:
        for pos in range(0, len(payload), CHUNK_BYTES):
            yield bytes(payload[pos : pos + CHUNK_BYTES])
        return
    inflater = zlib.decompressobj(-zlib.MAX_WBITS)  # raw deflate, as ZIP stores it
    pos = 0
    pending = b""
    while True:
        if not pending and pos < len(payload):
            pending = bytes(payload[pos : pos + CHUNK_BYTES])
            pos += len(pending)
        try:
            # max_length bounds the output of one call: a 64 KiB bomb chunk cannot become GBs.
            out = inflater.decompress(pending, CHUNK_BYTES)
        except zlib.error:
            raise ArchiveError("corrupt compressed data", entry.raw) from None
        pending = inflater.unconsumed_tail
        if out:
            yield out
        if inflater.eof:
            return
        if not out and not pending and pos >= len(payload):
            raise ArchiveError("corrupt compressed data (the deflate stream ends early)", entry.raw)


def _write_member(view: memoryview, entry: _Entry, target: str, limits: ArchiveLimits, total: int) -> int:
    """Write one file member, counting what is actually inflated; return its size."""
    info = entry.info
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | _O_NOFOLLOW | _O_CLOEXEC | _O_BINARY
    try:
        fd = os.open(target, flags, 0o644)
    except FileExistsError:
        # Names were proven distinct, so something else put it there: never write through it.
        raise ArchiveError("entry exists already in the extraction folder", entry.raw) from None
    written = 0
    crc = 0
    with os.fdopen(fd, "wb") as out:
        for chunk in _payload_chunks(view, entry):
            written += len(chunk)
            # The declared sizes passed inspection; the data has to keep to them.
            if written > info.file_size:
                raise ArchiveError(
                    f"decompressed data exceeds the declared size of {info.file_size} bytes "
                    "(corrupt or forged header)",
                    entry.raw,
                )
            if written > limits.max_member_bytes:
                raise ArchiveError(
                    f"entry is over {limits.max_member_bytes} bytes uncompressed (the limit)", entry.raw
                )
            if total + written > limits.max_total_bytes:
                raise ArchiveError(f"uncompressed total is over {limits.max_total_bytes} bytes (the limit)")
            crc = zlib.crc32(chunk, crc)
            out.write(chunk)
    if written != info.file_size:
        raise ArchiveError(
            f"decompressed data is {written} bytes, less than the declared {info.file_size} "
            "(corrupt archive)",
            entry.raw,
        )
    if crc != info.CRC:
        raise ArchiveError("CRC-32 mismatch (corrupt archive)", entry.raw)
    return written


# -- packaging --------------------------------------------------------------------------------


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
        name = _nfc(prefix + child.name)
        _check_path(name, name, limits)
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
        fd = os.open(fs_path, os.O_RDONLY | _O_NOFOLLOW | _O_NONBLOCK | _O_CLOEXEC | _O_BINARY)
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
