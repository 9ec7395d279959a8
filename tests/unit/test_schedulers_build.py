"""Every sampler and schedule type A1111 clients can name builds a diffusers scheduler that
really follows it (the overrides are settings its class has, not ignored extras)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from sdworker.core import schedulers
from sdworker.gpu.derive import build_scheduler

pytestmark = pytest.mark.torch  # diffusers builds the schedulers

CONFIG = Path(__file__).resolve().parents[2] / "src/sdworker/builder/configs/sd1/scheduler"


def base_config() -> dict[str, Any]:
    config: dict[str, Any] = json.loads((CONFIG / "scheduler_config.json").read_text())
    return config


@pytest.mark.parametrize("sampler", schedulers.A1111_SAMPLERS)
def test_every_sampler_with_every_schedule_type_builds(sampler: str) -> None:
    for schedule in schedulers.A1111_SCHEDULERS:
        name = schedulers.normalise(sampler, schedule.lower().replace(" ", "_"))
        assert name is not None
        spec = schedulers.resolve(name)
        assert spec is not None, name
        scheduler = build_scheduler(spec, base_config(), noise_seed=1)
        for key, value in spec.overrides.items():
            assert scheduler.config[key] == value, (name, key)
        scheduler.set_timesteps(4)
        assert len(scheduler.timesteps) >= 4, name


def test_sgm_uniform_changes_the_timesteps() -> None:
    plain = build_scheduler(schedulers.resolve("Euler") or pytest.fail(), base_config())
    sgm = build_scheduler(schedulers.resolve("Euler SGM Uniform") or pytest.fail(), base_config())
    plain.set_timesteps(4)
    sgm.set_timesteps(4)
    assert plain.timesteps.tolist() != sgm.timesteps.tolist()
    assert sgm.timesteps[0] > plain.timesteps[0]
