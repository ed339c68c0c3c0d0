"""Plugin archives: the hostile corpus, the limits, extraction containment, folder packaging.

Damaged and random archives are fuzzed in ``test_archive_fuzz.py``.
"""

from __future__ import annotations

import io
import json
import os
import random
import shutil
import stat
import unicodedata
import zipfile
import zlib
from collections.abc import Callable
from pathlib import Path

import pytest

from services_ai_plugins.errors import ArchiveError
from services_ai_plugins.lifecycle import archive
from services_ai_plugins.lifecycle.archive import (
    ArchiveLimits,
    Member,
    extract_zip,
    inspect_zip,
    read_archive_bytes,
    sha256_hex,
)
from services_ai_plugins.lifecycle.archiverules import is_within, target_path
from services_ai_plugins.lifecycle.packaging import package_dir
from tests.helpers import zip_generator

CORPUS = Path(__file__).parent / "data" / "zips"
REJECT = CORPUS / "reject"
ACCEPT = CORPUS / "accept"
EXPECTED: dict[str, str] = json.loads((REJECT / "expected.json").read_text(encoding="ascii"))
REJECT_FILES = sorted(p.name for p in REJECT.glob("*.zip"))
ACCEPT_FILES = sorted(p.name for p in ACCEPT.glob("*.zip"))
# Their headers are consistent, so they pass inspection; only inflating the data shows the lie.
CAUGHT_WHILE_EXTRACTING = {"forged_size.zip", "forged_size_short.zip", "bad_crc.zip"}
PLUGIN_FILES = {"manifest.json", "__init__.py", "main.py"}

gen = zip_generator()


# -- helpers ----------------------------------------------------------------------------------


