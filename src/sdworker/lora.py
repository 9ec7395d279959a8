"""LoRA for one request at a time: baked files by name, applied as adapters, never left behind.

A LoRA is loaded onto a model as a named PEFT adapter beside the base weights, which are never
touched (nothing is fused): a request switches its adapters on with its scales, and every
other request runs with all adapter layers switched off, which computes exactly the base
layer. So a plain request after a LoRA request gives the image it gave before, bit for bit.

Adapters are shared module state, so :class:`AdapterGate` keeps requests apart by the LoRA set
they need: requests wanting the same set (plain requests want the empty set) run together,
a request wanting another set waits until they are done, in arrival order so nobody starves.

Recently used adapters stay on the model (up to ``SDWORKER_LORA_RESIDENT`` per model) and the
files' tensors stay in memory (up to ``SDWORKER_LORA_CACHE_FILES``): a LoRA used again is not
re-read from disk.
"""

from __future__ import annotations

import json
import logging
import threading
import warnings
from collections import OrderedDict, deque
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from sdworker.errors import LoraError
from sdworker.settings import Settings

log = logging.getLogger(__name__)

#: one LoRA of a request and its scale; a request's LoRA set is a tuple of these
LoraUse = tuple[str, float]
LoraSet = tuple[LoraUse, ...]

#: the text width the UNet's cross-attention reads (``attn2.to_k`` input) for each family
_FAMILY_BY_CONTEXT_DIM = {768: "sd1", 1024: "sd2", 2048: "sdxl"}
_LORA_COMPONENTS = ("unet", "text_encoder", "text_encoder_2")


def guess_family(shapes: Mapping[str, Sequence[int]]) -> str | None:
    """The model family a LoRA was trained for, from its tensor names and shapes, or None.

    A second text encoder only exists in SDXL; otherwise the width of the text the UNet's
    cross-attention reads tells SD 1.x (768), SD 2.x (1024) and SDXL (2048) apart. Files in
    the diffusers layout and in kohya's (``lora_unet_...``/``lora_te2_...``) are understood.
    """
    for key in shapes:
        if key.startswith(("text_encoder_2.", "lora_te2_", "te2.")):
            return "sdxl"
    for key, shape in shapes.items():
        flat = key.replace("_", ".")
        down = any(part in key for part in ("lora_A", "lora_down", "lora.down"))
        if "attn2.to.k" in flat and down and len(shape) >= 2:
            return _FAMILY_BY_CONTEXT_DIM.get(int(shape[1]))
    return None


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
                family = guess_family(read_shapes(self.path(name)))
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


class AdapterGate:
    """Lets requests that want the same LoRA set run together, and no others (FIFO).

    ``switch`` is called, with no request inside, to turn the model to a new set; it runs
    inside the gate, so no request ever sees adapters half switched.
    """

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._queue: deque[object] = deque()
        self._inside = 0
        self.active: LoraSet = ()

    @contextmanager
    def use(self, wanted: LoraSet, switch: Callable[[LoraSet], None]) -> Iterator[None]:
        ticket = object()
        with self._cond:
            self._queue.append(ticket)
            try:
                self._cond.wait_for(
                    lambda: (
                        self._queue[0] is ticket and (self._inside == 0 or self.active == wanted)
                    )
                )
                if self.active != wanted:
                    # a failed switch leaves the set unknown: the next request switches again
                    self.active = _UNKNOWN
                    switch(wanted)
                    self.active = wanted
                self._inside += 1
            finally:
                self._queue.remove(ticket)
                self._cond.notify_all()
        try:
            yield
        finally:
            with self._cond:
                self._inside -= 1
                self._cond.notify_all()


#: a set no request asks for: after a failed switch it forces the next request to switch
_UNKNOWN: LoraSet = (("", -1.0),)


