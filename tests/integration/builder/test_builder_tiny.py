"""The tiny SD 1.x test model: layout, determinism, manifest, and that diffusers runs it."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from diffusers import StableDiffusionPipeline

from sdworker.builder.tiny import bake_tiny
from sdworker.core.manifest import MANIFEST_NAME, Manifest, sha256_file

COMPONENTS = ("unet", "vae", "text_encoder", "tokenizer", "scheduler", "feature_extractor")


def test_layout_and_manifest(baked_tiny: Path) -> None:
    model = baked_tiny / "tiny"
    for component in COMPONENTS:
        assert (model / component).is_dir(), component
    assert not (model / "safety_checker").exists()
    index = json.loads((model / "model_index.json").read_text())
    assert index["_class_name"] == "StableDiffusionPipeline"
    assert index["requires_safety_checker"] is False
    assert index["feature_extractor"] == ["transformers", "CLIPImageProcessor"]

    manifest = Manifest.read(model)
    assert (manifest.name, manifest.family) == ("tiny", "sd1")
    assert (manifest.native_width, manifest.native_height) == (512, 512)
    assert manifest.default_scheduler == "PNDMScheduler"
    assert manifest.has_safety_checker is False
    unet = "unet/diffusion_pytorch_model.safetensors"
    assert manifest.sha256 == sha256_file(model / unet)
    assert len(manifest.short_hash) == 10
    on_disk = {
        p.relative_to(model).as_posix()
        for p in model.rglob("*")
        if p.is_file() and p.name != MANIFEST_NAME
    }
    assert set(manifest.files) == on_disk
    assert manifest.files[unet].size == (model / unet).stat().st_size
    # a few MB, not hundreds
    assert sum(f.size for f in manifest.files.values()) < 20_000_000


def test_same_seed_gives_identical_bytes(baked_tiny: Path, tmp_path: Path) -> None:
    again = bake_tiny(tmp_path, "tiny")
    assert Manifest.read(again).files == Manifest.read(baked_tiny / "tiny").files
    other = bake_tiny(tmp_path, "other", seed=1)
    assert Manifest.read(other).sha256 != Manifest.read(again).sha256


def test_rebake_replaces_without_leftovers(tmp_path: Path) -> None:
    bake_tiny(tmp_path, "tiny")
    bake_tiny(tmp_path, "tiny", seed=3)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["tiny"]
    assert Manifest.read(tmp_path / "tiny").source == "tiny:seed=3"


def test_real_clip_tokenizer(baked_tiny: Path) -> None:
    pipe = StableDiffusionPipeline.from_pretrained(baked_tiny / "tiny", local_files_only=True)
    ids = pipe.tokenizer("a photo of a cat").input_ids
    assert ids == [49406, 320, 1125, 539, 320, 2368, 49407]
    assert pipe.tokenizer.model_max_length == 77
    assert pipe.text_encoder.config.vocab_size == 49408


def test_generates_512_in_two_steps(baked_tiny: Path) -> None:
    pipe = StableDiffusionPipeline.from_pretrained(baked_tiny / "tiny", local_files_only=True)
    assert pipe.vae_scale_factor == 8
    pipe.set_progress_bar_config(disable=True)

    def run() -> torch.Tensor:
        out = pipe(
            "a photo of a cat",
            num_inference_steps=2,
            generator=torch.Generator().manual_seed(7),
            output_type="pt",
        )
        return out.images

    first, second = run(), run()
    assert tuple(first.shape) == (1, 3, 512, 512)
    assert torch.equal(first, second)


@pytest.mark.parametrize("flag_everything", [True, False])
def test_safety_checker_is_deterministic(tmp_path: Path, flag_everything: bool) -> None:
    path = bake_tiny(tmp_path, "safe", safety_checker=True, flag_everything=flag_everything)
    assert Manifest.read(path).has_safety_checker is True
    pipe = StableDiffusionPipeline.from_pretrained(path, local_files_only=True)
    assert pipe.safety_checker is not None
    pipe.set_progress_bar_config(disable=True)
    out = pipe(
        "a cat",
        height=64,
        width=64,
        num_inference_steps=1,
        generator=torch.Generator().manual_seed(0),
    )
    assert out.nsfw_content_detected == [flag_everything]
