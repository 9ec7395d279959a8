"""The parts every tiny test model is built from: seeded random weights, the CLIP and T5 text
encoders' configs, a VAE of the real geometry, and saving a pipeline as released models are."""

from __future__ import annotations

from pathlib import Path
from typing import Any

#: the text encoders' width; the UNet's cross-attention width must match it
TEXT_HIDDEN = 32


def seeded(seed: int, offset: int) -> None:
    """Seed torch per component, so changing one component leaves the others' bytes alone."""
    import torch

    torch.manual_seed(seed * 1000 + offset)


def text_config(projection_dim: int = TEXT_HIDDEN) -> Any:
    """A tiny CLIP text encoder's config: the real vocabulary, window and token ids."""
    from transformers import CLIPTextConfig

    return CLIPTextConfig(
        vocab_size=49408,
        hidden_size=TEXT_HIDDEN,
        intermediate_size=37,
        num_attention_heads=4,
        num_hidden_layers=2,
        max_position_embeddings=77,
        projection_dim=projection_dim,
        hidden_act="quick_gelu",
        # the real ids: the pooled output is read at the first end-of-text token
        bos_token_id=49406,
        eos_token_id=49407,
        pad_token_id=49407,
    )


def t5_config(vocab_size: int, width: int) -> Any:
    """A tiny T5 encoder's config (FLUX.1's and SD 3.x's third text encoder), ``width`` wide."""
    from transformers import T5Config

    return T5Config(
        vocab_size=vocab_size,
        d_model=width,
        d_kv=8,
        d_ff=37,
        num_layers=2,
        num_heads=4,
        relative_attention_num_buckets=8,
        dropout_rate=0.0,
        feed_forward_proj="gated-gelu",
        is_encoder_decoder=False,
        pad_token_id=0,
        eos_token_id=1,
    )


def tiny_vae(
    seed: int,
    sample_size: int,
    *,
    latent_channels: int = 4,
    scaling_factor: float = 0.18215,
    shift_factor: float | None = None,
) -> Any:
    """A tiny VAE with the real geometry: four blocks, so the latent is 1/8 of the image. SD
    3.x and FLUX.1 have 16 latent channels, a shift, and no quant convolutions."""
    from diffusers import AutoencoderKL

    seeded(seed, 1)
    quant = shift_factor is None
    return AutoencoderKL(
        in_channels=3,
        out_channels=3,
        down_block_types=("DownEncoderBlock2D",) * 4,
        up_block_types=("UpDecoderBlock2D",) * 4,
        block_out_channels=(8, 16, 16, 16),
        layers_per_block=1,
        latent_channels=latent_channels,
        norm_num_groups=4,
        sample_size=sample_size,
        scaling_factor=scaling_factor,
        shift_factor=shift_factor,
        use_quant_conv=quant,
        use_post_quant_conv=quant,
    )


def save_pipeline(pipe: Any, dest: Path, tokenizer_dirs: dict[str, Path]) -> None:
    """Save ``pipe`` to ``dest`` with the tokenizer folders copied as their source files."""
    import shutil

    pipe.save_pretrained(dest, safe_serialization=True)
    canonical_index(dest)
    # keep the tokenizer folders as the real SD repos have them (vocab.json + merges.txt)
    for name, src in tokenizer_dirs.items():
        shutil.rmtree(dest / name, ignore_errors=True)
        shutil.copytree(src, dest / name)


def canonical_index(dest: Path) -> None:
    """Name the image processor as released SD models do (``CLIPImageProcessor``).

    Without torchvision, transformers instantiates its PIL variant and records that class name;
    the released models name the generic class, which loads either way.
    """
    import json

    index_path = dest / "model_index.json"
    index = json.loads(index_path.read_text())
    extractor = index.get("feature_extractor")
    if (
        isinstance(extractor, list)
        and extractor[1]
        and extractor[1].startswith("CLIPImageProcessor")
    ):
        index["feature_extractor"] = ["transformers", "CLIPImageProcessor"]
        index_path.write_text(json.dumps(index, indent=2, sort_keys=True) + "\n")
