"""Tiny random-weights FLUX.1 models for tests: the real layout (a CLIP for the pooled
embedding, a T5 for the sequence, a 16-channel VAE, a transformer over 2x2 latent patches),
the real CLIP tokenizer and a T5 tokenizer built from its words.

``tiny-flux`` is a schnell (no guidance embedding: 4 steps, no guidance by default),
``tiny-flux-kontext`` a Kontext model (instruction editing) and ``tiny-flux-fill`` a Fill
model (a transformer that also reads the masked image and the mask). Each is baked and
described as a downloaded one would be, so its family and defaults come from its configs.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any, Literal

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

Kind = Literal["schnell", "kontext", "fill"]
#: the ``sdworker bake`` reference of each kind
REFS: dict[str, Kind] = {
    "tiny-flux": "schnell",
    "tiny-flux-kontext": "kontext",
    "tiny-flux-fill": "fill",
}
#: the pipeline each kind is saved as (its ``model_index.json`` says which)
PIPELINES: dict[Kind, str] = {
    "schnell": "FluxPipeline",
    "kontext": "FluxKontextPipeline",
    "fill": "FluxFillPipeline",
}
#: the tiny models' native side: small, so a default-sized test image is cheap
NATIVE = 256
#: latent channels of FLUX.1's VAE; the transformer reads 2x2 patches of them
LATENTS = 16


def _transformer(kind: Kind, text_width: int) -> Any:
    from diffusers import FluxTransformer2DModel

    patches = 4 * LATENTS
    return FluxTransformer2DModel(
        patch_size=1,
        # a Fill transformer reads the masked image's latents and the 8x8-pixel mask too
        in_channels=patches + patches + 4 * 64 if kind == "fill" else patches,
        out_channels=patches,
        num_layers=1,
        num_single_layers=1,
        attention_head_dim=16,
        num_attention_heads=2,
        joint_attention_dim=text_width,
        pooled_projection_dim=TEXT_HIDDEN,
        guidance_embeds=kind != "schnell",
        axes_dims_rope=(4, 6, 6),
    )


def _scheduler(kind: Kind) -> Any:
    from diffusers import FlowMatchEulerDiscreteScheduler

    # schnell's schedule is fixed; dev's shifts with the image's size
    dynamic = kind != "schnell"
    return FlowMatchEulerDiscreteScheduler(
        shift=3.0 if dynamic else 1.0,
        use_dynamic_shifting=dynamic,
        base_shift=0.5,
        max_shift=1.15,
        base_image_seq_len=256,
        max_image_seq_len=4096,
    )


def build_tiny_flux_pipeline(
    seed: int, kind: Kind, *, tokenizer_dir: Path, bpe_path: Path | None = None
) -> Any:
    """The tiny FLUX.1 pipeline of ``kind``, in memory."""
    import diffusers
    from transformers import CLIPTextModel, CLIPTokenizer, T5EncoderModel

    t5_tokenizer = build_t5_tokenizer(bpe_path)
    t5_width = TEXT_HIDDEN
    seeded(seed, 0)
    transformer = _transformer(kind, t5_width)
    vae = tiny_vae(seed, 1024, latent_channels=LATENTS, scaling_factor=0.3611, shift_factor=0.1159)
    seeded(seed, 2)
    text_encoder = CLIPTextModel(text_config())
    seeded(seed, 4)
    text_encoder_2 = T5EncoderModel(t5_config(len(t5_tokenizer), t5_width))
    pipeline = getattr(diffusers, PIPELINES[kind])
    return pipeline(
        scheduler=_scheduler(kind),
        vae=vae,
        text_encoder=text_encoder,
        tokenizer=CLIPTokenizer.from_pretrained(tokenizer_dir),
        text_encoder_2=text_encoder_2,
        tokenizer_2=t5_tokenizer,
        transformer=transformer,
    )


def bake_tiny_flux(
    models_dir: Path,
    name: str | None = None,
    *,
    ref: str = "tiny-flux",
    seed: int = 0,
    bpe_path: Path | None = None,
) -> Path:
    """Bake the tiny FLUX.1 model ``ref`` (one of :data:`REFS`) into ``models_dir/name``
    (``ref`` by default), described from its configs as any baked folder is. Returns the
    model folder."""
    name = name or ref
    with atomic_model_dir(Path(models_dir), name) as tmp, scratch_dir() as scratch:
        tok = write_tokenizer(scratch / "tokenizer", bpe_path)
        pipe = build_tiny_flux_pipeline(seed, REFS[ref], tokenizer_dir=tok, bpe_path=bpe_path)
        save_pipeline(pipe, tmp, {"tokenizer": tok})
        source = f"{ref}:seed={seed}"
        manifest = replace(
            describe_folder(tmp, name, source), native_width=NATIVE, native_height=NATIVE
        )
        write_manifest(tmp, manifest, weights="transformer/diffusion_pytorch_model.safetensors")
    return Path(models_dir) / name
