"""The core ComfyUI nodes sdworker reads: each one's sockets, its widget values (a pydantic
model with ComfyUI's own ranges and defaults) and its outputs.

A node's inputs are of two kinds, as in ComfyUI: sockets, fed by a link from another node
(MODEL, CLIP, LATENT...), and widgets, literal values (``steps``, ``sampler_name``). The
widget models validate literals as ComfyUI does (``"20"`` is 20; a value past ComfyUI's
range is refused, as ComfyUI refuses it); the node's meaning is :mod:`.interpret`'s.

Inputs newer ComfyUI builds added (``UNETLoader.weight_dtype``, ``DualCLIPLoader.type`` and
``device``) have ComfyUI's defaults, so workflows exported by older editors read too.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Annotated, Literal

from pydantic import AfterValidator, BaseModel, Field

from sdworker.core.rules import unknown_name
from sdworker.formats.comfyui import values as v
from sdworker.formats.comfyui.samplers import COMFY_SAMPLERS, COMFY_SCHEDULERS
from sdworker.formats.validation import FormatBody, LaxFloat, LaxInt, Text, refuse

#: ComfyUI's largest side (``MAX_RESOLUTION``)
MAX_RESOLUTION = 16384
SEED_MAX = 2**64 - 1
_LISTING = "GET /object_info"


def _sampler(value: str) -> str:
    if value not in COMFY_SAMPLERS:
        raise refuse("value_not_in_list", unknown_name("sampler", value, COMFY_SAMPLERS, _LISTING))
    return value


def _scheduler(value: str) -> str:
    if value not in COMFY_SCHEDULERS:
        rule = unknown_name("scheduler", value, COMFY_SCHEDULERS, _LISTING)
        raise refuse("value_not_in_list", rule)
    return value


def _named(value: str) -> str:
    if not value.strip():
        raise refuse("blank", "must name a file")
    return value


SamplerChoice = Annotated[Text, AfterValidator(_sampler)]
SchedulerChoice = Annotated[Text, AfterValidator(_scheduler)]
FileName = Annotated[Text, AfterValidator(_named)]
Seed = Annotated[LaxInt, Field(ge=0, le=SEED_MAX)]
Steps = Annotated[LaxInt, Field(ge=1, le=10000)]
Cfg = Annotated[LaxFloat, Field(ge=0.0, le=100.0)]
Denoise = Annotated[LaxFloat, Field(ge=0.0, le=1.0)]
Side = Annotated[LaxInt, Field(ge=16, le=MAX_RESOLUTION)]
ScaleSide = Annotated[LaxInt, Field(ge=0, le=MAX_RESOLUTION)]
Batch = Annotated[LaxInt, Field(ge=1, le=4096)]
LoraStrength = Annotated[LaxFloat, Field(ge=-100.0, le=100.0)]
Crop = Literal["disabled", "center"]


class Widgets(FormatBody):
    """A node's literal inputs (none, for a node of sockets only)."""


class CheckpointLoaderSimpleW(Widgets):
    ckpt_name: FileName


class UNETLoaderW(Widgets):
    unet_name: FileName
    weight_dtype: Literal["default", "fp8_e4m3fn", "fp8_e4m3fn_fast", "fp8_e5m2"] = "default"


_CLIP_TYPES = (
    "stable_diffusion", "stable_cascade", "sd3", "stable_audio", "mochi", "ltxv", "pixart",
    "cosmos", "lumina2", "wan", "hidream", "chroma", "ace", "omnigen2", "qwen_image",
    "hunyuan_image", "sdxl", "flux", "hunyuan_video",
)  # fmt: skip
ClipType = Annotated[Text, AfterValidator(lambda t: _one_of(t, _CLIP_TYPES))]


def _one_of(value: str, choices: tuple[str, ...]) -> str:
    if value not in choices:
        raise refuse("value_not_in_list", unknown_name("type", value, choices, _LISTING))
    return value


class DualCLIPLoaderW(Widgets):
    clip_name1: FileName
    clip_name2: FileName
    type: ClipType = "sdxl"
    device: Literal["default", "cpu"] = "default"


class CLIPLoaderW(Widgets):
    clip_name: FileName
    type: ClipType = "stable_diffusion"
    device: Literal["default", "cpu"] = "default"


class VAELoaderW(Widgets):
    vae_name: FileName


class LoraLoaderW(Widgets):
    lora_name: FileName
    strength_model: LoraStrength
    strength_clip: LoraStrength


