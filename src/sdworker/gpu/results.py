"""What generation takes and gives besides the request: decoded input images, result images.

Torch-free, so the service can hold them (and run an upscale-only job) without starting
the GPU side.
"""

from __future__ import annotations

from dataclasses import dataclass

from PIL import Image


@dataclass(frozen=True)
class Generated:
    """One result image and the seed that made it."""

    image: Image.Image
    seed: int
    nsfw: bool | None
    #: decoded from the latents of a generation stopped early
    interrupted: bool = False


@dataclass(frozen=True)
class Inputs:
    """The request's decoded images (already resized to the request's size); for an upscale
    job, its image as decoded and the size to upscale it to."""

    image: Image.Image | None = None
    mask: Image.Image | None = None
    target: tuple[int, int] | None = None
