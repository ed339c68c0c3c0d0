"""(Re)create the archive corpus: hostile ZIPs that must be refused and valid ones that must not.

    python tests/data/zips/make_zips.py

writes ``reject/*.zip``, ``reject/expected.json`` (file name -> the exact refusal message) and
``accept/*.zip`` next to this script. ``tests/test_archive.py`` checks that running it again
gives the committed files byte for byte.

The archives are written by the small ZIP writer below, not by ``zipfile``: ``zipfile`` refuses
or quietly fixes most of what these files need (``..``, NUL, forged sizes, flag bits), and its
deflate output depends on the zlib build. Compressed members use hand-made fixed-Huffman deflate
streams, so the bytes are the same on every machine. Only the standard library is used, and
nothing from the project: the expected messages here are a specification, not a recording.
"""

from __future__ import annotations

import dataclasses
import json
import stat
import struct
import sys
import unicodedata
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

HERE = Path(__file__).resolve().parent

STORED = 0
DEFLATED = 8
FLAG_ENCRYPTED = 0x0001
FLAG_UTF8 = 0x0800
FILE_MODE = stat.S_IFREG | 0o644
DIR_MODE = stat.S_IFDIR | 0o755
DOS_DATE_1980_01_01 = (0 << 9) | (1 << 5) | 1
MADE_BY_UNIX = (3 << 8) | 20
NEEDED = 20

LOCAL = struct.Struct("<4s5H3L2H")
CENTRAL = struct.Struct("<4s6H3L5H2L")
END = struct.Struct("<4s4H2LH")

NO_MANIFEST = "no manifest.json at the top of the archive (or in its single top folder)"
TOP = "archive-sample"

MANIFEST = (
    json.dumps(
        {
            "name": "Archive Sample",
            "version": "1.0.0",
            "description": "x",
            "author": "a",
            "email": "a@example.com",
            "hooks": ["lead_created"],
            "permissions": ["lead_access"],
        },
        indent=2,
    )
    + "\n"
).encode()
MAIN_PY = (
    b"from services_ai_plugins import hookimpl\n"
    b"\n"
    b"@hookimpl\n"
    b"def lead_created(lead, context):\n"
    b'    return {"status": "success"}\n'
)
EVIL = b"print('this file must never be written')\n"
# A CPython 3.11 bytecode header (magic, flags, then 8 bytes of source stamp), no code after it.
PYC = b"\xa7\r\r\n" + bytes(12)
# The first bytes of an ELF shared object and of a Windows DLL.
ELF = b"\x7fELF\x02\x01\x01" + bytes(9)
MZ = b"MZ" + bytes(14)
# site.py runs every line of a .pth file that starts with "import".
PTH = b"import os; os.system('echo this line must never run')\n"
BYTECODE = "compiled Python bytecode is not allowed (ship the .py source)"
NATIVE = "native extension modules are not allowed"
# The start of an AppleDouble file, as Finder puts in __MACOSX/.
APPLE_DOUBLE = b"\x00\x05\x16\x07\x00\x02\x00\x00Mac OS X        " + bytes(16)


# -- deflate, by hand -------------------------------------------------------------------------


class _Bits:
    """Bits packed least-significant first, as deflate wants them."""

    def __init__(self) -> None:
        self._acc = 0
        self._count = 0
        self._out = bytearray()

    def bits(self, value: int, count: int) -> None:
        self._acc |= value << self._count
        self._count += count
        while self._count >= 8:
            self._out.append(self._acc & 0xFF)
            self._acc >>= 8
            self._count -= 8

    def code(self, code: int, length: int) -> None:
        """A Huffman code: sent most-significant bit first."""
        self.bits(int(format(code, f"0{length}b")[::-1], 2), length)

    def finish(self) -> bytes:
        if self._count:
            self._out.append(self._acc & 0xFF)
        return bytes(self._out)


def _fixed_block() -> _Bits:
    out = _Bits()
    out.bits(1, 1)  # BFINAL: the only block
    out.bits(1, 2)  # BTYPE 01: fixed Huffman codes
    return out


def _literal(out: _Bits, byte: int) -> None:
    if byte < 144:
        out.code(0x30 + byte, 8)
    else:
        out.code(0x190 + byte - 144, 9)


def _end_of_block(out: _Bits) -> bytes:
    out.code(0, 7)  # symbol 256
    return out.finish()


