"""Per-request pipeline objects: a pipeline sharing a loaded model's modules, and a fresh
scheduler, so per-call state never crosses requests."""

from __future__ import annotations

from typing import Any

import diffusers

from sdworker.core.schedulers import DIFFUSERS_SCHEDULERS, SchedulerSpec

#: every scheduler class a request may name, looked up once when this module is imported:
#: diffusers resolves its attributes lazily, and that lookup is not safe while another thread
#: (the preload) imports through it
_CLASSES: dict[str, Any] = {name: getattr(diffusers, name) for name in DIFFUSERS_SCHEDULERS}


def derive(cls: Any, base: Any, **components: Any) -> Any:
    """A pipeline of class ``cls`` sharing ``base``'s modules (``from_pipe``), with
    ``components`` (a scheduler, say) replaced and its progress bar off.

    ``from_pipe`` casts the shared modules to its dtype argument, float32 when none is given:
    passing the base's own keeps a half-precision model in half precision."""
    pipe = cls.from_pipe(base, dtype=base.dtype, **components)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def build_scheduler(
    spec: SchedulerSpec, base_config: dict[str, Any], *, noise_seed: int | None = None
) -> Any:
    """A fresh scheduler of ``spec``'s class from a model's scheduler config."""
    cls = _CLASSES.get(spec.class_name) or getattr(diffusers, spec.class_name)
    overrides = dict(spec.overrides)
    if spec.uses_seeded_noise_sampler and noise_seed is not None:
        overrides["noise_sampler_seed"] = noise_seed
    return cls.from_config(base_config, **overrides)