def make_zip(files: dict[str, bytes], compression: int = zipfile.ZIP_DEFLATED) -> bytes:
    """An ordinary archive written by the standard library."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression=compression) as zf:
        for name, data in files.items():
            zf.writestr(name, data)
    return buf.getvalue()


def plugin_files(**extra: bytes) -> dict[str, bytes]:
    return {"manifest.json": gen.MANIFEST, "__init__.py": b"", "main.py": gen.MAIN_PY, **extra}


def raw_zip(*extra: object) -> bytes:
    """The sample plugin plus hand-made entries (see make_zips.Entry)."""
    return bytes(gen.build_zip([*gen.plugin(), *extra]))


def write_plugin(folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for name, data in plugin_files().items():
        (folder / name).write_bytes(data)
    return folder


def refusal(call: Callable[[], object]) -> str:
    with pytest.raises(ArchiveError) as info:
        call()
    message = str(info.value)
    assert "\n" not in message
    return message


def tree(root: Path) -> dict[str, bytes | None]:
    """Every path under ``root``: file contents, ``None`` for folders."""
    return {
        p.relative_to(root).as_posix(): (None if p.is_dir() else p.read_bytes())
        for p in sorted(root.rglob("*"))
    }


@pytest.fixture
def dest(tmp_path: Path) -> Path:
    folder = tmp_path / "dest"
    folder.mkdir()
    return folder


# -- the corpus -------------------------------------------------------------------------------


def test_expected_json_names_every_reject_file() -> None:
    assert sorted(EXPECTED) == REJECT_FILES
    assert len(REJECT_FILES) >= 30
    assert all("\n" not in message for message in EXPECTED.values())


def test_corpus_is_small() -> None:
    assert sum(p.stat().st_size for p in CORPUS.rglob("*") if p.is_file()) < 1024 * 1024


@pytest.mark.parametrize("name", REJECT_FILES)
def test_reject_corpus(name: str, dest: Path) -> None:
    data = read_archive_bytes(REJECT / name)
    assert refusal(lambda: extract_zip(data, dest)) == EXPECTED[name]
    assert list(dest.iterdir()) == []
    if name in CAUGHT_WHILE_EXTRACTING:
        inspect_zip(data)
    else:
        assert refusal(lambda: inspect_zip(data)) == EXPECTED[name]


@pytest.mark.parametrize("name", ACCEPT_FILES)
def test_accept_corpus(name: str, dest: Path) -> None:
    data = read_archive_bytes(ACCEPT / name)
    # The hand-made writer makes standard ZIPs: the standard library reads them with good CRCs.
    with zipfile.ZipFile(io.BytesIO(data)) as zf:
        assert zf.testzip() is None
    members = inspect_zip(data)
    assert {m.name for m in members} == PLUGIN_FILES
    assert Member("main.py", False, len(gen.MAIN_PY)) in members
    root = extract_zip(data, dest)
    assert root.parent == dest
    assert root.name.startswith(".extract-")
    assert tree(root) == plugin_files()


def test_generator_reproduces_the_corpus(tmp_path: Path) -> None:
    gen.build(tmp_path)
    for sub in ("reject", "accept"):
        built = {p.name: p.read_bytes() for p in (tmp_path / sub).iterdir()}
        committed = {p.name: p.read_bytes() for p in (CORPUS / sub).iterdir()}
        assert sorted(built) == sorted(committed), f"run tests/data/zips/make_zips.py ({sub})"
        for name, data in built.items():
            assert data == committed[name], f"{sub}/{name} differs: run tests/data/zips/make_zips.py"


def test_hand_made_deflate_streams_inflate_with_zlib() -> None:
    assert zlib.decompress(gen.deflate_literals(gen.MAIN_PY), -15) == gen.MAIN_PY
    assert zlib.decompress(gen.deflate_zeros(100_000), -15) == bytes(100_000)


# -- entries ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "reason"),
    [
        ("a\nb.py", "unsafe entry name (control character U+000A)"),
        ("a\x7fb.py", "unsafe entry name (control character U+007F)"),
        ("a\x85b.py", "unsafe entry name (control character U+0085)"),
        ("lib/./x.py", "unsafe entry name (current directory '.')"),
        ("lib/..", "unsafe entry name (parent directory '..')"),
        ("..", "unsafe entry name (parent directory '..')"),
        ("lib//", "unsafe entry name (empty path component)"),
        ("", "unsafe entry name (empty name)"),
        ("//server/share/x.py", "unsafe entry name (absolute path)"),
        ("\\\\server\\share\\x.py", "unsafe entry name (backslash)"),
        ("lib\\x.py", "unsafe entry name (backslash)"),
        ("c:x.py", "unsafe entry name (drive letter)"),
    ],
)
def test_unsafe_names(name: str, reason: str) -> None:
    data = raw_zip(gen.stored(name, b"x"))
    assert refusal(lambda: inspect_zip(data)) == f"{reason}: {name!r}"


def test_names_a_bit_unusual_but_safe_are_kept(dest: Path) -> None:
    names = ["..hidden.py", "a..b.py", "lib/.env", "ünïcode/naïve.py", "with space.txt", "ab:c.txt"]
    data = raw_zip(*(gen.stored(n, b"ok") for n in names))
    assert {m.name for m in inspect_zip(data)} == PLUGIN_FILES | set(names)
    root = extract_zip(data, dest)
    assert all((root / n).read_bytes() == b"ok" for n in names)


def test_names_are_nfc_in_members_and_on_disk(dest: Path) -> None:
    nfd = unicodedata.normalize("NFD", "café.py")
    data = raw_zip(gen.stored(nfd, b"ok"))
    nfc = unicodedata.normalize("NFC", "café.py")
    assert nfc in {m.name for m in inspect_zip(data)}
    root = extract_zip(data, dest)
    assert nfc in os.listdir(root)
    assert nfd not in os.listdir(root)


@pytest.mark.parametrize(
    ("mode", "reason"),
    [
        (stat.S_IFCHR | 0o644, "special file entries (fifo, device, socket) are not allowed"),
        (stat.S_IFBLK | 0o644, "special file entries (fifo, device, socket) are not allowed"),
        (stat.S_IFSOCK | 0o644, "special file entries (fifo, device, socket) are not allowed"),
        (stat.S_IFLNK | 0o777, "symbolic link entries are not allowed"),
        (stat.S_IFDIR | 0o755, "folder entry without a trailing '/'"),
    ],
)
def test_entry_types(mode: int, reason: str) -> None:
    data = raw_zip(gen.stored("thing", b"", mode=mode))
    assert refusal(lambda: inspect_zip(data)) == f"{reason}: 'thing'"


def test_symlink_folder_entry_is_refused() -> None:
    link = gen.stored("lib/", b"", mode=stat.S_IFLNK | 0o777)
    assert refusal(lambda: inspect_zip(raw_zip(link))) == "symbolic link entries are not allowed: 'lib/'"


def test_folder_entry_with_data_is_refused() -> None:
    entry = gen.stored("lib/", b"data", mode=stat.S_IFDIR | 0o755)
    assert refusal(lambda: inspect_zip(raw_zip(entry))) == "folder entry holds data (4 bytes): 'lib/'"


def test_modes_from_other_systems_are_accepted(dest: Path) -> None:
    # Windows tools leave the Unix mode 0; some mark a folder (trailing '/') as a regular file.
    data = raw_zip(gen.stored("a.txt", b"a", mode=0), gen.stored("lib/", b"", mode=stat.S_IFREG | 0o644))
    assert {m.name: m.is_dir for m in inspect_zip(data)}["lib"] is True
    root = extract_zip(data, dest)
    assert (root / "lib").is_dir()
    assert (root / "a.txt").read_bytes() == b"a"


def test_file_after_folder_of_same_name() -> None:
    data = raw_zip(gen.stored("lib/util.py", b""), gen.stored("lib", b""))
    assert refusal(lambda: inspect_zip(data)) == "name used both as a file and as a folder ('lib'): 'lib'"


def test_explicit_folder_clashes_with_file() -> None:
    data = raw_zip(gen.stored("lib", b""), gen.folder("LIB"))
    assert refusal(lambda: inspect_zip(data)) == "name used both as a file and as a folder ('lib'): 'LIB/'"


def test_duplicate_in_case_and_normalisation() -> None:
    data = raw_zip(gen.stored("Café.py", b""), gen.stored(unicodedata.normalize("NFD", "café.py"), b""))
    assert refusal(lambda: inspect_zip(data)).startswith(
        "duplicate entry (differs only in case and Unicode normalisation from 'Caf\\xe9.py')"
    )


def test_repeated_folder_entry_is_a_duplicate() -> None:
    data = raw_zip(gen.folder("lib"), gen.folder("lib"))
    assert refusal(lambda: inspect_zip(data)) == "duplicate entry: 'lib/'"


def test_folder_members(dest: Path) -> None:
    data = raw_zip(gen.folder("empty"), gen.folder("lib"), gen.stored("lib/x.py", b"x"))
    members = inspect_zip(data)
    assert Member("empty", True, 0) in members
    assert Member("lib", True, 0) in members
    root = extract_zip(data, dest)
    assert (root / "empty").is_dir()
    assert (root / "lib" / "x.py").read_bytes() == b"x"


# -- code that would run instead of the reviewed source --------------------------------------

BYTECODE = "compiled Python bytecode is not allowed (ship the .py source)"
NATIVE = "native extension modules are not allowed"
PTH = "path configuration (.pth) files are not allowed"


@pytest.mark.parametrize(
    ("name", "reason"),
    [
        ("__pycache__/main.cpython-311.pyc", BYTECODE),
        ("lib/__pycache__/util.cpython-312.opt-1.pyc", BYTECODE),
        ("__pycache__/notes.txt", BYTECODE),
        ("helper.pyc", BYTECODE),
        ("helper.pyo", BYTECODE),
        # A case-insensitive file system opens these for helper.pyc, Windows for the last two.
        ("HELPER.PYC", BYTECODE),
        ("__PyCache__/main.cpython-311.pyc", BYTECODE),
        ("helper.pyc.", BYTECODE),
        ("helper.pyc ", BYTECODE),
        ("fast.so", NATIVE),
        ("fast.abi3.so", NATIVE),
        ("lib/fast.cpython-311-darwin.so", NATIVE),
        ("fast.pyd", NATIVE),
        ("Fast.PYD", NATIVE),
        ("helper.dll", NATIVE),
        ("libhelper.dylib", NATIVE),
        ("evil.pth", PTH),
        ("lib/EVIL.PTH", PTH),
    ],
)
def test_files_that_would_run_instead_of_the_source_are_refused(name: str, reason: str, dest: Path) -> None:
    data = raw_zip(gen.stored(name, b"x"))
    assert refusal(lambda: inspect_zip(data)) == f"{reason}: {name!r}"
    assert refusal(lambda: extract_zip(data, dest)) == f"{reason}: {name!r}"
    assert list(dest.iterdir()) == []


def test_source_and_data_with_similar_names_are_kept() -> None:
    names = ["pyc.txt", "notes.so.txt", "lib/pycache/x.py", "so", "x.pyw", "x.pyi", "x.pth.txt", "lib.dll.md"]
    data = raw_zip(gen.folder("__pycache__"), *(gen.stored(n, b"ok") for n in names))
    # An empty __pycache__ folder runs nothing; Python would make one there itself.
    assert {m.name for m in inspect_zip(data)} == PLUGIN_FILES | set(names) | {"__pycache__"}


def test_bytecode_in_the_macosx_folder_beside_the_top_folder_is_skipped_unread() -> None:
    data = gen.build_zip([*gen.plugin("p/"), gen.stored("__MACOSX/p/__pycache__/._m.pyc", gen.APPLE_DOUBLE)])
    assert {m.name for m in inspect_zip(data)} == PLUGIN_FILES


# -- the plugin root --------------------------------------------------------------------------


def test_macosx_folder_is_kept_when_the_manifest_is_at_the_root() -> None:
    data = raw_zip(gen.stored("__MACOSX/._main.py", gen.APPLE_DOUBLE))
    assert "__MACOSX/._main.py" in {m.name for m in inspect_zip(data)}


def test_macosx_file_beside_the_top_folder_is_refused() -> None:
    data = gen.build_zip([*gen.plugin("p/"), gen.stored("__MACOSX", b"")])
    assert refusal(lambda: inspect_zip(data)) == "entry outside the plugin's top folder 'p/': '__MACOSX'"


def test_second_folder_beside_the_top_folder_is_refused() -> None:
    data = gen.build_zip([*gen.plugin("p/"), gen.folder("docs")])
    assert refusal(lambda: inspect_zip(data)) == "entry outside the plugin's top folder 'p/': 'docs/'"


def test_manifest_folder_is_not_a_manifest() -> None:
    data = gen.build_zip([gen.folder("manifest.json"), *gen.plugin()[1:]])
    assert refusal(lambda: inspect_zip(data)) == archive.NO_MANIFEST


def test_empty_archive_has_no_manifest() -> None:
    assert refusal(lambda: inspect_zip(make_zip({}))) == archive.NO_MANIFEST


def test_stdlib_archives_with_top_folder(dest: Path) -> None:
    files = {f"my-plugin/{name}": data for name, data in plugin_files(**{"lib/util.py": b"u"}).items()}
    root = extract_zip(make_zip(files), dest)
    assert tree(root) == {**plugin_files(), "lib": None, "lib/util.py": b"u"}


# -- limits -----------------------------------------------------------------------------------


def test_archive_file_size(tmp_path: Path) -> None:
    data = make_zip(plugin_files())
    limits = ArchiveLimits(max_archive_bytes=len(data) - 1)
    path = tmp_path / "p.zip"
    path.write_bytes(data)
    assert refusal(lambda: inspect_zip(data, limits)) == (
        f"archive file is {len(data)} bytes; the limit is {len(data) - 1}"
    )
    assert refusal(lambda: read_archive_bytes(path, limits)) == (
        f"archive file is {len(data)} bytes; the limit is {len(data) - 1}: {str(path)!r}"
    )
    assert read_archive_bytes(path, ArchiveLimits(max_archive_bytes=len(data))) == data


def test_total_size() -> None:
    data = make_zip(plugin_files(**{"a.bin": bytes(600), "b.bin": bytes(600)}))
    total = sum(len(v) for v in plugin_files().values()) + 1200
    limits = ArchiveLimits(max_total_bytes=total - 1)
    assert refusal(lambda: inspect_zip(data, limits)) == (
        f"uncompressed total is {total} bytes; the limit is {total - 1}"
    )
    inspect_zip(data, ArchiveLimits(max_total_bytes=total))


def test_member_size() -> None:
    data = make_zip(plugin_files(**{"big.bin": bytes(600)}))
    limits = ArchiveLimits(max_member_bytes=599)
    assert refusal(lambda: inspect_zip(data, limits)) == (
        "entry is 600 bytes uncompressed; the limit is 599: 'big.bin'"
    )
    inspect_zip(data, ArchiveLimits(max_member_bytes=600))


def test_file_count_includes_folders() -> None:
    data = raw_zip(gen.folder("lib"))
    assert refusal(lambda: inspect_zip(data, ArchiveLimits(max_files=3))) == (
        "too many entries: 4; the limit is 3 (folders count too)"
    )
    inspect_zip(data, ArchiveLimits(max_files=4))


def test_name_limits() -> None:
    name = "lib/util/module_name_long.py"
    data = raw_zip(gen.stored(name, b""))
    assert refusal(lambda: inspect_zip(data, ArchiveLimits(max_depth=2))) == (
        f"entry path has 3 components; the limit is 2: {name!r}"
    )
    assert refusal(lambda: inspect_zip(data, ArchiveLimits(max_path_length=27))) == (
        f"entry name is 28 characters; the limit is 27: {name!r}"
    )
    assert refusal(lambda: inspect_zip(data, ArchiveLimits(max_component_length=18))) == (
        f"path component is 19 characters; the limit is 18: {name!r}"
    )
    inspect_zip(data, ArchiveLimits(max_depth=3, max_path_length=28, max_component_length=19))


def test_ratio_is_judged_only_above_one_mib() -> None:
    # Incompressible padding keeps the archive-wide ratio low: only the member's own is judged.
    noise = random.Random(0).randbytes(30_000)
    floor = archive.RATIO_FLOOR_BYTES
    at_floor = make_zip(plugin_files(**{"noise.bin": noise, "zeros.bin": bytes(floor)}))
    inspect_zip(at_floor)  # about 1000:1, but small enough not to matter
    over = make_zip(plugin_files(**{"noise.bin": noise, "zeros.bin": bytes(floor + 1)}))
    message = refusal(lambda: inspect_zip(over))
    assert message.startswith("compression ratio is ")
    assert message.endswith("the limit is 100:1 (possible ZIP bomb): 'zeros.bin'")
    inspect_zip(over, ArchiveLimits(max_ratio=10_000))


def test_overall_ratio() -> None:
    # No member is over 1 MiB, so only the archive-wide ratio can catch these.
    data = make_zip(plugin_files(**{f"z{i}.bin": bytes(600 * 1024) for i in range(3)}))
    message = refusal(lambda: inspect_zip(data))
    assert message.startswith("archive compression ratio is ")
    assert message.endswith("; the limit is 100:1 (possible ZIP bomb)")


def test_incompressible_data_is_fine(dest: Path) -> None:
    noise = random.Random(0).randbytes(3 * 1024 * 1024)
    root = extract_zip(make_zip(plugin_files(**{"noise.bin": noise})), dest)
    assert (root / "noise.bin").read_bytes() == noise


# -- extraction -------------------------------------------------------------------------------


def test_forged_bomb_is_stopped_at_its_declared_size(dest: Path) -> None:
    size = 5 * 1024 * 1024
    bomb = gen.Entry(b"bomb.bin", gen.deflate_zeros(size), 1000, zlib.crc32(bytes(size)), gen.DEFLATED)
    data = raw_zip(bomb)
    assert inspect_zip(data)  # the declared sizes are harmless
    assert refusal(lambda: extract_zip(data, dest)) == (
        "decompressed data exceeds the declared size of 1000 bytes (corrupt or forged header): 'bomb.bin'"
    )
    assert list(dest.iterdir()) == []


def test_corrupt_deflate_data(dest: Path) -> None:
    entry = gen.Entry(b"x.py", b"\xff" * 20, 5, 0, gen.DEFLATED)
    message = refusal(lambda: extract_zip(raw_zip(entry), dest))
    assert message.startswith("corrupt compressed data")
    assert message.endswith(": 'x.py'")
    assert list(dest.iterdir()) == []


def test_unterminated_deflate_stream(dest: Path) -> None:
    stream = gen.deflate_literals(b"hello world")[:-2]
    entry = gen.Entry(b"x.py", stream, 11, zlib.crc32(b"hello world"), gen.DEFLATED)
    assert refusal(lambda: extract_zip(raw_zip(entry), dest)) == (
        "corrupt compressed data (the deflate stream ends early): 'x.py'"
    )


def test_containment_compares_whole_components(tmp_path: Path) -> None:
    (tmp_path / "foo").mkdir()
    (tmp_path / "foobar").mkdir()
    root = os.path.realpath(tmp_path / "foo")
    outside = os.path.join(os.path.realpath(tmp_path / "foobar"), "x.py")
    assert outside.startswith(root)  # what a string prefix test would wrongly accept
    assert not is_within(root, outside)
    assert not is_within(root, os.path.join(root, "..", "foobar", "x.py"))
    assert is_within(root, os.path.join(root, "lib", "x.py"))
    assert is_within(root, root)


def _fresh_folder_with_plant(
    monkeypatch: pytest.MonkeyPatch, parent: Path, plant: Callable[[Path], None]
) -> Path:
    """Make extract_zip's "fresh" folder ``parent/foo``, with ``plant`` run in it first."""
    fresh = parent / "foo"

    def fake_mkdtemp(dir: Path, prefix: str) -> str:
        fresh.mkdir()
        plant(fresh)
        return str(fresh)

    monkeypatch.setattr(archive.tempfile, "mkdtemp", fake_mkdtemp)
    return fresh


