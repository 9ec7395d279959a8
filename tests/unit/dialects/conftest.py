"""Fakes shared by the dialect unit tests: a sampler catalog, manifests, a model registry."""

from __future__ import annotations

from pathlib import Path

import pytest

from sdworker.dialects.a1111 import SamplerCatalog
from sdworker.errors import InvalidInput
from sdworker.manifest import Manifest
from sdworker.models import ModelRegistry
from sdworker.settings import Settings

SAMPLERS = ["DPM++ 2M", "DPM++ SDE", "Euler a", "Euler", "LMS", "Heun", "DDIM", "UniPC"]
SCHEDULERS = ["Automatic", "Uniform", "Karras", "Exponential"]


def fake_normalise(sampler: str, scheduler: str | None) -> str:
    """The lead's rule in miniature: a sampler, optionally with a schedule type folded in."""
    lowered = {s.lower(): s for s in SAMPLERS}
    name = sampler.strip()
    for sched in SCHEDULERS[1:]:
        if name.lower().endswith(" " + sched.lower()):
            base = name[: -len(sched) - 1]
            if base.lower() in lowered:
                return f"{lowered[base.lower()]} {sched}"
    if name.lower() not in lowered:
        raise InvalidInput.one("scheduler", "unknown", sampler)
    if scheduler is None or scheduler.lower() == "automatic":
        return lowered[name.lower()]
    match = [s for s in SCHEDULERS if s.lower() == scheduler.lower()]
    if not match:
        raise InvalidInput.one("scheduler", "unknown", scheduler)
    return f"{lowered[name.lower()]} {match[0]}"


@pytest.fixture
def catalog() -> SamplerCatalog:
    return SamplerCatalog(SAMPLERS, SCHEDULERS, fake_normalise)


def make_manifest(name: str, sha: str = "", source: str = "") -> Manifest:
    return Manifest(
        name=name,
        family="sd1",
        native_width=64,
        native_height=64,
        default_scheduler="PNDMScheduler",
        has_safety_checker=False,
        source=source,
        sha256=sha,
    )


@pytest.fixture
def manifests() -> list[Manifest]:
    return [
        make_manifest("tiny", "ab" * 32, "sdworker/tiny"),
        make_manifest(
            "v1-5-pruned-emaonly", "6ce0161689" + "0" * 54, "runwayml/stable-diffusion-v1-5"
        ),
    ]


@pytest.fixture
def registry(tmp_path: Path, manifests: list[Manifest]) -> ModelRegistry:
    for manifest in manifests:
        folder = tmp_path / manifest.name
        folder.mkdir()
        manifest.write(folder)
    return ModelRegistry(Settings(models_dir=tmp_path, default_model="tiny"))
