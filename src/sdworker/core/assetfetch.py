"""Assets a request names by where to fetch them: a URL, or a hub id (with a file name).

Every byte comes through the guarded fetch (:mod:`sdworker.core.netguard`: the address rules,
the size limit the caller gives, ``SDWORKER_ASSET_TIMEOUT_S``) into the disk cache
(:mod:`sdworker.core.assetcache`), streamed to a file and hashed on the way. The cache is
keyed by the source (the URL with its secrets taken out, or the hub file) and by content:

* a source fetched before is not fetched again; nor is a file whose ``sha256`` the request
  gives when the cache holds that content already, from whatever source;
* two jobs asking for one source at once download it once (the second waits for the first);
* a file is checked before it is cached: a safetensors header (never unpickled), tensors of
  the kind asked for, and the ``sha256`` when one is given.

Hub ids resolve through huggingface_hub's cache first (``SDWORKER_HUB_CACHE_DIR``, RunPod's
cached models by default, then huggingface_hub's own cache), offline. Otherwise, unless
``SDWORKER_HUB_DOWNLOADS`` is off, the file is downloaded from ``SDWORKER_HUB_ENDPOINT`` with
the request's token or the operator's (``SDWORKER_HF_TOKEN``) through the guarded fetch, not
huggingface_hub's own client (which would bypass every limit, and its Xet client plain HTTP
too). A token goes to the first origin only (never to the CDN a download redirects to), and
is never logged, stored, or part of a cache key (see :func:`public_url`).
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any, BinaryIO
from urllib.parse import parse_qsl, quote, urlencode, urlsplit, urlunsplit

from sdworker.core import netguard
from sdworker.core.assetcache import AssetCache, Cached
from sdworker.core.assets import Asset, AssetKind, file_key, judge
from sdworker.core.settings import Settings

log = logging.getLogger(__name__)

#: query parameters that carry a secret: never in a log, an error, a cache key or a stored input
SECRET_PARAMS = frozenset({"token", "access_token", "api_key", "apikey", "auth_token", "hf_token"})
#: ``ORG/NAME`` as the hub takes it (huggingface_hub's rules: no ``--`` or ``..``)
HUB_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,95}/[A-Za-z0-9][A-Za-z0-9._-]{0,95}$")
#: the file a LoRA repository holds when it holds one (diffusers' trainers write it)
PREFERRED_FILE = "pytorch_lora_weights.safetensors"
#: words in a file name that say it is no weights file (diffusers skips them too)
NOT_WEIGHTS = ("scheduler", "optimizer", "checkpoint")
#: the most a hub listing of one repository may weigh
LISTING_BYTES = 8 * 1024 * 1024


class AssetRefused(ValueError):
    """A reference that cannot be used: ``str()`` is the reason; ``part`` the field of the
    reference it is about (``url``, ``hub``, ``file``, ``sha256``, ``token``)."""

    def __init__(self, reason: str, part: str) -> None:
        super().__init__(reason)
        self.part = part


@dataclass(frozen=True)
class Reference:
    """An asset named by where to fetch it: exactly one of ``url`` and ``hub``."""

    url: str | None = None
    hub: str | None = None
    #: the file in the hub repository (None: its one weights file)
    file: str | None = None
    #: the content's sha256 (lowercase hex), checked before use
    sha256: str | None = None
    token: str | None = field(default=None, repr=False)


def split_url(url: str) -> tuple[str, str | None]:
    """``url`` without its secret query parameters, and the secret (the first one found)."""
    try:
        parts = urlsplit(url)
        pairs = parse_qsl(parts.query, keep_blank_values=True)
    except ValueError:
        return url, None
    kept = [(k, v) for k, v in pairs if k.lower() not in SECRET_PARAMS]
    secret = next((v for k, v in pairs if k.lower() in SECRET_PARAMS and v), None)
    if len(kept) == len(pairs):
        return url, None
    return urlunsplit(parts._replace(query=urlencode(kept))), secret


def public_url(url: str) -> str:
    """``url`` as logs, errors and the cache index may show it: no secret query parameter,
    no user name or password."""
    bare, _ = split_url(url)
    try:
        parts = urlsplit(bare)
        host = parts.hostname or ""
        port = parts.port
    except ValueError:
        return bare
    if parts.username is None and parts.password is None:
        return bare
    netloc = host if port is None else f"{host}:{port}"
    return urlunsplit(parts._replace(netloc=netloc))


def hub_file_problem(name: str) -> str | None:
    """Why ``name`` is no file path inside a repository (None: it is one)."""
    path = PurePosixPath(name)
    if not name or len(name) > 255 or "\\" in name or name.startswith("/"):
        return "must be a file path inside the repository (like lora.safetensors)"
    if any(part in ("", ".", "..") for part in name.split("/")) or not path.name:
        return "must be a file path inside the repository, without '.' or '..'"
    if any(ord(c) < 32 for c in name):
        return "must not hold control characters"
    return None


def hub_id_problem(repo: str) -> str | None:
    """Why ``repo`` is no hub id (None: it is one)."""
    if not HUB_ID.match(repo) or "--" in repo or ".." in repo or repo.endswith(".git"):
        return "must be a hub id, ORG/NAME (letters, digits, '-', '_', '.')"
    return None


class _Hashing:
    """A file being written, its sha256 computed on the way."""

    def __init__(self, fh: BinaryIO) -> None:
        self.fh = fh
        self.digest = hashlib.sha256()

    def write(self, data: bytes) -> int:
        self.digest.update(data)
        return self.fh.write(data)


class AssetFetcher:
    """Fetches URL and hub references into the disk cache (see the module)."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.cache = AssetCache(settings.asset_cache(), settings.asset_cache_bytes)
        #: downloads made (a cached or already-present file does not count)
        self.downloads = 0
        self._hashes: dict[str, str] = {}

    def fetch(self, kind: AssetKind, ref: Reference, *, max_bytes: int) -> Asset:
        """The asset ``ref`` names, fetched (or found in a cache) and checked as a ``kind``;
        :class:`AssetRefused` naming the part of the reference at fault."""
        if ref.url is not None:
            return self._url(kind, ref, max_bytes)
        assert ref.hub is not None
        return self._hub(kind, ref, max_bytes)

    # -- URLs ----------------------------------------------------------------------------

    def _url(self, kind: AssetKind, ref: Reference, max_bytes: int) -> Asset:
        assert ref.url is not None
        shown = public_url(ref.url)
        _, in_url = split_url(ref.url)
        token = ref.token or in_url
        cached = self._cached(f"url:{shown}", ref.sha256, token)
        if cached is None:
            headers = {"Authorization": f"Bearer {ref.token}"} if ref.token else {}
            cached = self._download(
                kind, f"url:{shown}", ref.url, headers, token, ref.sha256, max_bytes, "url"
            )
        return self._asset(kind, shown, "url", cached)

    def _cached(self, source: str, sha256: str | None, token: str | None) -> Cached | None:
        if sha256 is not None:
            by_content = self.cache.blob(sha256)
            if by_content is not None:
                return by_content
        hit = self.cache.lookup(source, token)
        if hit is not None and (sha256 is None or hit.sha256 == sha256):
            return hit
        return None  # a cached file whose hash is not the one given: it may have changed

    def _download(
        self,
        kind: AssetKind,
        source: str,
        url: str,
        headers: dict[str, str],
        token: str | None,
        sha256: str | None,
        max_bytes: int,
        part: str,
    ) -> Cached:
        """Download ``url`` once for ``source`` (another job downloading it is waited for)."""
        with self.cache.downloading(source):
            cached = self._cached(source, sha256, token)
            if cached is not None:
                return cached
            temp = self.cache.temp_file()
            try:
                digest = self._get(url, headers, temp, max_bytes, part)
                self._check(kind, temp, digest, sha256, part)
                log.info(
                    "%s downloaded from %s (%d bytes)",
                    kind.label,
                    _shown(source),
                    temp.stat().st_size,
                )
                return self.cache.add(source, temp, digest, token)
            finally:
                temp.unlink(missing_ok=True)

    def _get(self, url: str, headers: dict[str, str], temp: Path, max_bytes: int, part: str) -> str:
        policy = netguard.FetchPolicy(
            allow_private=self.settings.allow_private_urls,
            max_bytes=max_bytes,
            timeout_s=self.settings.asset_timeout_s,
        )
        with open(temp, "wb") as fh:
            sink = _Hashing(fh)
            try:
                answer = netguard.request("GET", url, policy=policy, headers=headers, sink=sink)
            except netguard.FetchError as exc:
                raise AssetRefused(_too_large(str(exc), max_bytes), part) from None
        self.downloads += 1
        if not 200 <= answer.status < 300:
            raise AssetRefused(_status_reason(answer.status), part)
        return sink.digest.hexdigest()

    def _check(
        self, kind: AssetKind, path: Path, digest: str, sha256: str | None, part: str
    ) -> None:
        if sha256 is not None and digest != sha256:
            raise AssetRefused(f"does not match: the file's sha256 is {digest}", "sha256")
        _, refused = judge(kind, path)
        if refused is not None:
            raise AssetRefused(f"the file {refused}", part)

    def _asset(self, kind: AssetKind, name: str, source: Any, cached: Cached) -> Asset:
        family, refused = judge(kind, cached.path)
        if refused is not None:  # cached by an older version with other rules
            raise AssetRefused(f"the file {refused}", "url" if source == "url" else "hub")
        return Asset(
            kind, name, source, cached.path, f"sha256:{cached.sha256}", family, None, cached.sha256
        )

    # -- the hub -------------------------------------------------------------------------

    def _hub(self, kind: AssetKind, ref: Reference, max_bytes: int) -> Asset:
        assert ref.hub is not None
        local = self._hub_cache(ref.hub, ref.file)
        if local is not None:
            return self._local_hub_asset(kind, ref, local)
        if not self.settings.hub_downloads:
            off = "and hub downloads are off (SDWORKER_HUB_DOWNLOADS)"
            if ref.file is not None and self._cached_repo(ref.hub):
                raise AssetRefused(f"is not in the cached repository {ref.hub}, {off}", "file")
            raise AssetRefused(f"is not in the local hub cache, {off}", "hub")
        token = ref.token or self.settings.hf_token
        filename = ref.file or self._hub_choice(ref.hub, token)
        source = f"hub:{ref.hub}/{filename}"
        cached = self._cached(source, ref.sha256, token)
        if cached is None:
            from huggingface_hub import hf_hub_url

            url = hf_hub_url(ref.hub, filename, endpoint=self.settings.hub_endpoint)
            headers = {"Authorization": f"Bearer {token}"} if token else {}
            cached = self._download(kind, source, url, headers, token, ref.sha256, max_bytes, "hub")
        return self._asset(kind, f"{ref.hub}:{filename}", "hub", cached)

    def _local_hub_asset(self, kind: AssetKind, ref: Reference, path: Path) -> Asset:
        name = f"{ref.hub}:{path.name}"
        key = file_key("hub", name, path)
        if ref.sha256 is not None and self._sha256(key, path) != ref.sha256:
            raise AssetRefused(
                f"does not match: the hub file's sha256 is {self._sha256(key, path)}", "sha256"
            )
        family, refused = judge(kind, path)
        if refused is not None:
            raise AssetRefused(f"the file {refused}", "file" if ref.file else "hub")
        return Asset(kind, name, "hub", path, key, family, None)

    def _sha256(self, key: str, path: Path) -> str:
        """The file's sha256: a hub blob's name when it is one (LFS files are stored so)."""
        if key not in self._hashes:
            blob = path.resolve().name
            if len(blob) == 64 and all(c in "0123456789abcdef" for c in blob):
                self._hashes[key] = blob
            else:
                digest = hashlib.sha256()
                with open(path, "rb") as fh:
                    for chunk in iter(lambda: fh.read(1 << 20), b""):
                        digest.update(chunk)
                self._hashes[key] = digest.hexdigest()
        return self._hashes[key]

    def _roots(self) -> list[Path]:
        """The local hub caches: the setting's, then huggingface_hub's own."""
        from huggingface_hub import constants

        return list(dict.fromkeys([self.settings.hub_cache(), Path(constants.HF_HUB_CACHE)]))

    def _cached_repo(self, repo: str) -> bool:
        return any(_snapshot(root, repo) is not None for root in self._roots())

    def _hub_cache(self, repo: str, filename: str | None) -> Path | None:
        """The file in a local hub cache."""
        for root in self._roots():
            snapshot = _snapshot(root, repo)
            if snapshot is None:
                continue
            name = filename or _choose(_weights_files(snapshot), repo)
            found = _in_cache(root, repo, name, snapshot)
            if found is not None:
                return found
        return None

    def _hub_choice(self, repo: str, token: str | None) -> str:
        """The weights file of a repository given without ``file``, from the hub's listing."""
        url = f"{self.settings.hub_endpoint.rstrip('/')}/api/models/{quote(repo)}/revision/main"
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        policy = netguard.FetchPolicy(
            allow_private=self.settings.allow_private_urls,
            max_bytes=LISTING_BYTES,
            timeout_s=self.settings.fetch_timeout_s,
        )
        try:
            answer = netguard.request("GET", url, policy=policy, headers=headers)
        except netguard.FetchError as exc:
            raise AssetRefused(f"cannot be listed: the hub {exc}", "hub") from None
        if answer.status != 200:
            raise AssetRefused(_status_reason(answer.status, "repository"), "hub")
        try:
            siblings = json.loads(answer.body).get("siblings", [])
            names = [str(s["rfilename"]) for s in siblings if isinstance(s, dict)]
        except (ValueError, AttributeError, KeyError, TypeError):
            raise AssetRefused(
                "cannot be listed: the hub's answer is not a listing", "hub"
            ) from None
        return _choose([n for n in names if "/" not in n and n.endswith(".safetensors")], repo)


