"""Baked LoRA files: their names, the model family each was made for (recorded when baked,
else read from the file's header by :func:`sdworker.families.lora_family`), and their
tensors, cached LRU (up to ``SDWORKER_LORA_CACHE_FILES``). Torch-free until a LoRA's tensors
are read, so validation can check names and families before any model loads.
"""

from __future__ import annotations

import json
import logging
import threading
from collections import OrderedDict
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from sdworker.core.errors import LoraError
from sdworker.core.settings import Settings
from sdworker.families import lora_family

log = logging.getLogger(__name__)

#: one LoRA of a request and its scale; a request's LoRA set is a tuple of these
LoraUse = tuple[str, float]
LoraSet = tuple[LoraUse, ...]


def read_shapes(path: Path) -> dict[str, tuple[int, ...]]:
    """Tensor names and shapes of a safetensors file, without reading the tensors."""
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as fh:
        return {key: tuple(fh.get_slice(key).get_shape()) for key in fh.keys()}  # noqa: SIM118


class LoraLibrary:
    """The baked LoRA files under ``root`` (``models_dir/loras``), their tensors cached LRU.

    The cache is keyed by the file's size and modification time too, so a LoRA baked again
    under the same name is read again.
    """

    def __init__(self, root: Path, *, cache_files: int = 8, resident: int = 4) -> None:
        self.root = Path(root)
        self.cache_files = max(0, cache_files)
        #: how many adapters each loaded model keeps after use
        self.resident = max(1, resident)
        self._tensors: OrderedDict[tuple[str, int, int], dict[str, Any]] = OrderedDict()
        self._families: dict[tuple[str, int, int], str | None] = {}
        self._lock = threading.Lock()
        #: files read from disk so far (a cached LoRA does not add to it)
        self.disk_reads = 0

    @classmethod
    def from_settings(cls, settings: Settings) -> LoraLibrary:
        """The library of ``settings.models_dir/loras`` with the configured cache sizes."""
        return cls(
            settings.models_dir / "loras",
            cache_files=settings.lora_cache_files,
            resident=settings.lora_resident,
        )

    def names(self) -> list[str]:
        """Every baked LoRA's name."""
        return sorted(p.stem for p in self.root.glob("*.safetensors")) if self.root.is_dir() else []

    def path(self, name: str) -> Path:
        path = self.root / f"{name}.safetensors"
        if not path.is_file():
            raise LoraError(f"LoRA {name!r} is not baked (no {path.name} in {self.root})")
        return path

    def _key(self, name: str) -> tuple[str, int, int]:
        stat = self.path(name).stat()
        return name, stat.st_size, stat.st_mtime_ns

    def family(self, name: str) -> str | None:
        """The family the LoRA fits: as recorded when baked, else guessed from its tensors."""
        key = self._key(name)
        with self._lock:
            if key in self._families:
                return self._families[key]
        family = self._recorded_family(name)
        if family is None:
            try:
                family = lora_family(read_shapes(self.path(name)))
            except Exception as exc:  # safetensors has its own error types for bad headers
                raise LoraError(f"LoRA {name!r} cannot be read: {exc}") from exc
        with self._lock:
            self._families[key] = family
        return family

    def _recorded_family(self, name: str) -> str | None:
        info_path = self.root / f"{name}.json"
        try:
            info = json.loads(info_path.read_text())
        except (OSError, ValueError):
            return None
        family = info.get("family") if isinstance(info, dict) else None
        return family if isinstance(family, str) else None

    def tensors(self, name: str) -> dict[str, Any]:
        """The LoRA's tensors (on the CPU), from memory when it was used recently."""
        key = self._key(name)
        with self._lock:
            if key in self._tensors:
                self._tensors.move_to_end(key)
                return self._tensors[key]
        from safetensors.torch import load_file

        try:
            tensors = load_file(str(self.path(name)))
        except Exception as exc:  # safetensors has its own error types for bad headers
            raise LoraError(f"LoRA {name!r} cannot be read: {exc}") from exc
        with self._lock:
            self.disk_reads += 1
            if self.cache_files:
                self._tensors[key] = tensors
                while len(self._tensors) > self.cache_files:
                    self._tensors.popitem(last=False)
        return tensors


def lora_set(refs: Sequence[Any] | None) -> LoraSet:
    """A request's ``lora`` list as a set key: order kept, a repeated name's scales added."""
    if not refs:
        return ()
    merged: dict[str, float] = {}
    for ref in refs:
        merged[ref.name] = merged.get(ref.name, 0.0) + float(ref.scale)
    # a LoRA at scale 0 changes nothing: the request is served as the plain model
    return tuple((name, scale) for name, scale in merged.items() if scale != 0.0)
