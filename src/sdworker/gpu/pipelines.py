"""The pipeline cache: models load lazily, stay on the device, and are evicted LRU by memory.

One set of weights per model serves txt2img, img2img and inpaint: the other two pipelines are
made with ``from_pipe`` and share every module. Each request then gets its own pipeline
object (``from_pipe`` again, with a fresh scheduler) so per-call state never crosses requests.

Locking in :class:`PipelineCache`:

* ``_lock`` guards the bookkeeping only: the ``_models`` dict and its LRU order, eviction, and
  each model's ``users`` count. It is held for dictionary work, never across a load.
* ``_load_lock`` serialises loads: one model loads at a time, which keeps the device's memory
  peak to one load and the budget arithmetic (make room, load, insert) free of races between
  loads. A request for a model already loaded takes ``_lock`` alone, so it never waits for
  another model's load, which can take minutes (compilation warm-up).

The order is always ``_load_lock`` then ``_lock``; nothing takes ``_load_lock`` while holding
``_lock``, so the two cannot deadlock.
"""

from __future__ import annotations

import itertools
import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from diffusers import (
    AutoPipelineForImage2Image,
    AutoPipelineForInpainting,
    AutoPipelineForText2Image,
)

from sdworker.core.errors import DeviceError, ModelDamaged, OutOfMemory
from sdworker.core.models import ModelInfo, ModelRegistry
from sdworker.core.schema import Mode
from sdworker.core.settings import Settings
from sdworker.gpu import optimize
from sdworker.gpu.adapters import ModelAdapters
from sdworker.gpu.derive import derive

log = logging.getLogger(__name__)

_AUTO = {
    "txt2img": AutoPipelineForText2Image,
    "img2img": AutoPipelineForImage2Image,
    "inpaint": AutoPipelineForInpainting,
}


def resolve_device(setting: str) -> torch.device:
    if setting != "auto":
        return torch.device(setting)
    if torch.cuda.is_available():
        return torch.device("cuda")
    return torch.device("cpu")


def resolve_dtype(setting: str, device: torch.device) -> torch.dtype:
    if setting == "auto":
        return torch.float16 if device.type == "cuda" else torch.float32
    named = {
        "fp16": torch.float16,
        "float16": torch.float16,
        "bf16": torch.bfloat16,
        "bfloat16": torch.bfloat16,
        "fp32": torch.float32,
        "float32": torch.float32,
    }
    return named[setting]


@dataclass
class SafetyChecker:
    """The model's own NSFW checker and its image processor, run after generation on request."""

    checker: Any
    processor: Any


@dataclass
class LoadedModel:
    """A model on the device: its pipelines by mode (made on first use) and what it weighs."""

    info: ModelInfo
    pipelines: dict[str, Any]
    nbytes: int
    safety: SafetyChecker | None
    load_seconds: float
    lock: threading.Lock = field(default_factory=threading.Lock)
    #: generations running on this model now; eviction passes over a model in use
    users: int = 0
    #: the base config every per-request scheduler starts from (the model's own scheduler)
    scheduler_config: dict[str, Any] = field(default_factory=dict)
    #: LoRA adapters on this model's modules, and the gate that keeps LoRA sets apart
    adapters: ModelAdapters = field(default_factory=ModelAdapters)
    #: parts loaded on first use beside the base (the SDXL refiner), counted in ``nbytes``
    extras: dict[str, Any] = field(default_factory=dict)

    @property
    def base(self) -> Any:
        return self.pipelines["txt2img"]

    def pipeline(self, mode: Mode) -> Any:
        with self.lock:
            if mode not in self.pipelines:
                self.pipelines[mode] = derive(_AUTO[mode], self.base)
            return self.pipelines[mode]


def _parameter_count(path: Path) -> int | None:
    """Elements in a safetensors file, read from its header alone; None if unreadable."""
    import json
    import math

    try:
        with path.open("rb") as fh:
            size = int.from_bytes(fh.read(8), "little")
            header = json.loads(fh.read(size))
    except (OSError, ValueError):
        return None
    return sum(math.prod(meta["shape"]) for key, meta in header.items() if key != "__metadata__")


def tensor_bytes(module: torch.nn.Module) -> int:
    """Bytes of a module's parameters and buffers."""
    tensors = itertools.chain(module.parameters(), module.buffers())
    return sum(t.numel() * t.element_size() for t in tensors)


def module_bytes(pipe: Any) -> int:
    """Bytes of every module of a pipeline."""
    modules = pipe.components.values()
    return sum(tensor_bytes(m) for m in modules if isinstance(m, torch.nn.Module))