def test_planted_folder_link_is_not_followed(monkeypatch: pytest.MonkeyPatch, dest: Path) -> None:
    sibling = dest / "foobar"
    sibling.mkdir()
    fresh = _fresh_folder_with_plant(monkeypatch, dest, lambda f: (f / "lib").symlink_to(sibling))
    data = raw_zip(gen.stored("lib/util.py", gen.EVIL))
    assert refusal(lambda: extract_zip(data, dest)) == (
        "entry would be written outside the extraction folder: 'lib/util.py'"
    )
    assert list(sibling.iterdir()) == []
    assert not fresh.exists()


def test_planted_file_link_is_not_followed(monkeypatch: pytest.MonkeyPatch, dest: Path) -> None:
    sibling = dest / "foobar"
    sibling.mkdir()
    target = sibling / "victim.py"
    target.write_bytes(b"untouched")
    _fresh_folder_with_plant(monkeypatch, dest, lambda f: (f / "main.py").symlink_to(target))
    assert refusal(lambda: extract_zip(raw_zip(), dest)) == (
        "entry exists already in the extraction folder: 'main.py'"
    )
    assert target.read_bytes() == b"untouched"
    assert [p.name for p in dest.iterdir()] == ["foobar"]


def test_target_path_refuses_a_parent_resolving_outside(tmp_path: Path) -> None:
    root = tmp_path / "foo"
    root.mkdir()
    (tmp_path / "foobar").mkdir()
    (root / "lib").symlink_to(tmp_path / "foobar")
    with pytest.raises(ArchiveError, match="outside the extraction folder"):
        target_path(os.path.realpath(root), "lib/x.py", "lib/x.py")


