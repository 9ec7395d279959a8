"""The names ComfyUI gives the images it saves, from ``SaveImage``'s ``filename_prefix``.

``ComfyUI`` gives ``ComfyUI_00001_.png``, then ``ComfyUI_00002_.png``; ``images/rome`` gives
``rome_00001_.png`` in the subfolder ``images``. The prefix may use ``%width%``, ``%height%``,
``%year%``, ``%month%``, ``%day%``, ``%hour%``, ``%minute%``, ``%second%`` (filled in as
ComfyUI's server does) and ``%batch_num%`` (the image's index in its batch). A prefix that
would leave the output folder is refused, as ComfyUI refuses it. The counter goes up by one
per image for each (folder, name) pair: :class:`Counters` keeps them.
"""

from __future__ import annotations

import posixpath
import secrets
import string
import threading
import time
from dataclasses import dataclass, field

MAX_PREFIX_CHARS = 200


@dataclass(frozen=True)
class SavedName:
    """Where a saved image is: ComfyUI's ``{filename, subfolder, type}``."""

    filename: str
    subfolder: str
    type: str

    def as_json(self) -> dict[str, str]:
        return {"filename": self.filename, "subfolder": self.subfolder, "type": self.type}


def prefix_problem(prefix: str) -> str | None:
    """Why ``prefix`` cannot name saved images (None: it can)."""
    if len(prefix) > MAX_PREFIX_CHARS:
        return f"must be at most {MAX_PREFIX_CHARS} characters"
    cleaned = prefix.replace("\\", "/")
    folder = posixpath.dirname(cleaned)
    if cleaned.startswith("/") or "\x00" in cleaned or any(c in cleaned for c in '<>:"|?*'):
        return "must be a relative name (no absolute path, no reserved characters)"
    if posixpath.normpath(folder or ".").split("/")[0] == "..":
        return "must stay inside the output folder (no '..')"
    if not posixpath.basename(cleaned):
        return "must end with a file name"
    return None


def _filled(prefix: str, width: int, height: int, now: time.struct_time) -> str:
    for token, value in (
        ("%width%", str(width)),
        ("%height%", str(height)),
        ("%year%", str(now.tm_year)),
        ("%month%", f"{now.tm_mon:02}"),
        ("%day%", f"{now.tm_mday:02}"),
        ("%hour%", f"{now.tm_hour:02}"),
        ("%minute%", f"{now.tm_min:02}"),
        ("%second%", f"{now.tm_sec:02}"),
    ):
        prefix = prefix.replace(token, value)
    return prefix


@dataclass
class Counters:
    """The next counter of each (type, subfolder, name): one per job inside a RunPod worker,
    one per endpoint for ComfyUI's own API (so every saved name is new)."""

    next: dict[tuple[str, str, str], int] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def names(
        self, prefix: str, kind: str, count: int, size: tuple[int, int] = (0, 0)
    ) -> list[SavedName]:
        """The names of ``count`` images saved under ``prefix`` (``kind``: output or temp)."""
        if kind == "temp":
            # PreviewImage: ComfyUI_temp_ plus five random letters, in the temp folder
            tag = "".join(secrets.choice(string.ascii_lowercase) for _ in range(5))
            prefix = f"{prefix}_{tag}"
        filled = _filled(prefix.replace("\\", "/"), size[0], size[1], time.localtime())
        subfolder, base = posixpath.split(filled)
        subfolder = posixpath.normpath(subfolder) if subfolder else ""
        key = (kind, subfolder, base)
        with self._lock:
            start = self.next.get(key, 1)
            self.next[key] = start + count
        return [
            SavedName(f"{base.replace('%batch_num%', str(i))}_{start + i:05}_.png", subfolder, kind)
            for i in range(count)
        ]
