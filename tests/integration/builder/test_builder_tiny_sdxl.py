"""The tiny SDXL test model."""

from __future__ import annotations

from pathlib import Path

import torch
from diffusers import StableDiffusionXLPipeline

from sdworker.builder.cli import bake_command
from sdworker.core.manifest import Manifest
from sdworker.core.settings import Settings


def test_tiny_sdxl_bakes_and_runs(tmp_path: Path) -> None:
    assert bake_command(["tiny-sdxl"], Settings(models_dir=tmp_path)) == 0
    model = tmp_path / "tiny-sdxl"
    manifest = Manifest.read(model)
    assert (manifest.family, manifest.native_width, manifest.native_height) == ("sdxl", 1024, 1024)
    assert manifest.default_scheduler == "EulerDiscreteScheduler"
    assert {"text_encoder_2/model.safetensors", "tokenizer_2/vocab.json"} <= set(manifest.files)

    pipe = StableDiffusionXLPipeline.from_pretrained(model, local_files_only=True)
    assert pipe.vae_scale_factor == 8
    assert pipe.default_sample_size * pipe.vae_scale_factor == 1024
    assert pipe.unet.config.addition_embed_type == "text_time"
    ids = [49406, 320, 1125, 539, 320, 2368, 49407]
    assert pipe.tokenizer("a photo of a cat").input_ids == ids
    assert pipe.tokenizer_2("a photo of a cat").input_ids == ids
    assert pipe.tokenizer_2.pad_token == "!"
    pipe.set_progress_bar_config(disable=True)
    image = pipe(
        "a photo of a cat",
        height=256,
        width=256,
        num_inference_steps=2,
        generator=torch.Generator().manual_seed(3),
        output_type="pt",
    ).images
    assert tuple(image.shape) == (1, 3, 256, 256)
    assert torch.isfinite(image).all()
