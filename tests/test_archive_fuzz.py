"""Fuzzing the archive validator: whatever bytes arrive, ``inspect_zip`` and ``extract_zip``
either succeed or raise :class:`ArchiveError` (never another exception), and nothing is ever
written outside the target folder.

Every write, folder creation, rename or removal made while ``extract_zip`` runs is seen by an
audit hook (:pep:`578`), so an escape is caught wherever it would land, not only next to the
target folder.
"""

from __future__ import annotations

import io
import os
import stat
import sys
import tempfile
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from services_ai_plugins.errors import ArchiveError
from services_ai_plugins.lifecycle.archive import Member, extract_zip, inspect_zip
from services_ai_plugins.lifecycle.archiverules import is_within
from tests.helpers import zip_generator

CORPUS = Path(__file__).parent / "data" / "zips"
FUZZ = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])

gen = zip_generator()


# -- watching every write ---------------------------------------------------------------------

_WRITE_FLAGS = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_APPEND | os.O_TRUNC
# Audit events that change the file system: (index of a path written, index of its dir_fd).
_EVENTS: dict[str, tuple[tuple[int, int | None], ...]] = {
    "os.mkdir": ((0, 2),),
    "os.remove": ((0, 1),),
    "os.rmdir": ((0, 1),),
    "os.rename": ((0, 2), (1, 3)),
    "os.replace": ((0, 2), (1, 3)),
    "os.symlink": ((1, 2),),  # the link made; its target is not written
    "os.link": ((1, 3),),
    "os.chmod": ((0, 2),),
    "os.chown": ((0, 3),),
    "os.utime": ((0, 3),),
    "os.truncate": ((0, None),),
    "shutil.rmtree": ((0, 1),),
}
_watching: list[list[str]] = []  # while extract_zip runs: the paths it writes to


def _resolve(path: object, dir_fd: object) -> str | None:
    if not isinstance(path, str | bytes | os.PathLike):
        return None  # a file descriptor: its opening was seen already
    name = os.fsdecode(path)
    if os.path.isabs(name):
        return name
    if dir_fd is None:
        return os.path.abspath(name)
    # Relative to an open folder (shutil.rmtree works this way): where that folder is.
    proc = f"/proc/self/fd/{dir_fd}"
    return os.path.join(os.readlink(proc), name) if os.path.exists(proc) else None


def _audit(event: str, args: tuple[Any, ...]) -> None:
    if not _watching:
        return
    if event == "open":
        path, _mode, flags = args
        places: tuple[tuple[int, int | None], ...] = (
            ((0, None),) if isinstance(flags, int) and flags & _WRITE_FLAGS else ()
        )
    else:
        places = _EVENTS.get(event, ())
    for path_at, fd_at in places:
        resolved = _resolve(args[path_at], None if fd_at is None else args[fd_at])
        if resolved is not None:
            _watching[-1].append(resolved)


# An audit hook cannot be removed; when nothing is watched it returns at once.
sys.addaudithook(_audit)


def _expected_tree(members: list[Member]) -> set[str]:
    names: set[str] = set()
    for member in members:
        parts = member.name.split("/")
        names.update("/".join(parts[:i]) for i in range(1, len(parts) + 1))
    return names


def check(data: bytes) -> None:
    """The fuzzing property, for one archive."""
    with tempfile.TemporaryDirectory() as sandbox_name:
        sandbox = Path(sandbox_name)
        dest = sandbox / "dest"
        dest.mkdir()
        try:
            members: list[Member] | None = inspect_zip(data)
            inspected = ""
        except ArchiveError as exc:
            members, inspected = None, str(exc)

        writes: list[str] = []
        _watching.append(writes)
        try:
            root: Path | None = extract_zip(data, dest)
            extracted = ""
        except ArchiveError as exc:
            root, extracted = None, str(exc)
        finally:
            _watching.pop()

        # The first write makes the fresh folder in dest; every other one lands inside it.
        dest_real = os.path.realpath(dest)
        if writes:
            fresh = writes[0]
            assert os.path.dirname(fresh) == dest_real
            assert os.path.basename(fresh).startswith(".extract-")
            outside = [p for p in writes if not is_within(os.path.realpath(fresh), p)]
            assert not outside, f"written outside the extraction folder: {outside}"
        assert os.listdir(sandbox) == ["dest"]
        if members is None:
            # Extraction inspects first, so it refuses with the same words.
            assert extracted == inspected
        if root is None:
            assert "\n" not in extracted
            assert extracted
            assert os.listdir(dest) == []  # the partial folder is gone
            return
        assert members is not None
        assert root.parent == dest
        assert [p.name for p in dest.iterdir()] == [root.name]
        on_disk = {p.relative_to(root).as_posix() for p in root.rglob("*")}
        assert on_disk == _expected_tree(members)
        for member in members:
            path = root / member.name
            assert not path.is_symlink()
            assert path.is_dir() if member.is_dir else path.stat().st_size == member.size


# -- archives to start from -------------------------------------------------------------------


def _stdlib_zip(files: dict[str, bytes], compression: int) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression=compression) as zf:
        for name, data in files.items():
            zf.writestr(name, data)
    return buf.getvalue()


