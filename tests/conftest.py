"""Shared fixtures: the tiny models, baked once per test session into a temporary folder."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from sdworker.core.settings import Settings


def pytest_report_header() -> str:
    examples = os.environ.get("SDWORKER_FUZZ_EXAMPLES", "120")
    seed = os.environ.get("SDWORKER_FUZZ_SEED", "0")
    how = "derandomized (fixed)" if seed == "0" else f"seed {seed}"
    return f"fuzz suite: hypothesis {how}, {examples} examples per property"


@pytest.fixture(scope="session")
def models_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A models folder with ``tiny`` and ``tiny-safe`` (its checker flags every image)."""
    from sdworker.builder.tiny import bake_tiny

    root = tmp_path_factory.mktemp("models")
    bake_tiny(root, "tiny")
    bake_tiny(root, "tiny-safe", safety_checker=True)
    return root


#: the tiny models of the families beside SD: SD 3, FLUX.1 schnell, Kontext and Fill
FAMILY_MODELS = ("tiny-sd3", "tiny-flux", "tiny-flux-kontext", "tiny-flux-fill")


@pytest.fixture(scope="session")
def family_models_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A models folder with the tiny SD 3 and FLUX.1 models, FLUX.1 and SD 3 LoRAs in
    diffusers' layout (``flux-ink``, ``sd3-ink``) and an SD 1.x one (``sd-ink``), baked once
    per session."""
    from sdworker.builder.loras import bake_loras
    from sdworker.builder.tiny_flux import bake_tiny_flux
    from sdworker.builder.tiny_sd3 import bake_tiny_sd3
    from tests.loras import write_sd_lora, write_transformer_lora

    root = tmp_path_factory.mktemp("family-models")
    bake_tiny_sd3(root)
    for ref in FAMILY_MODELS[1:]:
        bake_tiny_flux(root, ref=ref)
    made = tmp_path_factory.mktemp("family-loras")
    bake_loras(
        root,
        [
            write_transformer_lora(made / "flux-ink.safetensors", root / "tiny-flux"),
            write_transformer_lora(made / "sd3-ink.safetensors", root / "tiny-sd3"),
            write_sd_lora(made / "sd-ink.safetensors"),
        ],
    )
    return root


@pytest.fixture(scope="session")
def settings(models_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Settings:
    return Settings(
        models_dir=models_dir,
        default_model="tiny",
        state_dir=tmp_path_factory.mktemp("state"),
        progress_interval_s=0.0,
    )


@pytest.fixture(scope="session")
def worker(settings: Settings) -> Iterator[object]:
    """One worker (and so one pipeline cache) shared by the tests that only read from it."""
    from sdworker.runpod.adapter import RunpodAdapter

    yield RunpodAdapter(settings)


@pytest.fixture
def worker_env(models_dir: Path) -> dict[str, str]:
    """The environment a worker subprocess needs to find the tiny models and stay offline."""
    env = dict(os.environ)
    env.update(
        SDWORKER_MODELS_DIR=str(models_dir),
        SDWORKER_DEFAULT_MODEL="tiny",
        RUNPOD_SKIP_AUTO_SYSTEM_CHECKS="true",
        HF_HUB_OFFLINE="1",
        PYTHONPATH=str(Path(__file__).resolve().parents[1] / "src"),
    )
    return env
