"""The rules of SDXL's refiner fields (worker-sdxl's): a model baked with a refiner, a step
for each stage, and no inpainting."""

from __future__ import annotations

import math

from sdworker.core.errors import Problem
from sdworker.core.input.context import Draft

#: the fields that ask for the SDXL refiner
REFINER_FIELDS = ("refiner_inference_steps", "high_noise_frac")


def refiner(draft: Draft) -> list[Problem]:
    """The refiner asked of a model without one, with no steps, or to inpaint."""
    asked = [f for f in REFINER_FIELDS if getattr(draft.input, f) is not None]
    family = draft.family
    if not asked or (family is not None and not family.applies(asked[0])):
        return []  # nothing asked, or refused for the family
    first = asked[0]
    problems: list[Problem] = []
    facts = draft.model
    if facts is not None and not facts.has_refiner:
        problems.append(
            Problem(
                first,
                f"model {facts.name!r} has no refiner (bake it with --refiner)",
                getattr(draft.input, first),
            )
        )
    problems.extend(_steps(draft))
    if draft.input.mask_image is not None:
        problems.append(
            Problem(
                first,
                f"the refiner does not inpaint (leave out {draft.name('mask_image')})",
                getattr(draft.input, first),
            )
        )
    return problems


def _steps(draft: Draft) -> list[Problem]:
    """Each stage must take at least one step: a stage of no steps would fail on the GPU."""
    given = draft.input
    steps, frac = given.num_inference_steps, given.high_noise_frac
    refiner_steps = given.refiner_inference_steps or steps
    if frac is not None:
        if steps * frac < 1:
            return [Problem("high_noise_frac", f"leaves the base no step of {steps}", frac)]
        if refiner_steps * (1 - frac) < 1:
            rule = f"leaves the refiner no step of {refiner_steps}"
            return [Problem("high_noise_frac", rule, frac)]
        return []
    strength = given.refiner_strength
    if int(refiner_steps * strength) >= 1:
        return []
    need = math.ceil(1 / strength)
    return [
        Problem(
            "refiner_inference_steps",
            f"with strength {strength} the refiner takes no step; give at least {need}",
            refiner_steps,
        )
    ]
