"""The one asset registry: LoRAs and textual-inversion embeddings by name or by reference,
and the kinds ControlNets, IP-Adapters and VAEs plug in as.

An asset comes from one of four places:

* **baked**: ``models_dir/<folder>/NAME.safetensors`` (``sdworker bake --lora/--embedding``),
  named ``NAME``;
* **the network volume**: ``volume_dir/models/<folder>/...`` in worker-comfyui's layout, named
  as ComfyUI lists it: the path below the folder, with ``/`` and the extension
  (``style/ink.safetensors``); subfolders are walked, symbolic links followed;
* **a URL** or **a hub id** a request gives: fetched through the guarded fetch into the disk
  cache by :class:`sdworker.core.assetfetch.AssetFetcher` (:mod:`sdworker.core.assetcache`),
  which hands back an :class:`Asset` like the others.

Every file is read as safetensors, decided by its header (never by its extension), and
nothing is ever unpickled: a ``.ckpt``/``.pt``/``.bin`` on the volume is listed as refused,
with the reason, as is a file whose header is not safetensors or whose tensors are not the
kind's. A request names a baked or volume asset by its name only: names are looked up in
what a scan found, never joined onto a path, so no name can leave its folder.

A kind (:class:`AssetKind`) is small: its folder, how its family is read from its tensors,
and why its tensors may be refused. The registry does the rest, the same for every kind:
:meth:`AssetRegistry.names`, :meth:`~AssetRegistry.find`, :meth:`~AssetRegistry.family`,
:meth:`~AssetRegistry.refused`, :meth:`~AssetRegistry.tensors`, :meth:`~AssetRegistry.refresh`.
Torch-free until an asset's tensors are read.
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any, Literal

from sdworker.core.embeddings import layout
from sdworker.core.settings import Settings
from sdworker.families import lora_family

log = logging.getLogger(__name__)

#: where an asset comes from
Source = Literal["baked", "volume", "url", "hub"]
#: the largest safetensors header read (the JSON before the tensors)
MAX_HEADER_BYTES = 100 * 1024 * 1024
#: extensions of files read as safetensors; ComfyUI's other model extensions are pickles
SAFE_EXTENSIONS = (".safetensors", ".sft")
PICKLE_EXTENSIONS = (".ckpt", ".pt", ".pt2", ".bin", ".pth", ".pkl")
#: how long a folder scan is trusted: files copied to the volume are seen within this long
#: by every worker, without a refresh
SCAN_TTL_S = 30.0


class NotSafetensors(ValueError):
    """A file that is not a safetensors file; ``str()`` is the reason, after "the file"."""


@dataclass(frozen=True)
class Header:
    """A safetensors file's header: every tensor's shape and dtype, and its metadata."""

    shapes: Mapping[str, tuple[int, ...]]
    dtypes: Mapping[str, str] = field(default_factory=dict)
    metadata: Mapping[str, str] = field(default_factory=dict)


def read_header(path: Path) -> Header:
    """The header of the safetensors file at ``path``, read without its tensors.

    The format is an 8-byte little-endian length, that many bytes of JSON naming each tensor's
    dtype, shape and byte range, then the data. A pickle (``.ckpt``, ``.pt``), an HTML error
    page or a truncated download fails here: :class:`NotSafetensors`."""
    with open(path, "rb") as fh:
        size = os.fstat(fh.fileno()).st_size
        head = fh.read(8)
        length = int.from_bytes(head, "little") if len(head) == 8 else -1
        if length < 2 or length > min(MAX_HEADER_BYTES, size - 8):
            raise NotSafetensors("is not a safetensors file (no safetensors header)")
        raw = fh.read(length)
    try:
        data = json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        raise NotSafetensors("is not a safetensors file (its header is not JSON)") from None
    if not isinstance(data, dict):
        raise NotSafetensors("is not a safetensors file (its header is not an object)")
    return _header_of(data, size - 8 - length)


def _header_of(data: dict[str, Any], data_bytes: int) -> Header:
    meta = data.pop("__metadata__", None)
    shapes: dict[str, tuple[int, ...]] = {}
    dtypes: dict[str, str] = {}
    for name, info in data.items():
        if not _tensor_entry(info, data_bytes):
            raise NotSafetensors(f"is not a safetensors file (tensor {name[:60]!r} is malformed)")
        shapes[name] = tuple(int(n) for n in info["shape"])
        dtypes[name] = str(info["dtype"])
    metadata = {str(k): str(v) for k, v in meta.items()} if isinstance(meta, dict) else {}
    return Header(shapes, dtypes, metadata)


def _tensor_entry(info: Any, data_bytes: int) -> bool:
    if not isinstance(info, dict) or not isinstance(info.get("dtype"), str):
        return False
    shape, offsets = info.get("shape"), info.get("data_offsets")
    if not isinstance(shape, list) or not all(isinstance(n, int) and n >= 0 for n in shape):
        return False
    if not isinstance(offsets, list) or len(offsets) != 2:
        return False
    start, end = offsets
    return isinstance(start, int) and isinstance(end, int) and 0 <= start <= end <= data_bytes


# -- kinds --------------------------------------------------------------------------------


@dataclass(frozen=True)
class AssetKind:
    """One kind of asset: where its files live and what its tensors must be.

    A kind declares only this; listing, lookup, families, refusals, the tensors in memory and
    downloads are the registry's, the same for every kind."""

    #: the key (``lora``), also the request field that names one
    name: str
    #: how messages name it (``LoRA``)
    label: str
    #: ``models_dir/<folder>`` holds the baked ones, ``volume_dir/models/<folder>`` the
    #: volume's (ComfyUI's folder name)
    folder: str
    #: the family its tensors were made for (a family's ``lora_key``), or None: unknown
    family: Callable[[Header], str | None]
    #: why its tensors cannot be used as this kind (None: they can)
    refusal: Callable[[Header], str | None]
    #: more folders of the volume that hold it (ComfyUI reads ``t2i_adapter`` as controlnet)
    also: tuple[str, ...] = ()
    #: how a request names one: by file name with extension (a ComfyUI name), or by the
    #: file's stem alone (a textual-inversion embedding's trigger word)
    named_by: Literal["path", "stem"] = "path"