@pytest.mark.parametrize("error", [OSError(28, "No space left on device"), KeyboardInterrupt()])
def test_any_error_removes_the_partial_folder(
    monkeypatch: pytest.MonkeyPatch, dest: Path, error: BaseException
) -> None:
    real_write = archive._write_member
    calls = []

    def failing_write(*args: object, **kwargs: object) -> int:
        calls.append(1)
        if len(calls) == 2:
            raise error
        return real_write(*args, **kwargs)

    monkeypatch.setattr(archive, "_write_member", failing_write)
    with pytest.raises(type(error)):
        extract_zip(make_zip(plugin_files()), dest)
    assert len(calls) == 2
    assert list(dest.iterdir()) == []


def test_each_extraction_gets_a_fresh_folder(dest: Path) -> None:
    data = make_zip(plugin_files())
    first = extract_zip(data, dest)
    second = extract_zip(data, dest)
    assert first != second
    assert tree(first) == tree(second) == plugin_files()


# -- reading ----------------------------------------------------------------------------------


def test_read_archive_bytes_refusals(tmp_path: Path) -> None:
    missing = tmp_path / "missing.zip"
    assert refusal(lambda: read_archive_bytes(missing)).startswith("cannot read the archive (")
    assert refusal(lambda: read_archive_bytes(tmp_path)) == f"not a regular file: {str(tmp_path)!r}"


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs os.mkfifo")
def test_read_archive_bytes_does_not_block_on_a_fifo(tmp_path: Path) -> None:
    fifo = tmp_path / "p.zip"
    os.mkfifo(fifo)
    assert refusal(lambda: read_archive_bytes(fifo)) == f"not a regular file: {str(fifo)!r}"


