"""The pipeline cache: models load lazily, stay on the device, and are evicted LRU by memory.

One set of weights per model serves every mode its family offers (txt2img, img2img, inpaint,
edit): the model loads as its family's pipeline and the others are made with ``from_pipe``,
sharing every module. Each request then gets its own pipeline
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

import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import diffusers
import torch

from sdworker import families
from sdworker.core.errors import DeviceError, ModelDamaged, OutOfMemory
from sdworker.core.models import ModelInfo, ModelRegistry
from sdworker.core.settings import Settings
from sdworker.families import Family
from sdworker.gpu import optimize
from sdworker.gpu.adapters import ModelAdapters
from sdworker.gpu.derive import derive
from sdworker.gpu.weights import module_bytes, parameter_count, resolve_dtype, tensor_bytes

log = logging.getLogger(__name__)


def resolve_device(setting: str) -> torch.device:
    if setting != "auto":
        return torch.device(setting)
    if torch.cuda.is_available():
        return torch.device("cuda")
    return torch.device("cpu")


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
    #: the pipeline class of each mode its family offers, imported when the model loaded
    classes: dict[str, Any] = field(default_factory=dict)
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
    def family(self) -> Family:
        return families.get(self.info.manifest.family)

    @property
    def base(self) -> Any:
        """The pipeline the weights loaded as (every other mode's shares its modules)."""
        return self.pipelines[self.family.pipelines.load_mode]

    @property
    def dtype(self) -> torch.dtype:
        """The dtype the model's weights run in."""
        dtype: torch.dtype = self.base.dtype
        return dtype

    def pipeline(self, mode: str) -> Any:
        """The pipeline of ``mode`` (validation made sure the family offers it)."""
        with self.lock:
            if mode not in self.pipelines:
                self.pipelines[mode] = derive(self.classes[mode], self.base)
            return self.pipelines[mode]


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
        #: the dtype of Stable Diffusion UNet models; other families' :meth:`dtype_for`
        self.dtype = resolve_dtype(settings.dtype, self.device)
        self._models: OrderedDict[str, LoadedModel] = OrderedDict()
        #: guards ``_models`` (membership and LRU order) and every model's ``users``; a plain
        #: lock, not reentrant: no code path calls out (to a load, to ``_release``) holding it
        self._lock = threading.Lock()
        #: held for the whole of a load, so at most one model loads at a time
        self._load_lock = threading.Lock()
        self.budget_bytes = self._budget()

    def dtype_for(self, family: Family) -> torch.dtype:
        """The dtype ``family``'s models load in here."""
        return resolve_dtype(self.settings.dtype, self.device, family.gpu_dtype)

    def dropped(self, family: Family) -> tuple[str, ...]:
        """The components of ``family``'s models this deployment leaves out (``SDWORKER_DROP_T5``)."""
        return family.droppable if self.settings.drop_t5 else ()

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
        """Bytes the model will take on the device, by its family's estimate: the parameters of
        each component (from the safetensors headers) at its dtype; files we cannot read count
        at their size on disk."""
        family = families.get(info.manifest.family)
        itemsize = torch.empty((), dtype=self.dtype_for(family)).element_size()
        parameters: dict[str, int] = {}
        for path, entry in info.manifest.files.items():
            if not path.endswith((".safetensors", ".bin")):
                continue  # the safety checker counts: it loads onto the device with the model
            count = parameter_count(info.path / path) if path.endswith(".safetensors") else None
            part = path.split("/", 1)[0]
            # unreadable files count at their size on disk, in "parameters" of itemsize bytes
            parameters[part] = parameters.get(part, 0) + (
                count if count is not None else -(-entry.size // itemsize)
            )
        return family.estimate_bytes(parameters, itemsize, self.dropped(family))

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
        family = families.get(info.manifest.family)
        # every class of the family, looked up here: diffusers resolves its attributes
        # lazily, and that lookup is not safe while another thread imports through it
        classes = {
            str(m): getattr(diffusers, family.pipelines.of(m) or "") for m in family.pipelines.modes
        }
        base = self._read(info, classes[family.pipelines.load_mode], self._load_kwargs(family))
        base.set_progress_bar_config(disable=True)
        manifest = info.manifest
        native = (manifest.native_width, manifest.native_height)
        optimize.prepare(base, self.settings, self.device, native, family)
        safety = self._load_safety(info, base.dtype) if manifest.has_safety_checker else None
        loaded = LoadedModel(
            info=info,
            pipelines={family.pipelines.load_mode: base},
            nbytes=module_bytes(base) + (tensor_bytes(safety.checker) if safety else 0),
            safety=safety,
            load_seconds=time.perf_counter() - started,
            classes=classes,
            scheduler_config=dict(base.scheduler.config),
        )
        log.info(
            "loaded model %s (%s, %s) in %.2fs (%d MB)",
            info.name,
            family.label,
            str(base.dtype).removeprefix("torch."),
            loaded.load_seconds,
            loaded.nbytes // 2**20,
        )
        return loaded

    def _load_kwargs(self, family: Family) -> dict[str, Any]:
        """``from_pretrained``'s arguments for a model of ``family`` on this device."""
        kwargs: dict[str, Any] = {"dtype": self.dtype_for(family), "local_files_only": True}
        kwargs.update(optimize.load_kwargs(self.device))
        if family.safety_checker:
            # the checker loads on its own, and runs only when a request wants it
            kwargs.update(safety_checker=None, requires_safety_checker=False)
        for part in self.dropped(family):
            kwargs[part] = None
        return kwargs

    def _read(self, info: ModelInfo, cls: Any, kwargs: dict[str, Any]) -> Any:
        """The model's weights as ``cls``, on the device."""
        try:
            base = cls.from_pretrained(str(info.path), **kwargs)
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
        return base

    def _load_safety(self, info: ModelInfo, dtype: torch.dtype) -> SafetyChecker:
        from diffusers.pipelines.stable_diffusion.safety_checker import (
            StableDiffusionSafetyChecker,
        )
        from transformers import CLIPImageProcessor

        checker: Any = StableDiffusionSafetyChecker.from_pretrained(
            str(info.path / "safety_checker"), dtype=dtype, local_files_only=True
        )
        checker.to(self.device)
        processor = CLIPImageProcessor.from_pretrained(str(info.path / "feature_extractor"))
        return SafetyChecker(checker, processor)
