"""The disk cache of downloaded assets: content-addressed files, an index by where each came
from, a size budget with least-recently-used eviction.

Layout of the cache folder (``SDWORKER_ASSET_CACHE_DIR``):

* ``blobs/<sha256>``: the files, named by their content's sha256;
* ``index.json``: source (a URL with its secrets taken out, a hub file) -> the blob, and when
  each blob was last used;
* ``tmp/``: downloads in flight (a download that fails leaves nothing in ``blobs``);
* ``locks/``: one lock file per source, so that two jobs (threads or worker processes) asking
  for the same source at once download it once: the second waits, then finds it cached.

A file downloaded with a token (a gated hub file, a CivitAI model that needs a login) is
served from the cache only to a request with the same token: the index keeps a keyed hash
of the token (HMAC-SHA256 under a random key of this cache folder), never the token, so a
request without it cannot read what only a token could fetch. Files used in the last
:data:`GRACE_S` seconds are not evicted, so a job prepared a moment ago still finds its file
when it runs.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import hmac
import json
import logging
import os
import secrets
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

#: a blob used this recently is never evicted (a job prepared with it has yet to run)
GRACE_S = 300.0


@dataclass(frozen=True)
class Cached:
    """A file in the cache."""

    path: Path
    sha256: str
    size: int


class AssetCache:
    """Downloaded files under ``root``, at most ``budget`` bytes of them (see the module)."""

    def __init__(self, root: Path, budget: int) -> None:
        self.root = Path(root)
        self.budget = budget
        self.blobs = self.root / "blobs"
        self.tmp = self.root / "tmp"
        self.locks = self.root / "locks"
        self._index_path = self.root / "index.json"

    def _ready(self) -> None:
        for folder in (self.blobs, self.tmp, self.locks):
            folder.mkdir(parents=True, exist_ok=True)

    # -- reading --------------------------------------------------------------------------

    def lookup(self, source: str, token: str | None = None) -> Cached | None:
        """The file cached for ``source``, if it is there and this request may use it (one
        fetched with a token needs the same token); marks it used."""
        with self._index() as index:
            entry = index["sources"].get(source)
            if not isinstance(entry, dict) or not self._allowed(entry, token):
                return None
            return self._use(index, str(entry.get("sha256")))

    def blob(self, sha256: str) -> Cached | None:
        """The cached file whose content has this sha256, whatever its source; marks it used.
        Only for a request that gave the sha256 itself: it knows the content already."""
        with self._index() as index:
            return self._use(index, sha256)

    def _use(self, index: dict[str, Any], sha256: str) -> Cached | None:
        path = self.blobs / sha256
        if not _is_sha256(sha256) or not path.is_file():
            return None
        index["used"][sha256] = time.time()
        return Cached(path, sha256, path.stat().st_size)

    def _allowed(self, entry: dict[str, Any], token: str | None) -> bool:
        needs = entry.get("auth")
        if needs is None:
            return True
        return token is not None and hmac.compare_digest(str(needs), self._fingerprint(token))

    # -- writing --------------------------------------------------------------------------

    @contextlib.contextmanager
    def downloading(self, source: str) -> Iterator[None]:
        """Hold the download of ``source``: another thread or process asking for it waits
        here, and then finds it cached."""
        self._ready()
        name = hashlib.sha256(source.encode()).hexdigest()
        with open(self.locks / name, "a+b") as fh:
            fcntl.flock(fh, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(fh, fcntl.LOCK_UN)

    def temp_file(self) -> Path:
        """A new file name for a download in flight (in the cache's file system, so that
        :meth:`add` moves it in place without copying)."""
        self._ready()
        return self.tmp / f"{uuid.uuid4().hex}.part"

    def add(self, source: str, temp: Path, sha256: str, token: str | None = None) -> Cached:
        """Move a finished download into the cache as ``source``'s file, then evict the least
        recently used files beyond the budget."""
        self._ready()
        path = self.blobs / sha256
        os.replace(temp, path)
        with self._index() as index:
            entry: dict[str, Any] = {"sha256": sha256, "size": path.stat().st_size}
            entry["auth"] = self._fingerprint(token) if token else None
            index["sources"][source] = entry
            index["used"][sha256] = time.time()
            self._evict(index, keep=sha256)
        return Cached(path, sha256, path.stat().st_size)

    def _evict(self, index: dict[str, Any], keep: str) -> None:
        used: dict[str, float] = index["used"]
        sizes = {}
        for blob in self.blobs.iterdir():
            with contextlib.suppress(OSError):
                sizes[blob.name] = blob.stat().st_size
        total = sum(sizes.values())
        now = time.time()
        for sha256 in sorted(sizes, key=lambda s: used.get(s, 0.0)):
            if total <= self.budget:
                break
            if sha256 == keep or now - used.get(sha256, 0.0) < GRACE_S:
                continue
            with contextlib.suppress(FileNotFoundError):
                (self.blobs / sha256).unlink()
            total -= sizes[sha256]
            used.pop(sha256, None)
            log.info(
                "asset cache: evicted %s (%d bytes, least recently used)", sha256, sizes[sha256]
            )
        index["sources"] = {
            k: v
            for k, v in index["sources"].items()
            if isinstance(v, dict)
            and str(v.get("sha256")) in sizes
            and str(v.get("sha256")) in used
        }
        if total > self.budget:
            log.warning(
                "asset cache holds %d bytes, over its budget of %d (SDWORKER_ASSET_CACHE_BYTES): "
                "the rest were used in the last %d s",
                total,
                self.budget,
                GRACE_S,
            )

    # -- the index ------------------------------------------------------------------------

    @contextlib.contextmanager
    def _index(self) -> Iterator[dict[str, Any]]:
        """The index, locked against every other reader and writer, written back after."""
        self._ready()
        with open(self.root / "index.lock", "a+b") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                index = self._read_index()
                before = json.dumps(index, sort_keys=True)
                yield index
                if json.dumps(index, sort_keys=True) != before:
                    temp = self._index_path.with_suffix(f".{uuid.uuid4().hex}.tmp")
                    temp.write_text(json.dumps(index, sort_keys=True))
                    os.replace(temp, self._index_path)
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)

    def _read_index(self) -> dict[str, Any]:
        try:
            index = json.loads(self._index_path.read_text())
        except (OSError, ValueError):
            index = {}
        if not isinstance(index, dict):
            index = {}
        for part in ("sources", "used"):
            if not isinstance(index.get(part), dict):
                index[part] = {}
        return index

    def _fingerprint(self, token: str) -> str:
        """A keyed hash of ``token``: tells the same token again, and cannot be turned back
        into it (nor tried against guesses without this folder's key). Called with the index
        locked, so one process makes the key."""
        key_path = self.root / "key"
        try:
            key = key_path.read_bytes()
        except FileNotFoundError:
            key = secrets.token_bytes(32)
            fd = os.open(key_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "wb") as fh:
                fh.write(key)
        return hmac.new(key, token.encode(), hashlib.sha256).hexdigest()


def _is_sha256(text: str) -> bool:
    return len(text) == 64 and all(c in "0123456789abcdef" for c in text)