class ModelAdapters:
    """The LoRA adapters on one loaded model, and the gate its requests pass through."""

    def __init__(self) -> None:
        self.gate = AdapterGate()
        self._resident: OrderedDict[str, str] = OrderedDict()  # LoRA name -> adapter name
        self._counter = 0
        self._compiled_noted = False

    @property
    def resident(self) -> list[str]:
        """LoRA names loaded on the model, least recently used first."""
        return list(self._resident)

    @contextmanager
    def applied(
        self,
        pipe: Any,
        wanted: LoraSet,
        *,
        model: str,
        family: str,
        library: LoraLibrary,
    ) -> Iterator[None]:
        """Run the block with exactly the LoRAs of ``wanted`` active on ``pipe``'s modules."""

        def switch(target: LoraSet) -> None:
            self._switch(pipe, target, model=model, family=family, library=library)

        with self.gate.use(wanted, switch):
            yield

    def _switch(
        self, pipe: Any, target: LoraSet, *, model: str, family: str, library: LoraLibrary
    ) -> None:
        if not target:
            if self._resident:
                _enable(pipe, {})
            return
        for name, _ in target:
            self._ensure_loaded(pipe, name, model=model, family=family, library=library)
        scales = {self._resident[name]: scale for name, scale in target}
        _enable(pipe, scales)
        keep = {name for name, _ in target}
        while len(self._resident) > max(library.resident, len(keep)):
            victim = next(n for n in self._resident if n not in keep)
            _delete(pipe, self._resident.pop(victim))
            log.info("LoRA %s unloaded from model %s (least recently used)", victim, model)

    def _ensure_loaded(
        self, pipe: Any, name: str, *, model: str, family: str, library: LoraLibrary
    ) -> None:
        if name in self._resident:
            self._resident.move_to_end(name)
            return
        fits = library.family(name)
        if fits is not None and fits != family:
            raise LoraError(
                f"LoRA {name!r} is made for {family_name(fits)} models; "
                f"model {model!r} is {family_name(family)}"
            )
        tensors = library.tensors(name)
        self._counter += 1
        adapter = f"sdw{self._counter}"
        try:
            with _quiet():
                # diffusers may consume the dict it is given: the cached one must stay whole
                pipe.load_lora_weights(dict(tensors), adapter_name=adapter)
        except Exception as exc:  # whatever diffusers/peft raise, take the half-loaded adapter off
            _delete(pipe, adapter)
            if "out of memory" in str(exc).lower() or not isinstance(
                exc, (RuntimeError, ValueError, KeyError, TypeError)
            ):
                raise  # the device is full (the OOM path handles it), or a bug to surface
            raise LoraError(
                f"LoRA {name!r} does not fit model {model!r} "
                f"({family_name(family)}): {_first_line(exc)}"
            ) from exc
        if not _holds(pipe, adapter):
            _delete(pipe, adapter)
            raise LoraError(
                f"LoRA {name!r} does not fit model {model!r}: none of its layers match the model's"
            )
        if not self._compiled_noted and getattr(pipe.unet, "_compiled_call_impl", None):
            # PEFT's layers are not in the graphs the warm-up compiled, and stay on the model
            self._compiled_noted = True
            log.warning(
                "model %s is compiled, but with LoRA layers on it its jobs run uncompiled "
                "from now on",
                model,
            )
        self._resident[name] = adapter
        log.info("LoRA %s loaded onto model %s", name, model)


_FAMILY_NAMES = {"sd1": "SD 1.x", "sd2": "SD 2.x", "sdxl": "SDXL"}


def family_name(family: str) -> str:
    """``"sdxl"`` → ``"SDXL"``, for messages."""
    return _FAMILY_NAMES.get(family, family)


def _first_line(exc: BaseException) -> str:
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    # torch's size-mismatch report puts the useful line second
    text = " ".join(lines[:2])
    return text if len(text) <= 300 else text[:297] + "..."


def _components(pipe: Any) -> Iterator[Any]:
    for name in _LORA_COMPONENTS:
        module = getattr(pipe, name, None)
        if module is not None:
            yield module


def _tuner_layers(pipe: Any) -> Iterator[Any]:
    from peft.tuners.tuners_utils import BaseTunerLayer

    for component in _components(pipe):
        for module in component.modules():
            if isinstance(module, BaseTunerLayer):
                yield module


def _holds(pipe: Any, adapter: str) -> bool:
    return any(adapter in getattr(m, "scaling", {}) for m in _tuner_layers(pipe))


def _enable(pipe: Any, scales: dict[str, float]) -> None:
    """Switch every adapter layer to exactly the adapters of ``scales`` (none: all off)."""
    for layer in _tuner_layers(pipe):
        present = [a for a in scales if a in getattr(layer, "scaling", {})]
        if not present:
            # a disabled layer computes its base layer alone: the exact base weights
            layer.enable_adapters(False)
            continue
        layer.enable_adapters(True)
        layer.set_adapter(present, inference_mode=True)
        for adapter in present:
            layer.set_scale(adapter, scales[adapter])


def _delete(pipe: Any, adapter: str) -> None:
    """Remove ``adapter`` from every layer and from the components' PEFT configs."""
    with _quiet():
        for layer in _tuner_layers(pipe):
            if adapter in getattr(layer, "scaling", {}):
                layer.delete_adapter(adapter)
        for component in _components(pipe):
            config = getattr(component, "peft_config", None)
            if isinstance(config, dict):
                config.pop(adapter, None)


@contextmanager
def _quiet() -> Iterator[None]:
    """Silence what PEFT and transformers say about adapter bookkeeping we do on purpose.

    PEFT warns when a second adapter joins a model or an active one is deleted; transformers
    logs a "load report" listing every base weight as missing from the LoRA file.
    """
    report = logging.getLogger("transformers.integrations.peft")
    level = report.level
    report.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", category=UserWarning, module=r"peft\.")
            warnings.filterwarnings("ignore", message=r".*adapter", category=UserWarning)
            yield
    finally:
        report.setLevel(level)


def lora_set(refs: Sequence[Any] | None) -> LoraSet:
    """A request's ``lora`` list as a set key: order kept, a repeated name's scales added."""
    if not refs:
        return ()
    merged: dict[str, float] = {}
    for ref in refs:
        merged[ref.name] = merged.get(ref.name, 0.0) + float(ref.scale)
    # a LoRA at scale 0 changes nothing: the request is served as the plain model
    return tuple((name, scale) for name, scale in merged.items() if scale != 0.0)
