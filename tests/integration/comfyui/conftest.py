"""A real ``sdworker serve`` over the tiny SDXL and FLUX.1 models, named as a worker-comfyui
endpoint's workflows name them (aliases), with an SDXL LoRA baked, for the ComfyUI tests."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.integration.serving import Served, serve

API_KEY = "comfy-key"
#: the checkpoint files worker-comfyui's images bake, as aliases of the tiny models
ALIASES = "sd_xl_base_1.0.safetensors=tiny-sdxl,flux1-schnell.safetensors=tiny-flux"


@pytest.fixture(scope="session")
def comfy_models(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``tiny-sdxl`` with the SDXL LoRA ``neon``, and ``tiny-flux`` (schnell-like)."""
    from sdworker.builder.loras import bake_loras
    from sdworker.builder.tiny import bake_tiny_sdxl
    from sdworker.builder.tiny_flux import bake_tiny_flux
    from tests.integration.features.conftest import make_tiny_lora

    root = tmp_path_factory.mktemp("comfy-models")
    bake_tiny_sdxl(root, "tiny-sdxl")
    bake_tiny_flux(root, ref="tiny-flux")
    made = make_tiny_lora(root / "tiny-sdxl", root / "made" / "neon.safetensors", 3)
    bake_loras(root, [made])
    return root


@pytest.fixture(scope="session")
def comfy_served(comfy_models: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    state = tmp_path_factory.mktemp("comfy-state")
    with serve(
        comfy_models,
        state,
        API_KEY,
        SDWORKER_MODEL_ALIASES=ALIASES,
        SDWORKER_DEFAULT_MODEL="tiny-sdxl",
    ) as served:
        yield served