def lora_refusal(header: Header) -> str | None:
    """Why a file's tensors are no LoRA this worker applies (None: they are one)."""
    keys = list(header.shapes)
    if any(".hada_w" in k for k in keys):
        return "is a LoHa (LyCORIS) file, which diffusers cannot apply; use a LoRA"
    if any(".lokr_w" in k for k in keys):
        return "is a LoKr (LyCORIS) file, which diffusers cannot apply; use a LoRA"
    if not any("lora" in k.lower() for k in keys):
        return f"holds no LoRA weights ({len(keys)} tensors, none of them a LoRA's)"
    return None


def _lora_family(header: Header) -> str | None:
    return lora_family(header.shapes)


def _no_family(header: Header) -> str | None:
    return None


def embedding_refusal(header: Header) -> str | None:
    """Why a file is no textual-inversion embedding: one tensor of ``vectors x width`` (SD 1.x,
    2.x; any name, A1111's ``emb_params`` or diffusers' token), or SDXL's ``clip_l`` and
    ``clip_g`` pair."""
    return (
        None
        if layout(header.shapes) is not None
        else (
            "is not a textual-inversion embedding (expected one tensor of vectors x width, or "
            "SDXL's clip_l and clip_g)"
        )
    )


LORA = AssetKind("lora", "LoRA", "loras", _lora_family, lora_refusal)
EMBEDDING = AssetKind(
    "embedding", "embedding", "embeddings", _no_family, embedding_refusal, named_by="stem"
)
#: the kinds this registry serves (ControlNet, IP-Adapter and VAE kinds join this tuple)
KINDS: tuple[AssetKind, ...] = (LORA, EMBEDDING)


# -- entries ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Asset:
    """One asset file the registry knows (baked, on the volume, or fetched into the cache)."""

    kind: AssetKind
    #: how requests name it (a baked name, a volume path, the URL or hub id it came from)
    name: str
    source: Source
    path: Path
    #: its identity in every cache (tensors in memory, adapters on a model): changes when the
    #: file does
    key: str
    #: the family it was made for (None: unknown, found out when it is applied)
    family: str | None = None
    #: why it cannot be used (None: it can)
    refused: str | None = None
    #: the sha256 of a fetched file (the cache knows it; None for baked and volume files)
    sha256: str | None = None

    def described(self) -> str:
        """How messages name it: ``LoRA 'ink'``, ``volume LoRA 'style/ink.safetensors'``."""
        where = {"baked": "", "volume": "volume "}.get(self.source, "")
        return f"{where}{self.kind.label} {self.name!r}"


def file_key(source: Source, name: str, path: Path) -> str:
    """The identity of a baked or volume file: where it is and which version of it."""
    stat = path.stat()
    return f"{source}:{name}:{stat.st_size}:{stat.st_mtime_ns}"


class _Headers:
    """Family and refusal per file, read from its header once per version of the file."""

    def __init__(self) -> None:
        self._seen: dict[tuple[str, str], tuple[str | None, str | None]] = {}
        self._lock = threading.Lock()

    def judge(self, kind: AssetKind, key: str, path: Path) -> tuple[str | None, str | None]:
        with self._lock:
            if (kind.name, key) in self._seen:
                return self._seen[(kind.name, key)]
        verdict = judge(kind, path)
        with self._lock:
            self._seen[(kind.name, key)] = verdict
        return verdict