def deflate_literals(data: bytes) -> bytes:
    """A raw deflate stream holding ``data`` as plain literals."""
    out = _fixed_block()
    for byte in data:
        _literal(out, byte)
    return _end_of_block(out)


def deflate_zeros(size: int) -> bytes:
    """A raw deflate stream of ``size`` zero bytes: one literal, then 258-byte copies of it."""
    out = _fixed_block()
    _literal(out, 0)
    left = size - 1
    while left >= 258:
        out.code(0xC0 + 5, 8)  # symbol 285: length 258
        out.code(0, 5)  # distance code 0: distance 1
        left -= 258
    for _ in range(left):
        _literal(out, 0)
    return _end_of_block(out)


# -- a ZIP writer that does what it is told ---------------------------------------------------


@dataclass(frozen=True)
class Entry:
    """One entry, every header field explicit so a case can forge any of them."""

    name: bytes
    payload: bytes  # as stored in the archive: deflated already when method is DEFLATED
    file_size: int
    crc: int
    method: int = STORED
    flags: int = 0
    mode: int = FILE_MODE  # st_mode, kept in the high 16 bits of the external attributes
    local_name: bytes | None = None  # a different name in the local header

    @property
    def external_attr(self) -> int:
        msdos_directory = 0x10 if stat.S_ISDIR(self.mode) else 0
        return (self.mode << 16) | msdos_directory


def _name(name: str | bytes) -> tuple[bytes, int]:
    if isinstance(name, bytes):
        return name, 0
    return name.encode(), (0 if name.isascii() else FLAG_UTF8)


def stored(name: str | bytes, data: bytes, *, mode: int = FILE_MODE) -> Entry:
    raw, flags = _name(name)
    return Entry(raw, data, len(data), zlib.crc32(data), STORED, flags, mode)


def deflated(name: str | bytes, data: bytes) -> Entry:
    raw, flags = _name(name)
    return Entry(raw, deflate_literals(data), len(data), zlib.crc32(data), DEFLATED, flags)


def folder(name: str) -> Entry:
    raw, flags = _name(name.rstrip("/") + "/")
    return Entry(raw, b"", 0, 0, STORED, flags, DIR_MODE)


def local_record(entry: Entry) -> bytes:
    name = entry.name if entry.local_name is None else entry.local_name
    header = LOCAL.pack(
        b"PK\x03\x04",
        NEEDED,
        entry.flags,
        entry.method,
        0,
        DOS_DATE_1980_01_01,
        entry.crc,
        len(entry.payload),
        entry.file_size,
        len(name),
        0,
    )
    return header + name + entry.payload


def central_record(entry: Entry, offset: int) -> bytes:
    header = CENTRAL.pack(
        b"PK\x01\x02",
        MADE_BY_UNIX,
        NEEDED,
        entry.flags,
        entry.method,
        0,
        DOS_DATE_1980_01_01,
        entry.crc,
        len(entry.payload),
        entry.file_size,
        len(entry.name),
        0,
        0,
        0,
        0,
        entry.external_attr,
        offset,
    )
    return header + entry.name


def assemble(body: bytes, central: list[bytes]) -> bytes:
    directory = b"".join(central)
    end = END.pack(b"PK\x05\x06", 0, 0, len(central), len(central), len(directory), len(body), 0)
    return body + directory + end


def build_zip(entries: list[Entry]) -> bytes:
    body = bytearray()
    central = []
    for entry in entries:
        central.append(central_record(entry, len(body)))
        body += local_record(entry)
    return assemble(bytes(body), central)


# -- the plugin, and the cases ----------------------------------------------------------------


def plugin(prefix: str = "", *, deflate_main: bool = False) -> list[Entry]:
    """The minimal valid plugin, under ``prefix`` (``""`` or ``"folder/"``)."""
    main = deflated if deflate_main else stored
    return [
        stored(prefix + "manifest.json", MANIFEST),
        stored(prefix + "__init__.py", b""),
        main(prefix + "main.py", MAIN_PY),
    ]


def with_main(**changes: int) -> bytes:
    """The plugin with header fields of its (deflated) main.py forged."""
    *rest, main = plugin(deflate_main=True)
    return build_zip([*rest, dataclasses.replace(main, **changes)])


