"""LoRA (and textual-inversion embeddings) for one request at a time: applied as adapters,
never left behind.

A LoRA is loaded onto a model as a named PEFT adapter beside the base weights, which are never
touched (nothing is fused): a request switches its adapters on with its scales, and every
other request runs with all adapter layers switched off, which computes exactly the base
layer. So a plain request after a LoRA request gives the image it gave before, bit for bit.

Adapters are shared module state, so :class:`AdapterGate` keeps requests apart by the LoRA set
they need: requests wanting the same set (plain requests want the empty set) run together,
a request wanting another set waits until they are done, in arrival order so nobody starves.

Recently used adapters stay on the model (up to ``SDWORKER_LORA_RESIDENT`` per model) and the
files' tensors stay in memory (up to ``SDWORKER_LORA_CACHE_FILES``): a LoRA used again is not
re-read from disk. A LoRA is known by its file's identity (a baked name, a volume file, a
downloaded file's sha256), so two requests giving the same file by different URLs share it.

The gate's key holds the request's embeddings too (:mod:`.embeddings`): they are loaded with
the switch to the request's set, and unloaded by the switch to any other.
"""

from __future__ import annotations

import logging
import threading
import warnings
from collections import OrderedDict, deque
from collections.abc import Callable, Hashable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

from sdworker.core.assets import AssetGone, AssetRegistry
from sdworker.core.errors import LoraError
from sdworker.core.loras import AppliedLora, LoraSet, lora_set
from sdworker.families import Family, label
from sdworker.gpu.embeddings import EmbeddingSet, LoadedEmbeddings, Triggers, components_of

log = logging.getLogger(__name__)

#: the modules of a pipeline a LoRA adapts (its family's, of those the pipeline has)
Components = tuple[str, ...]


class AdapterGate:
    """Lets requests that want the same set (of LoRAs, of embeddings) run together, and no
    others (FIFO).

    ``switch`` is called, with no request inside, to turn the model to a new set; it runs
    inside the gate, so no request ever sees adapters half switched. The gate starts at
    ``initial``, the plain model's set.
    """

    def __init__(self, initial: Hashable = ()) -> None:
        self._cond = threading.Condition()
        self._queue: deque[object] = deque()
        self._inside = 0
        self.active: Hashable = initial

    @contextmanager
    def use(self, wanted: Any, switch: Callable[[Any], None]) -> Iterator[None]:
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
_UNKNOWN = object()
#: what a plain request wants: no LoRA, no embedding
PLAIN: tuple[LoraSet, EmbeddingSet] = ((), ())


class ModelAdapters:
    """The LoRA adapters and embeddings on one loaded model, and the gate its requests pass
    through."""

    def __init__(self) -> None:
        self.gate = AdapterGate(PLAIN)
        self._resident: OrderedDict[str, str] = OrderedDict()  # LoRA key -> adapter name
        self._names: dict[str, str] = {}  # LoRA key -> how the log names it
        self.embeddings = LoadedEmbeddings()
        self._counter = 0
        self._compiled_noted = False

    @property
    def resident(self) -> list[str]:
        """The LoRAs loaded on the model (their names), least recently used first."""
        return [self._names[key] for key in self._resident]

    @contextmanager
    def applied(
        self,
        pipe: Any,
        loras: Sequence[AppliedLora],
        *,
        model: str,
        family: Family,
        assets: AssetRegistry,
        resident: int,
        embeddings: EmbeddingSet = (),
        triggers: Triggers | None = None,
    ) -> Iterator[None]:
        """Run the block with exactly the LoRAs of ``loras`` active on ``pipe``'s modules, and
        exactly the ``embeddings`` (keys of ``triggers``' embeddings) loaded."""
        by_key = {lora.key: lora for lora in loras}

        def switch(target: tuple[LoraSet, EmbeddingSet]) -> None:
            wanted_loras, wanted_embeddings = target
            self._switch(
                pipe,
                wanted_loras,
                by_key,
                model=model,
                family=family,
                assets=assets,
                resident=resident,
            )
            parts = components_of(pipe, len(family.prompts.encoders))
            self.embeddings.switch(pipe, wanted_embeddings, triggers or Triggers(), assets, parts)

        with self.gate.use((lora_set(loras), tuple(embeddings)), switch):
            yield

    def _switch(
        self,
        pipe: Any,
        target: LoraSet,
        by_key: dict[str, AppliedLora],
        *,
        model: str,
        family: Family,
        assets: AssetRegistry,
        resident: int,
    ) -> None:
        parts = family.lora.components
        if not target:
            if self._resident:
                _enable(pipe, parts, {})
            return
        for key, _ in target:
            if key in self._resident:
                self._resident.move_to_end(key)
            else:
                self._load(pipe, by_key[key], model=model, family=family, assets=assets)
        scales = {self._resident[key]: scale for key, scale in target}
        _enable(pipe, parts, scales)
        keep = {key for key, _ in target}
        while len(self._resident) > max(resident, len(keep)):
            victim = next(n for n in self._resident if n not in keep)
            _delete(pipe, parts, self._resident.pop(victim))
            log.info(
                "LoRA %s unloaded from model %s (least recently used)",
                self._names.pop(victim),
                model,
            )

    def _load(
        self, pipe: Any, lora: AppliedLora, *, model: str, family: Family, assets: AssetRegistry
    ) -> None:
        name = lora.described()
        fits = lora.asset.family
        if fits is not None and fits != family.lora_key:
            raise LoraError(
                f"{name} is made for {label(fits)} models; model {model!r} is {family.label}"
            )
        parts = family.lora.components
        try:
            tensors = assets.tensors(lora.asset)
        except AssetGone as exc:
            raise LoraError(str(exc)) from exc
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
                f"{name} does not fit model {model!r} ({family.label}): {_first_line(exc)}"
            ) from exc
        if not _holds(pipe, parts, adapter):
            _delete(pipe, parts, adapter)
            raise LoraError(
                f"{name} does not fit model {model!r}: none of its layers match the model's"
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
        self._resident[lora.key] = adapter
        self._names[lora.key] = lora.asset.name
        log.info("%s loaded onto model %s", name, model)


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
