"""Rules of the fields other workers send (RunPod's SD v1 endpoint, worker-sdxl) that reach
beyond one field: ``strength`` with an image or the refiner, ``lora_scale`` with ``lora``, and
the refiner fields (a model baked with a refiner, a step for each stage)."""

from __future__ import annotations

import math
from typing import Any

from sdworker.core.errors import Problem
from sdworker.core.spellings import Respelled

#: the fields that ask for the SDXL refiner
REFINER_FIELDS = ("refiner_inference_steps", "high_noise_frac")


def compat_problems(respelled: Respelled, model: tuple[str, bool] | None) -> list[Problem]:
    """Rules of the fields other workers send: ``strength`` (with an image or the refiner),
    ``lora_scale`` (with ``lora``) and the refiner fields (a model baked with a refiner)."""
    data, name = respelled.data, respelled.name
    problems: list[Problem] = []
    image = data.get("image")
    has_image = isinstance(image, str) and bool(image.strip())
    asked = [f for f in REFINER_FIELDS if data.get(f) is not None]
    if "strength" in data and not has_image and not asked:
        if name("strength") == "prompt_strength":
            # the SD v1 endpoint took (and ignored) prompt_strength without init_image
            del data["strength"]
        else:
            problems.append(
                Problem(
                    name("strength"), "only applies with image or the refiner", data["strength"]
                )
            )
    if data.get("lora_scale") is not None and data.get("lora") is None:
        problems.append(
            Problem("lora_scale", "needs lora (the LoRA it scales)", data["lora_scale"])
        )
    if not asked:
        return problems
    if model is not None and not model[1]:
        problems.append(
            Problem(
                asked[0],
                f"model {model[0]!r} has no refiner (bake it with --refiner)",
                data[asked[0]],
            )
        )
    problems.extend(_refiner_steps(data))
    if data.get("mask_image") is not None:
        problems.append(
            Problem(
                asked[0],
                f"the refiner does not inpaint (leave out {name('mask_image')})",
                data[asked[0]],
            )
        )
    return problems


#: the refiner's strength when it refines a finished image and the input gives none
#: (worker-sdxl's default)
REFINER_STRENGTH = 0.3


def _refiner_steps(data: dict[str, Any]) -> list[Problem]:
    """Each stage must take at least one step: a stage of no steps would fail on the GPU."""
    steps, refiner, frac = (
        data.get("num_inference_steps", 25),
        data.get("refiner_inference_steps"),
        data.get("high_noise_frac"),
    )
    if not isinstance(steps, int) or not isinstance(refiner, int | float | None):
        return []
    refiner_steps = steps if refiner is None else refiner
    if isinstance(frac, int | float) and 0 < frac < 1:
        if steps * frac < 1:
            return [Problem("high_noise_frac", f"leaves the base no step of {steps}", frac)]
        if refiner_steps * (1 - frac) < 1:
            rule = f"leaves the refiner no step of {refiner_steps}"
            return [Problem("high_noise_frac", rule, frac)]
        return []
    strength = data.get("strength", REFINER_STRENGTH)
    if data.get("image") is not None or not isinstance(strength, int | float):
        strength = REFINER_STRENGTH
    if frac is None and 0 < strength <= 1 and int(refiner_steps * strength) < 1:
        need = math.ceil(1 / strength)
        return [
            Problem(
                "refiner_inference_steps",
                f"with strength {strength} the refiner takes no step; give at least {need}",
                refiner_steps,
            )
        ]
    return []