def judge(kind: AssetKind, path: Path) -> tuple[str | None, str | None]:
    """(family, refusal) of the file at ``path`` as a ``kind``, from its header."""
    try:
        header = read_header(path)
    except NotSafetensors as exc:
        return None, str(exc)
    except OSError as exc:
        return None, f"cannot be read ({exc.strerror or exc})"
    refusal = kind.refusal(header)
    return (None, refusal) if refusal else (kind.family(header), None)


def recorded_family(path: Path) -> str | None:
    """The family ``sdworker bake`` recorded beside a baked file (``NAME.json``), if any."""
    try:
        info = json.loads(path.with_suffix(".json").read_text())
    except (OSError, ValueError):
        return None
    family = info.get("family") if isinstance(info, dict) else None
    return family if isinstance(family, str) else None


# -- the registry -------------------------------------------------------------------------


class AssetRegistry:
    """Every asset of every kind this worker can use: baked, on the volume, fetched.

    A scan is kept for :data:`SCAN_TTL_S` seconds, and made again sooner by :meth:`refresh`
    (A1111's ``refresh-loras``), or when a request names something the last scan did not find
    or that changed since (a file just copied to the volume, a LoRA baked again)."""

    def __init__(
        self,
        settings: Settings,
        *,
        kinds: tuple[AssetKind, ...] = KINDS,
        cache_files: int | None = None,
    ) -> None:
        self.settings = settings
        self.kinds = {k.name: k for k in kinds}
        self.baked_root = Path(settings.models_dir)
        self.volume_root = Path(settings.volume_dir) / "models"
        self._scans: dict[str, tuple[float, dict[str, Asset]]] = {}
        self._headers = _Headers()
        self._lock = threading.Lock()
        self._tensors: OrderedDict[str, dict[str, Any]] = OrderedDict()
        self.cache_files = max(0, settings.lora_cache_files if cache_files is None else cache_files)
        #: files read from disk so far (tensors found in memory do not count)
        self.disk_reads = 0

    # -- listing --------------------------------------------------------------------------

    def kind(self, name: str) -> AssetKind:
        """The kind called ``name`` (``lora``, ``embedding``)."""
        return self.kinds[name]

    def all(self, kind: AssetKind) -> list[Asset]:
        """Every file of ``kind`` found, usable or refused, baked first, by name."""
        return list(self._scan(kind).values())

    def names(self, kind: AssetKind) -> list[str]:
        """The names of the usable assets of ``kind`` (baked and on the volume)."""
        return [a.name for a in self.all(kind) if a.refused is None]

    def refused(self, kind: AssetKind) -> dict[str, str]:
        """Name -> why, for each file of ``kind`` that cannot be used."""
        return {a.name: a.refused for a in self.all(kind) if a.refused is not None}

    def find(self, kind: AssetKind, name: str) -> Asset | None:
        """The asset ``name`` names (usable or refused), or None. A volume LoRA may be named
        without its ``.safetensors`` (A1111's ``<lora:style/ink:1>``); a miss scans again."""
        for attempt in range(2):
            found = _lookup(self._scan(kind), name)
            if (found is not None and _current(found)) or attempt:
                return found
            self._forget(kind)  # not there, or changed since the scan: scan again
        return None

    def catalog(self, kind: AssetKind) -> AssetCatalog:
        """The assets of ``kind`` as the input rules ask about them."""
        return AssetCatalog(self, kind)

    def family(self, kind: AssetKind, name: str) -> str | None:
        """The family the asset ``name`` was made for (None: unknown or not found)."""
        found = self.find(kind, name)
        return found.family if found is not None else None

    def refresh(self) -> None:
        """Forget every scan: the next listing reads the folders again."""
        with self._lock:
            self._scans.clear()

    def _forget(self, kind: AssetKind) -> None:
        with self._lock:
            self._scans.pop(kind.name, None)

    def _scan(self, kind: AssetKind) -> dict[str, Asset]:
        with self._lock:
            cached = self._scans.get(kind.name)
        if cached is not None and time.monotonic() - cached[0] < SCAN_TTL_S:
            return cached[1]
        found: dict[str, Asset] = {}
        for asset in (*self._baked(kind), *self._volume(kind)):
            other = found.get(asset.name)
            if other is None:
                found[asset.name] = asset
            elif other.refused is None and asset.refused is None:
                log.warning("%s is also %s: the first is used", asset.described(), other.path)
        with self._lock:
            self._scans[kind.name] = (time.monotonic(), found)
        return found

    def _baked(self, kind: AssetKind) -> Iterator[Asset]:
        root = self.baked_root / kind.folder
        if not root.is_dir():
            return
        for path in sorted(root.glob("*.safetensors")):
            key = file_key("baked", path.stem, path)
            family, refused = self._headers.judge(kind, key, path)
            family = recorded_family(path) or family
            yield Asset(kind, path.stem, "baked", path, key, family, refused)

    def _volume(self, kind: AssetKind) -> Iterator[Asset]:
        for folder in (kind.folder, *kind.also):
            for name, path in walk(self.volume_root / folder):
                shown = PurePosixPath(name).stem if kind.named_by == "stem" else name
                yield self._volume_asset(kind, shown, path)

    def _volume_asset(self, kind: AssetKind, name: str, path: Path) -> Asset:
        try:
            key = file_key("volume", name, path)
        except OSError as exc:
            return Asset(
                kind, name, "volume", path, f"volume:{name}", None, f"cannot be read ({exc})"
            )
        suffix = path.suffix.lower()
        if suffix in PICKLE_EXTENSIONS:
            pickle = f"is a pickle-based {suffix} file; only safetensors files are read"
            return Asset(kind, name, "volume", path, key, None, pickle)
        family, refused = self._headers.judge(kind, key, path)
        return Asset(kind, name, "volume", path, key, family, refused)

    # -- tensors --------------------------------------------------------------------------

    def tensors(self, asset: Asset) -> dict[str, Any]:
        """The asset's tensors (on the CPU), from memory when it was used recently (up to
        ``SDWORKER_LORA_CACHE_FILES`` files, every kind together). Imports torch."""
        with self._lock:
            if asset.key in self._tensors:
                self._tensors.move_to_end(asset.key)
                return self._tensors[asset.key]
        from safetensors.torch import load_file

        try:
            tensors = load_file(str(asset.path))
        except FileNotFoundError as exc:
            raise AssetGone(f"{asset.described()} is no longer there ({asset.path.name})") from exc
        except Exception as exc:  # safetensors has its own error types for bad files
            raise AssetGone(f"{asset.described()} cannot be read: {exc}") from exc
        with self._lock:
            self.disk_reads += 1
            if self.cache_files:
                self._tensors[asset.key] = tensors
                while len(self._tensors) > self.cache_files:
                    self._tensors.popitem(last=False)
        return tensors