_PLUGIN = {"manifest.json": gen.MANIFEST, "__init__.py": b"", "main.py": gen.MAIN_PY}
SEEDS = [
    *((CORPUS / "accept" / name).read_bytes() for name in sorted(os.listdir(CORPUS / "accept"))),
    _stdlib_zip(_PLUGIN, zipfile.ZIP_DEFLATED),
    _stdlib_zip({**_PLUGIN, "lib/util.py": b"x = 1\n" * 200, "lib/data/": b""}, zipfile.ZIP_STORED),
    _stdlib_zip(
        {f"top/{n}": d for n, d in _PLUGIN.items()} | {"top/lib/a.py": b"a" * 5000}, zipfile.ZIP_DEFLATED
    ),
]


def _flip(data: bytearray, position: int, mask: int) -> None:
    data[position % len(data)] ^= mask


def _set(data: bytearray, position: int, value: int) -> None:
    data[position % len(data)] = value


def _delete(data: bytearray, position: int, length: int) -> None:
    start = position % len(data)
    del data[start : start + length % 32]


def _insert(data: bytearray, position: int, value: int) -> None:
    # Shifts every offset after that point.
    at = position % (len(data) + 1)
    data[at:at] = bytes([value]) * (1 + value % 8)


_EDITS: list[Callable[[bytearray, int, int], None]] = [_flip, _flip, _set, _delete, _insert]

edit = st.tuples(st.sampled_from(_EDITS), st.integers(min_value=0), st.integers(1, 255))


@st.composite
def mutated_archives(draw: st.DrawFn) -> bytes:
    """A seed with a few bytes flipped, set, deleted or inserted, then maybe cut or extended."""
    data = bytearray(draw(st.sampled_from(SEEDS)))
    for change, position, value in draw(st.lists(edit, max_size=4)):
        if data:
            change(data, position, value)
    if draw(st.integers(0, 3)) == 0:
        del data[draw(st.integers(0, len(data))) :]
    if draw(st.integers(0, 3)) == 0:
        data += draw(st.binary(min_size=1, max_size=64))
    return bytes(data)


# Pieces of names that have broken unzip tools: traversal, absolute and drive paths, separators
# of other systems, NUL, names that fold together, and what would run instead of the source.
_NAME_PIECES = [
    *(".", "..", "/", "../", "..\\", "/etc/", "\\", "C:", "C:/", "//host/"),
    *("\x00", "\u00e9", "e\u0301", "__pycache__/", ".pyc", ".so", "top/", "\u202e"),
]
_SAFE_PIECES = ["a", "B", "b", "lib/", "x.py", "main.py"]
hostile_name = st.lists(
    st.one_of(st.sampled_from(_SAFE_PIECES), st.sampled_from(_NAME_PIECES)), min_size=1, max_size=5
).map("".join)
hostile_entry = st.one_of(
    st.builds(gen.stored, hostile_name, st.binary(max_size=32)),
    st.builds(gen.deflated, hostile_name, st.binary(max_size=32)),
    st.builds(gen.folder, hostile_name),
    st.builds(lambda name: gen.stored(name, b"/etc/passwd", mode=stat.S_IFLNK | 0o777), hostile_name),
)


@st.composite
def hostile_archives(draw: st.DrawFn) -> bytes:
    prefix = draw(st.sampled_from(["", "top/"]))
    entries = [*gen.plugin(prefix), *draw(st.lists(hostile_entry, max_size=5))]
    return bytes(gen.build_zip(draw(st.permutations(entries))))


# -- the properties ---------------------------------------------------------------------------


@FUZZ
@given(st.binary(max_size=4096))
def test_random_bytes(data: bytes) -> None:
    check(data)


@FUZZ
@given(st.binary(max_size=512), st.sampled_from([b"PK\x03\x04", b"PK\x05\x06", b"PK\x01\x02"]))
def test_random_bytes_around_zip_signatures(data: bytes, signature: bytes) -> None:
    check(signature + data)
    check(data + signature + bytes(18))


@FUZZ
@given(mutated_archives())
def test_mutated_archives(data: bytes) -> None:
    check(data)


@FUZZ
@given(hostile_archives())
def test_archives_with_hostile_names(data: bytes) -> None:
    check(data)


def test_the_seeds_extract() -> None:
    for seed in SEEDS:
        assert inspect_zip(seed)
        check(seed)


def test_the_audit_hook_sees_writes_anywhere(tmp_path: Path) -> None:
    # The property is only as good as the watch: prove it records what extraction would do.
    writes: list[str] = []
    _watching.append(writes)
    try:
        (tmp_path / "elsewhere").mkdir()
        (tmp_path / "elsewhere" / "x.py").write_bytes(b"")
        os.close(os.open(tmp_path / "y.py", os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644))
        os.rename(tmp_path / "y.py", tmp_path / "z.py")
    finally:
        _watching.pop()
    assert writes == [
        str(tmp_path / "elsewhere"),
        str(tmp_path / "elsewhere" / "x.py"),
        str(tmp_path / "y.py"),
        str(tmp_path / "y.py"),
        str(tmp_path / "z.py"),
    ]
    with tempfile.TemporaryDirectory() as parent:
        _watching.append(writes := [])
        try:
            extract_zip(SEEDS[0], Path(parent))
        finally:
            _watching.pop()
    assert len(writes) >= 4  # the fresh folder and the plugin's three files
