"""A plugin ZIP sent in a form, written to a private temporary file for the registry (which
validates it in a sandbox: nothing of it runs here). The client's file name is never used."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from starlette.datastructures import UploadFile

from services_ai_plugins.errors import ArchiveError

__all__ = ["saved_upload"]


@contextmanager
def saved_upload(upload: UploadFile | str | None, limit: int) -> Iterator[Path]:
    """The upload as ``upload.zip`` in a temporary folder removed afterwards."""
    if upload is None or isinstance(upload, str):
        raise ArchiveError("no plugin archive was sent (a ZIP file in the form field 'file')")
    with tempfile.TemporaryDirectory(prefix="services-ai-upload-") as folder:
        path = Path(folder) / "upload.zip"
        upload.file.seek(0)
        with path.open("wb") as out:
            shutil.copyfileobj(upload.file, out, 1024 * 1024)
        size = path.stat().st_size
        if size == 0:
            raise ArchiveError("the uploaded file is empty")
        if size > limit:
            raise ArchiveError(f"the archive is {size} bytes; the limit is {limit}")
        yield path
