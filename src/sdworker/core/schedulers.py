"""Scheduler names: diffusers class names, AUTOMATIC1111 sampler names and the names RunPod's
SD workers take, resolved to a spec.

A :class:`SchedulerSpec` is a diffusers class name plus config overrides; ``build_scheduler`` turns it
into a fresh scheduler from a model's own scheduler config, so a request never changes the
scheduler another request sees. This module imports neither torch nor diffusers: the GPU side
builds the scheduler (:func:`sdworker.gpu.derive.build_scheduler`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from sdworker.families import scheduler_classes

#: every diffusers scheduler class some family runs on (each family says which run it)
DIFFUSERS_SCHEDULERS: tuple[str, ...] = scheduler_classes()

_SDE = {"algorithm_type": "sde-dpmsolver++"}

#: AUTOMATIC1111 sampler name -> (diffusers class, overrides), in A1111's listing order
_A1111_BASE: dict[str, tuple[str, dict[str, Any]]] = {
    "DPM++ 2M": ("DPMSolverMultistepScheduler", {}),
    "DPM++ SDE": ("DPMSolverSDEScheduler", {}),
    "DPM++ 2M SDE": ("DPMSolverMultistepScheduler", _SDE),
    "DPM++ 2M SDE Heun": ("DPMSolverMultistepScheduler", {**_SDE, "solver_type": "heun"}),
    "DPM++ 2S a": ("DPMSolverSinglestepScheduler", {}),
    "DPM++ 3M SDE": ("DPMSolverMultistepScheduler", {**_SDE, "solver_order": 3}),
    "Euler a": ("EulerAncestralDiscreteScheduler", {}),
    "Euler": ("EulerDiscreteScheduler", {}),
    "LMS": ("LMSDiscreteScheduler", {}),
    "Heun": ("HeunDiscreteScheduler", {}),
    "DPM2": ("KDPM2DiscreteScheduler", {}),
    "DPM2 a": ("KDPM2AncestralDiscreteScheduler", {}),
    "DDIM": ("DDIMScheduler", {}),
    "DDPM": ("DDPMScheduler", {}),
    "PLMS": ("PNDMScheduler", {}),
    "UniPC": ("UniPCMultistepScheduler", {}),
    "DEIS": ("DEISMultistepScheduler", {}),
    "LCM": ("LCMScheduler", {}),
}

#: A1111 schedule types ("scheduler" field since 1.9) -> overrides for sigma-based samplers
_A1111_SCHEDULE_TYPES: dict[str, dict[str, Any]] = {
    "Automatic": {},
    "Uniform": {},
    "Karras": {"use_karras_sigmas": True},
    "Exponential": {"use_exponential_sigmas": True},
    "Beta": {"use_beta_sigmas": True},
    "SGM Uniform": {"timestep_spacing": "trailing"},
}

#: samplers whose diffusers class accepts a sigma schedule (Karras/Exponential/Beta variants)
_SIGMA_CLASSES = {
    "DPMSolverMultistepScheduler",
    "DPMSolverSDEScheduler",
    "DPMSolverSinglestepScheduler",
    "EulerDiscreteScheduler",
    "LMSDiscreteScheduler",
    "HeunDiscreteScheduler",
    "KDPM2DiscreteScheduler",
    "KDPM2AncestralDiscreteScheduler",
    "UniPCMultistepScheduler",
    "DEISMultistepScheduler",
}

#: the sigma classes whose diffusers config has ``timestep_spacing`` (SGM Uniform's setting)
_SPACED_CLASSES = _SIGMA_CLASSES - {"DPMSolverSinglestepScheduler"}

A1111_SCHEDULERS: list[str] = list(_A1111_SCHEDULE_TYPES)


def schedule_type(name: str) -> str | None:
    """The schedule type called ``name`` in A1111's label (``SGM Uniform``) or its listed name
    (``sgm_uniform``), in any case; None when unknown."""
    key = " ".join(name.replace("_", " ").split()).casefold()
    return next((s for s in _A1111_SCHEDULE_TYPES if s.casefold() == key), None)


def _applies(cls: str, schedule: str) -> bool:
    """Whether ``schedule`` changes what class ``cls`` does."""
    if schedule == "SGM Uniform":
        return cls in _SPACED_CLASSES
    return cls in _SIGMA_CLASSES and bool(_A1111_SCHEDULE_TYPES[schedule])


#: the scheduler names of RunPod's "Stable Diffusion v1" endpoint and of worker-sdxl -> the
#: diffusers class each stands for (ONE table; docs/formats/runpod-workers.md lists it). ``IPNDM``: diffusers'
#: IPNDMScheduler counts time from 1 to 0 (a continuous schedule), while SD UNets are trained
#: on discrete steps 0-999, so it cannot drive them; it maps to PNDMScheduler, whose PLMS is
#: the same linear multistep family and runs every SD model.
RUNPOD_SCHEDULERS: dict[str, str] = {
    # RunPod SD v1 endpoint
    "DDIM": "DDIMScheduler",
    "DDPM": "DDPMScheduler",
    "DPM-M": "DPMSolverMultistepScheduler",
    "DPM-S": "DPMSolverSinglestepScheduler",
    "EULER-A": "EulerAncestralDiscreteScheduler",
    "EULER-D": "EulerDiscreteScheduler",
    "HEUN": "HeunDiscreteScheduler",
    "IPNDM": "PNDMScheduler",
    "KDPM2-A": "KDPM2AncestralDiscreteScheduler",
    "KDPM2-D": "KDPM2DiscreteScheduler",
    "PNDM": "PNDMScheduler",
    "K-LMS": "LMSDiscreteScheduler",
    "KLMS": "LMSDiscreteScheduler",
    # worker-sdxl
    "K_EULER": "EulerDiscreteScheduler",
    "K_EULER_ANCESTRAL": "EulerAncestralDiscreteScheduler",
    "DPMSolverMultistep": "DPMSolverMultistepScheduler",
    "DPMSolverSinglestep": "DPMSolverSinglestepScheduler",
}


#: how Forge names the flow-match schedulers in an infotext: (sampler, schedule type); the
#: shifted linear sigmas of diffusers' flow-match schedulers are Forge's "Simple" schedule
FLOW_MATCH_LABELS: dict[str, tuple[str, str]] = {
    "FlowMatchEulerDiscreteScheduler": ("Euler", "Simple"),
    "FlowMatchHeunDiscreteScheduler": ("Heun", "Simple"),
}


def infotext_names(label: str) -> tuple[str, str | None]:
    """The sampler and schedule type an infotext names for the scheduler called ``label``
    (a flow-match class as Forge names it; any other name as it is)."""
    return FLOW_MATCH_LABELS.get(label, (label, None))


@dataclass(frozen=True)
class SchedulerSpec:
    """A diffusers scheduler class and the config values that make a named sampler."""

    class_name: str
    overrides: dict[str, Any] = field(default_factory=dict)
    label: str = ""

    @property
    def uses_seeded_noise_sampler(self) -> bool:
        return self.class_name == "DPMSolverSDEScheduler"


def _build_table() -> dict[str, SchedulerSpec]:
    table: dict[str, SchedulerSpec] = {}
    for sampler, (cls, overrides) in _A1111_BASE.items():
        table[sampler] = SchedulerSpec(cls, dict(overrides), sampler)
        for schedule, extra in _A1111_SCHEDULE_TYPES.items():
            if _applies(cls, schedule):
                name = f"{sampler} {schedule}"
                table[name] = SchedulerSpec(cls, {**overrides, **extra}, name)
    for cls in DIFFUSERS_SCHEDULERS:
        table[cls] = SchedulerSpec(cls, {}, cls)
    for name, cls in RUNPOD_SCHEDULERS.items():
        # DDIM, DDPM and HEUN are A1111 names too, for the same class: keep A1111's spelling
        if name.casefold() not in {known.casefold() for known in table}:
            table[name] = SchedulerSpec(cls, {}, name)
    return table


_TABLE = _build_table()
_BY_KEY = {name.casefold(): spec for name, spec in _TABLE.items()}

#: every A1111 sampler name we accept in ``sampler_name`` (the list ``/sdapi/v1/samplers`` shows)
A1111_SAMPLERS: list[str] = list(_A1111_BASE)


def valid_names() -> list[str]:
    """Every name :func:`resolve` accepts (case-insensitive)."""
    return list(_TABLE)


def resolve(name: str) -> SchedulerSpec | None:
    """The spec for a diffusers class name, A1111 sampler name or RunPod worker scheduler name,
    or None when unknown."""
    return _BY_KEY.get(" ".join(name.split()).casefold())


def normalise(sampler_name: str | None, scheduler: str | None) -> str | None:
    """Combine A1111's ``sampler_name`` and ``scheduler`` (schedule type) into one native name.

    ``("DPM++ 2M", "Karras")`` → ``"DPM++ 2M Karras"``; a schedule type that does not apply to the
    sampler (or "Automatic") is dropped, as A1111 itself ignores it.
    """
    if not sampler_name:
        return None
    spec = resolve(sampler_name)
    if spec is None or not scheduler:
        return sampler_name
    schedule = schedule_type(scheduler)
    combined = f"{spec.label} {schedule}" if schedule else spec.label
    return combined if resolve(combined) is not None else spec.label
