"""Code that would run instead of the reviewed source is refused at validate, install and
upgrade, before anything is stored."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from sqlalchemy import func, select

from services_ai_plugins.errors import ArchiveError
from services_ai_plugins.host import Host
from services_ai_plugins.infra.models import Plugin, PluginVersion
from tests.helpers import zip_generator

CORPUS = Path(__file__).parent / "data" / "zips"
EXPECTED: dict[str, str] = json.loads((CORPUS / "reject" / "expected.json").read_text(encoding="ascii"))
RUNNABLE = sorted(n for n in EXPECTED if n.startswith(("bytecode_", "native_", "pth_")))

gen = zip_generator()


def _counts(host: Host) -> tuple[int, int]:
    with host.db.session() as s:
        plugins = s.scalar(select(func.count()).select_from(Plugin))
        versions = s.scalar(select(func.count()).select_from(PluginVersion))
    return int(plugins or 0), int(versions or 0)


def _nothing_on_disk(host: Host) -> bool:
    cache = host.config.cache_dir
    staging = cache / ".staging"
    left = [p for p in cache.iterdir() if p.name != ".staging"] if cache.exists() else []
    return not left and (not staging.exists() or not list(staging.iterdir()))


def test_the_corpus_has_the_runnable_cases() -> None:
    assert len(RUNNABLE) >= 6


@pytest.mark.parametrize("name", RUNNABLE)
def test_validate_and_install_refuse_before_storing(host: Host, name: str) -> None:
    path = CORPUS / "reject" / name
    for action in (host.registry.validate, host.registry.install):
        with pytest.raises(ArchiveError) as caught:
            action(path)
        assert str(caught.value) == EXPECTED[name]
    assert _counts(host) == (0, 0)
    assert _nothing_on_disk(host)


def test_upgrade_refuses_and_keeps_the_installed_version(host: Host, tmp_path: Path) -> None:
    host.registry.install(CORPUS / "accept" / "root_manifest.zip")
    before = host.registry.show("archive-sample").model_dump()
    manifest = json.loads(gen.MANIFEST)
    newer = json.dumps({**manifest, "version": "2.0.0"}).encode()
    upgrade = tmp_path / "archive-sample-2.0.0.zip"
    upgrade.write_bytes(
        gen.build_zip(
            [
                gen.stored("manifest.json", newer),
                gen.stored("__init__.py", b""),
                gen.stored("main.py", gen.MAIN_PY),
                gen.stored("__pycache__/main.cpython-311.pyc", gen.PYC),
            ]
        )
    )
    with pytest.raises(ArchiveError) as caught:
        host.registry.upgrade("archive-sample", upgrade)
    assert str(caught.value) == (
        "compiled Python bytecode is not allowed (ship the .py source): '__pycache__/main.cpython-311.pyc'"
    )
    assert host.registry.show("archive-sample").model_dump() == before
    assert _counts(host) == (1, 1)
