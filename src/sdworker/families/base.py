"""What a model family is: one object that tells the rest of the worker everything it needs.

A :class:`Family` declares its diffusers pipelines per mode, its defaults and size rule, the
input fields that apply to it, the schedulers that run it, how its prompts are encoded, its
preferred GPU dtype, its memory estimate, its batch key and how its LoRAs are recognised; and,
for the builder, how a diffusers folder of it is recognised and which defaults come from the
model itself. Nothing outside :mod:`sdworker.families` tests a family's name: it asks the
family.

Pure data and small functions: this package imports neither torch nor diffusers. Pipeline
classes are named, and the GPU side imports them (``getattr(diffusers, name)``).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

#: what a request asks a model to do; ``edit`` is instruction editing (an image and a prompt
#: on a model that reads the image as a reference: FLUX.1 Kontext)
Mode = Literal["txt2img", "img2img", "inpaint", "edit"]

#: input fields that apply to some families only; every other field applies to every family
FAMILY_FIELDS = frozenset(
    {
        "use_compel",
        "clip_skip",
        "hires",
        "refiner_inference_steps",
        "high_noise_frac",
        "max_sequence_length",
        "true_cfg_scale",
    }
)

#: the diffusers schedulers that drive a noise-predicting (epsilon or v) UNet
DISCRETE_SCHEDULERS: tuple[str, ...] = (
    "DDIMScheduler",
    "DDPMScheduler",
    "DEISMultistepScheduler",
    "DPMSolverMultistepScheduler",
    "DPMSolverSDEScheduler",
    "DPMSolverSinglestepScheduler",
    "EulerAncestralDiscreteScheduler",
    "EulerDiscreteScheduler",
    "HeunDiscreteScheduler",
    "KDPM2AncestralDiscreteScheduler",
    "KDPM2DiscreteScheduler",
    "LCMScheduler",
    "LMSDiscreteScheduler",
    "PNDMScheduler",
    "UniPCMultistepScheduler",
)


@dataclass(frozen=True)
class Pipelines:
    """The diffusers pipeline class, by name, that runs each mode (None: not offered).

    The model loads as :attr:`loads_as`; the other modes' pipelines are made from it with
    ``from_pipe``, sharing every module."""

    txt2img: str | None = None
    img2img: str | None = None
    inpaint: str | None = None
    edit: str | None = None

    def of(self, mode: Mode) -> str | None:
        """The class that runs ``mode``, or None when the family has none."""
        found: str | None = getattr(self, mode)
        return found

    @property
    def modes(self) -> tuple[Mode, ...]:
        """The modes offered, in the order the weights prefer to load as."""
        order: tuple[Mode, ...] = ("txt2img", "inpaint", "edit", "img2img")
        return tuple(m for m in order if self.of(m) is not None)

    @property
    def load_mode(self) -> Mode:
        """The mode whose pipeline the weights load as."""
        return self.modes[0]

    @property
    def loads_as(self) -> str:
        """The class the weights load as (``from_pretrained``)."""
        name = self.of(self.load_mode)
        assert name is not None
        return name

    @property
    def classes(self) -> frozenset[str]:
        """Every class named."""
        return frozenset(c for c in (self.txt2img, self.img2img, self.inpaint, self.edit) if c)


@dataclass(frozen=True)
class Defaults:
    """The values a request gets for fields it leaves out (a model may give its own)."""

    num_inference_steps: int
    guidance_scale: float
    strength: float = 0.8
    max_sequence_length: int | None = None
    true_cfg_scale: float | None = None

    def fields(self) -> dict[str, Any]:
        """Native field -> default, for the fields this family has a default for."""
        values = {
            "num_inference_steps": self.num_inference_steps,
            "guidance_scale": self.guidance_scale,
            "strength": self.strength,
            "max_sequence_length": self.max_sequence_length,
            "true_cfg_scale": self.true_cfg_scale,
        }
        return {k: v for k, v in values.items() if v is not None}


@dataclass(frozen=True)
class SizeRule:
    """Which sizes the family's models take: sides a multiple of ``multiple`` pixels (the VAE's
    scale times the transformer's patch), and the native side when a model's config is silent."""

    multiple: int = 8
    native: int = 512


@dataclass(frozen=True)
class PromptEncoding:
    """How a prompt becomes the model's conditioning."""

    #: the text encoders the prompt goes through, in the pipeline's order
    encoders: tuple[str, ...]
    #: compel's weighted prompts: ``single`` (one CLIP), ``pair`` (SDXL's two); None: not offered
    compel: Literal["single", "pair"] | None = None
    #: how ``clip_skip`` reaches the CLIP encoders: our own embeddings (diffusers' path reads
    #: a layout transformers 5 no longer has), the pipeline's argument, or not at all
    clip_skip: Literal["embeddings", "pipeline"] | None = None
    #: the longest T5 sequence (``max_sequence_length``'s upper bound); None: no T5 encoder
    max_sequence_length: int | None = None
    #: the tokenizer whose window cuts a plain prompt (for the job log's warning)
    tokenizer: str = "tokenizer"

    @property
    def textual_inversion(self) -> bool:
        """Whether textual-inversion embeddings apply: every encoder is a CLIP, whose token
        embeddings an embedding's vectors stand in for (as A1111 has them for SD 1.x, 2.x
        and XL)."""
        return all("clip" in encoder for encoder in self.encoders)