def test_sha256_hex() -> None:
    assert sha256_hex(b"") == "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"


# -- packaging a folder -----------------------------------------------------------------------


def test_package_dir_is_deterministic(tmp_path: Path) -> None:
    src = write_plugin(tmp_path / "one")
    (src / "lib").mkdir()
    (src / "lib" / "util.py").write_bytes(b"u = 1\n")
    (src / "empty").mkdir()
    first = package_dir(src)
    for path in src.rglob("*"):
        os.utime(path, (1_700_000_000, 1_700_000_000))
    assert package_dir(src) == first
    other = tmp_path / "two"
    shutil.copytree(src, other)
    assert package_dir(other) == first

    with zipfile.ZipFile(io.BytesIO(first)) as zf:
        infos = zf.infolist()
    names = [i.filename for i in infos]
    assert names == sorted(names)
    assert names == ["__init__.py", "empty/", "lib/", "lib/util.py", "main.py", "manifest.json"]
    for info in infos:
        assert info.date_time == (1980, 1, 1, 0, 0, 0)
        if info.is_dir():
            assert info.external_attr >> 16 == stat.S_IFDIR | 0o755
        else:
            assert info.external_attr >> 16 == stat.S_IFREG | 0o644
            assert info.compress_type == zipfile.ZIP_DEFLATED