class PipelineCache:
    """Loaded models, least recently used first out when the memory budget is exceeded.

    Thread-safe: see the module docstring for what ``_lock`` and ``_load_lock`` guard."""

    def __init__(
        self,
        settings: Settings,
        registry: ModelRegistry,
        *,
        load: Callable[[ModelInfo], LoadedModel] | None = None,
        estimate: Callable[[ModelInfo], int] | None = None,
    ) -> None:
        """``load`` (default: from the baked folder onto the device) and ``estimate`` (bytes a
        model will take; default: from its safetensors headers) can be given instead."""
        self.settings = settings
        self.registry = registry
        self._load = load or self._load_from_disk
        self._estimate = estimate or self._estimate_from_headers
        self.device = resolve_device(settings.device)
        self.dtype = resolve_dtype(settings.dtype, self.device)
        self._models: OrderedDict[str, LoadedModel] = OrderedDict()
        #: guards ``_models`` (membership and LRU order) and every model's ``users``; a plain
        #: lock, not reentrant: no code path calls out (to a load, to ``_release``) holding it
        self._lock = threading.Lock()
        #: held for the whole of a load, so at most one model loads at a time
        self._load_lock = threading.Lock()
        self.budget_bytes = self._budget()

    def _budget(self) -> int:
        if self.settings.model_memory_gb > 0:
            return int(self.settings.model_memory_gb * 1024**3)
        if self.device.type == "cuda":
            # leave room for activations: half of the card for resident weights
            return int(torch.cuda.get_device_properties(self.device).total_memory * 0.5)
        import os

        pages = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
        return int(pages * 0.5)

    def loaded(self) -> list[str]:
        """Names of the models now resident, least recently used first."""
        with self._lock:
            return list(self._models)

    def resident(self, name: str) -> LoadedModel | None:
        """The model ``name`` if it is loaded (its place in the LRU order unchanged)."""
        with self._lock:
            return self._models.get(name)

    def get(self, name: str) -> LoadedModel:
        """The loaded model ``name``, loading it (and evicting others) when needed.

        Nothing holds it: a later eviction may drop it. Generation uses :meth:`using`."""
        return self._acquire(name, use=False)

    @contextmanager
    def using(self, name: str) -> Iterator[LoadedModel]:
        """The loaded model ``name``, marked in use for the block: no eviction takes it away
        (and frees nothing, while a generation still holds it) until the block ends."""
        loaded = self._acquire(name, use=True)
        try:
            yield loaded
        finally:
            with self._lock:
                loaded.users -= 1

    def _acquire(self, name: str, *, use: bool) -> LoadedModel:
        """The loaded model ``name``, loaded first when it is not resident; with ``use`` its
        ``users`` count is raised in the same critical section that finds or inserts it, so
        no eviction can come between.

        A failed load raises to this caller and leaves nothing behind: the next request for
        the model loads it again."""
        with self._lock:
            loaded = self._resident(name, use=use)
        if loaded is not None:
            return loaded
        with self._load_lock:
            # another thread may have loaded it while this one waited for the load lock
            with self._lock:
                loaded = self._resident(name, use=use)
            if loaded is not None:
                return loaded
            info = self.registry.get(name)
            estimate = self._estimate(info)  # reads file headers: outside the dict lock
            with self._lock:
                evicted = self._make_room(estimate)
            if evicted:
                self._release()
            # the slow part, with only the load lock held; _load_with_retry may call
            # evict_all, which takes the dict lock itself
            loaded = self._load_with_retry(info)
            with self._lock:
                self._models[name] = loaded
                if use:
                    loaded.users += 1
                evicted = self._make_room(0, keep=name)
        if evicted:
            self._release()
        return loaded

    def _resident(self, name: str, *, use: bool) -> LoadedModel | None:
        """The model ``name`` if resident, made most recently used (and marked in use with
        ``use``); None if not loaded. The caller holds ``_lock``."""
        loaded = self._models.get(name)
        if loaded is None:
            return None
        self._models.move_to_end(name)
        if use:
            loaded.users += 1
        return loaded

    def _estimate_from_headers(self, info: ModelInfo) -> int:
        """Bytes the model will take on the device: its parameter count (from the safetensors
        headers) at our dtype; files we cannot read count at their size on disk."""
        itemsize = torch.empty((), dtype=self.dtype).element_size()
        total = 0
        for path, entry in info.manifest.files.items():
            if not path.endswith((".safetensors", ".bin")):
                continue  # the safety checker counts: it loads onto the device with the model
            count = _parameter_count(info.path / path) if path.endswith(".safetensors") else None
            total += entry.size if count is None else count * itemsize
        return total

    def _make_room(self, incoming: int, keep: str | None = None) -> bool:
        """Evict least recently used models until ``incoming`` more bytes fit the budget.
        Models in use (and ``keep``) stay: then the budget is exceeded until they are done.

        The caller holds ``_lock``; it calls :meth:`_release` after letting go of it when this
        returns True (some model was evicted), so a garbage collection never blocks lookups."""
        evicted = False
        while True:
            resident = sum(m.nbytes for m in self._models.values())
            if resident + incoming <= self.budget_bytes:
                return evicted
            victim = next((n for n, m in self._models.items() if n != keep and m.users == 0), None)
            if victim is None:
                return evicted
            del self._models[victim]
            evicted = True
            log.info("evicting model %s to stay within %d bytes", victim, self.budget_bytes)

    def attach(self, loaded: LoadedModel, part: str, estimate: int, load: Callable[[], Any]) -> Any:
        """``loaded``'s extra ``part`` (its refiner), loaded on first use like a model: one
        load at a time, room made for ``estimate`` bytes first, and what it adds to the device
        (its ``nbytes``) counted in the model's bytes, so the budget sees it."""
        if part in loaded.extras:
            return loaded.extras[part]
        with self._load_lock:
            if part not in loaded.extras:
                with self._lock:
                    evicted = self._make_room(estimate, keep=loaded.info.name)
                if evicted:
                    self._release()
                value = load()
                with self._lock:
                    loaded.extras[part] = value
                    loaded.nbytes += int(getattr(value, "nbytes", 0))
        return loaded.extras[part]

    def evict_others(self, keep: str) -> None:
        """Drop every loaded model not in use but ``keep`` and give their memory back."""
        with self._lock:
            for name in [n for n, m in self._models.items() if n != keep and m.users == 0]:
                del self._models[name]
        self._release()

    def evict_all(self) -> None:
        """Drop every loaded model not in use and give their memory back."""
        with self._lock:
            for name in [n for n, m in self._models.items() if m.users == 0]:
                del self._models[name]
        self._release()

    def _release(self) -> None:
        """Return freed memory to the device; called without ``_lock`` held (it can be slow)."""
        import gc

        gc.collect()
        if self.device.type == "cuda":
            torch.cuda.empty_cache()

    def _load_with_retry(self, info: ModelInfo) -> LoadedModel:
        try:
            return self._load(info)
        except torch.cuda.OutOfMemoryError:
            log.warning(
                "out of memory loading %s; evicting every model and retrying once", info.name
            )
        # retried outside the except block: its traceback would pin the failed load's tensors
        self.evict_all()
        try:
            return self._load(info)
        except torch.cuda.OutOfMemoryError as exc:
            raise OutOfMemory(f"loading model {info.name!r} does not fit the device") from exc

    def _load_from_disk(self, info: ModelInfo) -> LoadedModel:
        started = time.perf_counter()
        kwargs: dict[str, Any] = {"dtype": self.dtype, "local_files_only": True}
        kwargs.update(optimize.load_kwargs(self.device))
        if info.manifest.family != "sdxl":
            kwargs.update(safety_checker=None, requires_safety_checker=False)
        try:
            base = AutoPipelineForText2Image.from_pretrained(str(info.path), **kwargs)
        except (OSError, ValueError) as exc:
            raise ModelDamaged(
                f"model {info.name!r} at {info.path} cannot be loaded: {exc}"
            ) from exc
        try:
            if self.device.type != "cpu":
                base.to(self.device)
        except RuntimeError as exc:
            if "out of memory" in str(exc).lower():
                raise
            raise DeviceError(f"moving model {info.name!r} to {self.device} failed: {exc}") from exc
        base.set_progress_bar_config(disable=True)
        manifest = info.manifest
        optimize.prepare(
            base, self.settings, self.device, (manifest.native_width, manifest.native_height)
        )
        safety = self._load_safety(info) if info.manifest.has_safety_checker else None
        loaded = LoadedModel(
            info=info,
            pipelines={"txt2img": base},
            nbytes=module_bytes(base) + (tensor_bytes(safety.checker) if safety else 0),
            safety=safety,
            load_seconds=time.perf_counter() - started,
            scheduler_config=dict(base.scheduler.config),
        )
        log.info(
            "loaded model %s in %.2fs (%d MB)",
            info.name,
            loaded.load_seconds,
            loaded.nbytes // 2**20,
        )
        return loaded

    def _load_safety(self, info: ModelInfo) -> SafetyChecker:
        from diffusers.pipelines.stable_diffusion.safety_checker import (
            StableDiffusionSafetyChecker,
        )
        from transformers import CLIPImageProcessor

        checker: Any = StableDiffusionSafetyChecker.from_pretrained(
            str(info.path / "safety_checker"), dtype=self.dtype, local_files_only=True
        )
        checker.to(self.device)
        processor = CLIPImageProcessor.from_pretrained(str(info.path / "feature_extractor"))
        return SafetyChecker(checker, processor)
