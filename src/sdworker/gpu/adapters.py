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

import logging
import threading
import warnings
from collections import OrderedDict, deque
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from sdworker.core.errors import LoraError
from sdworker.core.loras import LoraLibrary, LoraSet
from sdworker.families import Family, label

log = logging.getLogger(__name__)

#: the modules of a pipeline a LoRA adapts (its family's, of those the pipeline has)
Components = tuple[str, ...]


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
        family: Family,
        library: LoraLibrary,
    ) -> Iterator[None]:
        """Run the block with exactly the LoRAs of ``wanted`` active on ``pipe``'s modules."""

        def switch(target: LoraSet) -> None:
            self._switch(pipe, target, model=model, family=family, library=library)

        with self.gate.use(wanted, switch):
            yield

    def _switch(
        self, pipe: Any, target: LoraSet, *, model: str, family: Family, library: LoraLibrary
    ) -> None:
        parts = family.lora.components
        if not target:
            if self._resident:
                _enable(pipe, parts, {})
            return
        for name, _ in target:
            self._ensure_loaded(pipe, name, model=model, family=family, library=library)
        scales = {self._resident[name]: scale for name, scale in target}
        _enable(pipe, parts, scales)
        keep = {name for name, _ in target}
        while len(self._resident) > max(library.resident, len(keep)):
            victim = next(n for n in self._resident if n not in keep)
            _delete(pipe, parts, self._resident.pop(victim))
            log.info("LoRA %s unloaded from model %s (least recently used)", victim, model)

    def _ensure_loaded(
        self, pipe: Any, name: str, *, model: str, family: Family, library: LoraLibrary
    ) -> None:
        if name in self._resident:
            self._resident.move_to_end(name)
            return
        fits = library.family(name)
        if fits is not None and fits != family.lora_key:
            raise LoraError(
                f"LoRA {name!r} is made for {label(fits)} models; model {model!r} is {family.label}"
            )
        parts = family.lora.components
        tensors = library.tensors(name)
        self._counter += 1
        adapter = f"sdw{self._counter}"
        try:
            with _quiet():
                # diffusers may consume the dict it is given: the cached one must stay whole
                pipe.load_lora_weights(dict(tensors), adapter_name=adapter)
        except Exception as exc:  # whatever diffusers/peft raise, take the half-loaded adapter off
            _delete(pipe, parts, adapter)
            if "out of memory" in str(exc).lower() or not isinstance(
                exc, (RuntimeError, ValueError, KeyError, TypeError)
            ):
                raise  # the device is full (the OOM path handles it), or a bug to surface
            raise LoraError(
                f"LoRA {name!r} does not fit model {model!r} ({family.label}): {_first_line(exc)}"
            ) from exc
        if not _holds(pipe, parts, adapter):
            _delete(pipe, parts, adapter)
            raise LoraError(
                f"LoRA {name!r} does not fit model {model!r}: none of its layers match the model's"
            )
        denoiser = getattr(pipe, family.denoiser, None)
        if not self._compiled_noted and getattr(denoiser, "_compiled_call_impl", None):
            # PEFT's layers are not in the graphs the warm-up compiled, and stay on the model
            self._compiled_noted = True
            log.warning(
                "model %s is compiled, but with LoRA layers on it its jobs run uncompiled "
                "from now on",
                model,
            )
        self._resident[name] = adapter
        log.info("LoRA %s loaded onto model %s", name, model)


def _first_line(exc: BaseException) -> str:
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    # torch's size-mismatch report puts the useful line second
    text = " ".join(lines[:2])
    return text if len(text) <= 300 else text[:297] + "..."


def _components(pipe: Any, parts: Components) -> Iterator[Any]:
    for name in parts:
        module = getattr(pipe, name, None)
        if module is not None:
            yield module


def _tuner_layers(pipe: Any, parts: Components) -> Iterator[Any]:
    from peft.tuners.tuners_utils import BaseTunerLayer

    for component in _components(pipe, parts):
        for module in component.modules():
            if isinstance(module, BaseTunerLayer):
                yield module


def _holds(pipe: Any, parts: Components, adapter: str) -> bool:
    return any(adapter in getattr(m, "scaling", {}) for m in _tuner_layers(pipe, parts))


def _enable(pipe: Any, parts: Components, scales: dict[str, float]) -> None:
    """Switch every adapter layer to exactly the adapters of ``scales`` (none: all off)."""
    for layer in _tuner_layers(pipe, parts):
        present = [a for a in scales if a in getattr(layer, "scaling", {})]
        if not present:
            # a disabled layer computes its base layer alone: the exact base weights
            layer.enable_adapters(False)
            continue
        layer.enable_adapters(True)
        layer.set_adapter(present, inference_mode=True)
        for adapter in present:
            layer.set_scale(adapter, scales[adapter])


def _delete(pipe: Any, parts: Components, adapter: str) -> None:
    """Remove ``adapter`` from every layer and from the components' PEFT configs."""
    with _quiet():
        for layer in _tuner_layers(pipe, parts):
            if adapter in getattr(layer, "scaling", {}):
                layer.delete_adapter(adapter)
        for component in _components(pipe, parts):
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