def test_package_dir_round_trip(tmp_path: Path, dest: Path) -> None:
    src = write_plugin(tmp_path / "src")
    (src / "data").mkdir()
    (src / "data" / "big.txt").write_bytes(b"line of text\n" * 50_000)
    root = extract_zip(package_dir(src), dest)
    assert tree(root) == tree(src)


def test_package_dir_skips_caches_and_vcs(tmp_path: Path) -> None:
    src = write_plugin(tmp_path / "src")
    for folder in (
        "__pycache__",
        ".git",
        ".hg",
        ".svn",
        ".pytest_cache",
        ".mypy_cache",
        ".ruff_cache",
        "x.egg-info",
        "lib/__pycache__",
    ):
        (src / folder).mkdir(parents=True)
        (src / folder / "junk").write_bytes(b"junk")
    for name in ("main.pyc", "main.pyo", ".DS_Store", "lib/.DS_Store", "lib/util.cpython-311.pyc"):
        (src / name).write_bytes(b"junk")
    (src / "lib" / "util.py").write_bytes(b"")
    with zipfile.ZipFile(io.BytesIO(package_dir(src))) as zf:
        assert sorted(zf.namelist()) == ["__init__.py", "lib/", "lib/util.py", "main.py", "manifest.json"]


@pytest.mark.parametrize(
    ("name", "reason"),
    [("fast.so", NATIVE), ("lib/fast.pyd", NATIVE), ("evil.pth", PTH), ("lib/helper.PYC", BYTECODE)],
)
def test_package_dir_refuses_what_would_run_instead_of_the_source(
    tmp_path: Path, name: str, reason: str
) -> None:
    # Caches Python writes (lower-case .pyc, __pycache__/) are skipped; anything else that
    # would run in place of the source is refused, by the inspection of the packaged archive.
    src = write_plugin(tmp_path / "src")
    (src / "lib").mkdir()
    (src / name).write_bytes(b"x")
    assert refusal(lambda: package_dir(src)) == f"{reason}: {name!r}"


