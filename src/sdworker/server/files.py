"""Result files a job leaves behind (served by the endpoint, removed with the job's result)."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

from sdworker.core.errors import InvalidInput

_SAFE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,199}$")


class FileStore:
    """Files under ``root/<job_id>/<name>``, with their content type beside them."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def save(self, job_id: str, name: str, data: bytes, content_type: str) -> Path:
        folder = self._folder(job_id)
        path = folder / _safe(name)
        folder.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        (folder / f".{path.name}.type").write_text(content_type)
        return path

    def find(self, job_id: str, name: str) -> tuple[Path, str] | None:
        """The file and its content type, or None when absent or the name is not ours."""
        if not _SAFE.match(name) or not _SAFE.match(job_id):
            return None
        path = self._folder(job_id) / name
        if not path.is_file():
            return None
        kind = path.with_name(f".{name}.type")
        return path, kind.read_text() if kind.is_file() else "application/octet-stream"

    def delete(self, job_id: str) -> None:
        if _SAFE.match(job_id):
            shutil.rmtree(self._folder(job_id), ignore_errors=True)

    def _folder(self, job_id: str) -> Path:
        return self.root / _safe(job_id)


def _safe(name: str) -> str:
    """Refuse names that could leave the folder (``..``, slashes) rather than rewrite them."""
    if not _SAFE.match(name):
        raise InvalidInput.one("name", "must be a plain file name of letters, digits, ._-", name)
    return name
