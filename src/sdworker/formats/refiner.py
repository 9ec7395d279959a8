"""Replicate's SDXL refiner names (cog-sdxl's ``refine``, ``high_noise_frac``, ``refine_steps``),
which DeepInfra's ``TextToImageRequest`` took over: the native refiner fields they stand for."""

from __future__ import annotations

from typing import Any

#: ``refine`` values: no refiner, the ensemble of experts, or a refining pass after the base
REFINE = ("no_refiner", "expert_ensemble_refiner", "base_image_refiner")
#: the ensemble's split when ``high_noise_frac`` is not given (cog-sdxl's default)
DEFAULT_HIGH_NOISE_FRAC = 0.8
#: the refining pass's steps when neither ``refine_steps`` nor ``num_inference_steps`` is given
DEFAULT_REFINE_STEPS = 25


def refiner_fields(
    refine: str | None,
    high_noise_frac: float | None,
    refine_steps: int | None,
    num_inference_steps: int | None,
) -> dict[str, Any]:
    """The native ``high_noise_frac`` / ``refiner_inference_steps`` of a ``refine`` choice
    (nothing for ``no_refiner`` or none: ``high_noise_frac`` and ``refine_steps`` alone then
    have no effect, as in cog-sdxl)."""
    if refine == "expert_ensemble_refiner":
        native: dict[str, Any] = {"high_noise_frac": high_noise_frac or DEFAULT_HIGH_NOISE_FRAC}
        if refine_steps:
            native["refiner_inference_steps"] = refine_steps
        return native
    if refine == "base_image_refiner":
        steps = refine_steps or num_inference_steps or DEFAULT_REFINE_STEPS
        return {"refiner_inference_steps": steps}
    return {}