def test_package_dir_refuses_links(tmp_path: Path) -> None:
    src = write_plugin(tmp_path / "src")
    (src / "lib").mkdir()
    (src / "lib" / "link.py").symlink_to(src / "main.py")
    assert refusal(lambda: package_dir(src)) == "symbolic links are not allowed: 'lib/link.py'"
    (src / "lib" / "link.py").unlink()
    (src / "shared").symlink_to(tmp_path, target_is_directory=True)
    assert refusal(lambda: package_dir(src)) == "symbolic links are not allowed: 'shared'"


def test_package_dir_refuses_a_linked_manifest(tmp_path: Path) -> None:
    src = write_plugin(tmp_path / "src")
    (tmp_path / "real.json").write_bytes(gen.MANIFEST)
    (src / "manifest.json").unlink()
    (src / "manifest.json").symlink_to(tmp_path / "real.json")
    assert refusal(lambda: package_dir(src)) == "symbolic links are not allowed: 'manifest.json'"


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs os.mkfifo")
def test_package_dir_refuses_special_files(tmp_path: Path) -> None:
    src = write_plugin(tmp_path / "src")
    os.mkfifo(src / "pipe")
    assert refusal(lambda: package_dir(src)) == (
        "special files (fifo, device, socket) are not allowed: 'pipe'"
    )


