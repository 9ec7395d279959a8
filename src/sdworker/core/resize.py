"""The native input's resizing objects: ``hires`` (A1111's hires fix: a txt2img first pass,
upscaled, then an img2img second pass) and ``upscale`` (an upscale-only job, no generation).

Both are modelled here and their sizes worked out; the rules they keep with the rest of the
input are :mod:`sdworker.core.input.resize`'s, the generation the GPU side's
(``sdworker.gpu.hires``) and the upscale the output side's.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StrictInt

from sdworker.core.fieldtypes import Number, Text
from sdworker.core.media import hires_fields
from sdworker.core.settings import MAX_SIDE, MIN_SIDE, SIDE_STEP

HiresUpscaler = Literal[
    "latent",
    "latent-antialiased",
    "latent-bicubic",
    "latent-bicubic-antialiased",
    "latent-nearest",
    "latent-nearest-exact",
    "lanczos",
    "nearest",
]
#: each hires upscaler as A1111 names it (its infotext's ``Hires upscaler``)
A1111_UPSCALERS: dict[str, str] = {
    "latent": "Latent",
    "latent-antialiased": "Latent (antialiased)",
    "latent-bicubic": "Latent (bicubic)",
    "latent-bicubic-antialiased": "Latent (bicubic antialiased)",
    "latent-nearest": "Latent (nearest)",
    "latent-nearest-exact": "Latent (nearest-exact)",
    "lanczos": "Lanczos",
    "nearest": "Nearest",
}
UpscaleUpscaler = Literal["lanczos", "nearest"]
#: the PIL filter (``PIL.Image.Resampling`` member) of each pixel upscaler
PIL_FILTERS: dict[str, str] = {"lanczos": "LANCZOS", "nearest": "NEAREST"}
#: the fields an upscale-only job takes beside ``upscale`` (the rest generate)
UPSCALE_FIELDS = frozenset(
    {"image", "upscale", "model", "seed", "output_format", "output_quality", "upload"}
)


class HiresInput(BaseModel):
    """``hires``: upscale the txt2img image and denoise it again at the larger size."""

    model_config = ConfigDict(extra="forbid")

    scale: Number = Field(default=2.0, ge=1.0, le=4.0)
    width: StrictInt | None = Field(default=None, ge=MIN_SIDE, le=MAX_SIDE, multiple_of=SIDE_STEP)
    height: StrictInt | None = Field(default=None, ge=MIN_SIDE, le=MAX_SIDE, multiple_of=SIDE_STEP)
    upscaler: HiresUpscaler = "latent"
    steps: StrictInt | None = Field(default=None, ge=1, le=500)
    strength: Number = Field(default=0.7, gt=0.0, le=1.0)
    scheduler: Text | None = None
    prompt: Text | None = None
    negative_prompt: Text | None = None

    @property
    def latent(self) -> bool:
        """Whether the first pass's latents are upscaled (else its decoded image)."""
        return self.upscaler.startswith("latent")


class UpscaleInput(BaseModel):
    """``upscale``: resize the input ``image`` with a PIL filter; nothing is generated."""

    model_config = ConfigDict(extra="forbid")

    scale: Number = Field(default=2.0, ge=1.0, le=8.0)
    width: StrictInt | None = Field(default=None, ge=1, le=4 * MAX_SIDE)
    height: StrictInt | None = Field(default=None, ge=1, le=4 * MAX_SIDE)
    upscaler: UpscaleUpscaler = "lanczos"


def _round8(value: float) -> int:
    return max(SIDE_STEP, round(value / SIDE_STEP) * SIDE_STEP)


def hires_size(first: tuple[int, int], width: Any, height: Any, scale: Any) -> tuple[int, int]:
    """The second pass's size: ``width`` x ``height``; one of them and the first pass's aspect
    (rounded to a multiple of 8); or the first pass's size times ``scale`` (the same)."""
    w, h = first
    if isinstance(width, int) and isinstance(height, int):
        return width, height
    if isinstance(width, int):
        return width, _round8(h * width / w)
    if isinstance(height, int):
        return _round8(w * height / h), height
    factor = float(scale) if isinstance(scale, int | float) else 2.0
    return _round8(w * factor), _round8(h * factor)


def upscale_size(
    image: tuple[int, int], width: int | None, height: int | None, scale: float
) -> tuple[int, int]:
    """An upscale job's result size: as :func:`hires_size`, but any whole number of pixels."""
    w, h = image
    if width is not None and height is not None:
        return width, height
    if width is not None:
        return width, max(1, round(h * width / w))
    if height is not None:
        return max(1, round(w * height / h)), height
    return max(1, round(w * scale)), max(1, round(h * scale))


def hires_infotext(
    hires: HiresInput,
    *,
    sampler: str,
    hires_sampler: str | None,
    prompt: str,
    negative_prompt: str,
) -> dict[str, Any]:
    """The infotext entries of a hires pass, as A1111 writes them (see
    :func:`sdworker.core.media.hires_fields`)."""
    resize = None
    if hires.width is not None or hires.height is not None:
        resize = (hires.width or 0, hires.height or 0)
    return hires_fields(
        scale=hires.scale,
        resize=resize,
        steps=hires.steps,
        upscaler=A1111_UPSCALERS[hires.upscaler],
        sampler=hires_sampler if hires_sampler != sampler else None,
        prompt=hires.prompt if hires.prompt != prompt else None,
        negative_prompt=(
            hires.negative_prompt if hires.negative_prompt != negative_prompt else None
        ),
    )
