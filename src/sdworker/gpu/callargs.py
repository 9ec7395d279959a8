"""A pipeline call's arguments that follow from the request's mode (its image and mask, how
far the image is denoised, the size of the result), fitted to the pipeline that runs it.

The families' pipelines differ in what they take: SD's img2img pipelines read the size from
the image, SD 3.x's and FLUX.1's default to a megapixel unless told; FLUX.1 Kontext picks a
trained resolution near ``max_area``; FLUX.1 Fill reads no negative prompt. The arguments
are written once, for every mode, and :func:`fitted` gives each pipeline those it takes.
"""

from __future__ import annotations

import inspect
from typing import Any

from sdworker.core.schema import STRENGTH_MODES, Request
from sdworker.gpu.results import Inputs

#: arguments a pipeline may do without: the image it is given already has the size
_SIZE = ("width", "height")


def image_kwargs(request: Request, inputs: Inputs) -> dict[str, Any]:
    """The call's image arguments for the request's mode: the image (and its mask), how far
    it is denoised, and the size of the result."""
    kwargs: dict[str, Any] = {"width": request.width, "height": request.height}
    if request.mode != "txt2img":
        kwargs["image"] = inputs.image
    if request.mode in STRENGTH_MODES:
        kwargs["strength"] = request.input.strength
    if request.mode == "inpaint":
        kwargs["mask_image"] = inputs.mask
    return kwargs


#: each pipeline class's call parameters, read once
_TAKES: dict[type[Any], frozenset[str]] = {}


def _parameters(pipeline: type[Any]) -> frozenset[str]:
    if pipeline not in _TAKES:
        _TAKES[pipeline] = frozenset(inspect.signature(pipeline.__call__).parameters)
    return _TAKES[pipeline]


def fitted(pipe: Any, kwargs: dict[str, Any]) -> dict[str, Any]:
    """``kwargs`` as ``pipe`` takes them: an argument it has no parameter for is left out
    when it asks for nothing (None) or is the size its image already has; any other stays,
    so that the pipeline refuses it (validation should have). A pipeline that picks its own
    size near ``max_area`` is held at the request's size instead."""
    takes = _parameters(type(pipe))
    out = {k: v for k, v in kwargs.items() if k in takes or (v is not None and k not in _SIZE)}
    width, height = out.get("width"), out.get("height")
    if "max_area" in takes and width and height:
        out.update(max_area=width * height, _auto_resize=False)
    return out