@dataclass(frozen=True)
class AssetCatalog:
    """One kind's assets as validation sees them (:class:`~sdworker.core.input.LoraCatalog`)."""

    registry: AssetRegistry
    kind: AssetKind

    def names(self) -> list[str]:
        return self.registry.names(self.kind)

    def knows(self, name: str) -> bool:
        found = self.registry.find(self.kind, name)
        return found is not None and found.refused is None

    def family(self, name: str) -> str | None:
        return self.registry.family(self.kind, name)

    def refusal(self, name: str) -> str | None:
        found = self.registry.find(self.kind, name)
        if found is None or found.refused is None:
            return None
        return f"{found.described()} {found.refused}"


def _current(asset: Asset) -> bool:
    """Whether a scanned file is still the one scanned (a LoRA baked again is read again)."""
    try:
        return file_key(asset.source, asset.name, asset.path) == asset.key
    except OSError:
        return False


class AssetGone(LookupError):
    """An asset's file vanished or broke between the scan (or download) and its use."""


def _lookup(found: Mapping[str, Asset], name: str) -> Asset | None:
    if name in found:
        return found[name]
    for suffix in SAFE_EXTENSIONS:
        hit = found.get(name + suffix)
        if hit is not None and hit.source == "volume":
            return hit
    return None


def walk(root: Path) -> list[tuple[str, Path]]:
    """(name, path) of every model file below ``root`` as ComfyUI lists them: the path below
    ``root`` with ``/``, with its extension, sorted; ``.git`` folders skipped, links followed
    (a link cycle is walked once)."""
    if not root.is_dir():
        return []
    files = []
    seen: set[tuple[int, int]] = set()
    for folder, dirs, names in os.walk(root, followlinks=True):
        try:
            stat = os.stat(folder)
        except OSError:
            dirs[:] = []
            continue
        if (stat.st_dev, stat.st_ino) in seen:
            dirs[:] = []
            continue
        seen.add((stat.st_dev, stat.st_ino))
        dirs[:] = sorted(d for d in dirs if d != ".git")
        for name in names:
            if name.lower().endswith(SAFE_EXTENSIONS + PICKLE_EXTENSIONS):
                path = Path(folder) / name
                files.append((path.relative_to(root).as_posix(), path))
    return sorted(files)
