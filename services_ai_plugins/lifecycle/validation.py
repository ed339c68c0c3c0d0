"""Validating a plugin before it is stored: a safe archive, a valid manifest, and code that
implements exactly the hooks the manifest declares, with arguments the hooks provide.

The code is inspected by the executor, so under the default isolation it is imported inside a
sandbox process, never in the process of whoever validates it (an administrator's shell, the web
app).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from schemas.errors import ContractError
from schemas.manifest import HOOK_NAMES, Manifest, parse_manifest
from services_ai_plugins.calling.executor import Executor, Inspection, PluginCode
from services_ai_plugins.errors import ArchiveError, ManifestError
from services_ai_plugins.lifecycle import archive, packaging
from services_ai_plugins.lifecycle.codestore import CodeStore, tree_digest

__all__ = ["Candidate", "candidate", "check_hooks"]


@dataclass(frozen=True)
class Candidate:
    """A validated plugin, extracted into a staging folder."""

    manifest: Manifest
    archive_bytes: bytes
    sha256: str
    #: Digest of the extracted folder (the cache is checked against it on every load).
    digest: str
    code: PluginCode

    @property
    def root(self) -> Path:
        assert self.code.root is not None
        return self.code.root


def check_hooks(manifest: Manifest, inspection: Inspection) -> None:
    """The code implements every declared hook and nothing undeclared."""
    where = f"{manifest.entry_module}.py" + (f" ({manifest.plugin_class})" if manifest.plugin_class else "")
    implemented = set(inspection.hooks)
    unknown = sorted(implemented - set(HOOK_NAMES))
    if unknown:
        raise ManifestError(
            "hooks",
            f"{where} implements {', '.join(unknown)}, which is not a hook (hooks: {', '.join(HOOK_NAMES)})",
        )
    declared = set(manifest.hooks)
    missing = sorted(declared - implemented)
    if missing:
        raise ManifestError("hooks", f"declared hook {', '.join(missing)} is not implemented in {where}")
    undeclared = sorted(implemented - declared)
    if undeclared:
        raise ManifestError(
            "hooks", f"{where} implements {', '.join(undeclared)} but the manifest does not declare it"
        )


def _read(path: Path, limits: archive.ArchiveLimits) -> bytes:
    if path.is_dir():
        return packaging.package_dir(path, limits)
    if path.is_file():
        return archive.read_archive_bytes(path, limits)
    raise ArchiveError("no such file or folder", str(path))


@contextlib.contextmanager
def candidate(
    path: Path, codes: CodeStore, executor: Executor, import_time_limit: float
) -> Iterator[Candidate]:
    """Validate a ZIP or folder; yields the candidate, whose staging folder is removed on exit."""
    data = _read(Path(path), codes.limits)
    root = codes.extract(data)
    plugin_id: str | None = None
    try:
        try:
            manifest = parse_manifest((root / "manifest.json").read_bytes())
        except ContractError as exc:
            raise ManifestError.from_contract(exc) from None
        plugin_id = manifest.plugin_id
        sha = archive.sha256_hex(data)
        code = PluginCode(manifest.plugin_id, manifest.version, sha, manifest, root=root)
        check_hooks(manifest, executor.inspect(code, import_time_limit))
        yield Candidate(manifest, data, sha, tree_digest(root), code)
    finally:
        if plugin_id is not None:  # whatever ran from the staging folder goes with it
            executor.forget(plugin_id)
        codes.discard(root)
