"""The tiny SD 3 and FLUX.1 test models (baked once per session), their T5 tokenizer built
from the CLIP words, and the full-size configs random-weights benchmarks bake from."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from transformers import AutoTokenizer

from sdworker import families
from sdworker.builder.describe import config_folder, folder_configs
from sdworker.builder.files import read_model_index
from sdworker.builder.random_weights import component
from sdworker.builder.t5_tokenizer import EXTRA_IDS, PIECES, t5_vocabulary
from sdworker.core.manifest import Manifest


@pytest.mark.parametrize(
    ("model", "family", "defaults"),
    [
        ("tiny-sd3", "sd3", {}),
        (
            "tiny-flux",
            "flux",
            {"num_inference_steps": 4, "guidance_scale": 0.0, "max_sequence_length": 256},
        ),
        ("tiny-flux-kontext", "flux-kontext", {}),
        ("tiny-flux-fill", "flux-fill", {}),
    ],
)
def test_each_is_described_from_its_configs(
    family_models_dir: Path, model: str, family: str, defaults: dict[str, object]
) -> None:
    manifest = Manifest.read(family_models_dir / model)
    assert (manifest.family, manifest.defaults) == (family, defaults)
    assert (manifest.native_width, manifest.native_height) == (256, 256)
    assert manifest.default_scheduler == "FlowMatchEulerDiscreteScheduler"
    assert (
        manifest.sha256 == manifest.files["transformer/diffusion_pytorch_model.safetensors"].sha256
    )


def test_the_t5_tokenizer_loads_as_a_real_one(family_models_dir: Path) -> None:
    folder = family_models_dir / "tiny-flux" / "tokenizer_2"
    assert sorted(p.name for p in folder.iterdir()) == ["tokenizer.json", "tokenizer_config.json"]
    tokenizer = AutoTokenizer.from_pretrained(folder)
    assert type(tokenizer).__name__ == "T5Tokenizer"
    assert len(tokenizer) == PIECES + EXTRA_IDS and tokenizer.model_max_length == 512
    ids = tokenizer("a watercolor lighthouse").input_ids
    assert tokenizer.convert_ids_to_tokens(ids) == ["▁a", "▁watercolor", "▁lighthouse", "</s>"]
    # T5's layout: pad, end of sequence and unknown first
    assert (tokenizer.pad_token_id, tokenizer.eos_token_id, tokenizer.unk_token_id) == (0, 1, 2)
    config = json.loads(
        (family_models_dir / "tiny-flux" / "text_encoder_2" / "config.json").read_text()
    )
    assert config["vocab_size"] == len(tokenizer)


def test_the_vocabulary_comes_from_the_clip_words() -> None:
    vocab = t5_vocabulary(size=2000)
    pieces = [piece for piece, _ in vocab]
    assert pieces[:3] == ["<pad>", "</s>", "<unk>"] and len(pieces) == 2000
    assert "▁the" in pieces and "a" in pieces and pieces[-1] == "▁"
    scores = [score for _, score in vocab[3:]]
    assert scores == sorted(scores, reverse=True)


@pytest.mark.parametrize(
    ("config", "family", "parameters"),
    [
        ("flux-schnell", "flux", {"transformer": 11.89e9, "text_encoder_2": 4.76e9}),
        ("sd35-medium", "sd3", {"transformer": 2.24e9, "text_encoder_3": 4.76e9}),
    ],
)
def test_the_full_size_configs_have_the_real_geometry(
    tmp_path: Path, config: str, family: str, parameters: dict[str, float]
) -> None:
    folder = config_folder(config, tmp_path / config)
    found = families.recognise(folder_configs(folder))
    assert found is not None and found.name == family
    index = read_model_index((folder / "model_index.json").read_text())
    for key, expected in parameters.items():
        value = index[key]
        assert isinstance(value, list)
        with torch.device("meta"):
            module = component(folder, key, value)
        count = sum(p.numel() for p in module.parameters())
        assert abs(count - expected) / expected < 0.01, (key, count)