def _snapshot(root: Path, repo: str) -> Path | None:
    """The snapshot folder ``refs/main`` names in a hub cache (RunPod's resolver falls back to
    the first snapshot when it names none there), or None."""
    folder = root / f"models--{repo.replace('/', '--')}"
    snapshots = folder / "snapshots"
    if not snapshots.is_dir():
        return None
    try:
        commit = (folder / "refs" / "main").read_text().strip()
    except OSError:
        commit = ""
    if commit and (snapshots / commit).is_dir():
        return snapshots / commit
    found = sorted(p for p in snapshots.iterdir() if p.is_dir())
    return found[0] if found else None


def _in_cache(root: Path, repo: str, name: str, snapshot: Path) -> Path | None:
    """``name`` in the cached repository, as huggingface_hub resolves it offline, else in the
    snapshot chosen (a ``refs/main`` huggingface_hub cannot read, say)."""
    from huggingface_hub import try_to_load_from_cache

    if hub_file_problem(name) is not None:  # never a path outside the snapshot
        return None
    try:
        found = try_to_load_from_cache(repo, name, cache_dir=root)
    except ValueError:  # a name the hub could not hold (the input rules refuse those first)
        return None
    if isinstance(found, str) and Path(found).is_file():
        return Path(found)
    path = snapshot / name
    return path if path.is_file() else None


