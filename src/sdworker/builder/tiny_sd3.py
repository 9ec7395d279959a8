"""A tiny random-weights Stable Diffusion 3 model for tests: the real layout (two CLIP text
encoders with projections, a T5, a 16-channel VAE, an MMDiT over 2x2 latent patches), the
real CLIP tokenizer and a T5 tokenizer built from its words. Baked and described as a
downloaded one would be, so its family and defaults come from its configs."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sdworker.builder.clip_bpe import write_tokenizer
from sdworker.builder.describe import describe_folder
from sdworker.builder.layout import atomic_model_dir, scratch_dir, write_manifest
from sdworker.builder.t5_tokenizer import build_t5_tokenizer
from sdworker.builder.tiny_parts import (
    TEXT_HIDDEN,
    save_pipeline,
    seeded,
    t5_config,
    text_config,
    tiny_vae,
)

#: latent channels of SD 3's VAE; the transformer reads 2x2 patches of them
LATENTS = 16
#: the tiny model's native side (its transformer's sample size is a 32x32 latent)
NATIVE = 256


def _transformer(text_width: int) -> Any:
    from diffusers import SD3Transformer2DModel

    return SD3Transformer2DModel(
        sample_size=NATIVE // 8,
        patch_size=2,
        in_channels=LATENTS,
        out_channels=LATENTS,
        num_layers=2,
        attention_head_dim=8,
        num_attention_heads=4,
        # the T5 sequence, and the two CLIPs' hidden states padded to its width
        joint_attention_dim=text_width,
        caption_projection_dim=32,
        # the two CLIPs' pooled projections, side by side
        pooled_projection_dim=2 * TEXT_HIDDEN,
    )


def build_tiny_sd3_pipeline(
    seed: int, *, tokenizer_dirs: tuple[Path, Path], bpe_path: Path | None = None
) -> Any:
    """The tiny SD 3 pipeline, in memory."""
    from diffusers import FlowMatchEulerDiscreteScheduler, StableDiffusion3Pipeline
    from transformers import CLIPTextModelWithProjection, CLIPTokenizer, T5EncoderModel

    t5_tokenizer = build_t5_tokenizer(bpe_path)
    # the CLIPs' hidden states, concatenated, are padded to the T5's width: it must be wider
    t5_width = 2 * TEXT_HIDDEN
    seeded(seed, 0)
    transformer = _transformer(t5_width)
    vae = tiny_vae(
        seed, NATIVE, latent_channels=LATENTS, scaling_factor=1.5305, shift_factor=0.0609
    )
    seeded(seed, 2)
    text_encoder = CLIPTextModelWithProjection(text_config())
    seeded(seed, 4)
    text_encoder_2 = CLIPTextModelWithProjection(text_config())
    seeded(seed, 6)
    text_encoder_3 = T5EncoderModel(t5_config(len(t5_tokenizer), t5_width))
    return StableDiffusion3Pipeline(
        transformer=transformer,
        scheduler=FlowMatchEulerDiscreteScheduler(shift=3.0),
        vae=vae,
        text_encoder=text_encoder,
        tokenizer=CLIPTokenizer.from_pretrained(tokenizer_dirs[0]),
        text_encoder_2=text_encoder_2,
        tokenizer_2=CLIPTokenizer.from_pretrained(tokenizer_dirs[1]),
        text_encoder_3=text_encoder_3,
        tokenizer_3=t5_tokenizer,
    )


def bake_tiny_sd3(
    models_dir: Path, name: str = "tiny-sd3", *, seed: int = 0, bpe_path: Path | None = None
) -> Path:
    """Bake the tiny SD 3 model into ``models_dir/name``. Returns the model folder."""
    with atomic_model_dir(Path(models_dir), name) as tmp, scratch_dir() as scratch:
        tok1 = write_tokenizer(scratch / "tokenizer", bpe_path)
        tok2 = write_tokenizer(scratch / "tokenizer_2", bpe_path, pad_token="!")
        pipe = build_tiny_sd3_pipeline(seed, tokenizer_dirs=(tok1, tok2), bpe_path=bpe_path)
        save_pipeline(pipe, tmp, {"tokenizer": tok1, "tokenizer_2": tok2})
        manifest = describe_folder(tmp, name, f"tiny-sd3:seed={seed}")
        write_manifest(tmp, manifest, weights="transformer/diffusion_pytorch_model.safetensors")
    return Path(models_dir) / name
