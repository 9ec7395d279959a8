"""The rules of the input's resizing objects: ``hires`` (a txt2img pass, upscaled, then an
img2img pass) and ``upscale`` (an upscale-only job). Their sizes are :mod:`sdworker.core.resize`'s."""

from __future__ import annotations

from sdworker.core.errors import Problem
from sdworker.core.input.context import Draft
from sdworker.core.input.rules import scheduler_name
from sdworker.core.resize import UPSCALE_FIELDS, HiresInput, UpscaleInput, hires_size
from sdworker.core.settings import MAX_SIDE, MIN_SIDE


def size_field(prefix: str, obj: HiresInput | UpscaleInput) -> str:
    """The field a too-large result names: the size given, else the scale."""
    for side in ("width", "height"):
        if getattr(obj, side) is not None:
            return f"{prefix}.{side}"
    return f"{prefix}.scale"


def budget_problem(
    prefix: str, obj: HiresInput | UpscaleInput, size: tuple[int, int], max_pixels: int
) -> Problem | None:
    """The result's pixel budget (and, for ``hires``, the side limit) broken, or None."""
    w, h = size
    name = size_field(prefix, obj)
    value = getattr(obj, name.rsplit(".", 1)[1])
    if w * h > max_pixels:
        return Problem(
            name,
            f"the {prefix} size must be at most {max_pixels} pixels (SDWORKER_MAX_PIXELS); "
            f"{w}x{h} is {w * h}",
            value,
        )
    if prefix == "hires" and not MIN_SIDE <= min(w, h) <= max(w, h) <= MAX_SIDE:
        return Problem(
            name, f"the hires size must be {MIN_SIDE} to {MAX_SIDE} a side; {w}x{h} is not", value
        )
    return None


def hires(draft: Draft) -> list[Problem]:
    """What ``hires`` cannot do with the rest of the input: run on an image, beside the
    refiner, an unknown scheduler, no steps, a size past the budget."""
    given = draft.input.hires
    family = draft.family
    if given is None or draft.input.upscale is not None:
        return []  # beside upscale, hires is refused on its own
    if family is not None and not family.applies("hires"):
        return []  # refused for the family
    problems: list[Problem] = []
    if draft.input.image is not None:
        problems.append(
            Problem("hires", "only applies to txt2img (leave out image)", has_value=False)
        )
    if draft.input.refined:
        problems.append(Problem("hires", "does not combine with the refiner", has_value=False))
    problems += scheduler_name("hires.scheduler", given.scheduler)
    problems += _hires_steps(draft, given)
    first = _first_pass(draft)
    if first is not None and draft.input.image is None:
        size = hires_size(first, given.width, given.height, given.scale)
        found = budget_problem("hires", given, size, draft.context.limits.max_pixels)
        if found is not None:
            problems.append(found)
    return problems


def _first_pass(draft: Draft) -> tuple[int, int] | None:
    width, height = draft.input.width, draft.input.height
    if draft.model is not None:
        width = width if width is not None else draft.model.native_width
        height = height if height is not None else draft.model.native_height
    return (width, height) if width is not None and height is not None else None


def _hires_steps(draft: Draft, given: HiresInput) -> list[Problem]:
    """The second pass runs the last strength x steps steps: none at all is no image."""
    steps = given.steps if given.steps is not None else draft.input.num_inference_steps
    if int(steps * given.strength) >= 1:
        return []
    return [
        Problem(
            "hires.strength",
            f"hires.strength x hires.steps must be at least 1 (the steps the second pass "
            f"runs; hires.steps defaults to num_inference_steps); {given.strength} x {steps} "
            "is none",
            given.strength,
        )
    ]


def upscale(draft: Draft) -> list[Problem]:
    """An upscale job takes an ``image`` and none of the generation fields."""
    if draft.input.upscale is None:
        return []
    problems = [
        Problem(name, "does not apply to an upscale job (leave it out with upscale)", value)
        for name in sorted(draft.given, key=list(type(draft.input).model_fields).index)
        if name not in UPSCALE_FIELDS and (value := getattr(draft.input, name)) is not None
    ]
    if draft.input.image is None:
        problems.append(
            Problem("image", "is required with upscale (the image to upscale)", has_value=False)
        )
    return problems
