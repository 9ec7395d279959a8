"""The rules every native input keeps, whatever its model's family: a prompt, a known model,
an image where one is needed, the pixel budget, seeds that can be replayed, a known scheduler
name, and the fields that only apply beside another (the LoRA entries' rules are
:mod:`.loras`').

Each rule reads a :class:`~sdworker.core.input.context.Draft` and returns the problems it
finds (native field names; :func:`sdworker.core.input.parse_input` renames them as the client
spelled them and keeps one problem per field).
"""

from __future__ import annotations

from sdworker.core import schedulers
from sdworker.core.aliases import how_to_alias
from sdworker.core.errors import Problem
from sdworker.core.input.context import Draft
from sdworker.core.rules import SAMPLERS_ROUTE, unknown_name
from sdworker.core.schema import SEED_LIMIT, STRENGTH_MODES


def prompt(draft: Draft) -> list[Problem]:
    """A prompt is required (but by an upscale job), and not blank."""
    text = draft.input.prompt
    if "prompt" in draft.given and not text.strip():
        return [Problem("prompt", "must not be empty", text)]
    if "prompt" not in draft.given and draft.input.upscale is None:
        return [Problem("prompt", "is required", has_value=False)]
    return []


def prompt_lengths(draft: Draft) -> list[Problem]:
    """Neither prompt may be longer than ``SDWORKER_MAX_PROMPT_CHARS``."""
    limit = draft.context.limits.max_prompt_chars
    return [
        Problem(
            name,
            f"must be at most {limit} characters (SDWORKER_MAX_PROMPT_CHARS); "
            f"this one has {len(text)}",
            has_value=False,
        )
        for name, text in (
            ("prompt", draft.input.prompt),
            ("negative_prompt", draft.input.negative_prompt),
        )
        if len(text) > limit
    ]


def model(draft: Draft) -> list[Problem]:
    """The model named (or the default) must be baked."""
    if draft.model is not None:
        return []
    context = draft.context
    name = draft.input.model or context.default_model
    if name is None:
        return [Problem("model", "no model given and no default model is baked", None)]
    known = sorted(context.models)
    hint = how_to_alias(name, known)
    return [
        Problem("model", f"unknown model; baked models: {', '.join(known) or 'none'}; {hint}", name)
    ]


def image(draft: Draft) -> list[Problem]:
    """An image given must hold something; a mask needs an image to repaint."""
    problems = []
    given = draft.input.image
    if given is not None and not given.strip():
        problems.append(Problem("image", "must not be empty (leave it out for txt2img)", given))
    if draft.input.mask_image is not None and not draft.has_image:
        problems.append(Problem("mask_image", "needs image (inpainting repaints an image)", "..."))
    return problems


def strength_steps(draft: Draft) -> list[Problem]:
    """img2img runs the last strength x steps steps: none at all is no image."""
    strength, steps = draft.input.strength, draft.input.num_inference_steps
    if not draft.has_image or draft.mode not in STRENGTH_MODES or int(steps * strength):
        return []
    return [
        Problem(
            "strength",
            f"strength x num_inference_steps must be at least 1 (the steps img2img "
            f"runs); {strength} x {steps} is none",
            strength,
        )
    ]


def pixels(draft: Draft) -> list[Problem]:
    """width x height within ``SDWORKER_MAX_PIXELS`` (a txt2img request's default size is
    its model's native size; an image's own size is fitted to the budget instead)."""
    width, height = draft.input.width, draft.input.height
    if draft.model is not None and not draft.has_image:
        width = width if width is not None else draft.model.native_width
        height = height if height is not None else draft.model.native_height
    budget = draft.context.limits.max_pixels
    if width is None or height is None or width * height <= budget:
        return []
    return [
        Problem(
            "width",
            f"width x height must be at most {budget} pixels "
            f"(SDWORKER_MAX_PIXELS); {width}x{height} is {width * height}",
            width,
        )
    ]


def seeds(draft: Draft) -> list[Problem]:
    """Image i uses seed + i: every returned seed must be a valid seed to replay."""
    seed, count = draft.input.seed, draft.input.num_images
    if seed is None or seed + count - 1 < SEED_LIMIT:
        return []
    return [Problem("seed", f"seed + num_images - 1 must be less than {SEED_LIMIT}", seed)]


def scheduler(draft: Draft) -> list[Problem]:
    """The scheduler must be a name :mod:`sdworker.core.schedulers` knows."""
    return scheduler_name("scheduler", draft.input.scheduler)


def scheduler_name(field: str, name: str | None) -> list[Problem]:
    """``name`` unknown: the closest names, and where every name is listed."""
    if name is None or schedulers.resolve(name) is not None:
        return []
    message = unknown_name("scheduler", name, schedulers.valid_names(), SAMPLERS_ROUTE)
    return [Problem(field, message, name)]


def strength(draft: Draft) -> list[Problem]:
    """``strength`` says how far to denoise an image: without one (or the refiner's finished
    one) it means nothing, and is refused rather than ignored."""
    if "strength" not in draft.given or draft.has_image or draft.input.refined:
        return []
    if draft.name("strength") == "prompt_strength":
        return []  # the SD v1 endpoint took (and ignored) prompt_strength without init_image
    return [Problem("strength", "only applies with image or the refiner", draft.input.strength)]


def lora_scale(draft: Draft) -> list[Problem]:
    """``lora_scale`` (RunPod SD v1's) scales the LoRA it is given with."""
    scale = draft.input.lora_scale
    if scale is None or draft.input.lora is not None:
        return []
    return [Problem("lora_scale", "needs lora (the LoRA it scales)", scale)]


def safety_checker(draft: Draft) -> list[Problem]:
    """The checker can only be asked for on a model that ships one."""
    facts = draft.model
    if not draft.input.safety_checker or facts is None or facts.has_safety_checker:
        return []
    return [Problem("safety_checker", f"model {facts.name!r} ships no safety checker", True)]


def png_text(draft: Draft) -> list[Problem]:
    """Text chunks are a PNG's: another format has nowhere to write them."""
    text, fmt = draft.input.png_text, draft.input.output_format
    if not text or fmt == "png":
        return []
    rule = f"applies to PNG results only (output_format is {fmt})"
    return [Problem("png_text", rule, has_value=False)]
