"""The images ComfyUI API clients upload (``POST /upload/image``), kept in the endpoint's
state folder for the ``LoadImage`` nodes that name them.

Files live under ``SDWORKER_STATE_DIR/comfyui/{input,temp,output}/``, named as ComfyUI names
them: the client's file name, in a subfolder if asked; an existing name is replaced with
``overwrite``, kept when the bytes are the same, else the new file is ``name (1).png``. A
name or subfolder that would leave its folder is refused; at most :data:`MAX_FILES` are
kept, the oldest removed first.
"""

from __future__ import annotations

import base64
import hashlib
import posixpath
import threading
from collections.abc import Iterator, Mapping
from pathlib import Path
from urllib.parse import unquote

from sdworker.core.errors import InvalidInput

#: the most uploaded files kept (ComfyUI keeps every one; an endpoint must stay bounded)
MAX_FILES = 1000
FOLDERS = ("input", "temp", "output")
_RESERVED = set('<>:"|?*\x00')


def clean_name(name: str, field: str) -> str:
    """A relative path inside a folder (``sub/photo.png``); refused when it would leave it."""
    cleaned = name.replace("\\", "/").strip()
    parts = [p for p in cleaned.split("/") if p not in ("", ".")]
    # as any layer that percent-decodes it would read it: no part of dots alone, none from ~
    decoded = [p for p in unquote(cleaned).replace("\\", "/").split("/") if p not in ("", ".")]
    if (
        not parts
        or cleaned.startswith("/")
        or any(p.startswith("~") or (p and not p.strip(".")) for p in decoded)
        or any(c in _RESERVED or ord(c) < 32 for c in cleaned)
        or len(cleaned) > 255
    ):
        raise InvalidInput.one(field, "must be a file name inside its folder", name)
    return "/".join(parts)


class Uploads:
    """The uploaded files of one endpoint (thread-safe)."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self._lock = threading.Lock()

    def _folder(self, kind: str) -> Path:
        if kind not in FOLDERS:
            raise InvalidInput.one("type", f"must be one of {', '.join(FOLDERS)}", kind)
        return self.root / kind

    def save(
        self, name: str, data: bytes, *, subfolder: str = "", kind: str = "input",
        overwrite: bool = False,
    ) -> tuple[str, str]:  # fmt: skip
        """Keep ``data`` as ``name``; returns (the name it got, its subfolder)."""
        folder = self._folder(kind)
        base = clean_name(posixpath.basename(name.replace("\\", "/")), "image")
        sub = clean_name(subfolder, "subfolder") if subfolder.strip() else ""
        with self._lock:
            target_dir = folder / sub if sub else folder
            target_dir.mkdir(parents=True, exist_ok=True)
            final = base
            stem, dot, ext = base.rpartition(".")
            stem, ext = (stem, dot + ext) if dot else (base, "")
            n = 1
            while not overwrite and (target_dir / final).exists():
                if _same(target_dir / final, data):
                    return final, sub
                final = f"{stem} ({n}){ext}"
                n += 1
            (target_dir / final).write_bytes(data)
            self._trim()
        return final, sub

    def read(self, name: str, kind: str = "input") -> bytes | None:
        """The file called ``name`` (a relative path) in the folder, if there is one."""
        try:
            path = self._folder(kind) / clean_name(name, "image")
        except InvalidInput:
            return None
        return path.read_bytes() if path.is_file() else None

    def names(self, kind: str = "input") -> list[str]:
        folder = self._folder(kind)
        if not folder.is_dir():
            return []
        return sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file())

    def _trim(self) -> None:
        files = [p for kind in FOLDERS for p in (self.root / kind).rglob("*") if p.is_file()]
        if len(files) <= MAX_FILES:
            return
        files.sort(key=lambda p: p.stat().st_mtime)
        for path in files[: len(files) - MAX_FILES]:
            path.unlink(missing_ok=True)


def _same(path: Path, data: bytes) -> bool:
    return hashlib.sha256(path.read_bytes()).digest() == hashlib.sha256(data).digest()


class InputImages(Mapping[str, str]):
    """The uploaded input images as a workflow reads them: name -> base64."""

    def __init__(self, uploads: Uploads) -> None:
        self.uploads = uploads

    def __getitem__(self, name: str) -> str:
        data = self.uploads.read(name)
        if data is None:
            raise KeyError(name)
        return base64.b64encode(data).decode("ascii")

    def __iter__(self) -> Iterator[str]:
        return iter(self.uploads.names())

    def __len__(self) -> int:
        return len(self.uploads.names())
