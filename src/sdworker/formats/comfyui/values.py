"""What flows along a workflow's links, as sdworker reads it: descriptions, not tensors.

Interpreting a node turns the descriptions on its inputs into those on its outputs (a
checkpoint loader's MODEL is the baked model it names; a ``CLIPTextEncode``'s CONDITIONING
is its text and the CLIP it was read with; a sampler's LATENT is the whole
:class:`SamplePlan` that makes it). A decoded sample at an output node is one native job.
Each value keeps the :class:`~.errors.NodeRef` it came from, so every problem found later,
and every native field, is named by the node input that said it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, TypeAlias

from sdworker.families import Family
from sdworker.formats.comfyui.errors import NodeRef

#: the types ComfyUI's sockets carry, as node specs name them
MODEL, CLIP, VAE, CONDITIONING, LATENT, IMAGE, MASK = (
    "MODEL", "CLIP", "VAE", "CONDITIONING", "LATENT", "IMAGE", "MASK",
)  # fmt: skip
NOISE, GUIDER, SAMPLER, SIGMAS, CONTROL_NET = "NOISE", "GUIDER", "SAMPLER", "SIGMAS", "CONTROL_NET"


@dataclass(frozen=True)
class Checkpoint:
    """A baked model, as a loader named it."""

    at: NodeRef
    #: the baked model's name (the registry's resolution of what the workflow says)
    model: str
    #: its family (None: the deployment's models are not known here)
    family: Family | None


@dataclass(frozen=True)
class LoraUse:
    """A LoRA a loader applies, with its strength on the model."""

    at: NodeRef
    name: str
    strength: float


@dataclass(frozen=True)
class Model:
    """MODEL: a checkpoint's denoiser, with the LoRAs on it."""

    checkpoint: Checkpoint
    loras: tuple[LoraUse, ...] = ()


@dataclass(frozen=True)
class Clip:
    """CLIP: a checkpoint's text encoders, or standard encoder files (split loaders: the
    model's own encoders stand in for them once the model is known)."""

    at: NodeRef
    checkpoint: Checkpoint | None = None
    #: the files a split loader names, each with the input that names it
    files: tuple[tuple[NodeRef, str], ...] = ()
    loras: tuple[LoraUse, ...] = ()


@dataclass(frozen=True)
class Vae:
    """VAE: a checkpoint's, or a standard VAE file (the model's own stands in for it)."""

    at: NodeRef
    checkpoint: Checkpoint | None = None


@dataclass(frozen=True)
class Conditioning:
    """CONDITIONING: a text read by a CLIP; zeroed (``ConditioningZeroOut``) or with FLUX.1's
    distilled guidance on it (``FluxGuidance``)."""

    text: str
    at: NodeRef
    clip: Clip
    guidance: float | None = None
    guidance_at: NodeRef | None = None
    zero: bool = False


@dataclass(frozen=True)
class LoadedImage:
    """IMAGE from ``LoadImage``: one of the request's input images, by name."""

    name: str
    at: NodeRef
    #: the image as the client gave it (base64, with or without a ``data:`` prefix)
    data: str


@dataclass(frozen=True)
class ScaledImage:
    """IMAGE from ``ImageScale`` (or a ``LatentUpscale`` of an encoded image): resized."""

    source: PixelImage
    width: int
    height: int
    method: str
    crop: str
    at: NodeRef


#: an input image as the job reads it
PixelImage: TypeAlias = LoadedImage | ScaledImage


@dataclass(frozen=True)
class Mask:
    """MASK: one channel of an input image (``LoadImage``'s alpha, or ``LoadImageMask``'s
    channel); 1 (white) repaints. ``invert``: the mask is one minus the channel (alpha)."""

    image: LoadedImage
    channel: str
    at: NodeRef

    @property
    def invert(self) -> bool:
        return self.channel == "alpha"


@dataclass(frozen=True)
class EmptyLatent:
    """LATENT from ``EmptyLatentImage``/``EmptySD3LatentImage``: a size and a batch."""

    width: int
    height: int
    batch: int
    at: NodeRef
    #: where ``width``/``height`` were said last (a ``LatentUpscale`` says them anew)
    size_at: NodeRef


@dataclass(frozen=True)
class ImageLatent:
    """LATENT of an input image (``VAEEncode``, ``VAEEncodeForInpaint``), perhaps with a noise
    mask (``SetLatentNoiseMask``): img2img, or inpainting."""

    image: PixelImage
    vae: Vae
    at: NodeRef
    mask: Mask | None = None
    #: pixels the mask grows by (``VAEEncodeForInpaint``'s ``grow_mask_by``)
    grow: int = 0


@dataclass(frozen=True)
class Noise:
    """NOISE: ``RandomNoise``'s seed."""

    seed: int
    at: NodeRef


@dataclass(frozen=True)
class Guider:
    """GUIDER: ``BasicGuider`` (no negative, no CFG) or ``CFGGuider``."""

    model: Model
    positive: Conditioning
    at: NodeRef
    negative: Conditioning | None = None
    cfg: float | None = None


@dataclass(frozen=True)
class SamplerName:
    """SAMPLER: ``KSamplerSelect``'s sampler name."""

    name: str
    at: NodeRef


@dataclass(frozen=True)
class Sigmas:
    """SIGMAS: ``BasicScheduler``'s schedule."""

    model: Model
    scheduler: str
    steps: int
    denoise: float
    at: NodeRef


@dataclass(frozen=True)
class Said:
    """A value and the node input it was read from."""

    value: Any
    at: NodeRef


@dataclass(frozen=True)
class SamplePlan:
    """LATENT out of a sampler: everything one native job needs, each part with its node."""

    at: NodeRef
    model: Model
    positive: Conditioning
    negative: Conditioning | None
    latent: EmptyLatent | ImageLatent
    seed: Said
    sampler: Said
    scheduler: Said
    #: the schedule's length (the native ``num_inference_steps``)
    steps: Said
    #: how much of it runs on an image latent (the native ``strength``; None: all)
    strength: Said | None
    #: classifier-free guidance (None: none, as ``BasicGuider``)
    cfg: Said | None


@dataclass(frozen=True)
class Decoded:
    """IMAGE from ``VAEDecode`` of a sample: what an output node saves."""

    plan: SamplePlan
    vae: Vae
    at: NodeRef


#: any value a socket carries
Value: TypeAlias = (
    Model | Clip | Vae | Conditioning | PixelImage | Decoded | Mask | EmptyLatent | ImageLatent
    | SamplePlan | Noise | Guider | SamplerName | Sigmas
)  # fmt: skip