@dataclass(frozen=True)
class LoraSignature:
    """How a LoRA file made for this family is recognised from its tensor names and shapes."""

    #: patterns (``re.search``) of tensor names only this family's LoRAs have
    markers: tuple[str, ...] = ()
    #: the text width its UNet's cross-attention reads (``attn2.to_k``'s input): what tells
    #: SD 1.x, 2.x and XL LoRAs apart when nothing else does
    context_width: int | None = None
    #: the width of the transformer's attention: a LoRA in diffusers' layout that adapts only
    #: blocks other families have too is told apart by it
    transformer_width: int | None = None
    #: the model's modules LoRA layers go onto (the ones of them the model has)
    components: tuple[str, ...] = ("unet", "text_encoder", "text_encoder_2")

    def matches(self, shapes: Mapping[str, Sequence[int]]) -> bool:
        """Whether a LoRA of these tensor names and shapes is this family's, by its markers
        or its transformer width (the context width is the registry's last resort)."""
        patterns = [re.compile(m) for m in self.markers]
        if any(p.search(key) for key in shapes for p in patterns):
            return True
        width = self.transformer_width
        return width is not None and any(
            key.startswith("transformer.transformer_blocks.")
            and _is_down(key)
            and len(shape) >= 2
            and int(shape[1]) == width
            for key, shape in shapes.items()
        )


def _is_down(key: str) -> bool:
    """Whether ``key`` is a LoRA's down (input-side) matrix, in any layout's spelling."""
    return any(part in key for part in ("lora_A", "lora_down", "lora.down"))


@dataclass(frozen=True)
class ModelConfigs:
    """A diffusers folder's configs, as the builder read them (nothing else is needed to
    recognise a family or read the defaults a model carries)."""

    index: Mapping[str, Any]
    components: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    #: where the model comes from (a hub id, a folder): some defaults are only in the name
    source: str = ""

    @property
    def pipeline_class(self) -> str:
        return str(self.index.get("_class_name", ""))

    def config(self, component: str) -> Mapping[str, Any]:
        """The config of ``component`` (empty when the folder has none)."""
        return self.components.get(component, {})


def _no_model_defaults(configs: ModelConfigs) -> dict[str, Any]:
    return {}


def _no_problem(configs: ModelConfigs) -> str | None:
    return None


@dataclass(frozen=True)
class Family:
    """One model family (see the module docstring). Instances live in the family modules."""

    #: the manifest's ``family`` (``sd1``, ``flux``): a key, never tested outside this package
    name: str
    #: how messages name it (``SD 1.x``, ``FLUX.1``)
    label: str
    pipelines: Pipelines
    defaults: Defaults
    size: SizeRule
    prompts: PromptEncoding
    lora: LoraSignature
    #: whether a diffusers folder is a model of this family (the builder asks, most specific
    #: family first)
    recognises: Callable[[ModelConfigs], bool]
    #: the fields of :data:`FAMILY_FIELDS` that apply to it
    fields: frozenset[str] = frozenset()
    #: the scheduler classes that run it (a request naming another is refused)
    schedulers: tuple[str, ...] = DISCRETE_SCHEDULERS
    #: the module that denoises (``unet``, ``transformer``)
    denoiser: str = "unet"
    #: the dtype its weights run in on a GPU (``SDWORKER_DTYPE=auto``); always fp32 on a CPU
    gpu_dtype: Literal["fp16", "bf16"] = "fp16"
    #: what ``guidance_scale`` is: classifier-free guidance, or a distilled model's guidance
    #: embedding (then a negative prompt needs true CFG, ``true_cfg_scale``)
    guidance: Literal["cfg", "distilled"] = "cfg"
    #: native fields that must be equal for two requests to share a pipeline call, beyond
    #: those every family compares
    batch_fields: tuple[str, ...] = ()
    #: native fields handed to the pipeline call as they are
    call_fields: tuple[str, ...] = ()
    #: whether its pipelines take Stable Diffusion's safety checker component
    safety_checker: bool = False
    #: components a deployment may leave out to save memory (SD 3.5's T5), with their
    #: tokenizers: ``SDWORKER_DROP_T5``
    droppable: tuple[str, ...] = ()
    #: the family whose LoRAs fit it (its own name when empty): FLUX.1 Kontext takes FLUX.1's
    lora_family: str = ""
    #: defaults that come from the model (FLUX.1 schnell's 4 steps), read when it is baked
    model_defaults: Callable[[ModelConfigs], dict[str, Any]] = _no_model_defaults
    #: why a folder of this family cannot be served (None: it can)
    problem: Callable[[ModelConfigs], str | None] = _no_problem

    @property
    def lora_key(self) -> str:
        """The family name LoRAs made for it are recorded under."""
        return self.lora_family or self.name

    def applies(self, field_name: str) -> bool:
        """Whether the native input field ``field_name`` applies to this family."""
        return field_name not in FAMILY_FIELDS or field_name in self.fields

    def mode_for(self, has_image: bool, has_mask: bool) -> Mode:
        """The mode a request asks for: a mask inpaints, an image alone is img2img (or an
        edit, on a family that edits instead), nothing is txt2img. It may be a mode the
        family does not offer (:meth:`Pipelines.of` is None): validation says so."""
        if has_mask:
            return "inpaint"
        if not has_image:
            return "txt2img"
        if self.pipelines.img2img is None and self.pipelines.edit is not None:
            return "edit"
        return "img2img"

    def takes_scheduler(self, class_name: str) -> bool:
        """Whether the scheduler class ``class_name`` runs this family's models."""
        return class_name in self.schedulers

    def estimate_bytes(
        self, parameters: Mapping[str, int], itemsize: int, dropped: Iterable[str] = ()
    ) -> int:
        """Bytes the model's weights take on the device: the parameters of each component
        it loads (``parameters`` by component folder), at ``itemsize`` bytes each."""
        left_out = set(dropped)
        return sum(n for part, n in parameters.items() if part not in left_out) * itemsize
