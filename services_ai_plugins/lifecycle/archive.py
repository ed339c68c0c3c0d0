"""Safe handling of plugin archives: reading, inspecting and extracting ZIPs.

A plugin ZIP comes from a third party, so every entry is checked before a single byte is written:
names are refused (never rewritten) when they could escape the target folder or mean different
files on different systems, links and special files are refused, so are files Python would run
in place of the reviewed source (bytecode, native extensions, ``.pth``), and sizes are capped as
declared and as actually decompressed. ``zipfile`` is used only to read the central directory;
payloads are located and inflated here, so a forged header cannot make us trust its sizes, and
``ZipFile.extract`` (which silently rewrites ``../`` and absolute names) is never used.

Every refusal is an :class:`~services_ai_plugins.errors.ArchiveError` whose text is one line
naming the entry. The rules shared with packaging a folder (``packaging``) live in
``archiverules``.
"""

from __future__ import annotations

import hashlib
import io
import os
import shutil
import stat
import struct
import tempfile
import zipfile
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from services_ai_plugins.errors import ArchiveError
from services_ai_plugins.lifecycle.archiverules import (
    CHUNK_BYTES,
    DEFAULT_LIMITS,
    O_BINARY,
    O_CLOEXEC,
    O_NOFOLLOW,
    O_NONBLOCK,
    ArchiveLimits,
    NameSet,
    check_path,
    check_source_only,
    make_dirs,
    nfc,
    target_path,
)

__all__ = [
    "DEFAULT_LIMITS",
    "MACOSX_FOLDER",
    "MANIFEST_NAME",
    "NO_MANIFEST",
    "RATIO_FLOOR_BYTES",
    "ArchiveLimits",
    "Member",
    "extract_zip",
    "inspect_zip",
    "read_archive_bytes",
    "sha256_hex",
]

MANIFEST_NAME = "manifest.json"
#: Folder of AppleDouble files that macOS Finder adds next to a zipped folder.
MACOSX_FOLDER = "__MACOSX"
#: Compression ratios are only judged above this size, so small text files never trip them.
RATIO_FLOOR_BYTES = 1024 * 1024

NO_MANIFEST = "no manifest.json at the top of the archive (or in its single top folder)"

_FLAG_ENCRYPTED = 0x0001
_FLAG_STRONG_ENCRYPTION = 0x0040
_FLAG_UTF8 = 0x0800
_LOCAL_HEADER = struct.Struct("<4s5H3L2H")  # signature .. extra field length: 30 bytes
_LOCAL_SIGNATURE = b"PK\x03\x04"
_END_SIGNATURE = b"PK\x05\x06"
# The end record is 22 bytes plus a comment of at most 65535 bytes.
_END_SEARCH_BYTES = 22 + 0xFFFF

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
        fd = os.open(path, os.O_RDONLY | O_NONBLOCK | O_CLOEXEC | O_BINARY)
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
                make_dirs(root_real, member.name, entry.raw)
            else:
                total += _write_member(
                    view, entry, target_path(root_real, member.name, entry.raw), limits, total
                )
    except BaseException:
        shutil.rmtree(root, ignore_errors=True)
        raise
    return Path(root)


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

    names = NameSet()
    entries: list[_Entry] = []
    total = compressed = 0
    for info in infos:
        entry = _check_entry(info, limits)
        names.add(entry.path, entry.is_dir, entry.raw)
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
    check_path(path, raw, limits)

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
        name = nfc(entry.path[len(prefix) :])
        if not entry.is_dir:
            check_source_only(name, entry.raw)
        plan.append((Member(name=name, is_dir=entry.is_dir, size=entry.info.file_size), entry))
    return plan


# -- extraction -------------------------------------------------------------------------------


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
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | O_NOFOLLOW | O_CLOEXEC | O_BINARY
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
