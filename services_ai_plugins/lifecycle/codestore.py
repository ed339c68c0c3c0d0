"""Stored plugin code, and the one place it is loaded from.

Every installed version keeps its archive in the database (so any worker host can load it) and
a digest of the folder it extracts to. A host keeps extracted copies in its local cache
(``<data dir>/plugins/<archive sha256>``). Whenever code is taken from the cache it is checked
against that digest first: a file changed, added or removed there (by a plugin, say, writing
into another plugin's folder) is noticed, and the folder is extracted afresh from the database.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import shutil
import stat
import tempfile
from pathlib import Path

from sqlalchemy.orm import Session

from schemas.manifest import Manifest
from services_ai_plugins.calling.executor import PluginCode
from services_ai_plugins.config import Config
from services_ai_plugins.errors import PluginLoadError
from services_ai_plugins.infra.models import PluginVersion
from services_ai_plugins.lifecycle import archive

__all__ = ["CodeStore", "UnexpectedFile", "tree_digest"]

log = logging.getLogger(__name__)


class UnexpectedFile(ValueError):
    """A link or special file in a plugin's folder."""


def tree_digest(root: Path) -> str:
    """A SHA-256 over every file below ``root``: its path and its content. Links and special
    files make it fail (they are never part of an extracted plugin)."""
    entries: list[tuple[str, str]] = []
    base = str(root)
    for folder, dirs, files in os.walk(base):
        dirs.sort()
        for name in dirs:
            if os.path.islink(os.path.join(folder, name)):
                raise UnexpectedFile(f"a link in its folder: {name}")
        for name in files:
            path = os.path.join(folder, name)
            mode = os.lstat(path).st_mode
            if not stat.S_ISREG(mode):
                raise UnexpectedFile(f"not a regular file in its folder: {name}")
            h = hashlib.sha256()
            with open(path, "rb") as fh:
                for chunk in iter(lambda: fh.read(1 << 16), b""):
                    h.update(chunk)
            entries.append((os.path.relpath(path, base).replace(os.sep, "/"), h.hexdigest()))
    outer = hashlib.sha256()
    for rel, digest in sorted(entries):
        outer.update(f"{rel}\0{digest}\n".encode())
    return outer.hexdigest()


def _matches(root: Path, digest: str) -> bool:
    try:
        return tree_digest(root) == digest
    except (OSError, UnexpectedFile):
        return False


def _read_only(root: Path) -> None:
    """Files 0444 and folders 0555: plugin code is never written to once extracted (and the
    sandboxes' own users can read it)."""
    for folder, dirs, files in os.walk(root):
        for name in files:
            os.chmod(os.path.join(folder, name), 0o444)
        for name in dirs:
            os.chmod(os.path.join(folder, name), 0o555)  # noqa: S103
    os.chmod(root, 0o555)  # noqa: S103


def _remove(root: Path) -> None:
    """Remove a (read-only) extracted folder."""
    if not root.is_dir() or root.is_symlink():
        return
    os.chmod(root, 0o755)  # noqa: S103 - writable again, to remove it
    for folder, dirs, _files in os.walk(root):
        for name in dirs:
            path = os.path.join(folder, name)
            if not os.path.islink(path):
                os.chmod(path, 0o755)  # noqa: S103
    shutil.rmtree(root, ignore_errors=True)


class CodeStore:
    """The local cache of extracted plugin versions, checked on every use."""

    def __init__(self, config: Config, limits: archive.ArchiveLimits) -> None:
        self.config = config
        self.limits = limits

    @property
    def root(self) -> Path:
        return self.config.cache_dir

    def staging(self) -> Path:
        folder = self.root / ".staging"
        if not folder.is_dir():
            folder.mkdir(parents=True, exist_ok=True)
            # Sandboxes (users of their own) may enter these folders to read their code, but
            # list nothing; the data folder's other files (the databases) are the host's alone.
            for path in (self.config.data_dir, self.root, folder):
                os.chmod(path, 0o711)  # noqa: S103
        return folder

    def extract(self, data: bytes) -> Path:
        """Extract an archive into a fresh staging folder, read-only (the caller discards it)."""
        root = archive.extract_zip(data, self.staging(), self.limits)
        _read_only(root)
        return root

    def discard(self, folder: Path) -> None:
        """Remove a staging folder."""
        _remove(folder)

    def keep(self, sha256: str, staged: Path) -> None:
        """Keep a validated extraction as the cache entry for its archive (a copy: the staged
        folder stays the caller's)."""
        target = self.root / sha256
        if target.exists():
            return
        fresh = Path(tempfile.mkdtemp(dir=self.staging(), prefix=".cache-"))
        try:
            shutil.copytree(staged, fresh, dirs_exist_ok=True, copy_function=shutil.copy)
            _read_only(fresh)
            os.rename(fresh, target)
        except OSError:
            _remove(fresh)

    def folder(self, s: Session, version: PluginVersion) -> Path:
        """The version's folder in the local cache, checked against its digest; extracted from
        the database if it is missing or fails the check."""
        target = self.root / version.sha256
        expected = version.tree_sha256
        if target.is_dir() and expected is not None:
            if _matches(target, expected):
                return target
            log.warning(
                "the cached code of plugin %s %s differs from what was installed; extracting it again",
                version.plugin_id,
                version.version,
            )
        data = version.archive
        if data is None:
            raise PluginLoadError(version.plugin_id, "has no stored archive")
        if archive.sha256_hex(data) != version.sha256:
            raise PluginLoadError(
                version.plugin_id, f"stored archive of {version.version} fails its sha256 check"
            )
        fresh = self.extract(data)
        digest = tree_digest(fresh)
        if expected is None:
            version.tree_sha256 = digest  # a version installed before digests were kept
        elif digest != expected:
            _remove(fresh)
            raise PluginLoadError(
                version.plugin_id, f"stored archive of {version.version} fails its digest check"
            )
        _read_only(fresh)
        self._put(fresh, target, expected or digest, version.plugin_id)
        return target

    def _put(self, fresh: Path, target: Path, digest: str, plugin_id: str) -> None:
        """Put a checked extraction in place. Another process of this host (a pool process, a
        sandbox's host) may be loading from ``target`` at this moment, or have just put an
        identical copy there: a good copy is never removed in place, only a bad one is first
        moved aside in one step, so a reader sees either the whole old folder or the new one."""
        for _attempt in range(3):
            try:
                os.rename(fresh, target)
                return
            except OSError:  # there is a folder there: another process's, or a tampered one
                pass
            if _matches(target, digest):
                _remove(fresh)  # another process put an identical copy there first
                return
            aside = Path(tempfile.mkdtemp(dir=self.staging(), prefix=".stale-"))
            with contextlib.suppress(OSError):  # gone meanwhile, or moved aside by another process
                os.rename(target, aside / "old")
            _remove(aside)
        _remove(fresh)
        raise PluginLoadError(plugin_id, "its cache folder keeps changing while it is put in place")

    def code(self, s: Session, version: PluginVersion, manifest: Manifest) -> PluginCode:
        """The version's code, ready for an executor."""
        if version.entry_point:
            return PluginCode(
                version.plugin_id, version.version, version.sha256, manifest, entry_point=version.entry_point
            )
        return PluginCode(
            version.plugin_id, version.version, version.sha256, manifest, root=self.folder(s, version)
        )

    def remove(self, sha256: str) -> None:
        _remove(self.root / sha256)