def _weights_files(snapshot: Path) -> list[str]:
    return sorted(p.name for p in snapshot.iterdir() if p.name.endswith(".safetensors"))


def _choose(names: list[str], repo: str) -> str:
    """The one weights file among ``names`` (diffusers' choice), or the reason there is none."""
    weights = [n for n in names if not any(word in n for word in NOT_WEIGHTS)]
    if PREFERRED_FILE in weights:
        return PREFERRED_FILE
    if len(weights) == 1:
        return weights[0]
    if not weights:
        raise AssetRefused(f"{repo} holds no .safetensors file at its top level", "hub")
    shown = ", ".join(weights[:6]) + (", ..." if len(weights) > 6 else "")
    raise AssetRefused(f"holds several .safetensors files ({shown}): give file", "file")


def _status_reason(status: int, what: str = "file") -> str:
    if status in (401, 403):
        return (
            f"answered HTTP {status}: the {what} needs a token (give token), or the token "
            "given is not allowed to read it"
        )
    if status == 404:
        return f"answered HTTP 404: no such {what}"
    return f"answered HTTP {status}"


def _too_large(reason: str, max_bytes: int) -> str:
    if reason.startswith("is larger than"):
        return f"is larger than {max_bytes} bytes (SDWORKER_LORA_MAX_BYTES)"
    return reason


def _shown(source: str) -> str:
    return source.split(":", 1)[1] if ":" in source else source