class LoraLoaderModelOnlyW(Widgets):
    lora_name: FileName
    strength_model: LoraStrength


class CLIPTextEncodeW(Widgets):
    text: Text


class FluxGuidanceW(Widgets):
    guidance: Annotated[LaxFloat, Field(ge=0.0, le=100.0)]


class EmptyLatentImageW(Widgets):
    width: Side
    height: Side
    batch_size: Batch


class VAEEncodeForInpaintW(Widgets):
    grow_mask_by: Annotated[LaxInt, Field(ge=0, le=64)] = 6


class LatentUpscaleW(Widgets):
    upscale_method: Literal["nearest-exact", "bilinear", "area", "bicubic", "bislerp"]
    width: ScaleSide
    height: ScaleSide
    crop: Crop


class KSamplerW(Widgets):
    seed: Seed
    steps: Steps
    cfg: Cfg
    sampler_name: SamplerChoice
    scheduler: SchedulerChoice
    denoise: Denoise = 1.0


class KSamplerAdvancedW(Widgets):
    add_noise: Literal["enable", "disable"]
    noise_seed: Seed
    steps: Steps
    cfg: Cfg
    sampler_name: SamplerChoice
    scheduler: SchedulerChoice
    start_at_step: Annotated[LaxInt, Field(ge=0, le=10000)]
    end_at_step: Annotated[LaxInt, Field(ge=0, le=10000)]
    return_with_leftover_noise: Literal["disable", "enable"]


class RandomNoiseW(Widgets):
    noise_seed: Seed


class CFGGuiderW(Widgets):
    cfg: Cfg


class BasicSchedulerW(Widgets):
    scheduler: SchedulerChoice
    steps: Steps
    denoise: Denoise = 1.0


class KSamplerSelectW(Widgets):
    sampler_name: SamplerChoice


class ModelSamplingSD3W(Widgets):
    shift: Annotated[LaxFloat, Field(ge=0.0, le=100.0)]


class ModelSamplingFluxW(Widgets):
    max_shift: Annotated[LaxFloat, Field(ge=0.0, le=100.0)]
    base_shift: Annotated[LaxFloat, Field(ge=0.0, le=100.0)]
    width: Side
    height: Side


class LoadImageW(Widgets):
    image: FileName
    inert = frozenset({"upload"})


class LoadImageMaskW(Widgets):
    image: FileName
    channel: Literal["alpha", "red", "green", "blue"]
    inert = frozenset({"upload"})


class ImageScaleW(Widgets):
    upscale_method: Literal["nearest-exact", "bilinear", "area", "bicubic", "lanczos"]
    width: ScaleSide
    height: ScaleSide
    crop: Crop


class SaveImageW(Widgets):
    filename_prefix: Text = "ComfyUI"


@dataclass(frozen=True)
class NodeSpec:
    """One node class: its sockets (input -> type), widgets and outputs."""

    class_type: str
    category: str
    sockets: Mapping[str, str] = field(default_factory=dict)
    widgets: type[BaseModel] = Widgets
    outputs: tuple[str, ...] = ()
    output_node: bool = False
    #: sockets a node may leave unlinked
    optional: frozenset[str] = frozenset()


def _spec(class_type: str, category: str, sockets: dict[str, str], outputs: tuple[str, ...],
          widgets: type[BaseModel] = Widgets, output_node: bool = False) -> NodeSpec:  # fmt: skip
    return NodeSpec(class_type, category, sockets, widgets, outputs, output_node)


_SAMPLER_SOCKETS = {
    "model": v.MODEL,
    "positive": v.CONDITIONING,
    "negative": v.CONDITIONING,
    "latent_image": v.LATENT,
}