def test_package_dir_needs_a_manifest(tmp_path: Path) -> None:
    src = write_plugin(tmp_path / "src")
    (src / "manifest.json").unlink()
    assert refusal(lambda: package_dir(src)) == f"no manifest.json in the plugin folder: {str(src)!r}"
    assert refusal(lambda: package_dir(tmp_path / "nope")).startswith("not a folder: ")


def test_package_dir_refuses_names_other_systems_would_merge(tmp_path: Path) -> None:
    src = write_plugin(tmp_path / "src")
    (src / "Main.py").write_bytes(b"")
    if not (src / "main.py").samefile(src / "Main.py"):  # case-sensitive file system
        assert refusal(lambda: package_dir(src)) == (
            "duplicate entry (differs only in case from 'Main.py'): 'main.py'"
        )


def test_package_dir_refuses_unsafe_names(tmp_path: Path) -> None:
    src = write_plugin(tmp_path / "src")
    (src / "a\\b.py").write_bytes(b"")
    assert refusal(lambda: package_dir(src)) == "unsafe entry name (backslash): 'a\\\\b.py'"


def test_package_dir_limits(tmp_path: Path) -> None:
    src = write_plugin(tmp_path / "src")
    (src / "big.bin").write_bytes(bytes(600))
    assert refusal(lambda: package_dir(src, ArchiveLimits(max_member_bytes=599))) == (
        "entry is 600 bytes uncompressed; the limit is 599: 'big.bin'"
    )
    assert refusal(lambda: package_dir(src, ArchiveLimits(max_total_bytes=600))).startswith(
        "uncompressed total is over 600 bytes (the limit): "
    )
    assert refusal(lambda: package_dir(src, ArchiveLimits(max_files=3))) == (
        "too many entries: more than 3; the limit is 3 (folders count too)"
    )
    assert refusal(lambda: package_dir(src, ArchiveLimits(max_archive_bytes=100))).startswith(
        "packaged archive is "
    )
    package_dir(src, ArchiveLimits(max_files=4, max_member_bytes=600))
