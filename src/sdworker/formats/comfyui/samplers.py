"""ComfyUI's sampler and scheduler names → the native ``scheduler``, as the model's family
takes it.

A ComfyUI sampler (``euler``, ``dpmpp_2m``...) names a k-diffusion solver; its scheduler
(``karras``, ``sgm_uniform``...) the spacing of its noise levels. Each sampler has its
candidates among the native names (:mod:`sdworker.core.schedulers`: A1111's names for the
noise-predicting UNets, the flow-match classes for SD 3.x and FLUX.1), and the family says
which of them run its models; the schedule becomes A1111's schedule type on the sampler it
applies to (A1111 drops a type that does not apply to its sampler, and so does this).
"""

from __future__ import annotations

from dataclasses import dataclass

from sdworker.core import schedulers
from sdworker.families import Family

#: every sampler ComfyUI 0.3.x lists (``KSampler.SAMPLERS``), in its order
COMFY_SAMPLERS: tuple[str, ...] = (
    "euler", "euler_cfg_pp", "euler_ancestral", "euler_ancestral_cfg_pp", "heun", "heunpp2",
    "dpm_2", "dpm_2_ancestral", "lms", "dpm_fast", "dpm_adaptive", "dpmpp_2s_ancestral",
    "dpmpp_2s_ancestral_cfg_pp", "dpmpp_sde", "dpmpp_sde_gpu", "dpmpp_2m", "dpmpp_2m_cfg_pp",
    "dpmpp_2m_sde", "dpmpp_2m_sde_gpu", "dpmpp_2m_sde_heun", "dpmpp_2m_sde_heun_gpu",
    "dpmpp_3m_sde", "dpmpp_3m_sde_gpu", "ddpm", "lcm", "ipndm", "ipndm_v", "deis",
    "res_multistep", "res_multistep_cfg_pp", "res_multistep_ancestral",
    "res_multistep_ancestral_cfg_pp", "gradient_estimation", "gradient_estimation_cfg_pp",
    "er_sde", "seeds_2", "seeds_3", "sa_solver", "sa_solver_pece", "ddim", "uni_pc", "uni_pc_bh2",
)  # fmt: skip

#: every scheduler ComfyUI lists (``KSampler.SCHEDULERS``)
COMFY_SCHEDULERS: tuple[str, ...] = (
    "simple", "sgm_uniform", "karras", "exponential", "ddim_uniform", "beta", "normal",
    "linear_quadratic", "kl_optimal",
)  # fmt: skip

_FLOW_EULER = "FlowMatchEulerDiscreteScheduler"
_FLOW_HEUN = "FlowMatchHeunDiscreteScheduler"

#: ComfyUI sampler -> the native names that stand for it, most faithful first. ``ddim`` is
#: Euler inside ComfyUI; ``uni_pc`` (bh1) and ``uni_pc_bh2`` are both diffusers' UniPC (bh2);
#: the ``_gpu`` variants differ only in where their noise is drawn.
SAMPLER_NAMES: dict[str, tuple[str, ...]] = {
    "euler": ("Euler", _FLOW_EULER),
    "euler_ancestral": ("Euler a",),
    "heun": ("Heun", _FLOW_HEUN),
    "dpm_2": ("DPM2",),
    "dpm_2_ancestral": ("DPM2 a",),
    "lms": ("LMS",),
    "dpmpp_2s_ancestral": ("DPM++ 2S a",),
    "dpmpp_sde": ("DPM++ SDE",),
    "dpmpp_sde_gpu": ("DPM++ SDE",),
    "dpmpp_2m": ("DPM++ 2M",),
    "dpmpp_2m_sde": ("DPM++ 2M SDE",),
    "dpmpp_2m_sde_gpu": ("DPM++ 2M SDE",),
    "dpmpp_2m_sde_heun": ("DPM++ 2M SDE Heun",),
    "dpmpp_2m_sde_heun_gpu": ("DPM++ 2M SDE Heun",),
    "dpmpp_3m_sde": ("DPM++ 3M SDE",),
    "dpmpp_3m_sde_gpu": ("DPM++ 3M SDE",),
    "ddpm": ("DDPM",),
    "lcm": ("LCM",),
    "ipndm": ("IPNDM",),
    "ipndm_v": ("IPNDM",),
    "deis": ("DEIS",),
    "ddim": ("DDIM", _FLOW_EULER),
    "uni_pc": ("UniPC",),
    "uni_pc_bh2": ("UniPC",),
}

#: ComfyUI scheduler -> A1111's schedule type; None: the sampler's own spacing (the model's
#: scheduler config). ``simple`` takes every (N/steps)-th noise level from the top, which is
#: diffusers' trailing spacing ("SGM Uniform") on a UNet and the plain shifted schedule of the
#: flow-match classes.
SCHEDULE_TYPES: dict[str, str | None] = {
    "normal": None,
    "ddim_uniform": None,
    "simple": "SGM Uniform",
    "sgm_uniform": "SGM Uniform",
    "karras": "Karras",
    "exponential": "Exponential",
    "beta": "Beta",
}


@dataclass(frozen=True)
class Choice:
    """A sampler and scheduler read: the native name, or why there is none."""

    name: str | None = None
    #: which input the refusal is about (``sampler_name`` or ``scheduler``), and its rule
    field: str = ""
    rule: str = ""


def native_scheduler(sampler: str, scheduler: str, family: Family | None) -> Choice:
    """The native scheduler name for ComfyUI's ``sampler`` and ``scheduler`` on a model of
    ``family`` (None: unknown, the most faithful candidate is taken)."""
    candidates = SAMPLER_NAMES.get(sampler)
    if candidates is None:
        rule = "has no equivalent here (sdworker runs diffusers' schedulers; " + _supported() + ")"
        return Choice(field="sampler_name", rule=rule)
    found = [c for c in candidates if family is None or _runs(c, family)]
    if not found:
        assert family is not None  # every sampler has a candidate when no family filters
        takes = [s for s, names in SAMPLER_NAMES.items() if any(_runs(n, family) for n in names)]
        rule = f"does not run {family.label} models here (those that do: {', '.join(takes)})"
        return Choice(field="sampler_name", rule=rule)
    if scheduler not in SCHEDULE_TYPES:
        rule = f"has no equivalent here (supported: {', '.join(SCHEDULE_TYPES)})"
        return Choice(field="scheduler", rule=rule)
    base = found[0]
    schedule = SCHEDULE_TYPES[scheduler]
    if schedule is None:
        return Choice(base)
    spec = schedulers.resolve(base)
    label = spec.label if spec is not None else base
    combined = f"{label} {schedule}"
    return Choice(combined if schedulers.resolve(combined) is not None else base)


def _runs(name: str, family: Family) -> bool:
    spec = schedulers.resolve(name)
    return spec is not None and family.takes_scheduler(spec.class_name)


def _supported() -> str:
    return "supported: " + ", ".join(SAMPLER_NAMES)