def overlapping() -> bytes:
    """Entry 'outer.bin' whose stored data is the whole local record of entry 'inner.py'."""
    inner = stored("inner.py", EVIL)
    inner_record = local_record(inner)
    outer = stored("outer.bin", inner_record)
    body = bytearray()
    central = []
    for entry in plugin():
        central.append(central_record(entry, len(body)))
        body += local_record(entry)
    outer_offset = len(body)
    central.append(central_record(outer, outer_offset))
    body += local_record(outer)
    central.append(central_record(inner, outer_offset + LOCAL.size + len(outer.name)))
    return assemble(bytes(body), central)


def bad_central_directory() -> bytes:
    data = bytearray(build_zip(plugin()))
    start = data.index(b"PK\x01\x02")
    data[start + 3] = 0x00  # the first central header's signature no longer matches
    return bytes(data)


BOMB_SIZE = 5 * 1024 * 1024
BOMB_PACKED = len(deflate_zeros(BOMB_SIZE))
NAME_256 = "a" * 100 + "/" + "b" * 100 + "/" + "c" * 51 + ".py"
COMPONENT_101 = "x" * 98 + ".py"
DEEP_17 = "d/" * 16 + "x.py"
SHORT_BY = 1000


def _reject_cases() -> dict[str, tuple[Callable[[], bytes], str]]:
    p = plugin()
    nested = plugin(TOP + "/")
    return {
        "traversal_parent.zip": (
            lambda: build_zip([*p, stored("../evil.py", EVIL)]),
            "unsafe entry name (parent directory '..'): '../evil.py'",
        ),
        "traversal_nested.zip": (
            lambda: build_zip([*p, stored("a/../../evil.py", EVIL)]),
            "unsafe entry name (parent directory '..'): 'a/../../evil.py'",
        ),
        "absolute_path.zip": (
            lambda: build_zip([*p, stored("/etc/evil.py", EVIL)]),
            "unsafe entry name (absolute path): '/etc/evil.py'",
        ),
        "drive_letter.zip": (
            lambda: build_zip([*p, stored("C:/evil.py", EVIL)]),
            "unsafe entry name (drive letter): 'C:/evil.py'",
        ),
        "drive_letter_relative.zip": (
            lambda: build_zip([*p, stored("C:evil.py", EVIL)]),
            "unsafe entry name (drive letter): 'C:evil.py'",
        ),
        "backslash.zip": (
            lambda: build_zip([*p, stored("..\\evil.py", EVIL)]),
            "unsafe entry name (backslash): '..\\\\evil.py'",
        ),
        "dot_component.zip": (
            lambda: build_zip([*p, stored("./evil.py", EVIL)]),
            "unsafe entry name (current directory '.'): './evil.py'",
        ),
        "empty_component.zip": (
            lambda: build_zip([*p, stored("lib//util.py", EVIL)]),
            "unsafe entry name (empty path component): 'lib//util.py'",
        ),
        "nul_in_name.zip": (
            lambda: build_zip([*p, stored("evil\x00.py", EVIL)]),
            "unsafe entry name (control character U+0000): 'evil\\x00.py'",
        ),
        "non_utf8_name.zip": (
            lambda: build_zip([*p, stored(b"caf\xe9.py", EVIL)]),
            "non-UTF-8 entry name (non-ASCII name without the ZIP UTF-8 flag): 'caf\\\\xe9.py'",
        ),
        "invalid_utf8_flagged.zip": (
            lambda: build_zip([*p, dataclasses.replace(stored(b"caf\xe9.py", EVIL), flags=FLAG_UTF8)]),
            "non-UTF-8 entry name (invalid UTF-8): 'caf\\\\xe9.py'",
        ),
        "name_too_long.zip": (
            lambda: build_zip([*p, stored(NAME_256, EVIL)]),
            f"entry name is 256 characters; the limit is 255: {NAME_256!r}",
        ),
        "component_too_long.zip": (
            lambda: build_zip([*p, stored(COMPONENT_101, EVIL)]),
            f"path component is 101 characters; the limit is 100: {COMPONENT_101!r}",
        ),
        "too_deep.zip": (
            lambda: build_zip([*p, stored(DEEP_17, EVIL)]),
            f"entry path has 17 components; the limit is 16: {DEEP_17!r}",
        ),
        "symlink.zip": (
            lambda: build_zip([*p, stored("link.py", b"/etc/passwd", mode=stat.S_IFLNK | 0o777)]),
            "symbolic link entries are not allowed: 'link.py'",
        ),
        "fifo.zip": (
            lambda: build_zip([*p, stored("pipe", b"", mode=stat.S_IFIFO | 0o644)]),
            "special file entries (fifo, device, socket) are not allowed: 'pipe'",
        ),
        "duplicate_exact.zip": (
            lambda: build_zip([*p, stored("main.py", EVIL)]),
            "duplicate entry: 'main.py'",
        ),
        "duplicate_case.zip": (
            lambda: build_zip([p[0], p[1], stored("Main.py", EVIL), p[2]]),
            "duplicate entry (differs only in case from 'Main.py'): 'main.py'",
        ),
        "duplicate_unicode.zip": (
            lambda: build_zip(
                [
                    *p,
                    stored(unicodedata.normalize("NFC", "café.py"), MAIN_PY),
                    stored(unicodedata.normalize("NFD", "café.py"), EVIL),
                ]
            ),
            "duplicate entry (differs only in Unicode normalisation from 'caf\\xe9.py'): 'cafe\u0301.py'",
        ),
        "folder_case_clash.zip": (
            lambda: build_zip([*p, stored("lib/a.py", b""), stored("Lib/b.py", EVIL)]),
            "duplicate entry (differs only in case from 'lib'): 'Lib/b.py'",
        ),
        "file_and_folder.zip": (
            lambda: build_zip([*p, stored("lib", b""), stored("lib/util.py", EVIL)]),
            "name used both as a file and as a folder ('lib'): 'lib/util.py'",
        ),
        "encrypted.zip": (
            lambda: with_main(flags=FLAG_ENCRYPTED),
            "encrypted entries are not supported: 'main.py'",
        ),
        "unsupported_method.zip": (
            lambda: with_main(method=12),
            "compression method 12 is not supported (only stored and deflated): 'main.py'",
        ),
        "zip_bomb_ratio.zip": (
            lambda: build_zip(
                [
                    *p,
                    Entry(
                        b"bomb.bin",
                        deflate_zeros(BOMB_SIZE),
                        BOMB_SIZE,
                        zlib.crc32(bytes(BOMB_SIZE)),
                        DEFLATED,
                    ),
                ]
            ),
            f"compression ratio is {BOMB_SIZE // BOMB_PACKED}:1 ({BOMB_SIZE} bytes from {BOMB_PACKED}); "
            "the limit is 100:1 (possible ZIP bomb): 'bomb.bin'",
        ),
        "too_many_files.zip": (
            lambda: build_zip([*p, *(stored(f"d/{i:04}", b"") for i in range(2001 - len(p)))]),
            "too many entries: 2001; the limit is 2000 (folders count too)",
        ),
        "forged_size.zip": (
            lambda: with_main(file_size=10),
            "decompressed data exceeds the declared size of 10 bytes (corrupt or forged header): 'main.py'",
        ),
        "forged_size_short.zip": (
            lambda: with_main(file_size=len(MAIN_PY) + SHORT_BY),
            f"decompressed data is {len(MAIN_PY)} bytes, less than the declared {len(MAIN_PY) + SHORT_BY} "
            "(corrupt archive): 'main.py'",
        ),
        "forged_size_stored.zip": (
            lambda: build_zip([*p, dataclasses.replace(stored("extra.py", EVIL), file_size=10)]),
            f"stored entry declares 10 bytes but holds {len(EVIL)} (corrupt or forged header): 'extra.py'",
        ),
        "bad_crc.zip": (
            lambda: with_main(crc=zlib.crc32(MAIN_PY) ^ 1),
            "CRC-32 mismatch (corrupt archive): 'main.py'",
        ),
        "local_name_mismatch.zip": (
            lambda: build_zip([*p[:2], dataclasses.replace(p[2], local_name=b"evil.py")]),
            "corrupt ZIP archive (local header name differs from the central directory): 'main.py'",
        ),
        "overlapping_entries.zip": (overlapping, "overlapping entries (possible ZIP bomb): 'inner.py'"),
        "empty.zip": (lambda: b"", "empty file (0 bytes), not a ZIP archive"),
        "truncated.zip": (
            lambda: (z := build_zip(plugin()))[: len(z) // 2],
            "truncated ZIP archive (no end of central directory record)",
        ),
        "not_a_zip.zip": (lambda: b"This is a text file, not a ZIP archive.\n", "not a ZIP archive"),
        "bad_central_directory.zip": (bad_central_directory, "corrupt ZIP archive (bad central directory)"),
        "no_manifest.zip": (lambda: build_zip(p[1:]), NO_MANIFEST),
        "manifest_two_levels_down.zip": (lambda: build_zip(plugin("outer/inner/")), NO_MANIFEST),
        "two_top_folders.zip": (lambda: build_zip([*plugin("one/"), *plugin("two/")]), NO_MANIFEST),
        "bytecode_pycache.zip": (
            lambda: build_zip([*p, stored("__pycache__/main.cpython-311.pyc", PYC)]),
            f"{BYTECODE}: '__pycache__/main.cpython-311.pyc'",
        ),
        "bytecode_pycache_top_folder.zip": (
            lambda: build_zip([folder(TOP), *nested, stored(f"{TOP}/__pycache__/main.cpython-311.pyc", PYC)]),
            f"{BYTECODE}: '{TOP}/__pycache__/main.cpython-311.pyc'",
        ),
        "bytecode_sourceless.zip": (
            lambda: build_zip([*p, stored("lib/helper.pyc", PYC)]),
            f"{BYTECODE}: 'lib/helper.pyc'",
        ),
        "bytecode_pyo.zip": (
            lambda: build_zip([*p, stored("helper.pyo", PYC)]),
            f"{BYTECODE}: 'helper.pyo'",
        ),
        "native_extension.zip": (
            lambda: build_zip([*p, stored("fast.so", ELF)]),
            f"{NATIVE}: 'fast.so'",
        ),
        "native_extension_tagged.zip": (
            lambda: build_zip([*p, stored("lib/fast.cpython-311-x86_64-linux-gnu.so", ELF)]),
            f"{NATIVE}: 'lib/fast.cpython-311-x86_64-linux-gnu.so'",
        ),
        "native_extension_pyd.zip": (
            lambda: build_zip([*p, stored("fast.cp311-win_amd64.pyd", MZ)]),
            f"{NATIVE}: 'fast.cp311-win_amd64.pyd'",
        ),
        "native_library_dll.zip": (
            lambda: build_zip([*p, stored("lib/helper.dll", MZ)]),
            f"{NATIVE}: 'lib/helper.dll'",
        ),
        "native_library_dylib.zip": (
            lambda: build_zip([*p, stored("libhelper.dylib", ELF)]),
            f"{NATIVE}: 'libhelper.dylib'",
        ),
        "pth_file.zip": (
            lambda: build_zip([*p, stored("evil.pth", PTH)]),
            "path configuration (.pth) files are not allowed: 'evil.pth'",
        ),
        "stray_file.zip": (
            lambda: build_zip([folder(TOP), *nested, stored("README.txt", b"read me\n")]),
            f"entry outside the plugin's top folder '{TOP}/': 'README.txt'",
        ),
    }


def _accept_cases() -> dict[str, Callable[[], bytes]]:
    nested = plugin(TOP + "/", deflate_main=True)
    return {
        "root_manifest.zip": lambda: build_zip(plugin(deflate_main=True)),
        "top_folder.zip": lambda: build_zip([folder(TOP), *nested]),
        "top_folder_implicit.zip": lambda: build_zip(nested),
        "top_folder_macosx.zip": lambda: build_zip(
            [
                folder(TOP),
                *nested,
                folder("__MACOSX"),
                folder(f"__MACOSX/{TOP}"),
                stored(f"__MACOSX/{TOP}/._main.py", APPLE_DOUBLE),
            ]
        ),
    }


def build(out_dir: Path) -> None:
    """Write the whole corpus under ``out_dir`` (``reject/`` and ``accept/``)."""
    reject = out_dir / "reject"
    accept = out_dir / "accept"
    reject.mkdir(parents=True, exist_ok=True)
    accept.mkdir(parents=True, exist_ok=True)
    expected = {}
    for name, (make, message) in _reject_cases().items():
        (reject / name).write_bytes(make())
        expected[name] = message
    text = json.dumps(expected, indent=2, sort_keys=True, ensure_ascii=True) + "\n"
    (reject / "expected.json").write_text(text, encoding="ascii")
    for name, make in _accept_cases().items():
        (accept / name).write_bytes(make())


def main() -> int:
    # Stale files from removed cases would linger otherwise.
    for sub in ("reject", "accept"):
        for old in (HERE / sub).glob("*"):
            if old.suffix in (".zip", ".json"):
                old.unlink()
    build(HERE)
    return 0


if __name__ == "__main__":
    sys.exit(main())
