"""Fixtures of the SDXL, LoRA and prompt tests: tiny SD and SDXL models and tiny LoRA files.

The LoRA files are made the way trainers make them (PEFT adapters on the UNet and the text
encoders, saved by diffusers' ``save_lora_weights``), from seeded random weights, so every
session gets byte-identical files.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from sdworker.core.settings import Settings

UNET_TARGETS = ["to_q", "to_k", "to_v", "to_out.0"]
TEXT_TARGETS = ["q_proj", "k_proj", "v_proj", "out_proj"]


def make_tiny_lora(model_dir: Path, dest: Path, seed: int, *, text_encoders: bool = True) -> Path:
    """Write a random-weights LoRA for the model at ``model_dir`` to ``dest`` (.safetensors)."""
    import torch
    from diffusers import AutoPipelineForText2Image
    from peft import LoraConfig
    from peft.utils import get_peft_model_state_dict

    pipe: Any = AutoPipelineForText2Image.from_pretrained(str(model_dir), local_files_only=True)
    torch.manual_seed(seed)

    def adapt(module: Any, targets: list[str]) -> Any:
        # random (not zero) B matrices: the LoRA changes the output from the first step
        config = LoraConfig(r=4, lora_alpha=4, init_lora_weights=False, target_modules=targets)
        module.add_adapter(config)
        return get_peft_model_state_dict(module)

    layers = {"unet_lora_layers": adapt(pipe.unet, UNET_TARGETS)}
    if text_encoders:
        layers["text_encoder_lora_layers"] = adapt(pipe.text_encoder, TEXT_TARGETS)
        if getattr(pipe, "text_encoder_2", None) is not None:
            layers["text_encoder_2_lora_layers"] = adapt(pipe.text_encoder_2, TEXT_TARGETS)
    dest.parent.mkdir(parents=True, exist_ok=True)
    type(pipe).save_lora_weights(
        str(dest.parent), weight_name=dest.name, safe_serialization=True, **layers
    )
    return dest


def _bake_v_prediction(root: Path, name: str) -> None:
    """The tiny model as an SD 2.x v-prediction model: its scheduler predicts velocity."""
    import json
    from dataclasses import replace

    from sdworker.builder.layout import write_manifest
    from sdworker.builder.tiny import bake_tiny
    from sdworker.core.manifest import Manifest

    model = bake_tiny(root, name, seed=5)
    config_path = model / "scheduler" / "scheduler_config.json"
    config = json.loads(config_path.read_text())
    config["prediction_type"] = "v_prediction"
    config_path.write_text(json.dumps(config, indent=2))
    manifest = replace(Manifest.read(model), family="sd2", native_width=768, native_height=768)
    write_manifest(model, manifest)


@pytest.fixture(scope="session")
def features_models(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``tiny``, ``tiny-sdxl`` and ``tiny-v`` (SD 2.x-style v-prediction at 768) with LoRAs
    baked: ``ink`` and ``rust`` (SD 1.x, the second UNet-only), ``neon`` (SDXL)."""
    from sdworker.builder.loras import bake_loras
    from sdworker.builder.tiny import bake_tiny, bake_tiny_sdxl

    root = tmp_path_factory.mktemp("features-models")
    bake_tiny(root, "tiny")
    bake_tiny_sdxl(root, "tiny-sdxl")
    _bake_v_prediction(root, "tiny-v")
    made = tmp_path_factory.mktemp("lora-files")
    files = [
        make_tiny_lora(root / "tiny", made / "ink.safetensors", 1),
        make_tiny_lora(root / "tiny", made / "rust.safetensors", 2, text_encoders=False),
        make_tiny_lora(root / "tiny-sdxl", made / "neon.safetensors", 3),
    ]
    bake_loras(root, files)
    return root


@pytest.fixture(scope="session")
def features_settings(features_models: Path, tmp_path_factory: pytest.TempPathFactory) -> Settings:
    return Settings(
        models_dir=features_models,
        default_model="tiny",
        state_dir=tmp_path_factory.mktemp("features-state"),
        progress_interval_s=0.0,
    )


@pytest.fixture(scope="session")
def fworker(features_settings: Settings) -> Iterator[Any]:
    """One worker over the feature models, shared by the tests of this folder."""
    from sdworker.runpod.adapter import RunpodAdapter

    yield RunpodAdapter(features_settings)
