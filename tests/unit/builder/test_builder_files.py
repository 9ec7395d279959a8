"""Which files of a hub repository get baked (a fake file list, no network)."""

from __future__ import annotations

import pytest

from sdworker.builder.files import canonical_name, pipeline_components, select_files
from sdworker.core.errors import BuildError

INDEX = {
    "_class_name": "StableDiffusionPipeline",
    "feature_extractor": ["transformers", "CLIPImageProcessor"],
    "safety_checker": [None, None],
    "scheduler": ["diffusers", "PNDMScheduler"],
    "text_encoder": ["transformers", "CLIPTextModel"],
    "tokenizer": ["transformers", "CLIPTokenizer"],
    "unet": ["diffusers", "UNet2DConditionModel"],
    "vae": ["diffusers", "AutoencoderKL"],
}

# the shape of a real SD 1.5 repository: every format, every variant, extra checkpoints
REPO = [
    ".gitattributes",
    "README.md",
    "model_index.json",
    "v1-5-pruned.safetensors",
    "v1-5-pruned-emaonly.ckpt",
    "feature_extractor/preprocessor_config.json",
    "safety_checker/config.json",
    "safety_checker/model.safetensors",
    "scheduler/scheduler_config.json",
    "text_encoder/config.json",
    "text_encoder/model.safetensors",
    "text_encoder/model.fp16.safetensors",
    "text_encoder/pytorch_model.bin",
    "text_encoder/flax_model.msgpack",
    "tokenizer/merges.txt",
    "tokenizer/special_tokens_map.json",
    "tokenizer/tokenizer_config.json",
    "tokenizer/vocab.json",
    "unet/config.json",
    "unet/diffusion_pytorch_model.safetensors",
    "unet/diffusion_pytorch_model.fp16.safetensors",
    "unet/diffusion_pytorch_model.non_ema.safetensors",
    "unet/diffusion_pytorch_model.bin",
    "unet/diffusion_flax_model.msgpack",
    "vae/config.json",
    "vae/diffusion_pytorch_model.bin",
    "vae/diffusion_pytorch_model.fp16.bin",
    "onnx/unet/model.onnx",
]


def test_components_skip_null_entries() -> None:
    assert pipeline_components(INDEX) == [
        "feature_extractor",
        "scheduler",
        "text_encoder",
        "tokenizer",
        "unet",
        "vae",
    ]


def test_fp16_safetensors_preferred_and_nothing_else() -> None:
    assert select_files(REPO, INDEX) == [
        "feature_extractor/preprocessor_config.json",
        "model_index.json",
        "scheduler/scheduler_config.json",
        "text_encoder/config.json",
        "text_encoder/model.fp16.safetensors",
        "tokenizer/merges.txt",
        "tokenizer/special_tokens_map.json",
        "tokenizer/tokenizer_config.json",
        "tokenizer/vocab.json",
        "unet/config.json",
        "unet/diffusion_pytorch_model.fp16.safetensors",
        "vae/config.json",
        # no safetensors for the VAE: the fp16 .bin is the one format kept
        "vae/diffusion_pytorch_model.fp16.bin",
    ]


def test_full_precision_when_no_variant() -> None:
    chosen = select_files(REPO, INDEX, variant=None)
    assert "unet/diffusion_pytorch_model.safetensors" in chosen
    assert "text_encoder/model.safetensors" in chosen
    assert "vae/diffusion_pytorch_model.bin" in chosen
    assert not any(".fp16." in f or "non_ema" in f for f in chosen)


def test_sharded_weights_keep_index_and_all_shards() -> None:
    repo = [
        "model_index.json",
        "unet/config.json",
        "unet/diffusion_pytorch_model.fp16-00001-of-00002.safetensors",
        "unet/diffusion_pytorch_model.fp16-00002-of-00002.safetensors",
        "unet/diffusion_pytorch_model.safetensors.index.fp16.json",
        "unet/diffusion_pytorch_model-00001-of-00002.safetensors",
        "unet/diffusion_pytorch_model-00002-of-00002.safetensors",
        "unet/diffusion_pytorch_model.safetensors.index.json",
    ]
    index = {"_class_name": "X", "unet": ["diffusers", "UNet2DConditionModel"]}
    chosen = select_files(repo, index)
    assert chosen == [
        "model_index.json",
        "unet/config.json",
        "unet/diffusion_pytorch_model.fp16-00001-of-00002.safetensors",
        "unet/diffusion_pytorch_model.fp16-00002-of-00002.safetensors",
        "unet/diffusion_pytorch_model.safetensors.index.fp16.json",
    ]
    renamed = [canonical_name(f) for f in chosen]
    assert "unet/diffusion_pytorch_model.safetensors.index.json" in renamed
    # shards keep their names: the index refers to them
    assert "unet/diffusion_pytorch_model.fp16-00001-of-00002.safetensors" in renamed


def test_variant_files_are_renamed_to_load_without_variant() -> None:
    assert (
        canonical_name("unet/diffusion_pytorch_model.fp16.safetensors")
        == "unet/diffusion_pytorch_model.safetensors"
    )
    assert canonical_name("text_encoder/model.fp16.bin") == "text_encoder/model.bin"
    assert canonical_name("unet/config.json") == "unet/config.json"


def test_missing_variant_falls_back_to_full_weights() -> None:
    chosen = select_files([*REPO, "unet/diffusion_pytorch_model.bf16.safetensors"], INDEX, "bf16")
    assert "unet/diffusion_pytorch_model.bf16.safetensors" in chosen
    assert "text_encoder/model.safetensors" in chosen


def test_component_without_pytorch_weights() -> None:
    repo = ["model_index.json", "unet/config.json", "unet/diffusion_flax_model.msgpack"]
    index = {"_class_name": "X", "unet": ["diffusers", "UNet2DConditionModel"]}
    with pytest.raises(
        BuildError, match=r"component unet: no PyTorch weights .* only diffusion_flax"
    ):
        select_files(repo, index)


def test_not_a_diffusers_repo() -> None:
    with pytest.raises(BuildError, match=r"no model_index\.json"):
        select_files(["model.safetensors"], INDEX)
