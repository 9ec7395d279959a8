"""The rules a model's family sets: the fields that apply to it, its size rule, the schedulers
that run it, the modes it offers, its prompt encoder's window and its guidance.

Each rule asks the family (:class:`sdworker.families.Family`); none tests a family's name.
"""

from __future__ import annotations

from pydantic import BaseModel

from sdworker.core import schedulers
from sdworker.core.errors import Problem
from sdworker.core.input.context import Draft, ModelFacts
from sdworker.core.rules import SAMPLERS_ROUTE
from sdworker.families import Family

#: a family that takes more schedulers than this is answered with where they are listed
_LISTED = 4


def _model(draft: Draft) -> ModelFacts | None:
    """The model a generation runs on (None: unknown, or an upscale job, refused elsewhere)."""
    return None if draft.input.upscale is not None else draft.model


def described(facts: ModelFacts) -> str:
    """How a rule names the model's family: ``FLUX.1 models (model 'tiny-flux')`` (the request
    formats word their own family rules with it too)."""
    return f"{facts.family.label} models (model {facts.name!r})"


def fields(draft: Draft) -> list[Problem]:
    """A field that does not apply to the model's family is refused, naming the family
    (``false`` and ``null`` ask for nothing, and pass)."""
    facts = _model(draft)
    if facts is None:
        return []
    order = list(type(draft.input).model_fields)
    problems = []
    for name in sorted(draft.given, key=order.index):
        value = getattr(draft.input, name)
        if facts.family.applies(name) or value is None or value is False:
            continue
        shown = not isinstance(value, BaseModel)
        problems.append(
            Problem(name, f"does not apply to {described(facts)}", value if shown else None, shown)
        )
    return problems


def size(draft: Draft) -> list[Problem]:
    """Sides a multiple of what the family's latents need (16 for SD 3.x and FLUX.1)."""
    facts = _model(draft)
    if facts is None:
        return []
    step = facts.family.size.multiple
    return [
        Problem(side, f"must be a multiple of {step} for {described(facts)}", value)
        for side in ("width", "height")
        if (value := getattr(draft.input, side)) is not None and value % step
    ]


def scheduler(draft: Draft) -> list[Problem]:
    """A known scheduler that does not run the family (a flow-match model takes flow-match
    schedulers only) is refused by name, with the ones that do."""
    facts, name = _model(draft), draft.input.scheduler
    spec = schedulers.resolve(name) if name is not None else None
    if facts is None or spec is None or facts.family.takes_scheduler(spec.class_name):
        return []
    return [Problem("scheduler", _wrong_scheduler(spec.class_name, facts), name)]


def _wrong_scheduler(class_name: str, facts: ModelFacts) -> str:
    takes = facts.family.schedulers
    valid = (
        ", ".join(takes)
        if len(takes) <= _LISTED
        else f"the samplers {SAMPLERS_ROUTE} lists for them"
    )
    return f"{class_name} does not run {described(facts)}; they take {valid}"


#: what a mode a family does not offer asks for, as the field to change and the rule
_UNOFFERED = {
    "txt2img": ("image", "is required: {of} make no image from a prompt alone"),
    "img2img": ("mask_image", "is required: {of} take an image only with a mask to repaint"),
    "inpaint": ("mask_image", "does not apply to {of}"),
    "edit": ("image", "does not apply to {of}"),
}


def mode(draft: Draft) -> list[Problem]:
    """The request's mode must be one the family has a pipeline for."""
    facts = _model(draft)
    if facts is None or not _complete(draft):
        return []
    asked = draft.mode
    if asked == "upscale" or facts.family.pipelines.of(asked) is not None:
        return []
    field, rule = _UNOFFERED[asked]
    return [Problem(field, rule.format(of=described(facts)), has_value=False)]


def _complete(draft: Draft) -> bool:
    """Whether the image fields say which mode is meant (a mask needs an image first)."""
    return draft.input.mask_image is None or draft.has_image


def strength(draft: Draft) -> list[Problem]:
    """An edit reads its image as a reference: it is not denoised from ``strength``."""
    facts = _model(draft)
    if facts is None or draft.mode != "edit" or "strength" not in draft.given:
        return []
    rule = f"does not apply to an edit ({described(facts)} read the image as a reference)"
    return [Problem("strength", rule, draft.input.strength)]


def sequence_length(draft: Draft) -> list[Problem]:
    """``max_sequence_length`` within the family's T5 window."""
    facts, length = _model(draft), draft.input.max_sequence_length
    window = facts.family.prompts.max_sequence_length if facts else None
    if facts is None or length is None or window is None or length <= window:
        return []
    return [
        Problem("max_sequence_length", f"must be at most {window} for {described(facts)}", length)
    ]


def guidance(draft: Draft) -> list[Problem]:
    """A distilled model's guidance reads no negative prompt: it needs true CFG
    (``true_cfg_scale`` above 1), and true CFG needs a negative prompt to guide away from."""
    facts = _model(draft)
    if facts is None or facts.family.guidance != "distilled":
        return []
    negative = draft.input.negative_prompt
    true_cfg = draft.input.true_cfg_scale or 1.0  # 1: off, as it is by default
    takes_true_cfg = facts.family.applies("true_cfg_scale")
    if negative and not takes_true_cfg:
        return [Problem("negative_prompt", f"does not apply to {described(facts)}", negative)]
    if negative and true_cfg <= 1:
        return [Problem("negative_prompt", _needs_true_cfg(facts.family), negative)]
    if not negative and takes_true_cfg and true_cfg > 1:
        rule = "needs negative_prompt (true CFG guides away from it)"
        return [Problem("true_cfg_scale", rule, true_cfg)]
    return []


def _needs_true_cfg(family: Family) -> str:
    return (
        f"{family.label} models read a negative prompt only with true CFG: give "
        "true_cfg_scale above 1 (4 is typical; each step then runs the model twice)"
    )