#: every node class sdworker reads, by ``class_type``
SPECS: dict[str, NodeSpec] = {
    spec.class_type: spec
    for spec in (
        _spec("CheckpointLoaderSimple", "loaders", {}, (v.MODEL, v.CLIP, v.VAE),
              CheckpointLoaderSimpleW),
        _spec("UNETLoader", "advanced/loaders", {}, (v.MODEL,), UNETLoaderW),
        _spec("DualCLIPLoader", "advanced/loaders", {}, (v.CLIP,), DualCLIPLoaderW),
        _spec("CLIPLoader", "advanced/loaders", {}, (v.CLIP,), CLIPLoaderW),
        _spec("VAELoader", "loaders", {}, (v.VAE,), VAELoaderW),
        _spec("LoraLoader", "loaders", {"model": v.MODEL, "clip": v.CLIP}, (v.MODEL, v.CLIP),
              LoraLoaderW),
        _spec("LoraLoaderModelOnly", "loaders", {"model": v.MODEL}, (v.MODEL,),
              LoraLoaderModelOnlyW),
        _spec("CLIPTextEncode", "conditioning", {"clip": v.CLIP}, (v.CONDITIONING,),
              CLIPTextEncodeW),
        _spec("FluxGuidance", "advanced/conditioning/flux", {"conditioning": v.CONDITIONING},
              (v.CONDITIONING,), FluxGuidanceW),
        _spec("ConditioningZeroOut", "advanced/conditioning", {"conditioning": v.CONDITIONING},
              (v.CONDITIONING,)),
        _spec("EmptyLatentImage", "latent", {}, (v.LATENT,), EmptyLatentImageW),
        _spec("EmptySD3LatentImage", "latent/sd3", {}, (v.LATENT,), EmptyLatentImageW),
        _spec("VAEEncode", "latent", {"pixels": v.IMAGE, "vae": v.VAE}, (v.LATENT,)),
        _spec("VAEEncodeForInpaint", "latent/inpaint",
              {"pixels": v.IMAGE, "vae": v.VAE, "mask": v.MASK}, (v.LATENT,),
              VAEEncodeForInpaintW),
        _spec("SetLatentNoiseMask", "latent/inpaint", {"samples": v.LATENT, "mask": v.MASK},
              (v.LATENT,)),
        _spec("LatentUpscale", "latent", {"samples": v.LATENT}, (v.LATENT,), LatentUpscaleW),
        _spec("KSampler", "sampling", _SAMPLER_SOCKETS, (v.LATENT,), KSamplerW),
        _spec("KSamplerAdvanced", "sampling", _SAMPLER_SOCKETS, (v.LATENT,), KSamplerAdvancedW),
        _spec("SamplerCustomAdvanced", "sampling/custom_sampling",
              {"noise": v.NOISE, "guider": v.GUIDER, "sampler": v.SAMPLER, "sigmas": v.SIGMAS,
               "latent_image": v.LATENT}, (v.LATENT, v.LATENT)),
        _spec("RandomNoise", "sampling/custom_sampling/noise", {}, (v.NOISE,), RandomNoiseW),
        _spec("BasicGuider", "sampling/custom_sampling/guiders",
              {"model": v.MODEL, "conditioning": v.CONDITIONING}, (v.GUIDER,)),
        _spec("CFGGuider", "sampling/custom_sampling/guiders",
              {"model": v.MODEL, "positive": v.CONDITIONING, "negative": v.CONDITIONING},
              (v.GUIDER,), CFGGuiderW),
        _spec("BasicScheduler", "sampling/custom_sampling/schedulers", {"model": v.MODEL},
              (v.SIGMAS,), BasicSchedulerW),
        _spec("KSamplerSelect", "sampling/custom_sampling/samplers", {}, (v.SAMPLER,),
              KSamplerSelectW),
        _spec("ModelSamplingSD3", "advanced/model", {"model": v.MODEL}, (v.MODEL,),
              ModelSamplingSD3W),
        _spec("ModelSamplingFlux", "advanced/model", {"model": v.MODEL}, (v.MODEL,),
              ModelSamplingFluxW),
        _spec("VAEDecode", "latent", {"samples": v.LATENT, "vae": v.VAE}, (v.IMAGE,)),
        _spec("LoadImage", "image", {}, (v.IMAGE, v.MASK), LoadImageW),
        _spec("LoadImageMask", "mask", {}, (v.MASK,), LoadImageMaskW),
        _spec("ImageScale", "image/upscaling", {"image": v.IMAGE}, (v.IMAGE,), ImageScaleW),
        _spec("SaveImage", "image", {"images": v.IMAGE}, (), SaveImageW, output_node=True),
        _spec("PreviewImage", "image", {"images": v.IMAGE}, (), output_node=True),
    )
}  # fmt: skip

#: core nodes sdworker does not run yet, with why (each is refused by name wherever it is)
PENDING: dict[str, str] = {
    "ControlNetLoader": "ControlNet nodes are not supported yet",
    "ControlNetApplyAdvanced": "ControlNet nodes are not supported yet",
    "ControlNetApply": "ControlNet nodes are not supported yet",
    "DiffControlNetLoader": "ControlNet nodes are not supported yet",
}

#: the output nodes: what a workflow saves or previews
OUTPUT_NODES = frozenset(name for name, spec in SPECS.items() if spec.output_node)
