"""Tiny random-weights Stable Diffusion models for tests: real layouts, real CLIP tokenizer.

``bake_tiny`` writes an SD 1.x diffusers folder (a few MB, a few seconds) whose geometry matches
the real thing: the VAE has 4 blocks so 512x512 images have 64x64 latents, the text encoder
takes 77 tokens from the 49408-token CLIP vocabulary. ``bake_tiny_sdxl`` does the same for SDXL
(two text encoders, ``text_time`` added conditioning). Weights come from a seeded generator, so
the same seed gives byte-identical safetensors files.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sdworker.builder.clip_bpe import write_tokenizer
from sdworker.builder.layout import atomic_model_dir, scratch_dir, write_manifest
from sdworker.builder.tiny_parts import TEXT_HIDDEN, save_pipeline, seeded, text_config, tiny_vae
from sdworker.core.manifest import Manifest

SD_SCHEDULER: dict[str, Any] = {
    "beta_start": 0.00085,
    "beta_end": 0.012,
    "beta_schedule": "scaled_linear",
    "num_train_timesteps": 1000,
    "skip_prk_steps": True,
    "set_alpha_to_one": False,
    "steps_offset": 1,
    "prediction_type": "epsilon",
}


def _vision_safety_checker(seed: int, flag_everything: bool) -> tuple[Any, Any]:
    import torch
    from diffusers.pipelines.stable_diffusion.safety_checker import StableDiffusionSafetyChecker
    from transformers import CLIPConfig, CLIPVisionConfig

    seeded(seed, 3)
    vision = CLIPVisionConfig(
        hidden_size=TEXT_HIDDEN,
        intermediate_size=37,
        num_attention_heads=4,
        num_hidden_layers=2,
        image_size=32,
        patch_size=8,
        projection_dim=TEXT_HIDDEN,
    )
    config = CLIPConfig(
        text_config=text_config().to_dict(),
        vision_config=vision.to_dict(),
        projection_dim=TEXT_HIDDEN,
    )
    checker = StableDiffusionSafetyChecker(config)
    with torch.no_grad():
        # a cosine distance is at least -1: a threshold of -2 flags every image, 2 flags none
        threshold = -2.0 if flag_everything else 2.0
        checker.concept_embeds_weights.fill_(threshold)
        checker.special_care_embeds_weights.fill_(threshold)
        checker.concept_embeds.normal_()
        checker.special_care_embeds.normal_()
    processor = _image_processor_class()(
        do_resize=True,
        size={"shortest_edge": 32},
        do_center_crop=True,
        crop_size={"height": 32, "width": 32},
        do_normalize=True,
        image_mean=[0.48145466, 0.4578275, 0.40821073],
        image_std=[0.26862954, 0.26130258, 0.27577711],
    )
    return checker, processor


def _image_processor_class() -> Any:
    """The PIL image processor when transformers has it (no torchvision needed), else the generic."""
    import transformers

    return getattr(transformers, "CLIPImageProcessorPil", None) or transformers.CLIPImageProcessor


def _feature_extractor() -> Any:
    return _image_processor_class()(
        size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32}, do_center_crop=True
    )


def build_tiny_pipeline(
    seed: int = 0,
    *,
    safety_checker: bool = False,
    flag_everything: bool = True,
    tokenizer_dir: Path,
) -> Any:
    """The tiny SD 1.x pipeline, in memory (its tokenizer read from ``tokenizer_dir``)."""
    from diffusers import PNDMScheduler, StableDiffusionPipeline, UNet2DConditionModel
    from transformers import CLIPTextModel, CLIPTokenizer

    seeded(seed, 0)
    unet = UNet2DConditionModel(
        sample_size=64,
        in_channels=4,
        out_channels=4,
        # attention only at the lower resolution keeps a 512x512 step cheap on a CPU
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
        block_out_channels=(32, 64),
        layers_per_block=1,
        norm_num_groups=8,
        attention_head_dim=8,
        cross_attention_dim=TEXT_HIDDEN,
    )
    vae = tiny_vae(seed, 512)
    seeded(seed, 2)
    text_encoder = CLIPTextModel(text_config())
    tokenizer = CLIPTokenizer.from_pretrained(tokenizer_dir)
    scheduler = PNDMScheduler(**SD_SCHEDULER)
    checker, extractor = (
        _vision_safety_checker(seed, flag_everything)
        if safety_checker
        else (None, _feature_extractor())
    )
    return StableDiffusionPipeline(
        vae=vae,
        text_encoder=text_encoder,
        tokenizer=tokenizer,
        unet=unet,
        scheduler=scheduler,
        safety_checker=checker,
        feature_extractor=extractor,
        requires_safety_checker=safety_checker,
    )


def bake_tiny(
    models_dir: Path,
    name: str = "tiny",
    *,
    safety_checker: bool = False,
    flag_everything: bool = True,
    seed: int = 0,
    bpe_path: Path | None = None,
) -> Path:
    """Bake the tiny SD 1.x model into ``models_dir/name`` and write its manifest.

    ``safety_checker`` adds a tiny CLIP safety checker. A random checker's verdict means nothing,
    so it is made deterministic: it flags every image (``flag_everything``, the default, for tests
    of the blacked-out path) or none. Returns the model folder.
    """
    with atomic_model_dir(Path(models_dir), name) as tmp, scratch_dir() as scratch:
        tok_dir = write_tokenizer(scratch / "tokenizer", bpe_path)
        pipe = build_tiny_pipeline(
            seed,
            safety_checker=safety_checker,
            flag_everything=flag_everything,
            tokenizer_dir=tok_dir,
        )
        save_pipeline(pipe, tmp, {"tokenizer": tok_dir})
        manifest = Manifest(
            name=name,
            family="sd1",
            native_width=512,
            native_height=512,
            default_scheduler=type(pipe.scheduler).__name__,
            has_safety_checker=safety_checker,
            source=f"tiny:seed={seed}",
        )
        write_manifest(tmp, manifest, weights="unet/diffusion_pytorch_model.safetensors")
    return Path(models_dir) / name


def _sdxl_unet(context: int, pooled: int, time_ids: int, **extra: Any) -> Any:
    """A tiny UNet of the SDXL kind: cross-attention over ``context`` wide text, and an added
    embedding of the ``pooled`` text with ``time_ids`` numbers (size, crop, aesthetic score)."""
    from diffusers import UNet2DConditionModel

    return UNet2DConditionModel(
        sample_size=128,
        in_channels=4,
        out_channels=4,
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
        block_out_channels=(32, 64),
        layers_per_block=1,
        norm_num_groups=8,
        attention_head_dim=(2, 4),
        use_linear_projection=True,
        cross_attention_dim=context,
        addition_embed_type="text_time",
        addition_time_embed_dim=8,
        projection_class_embeddings_input_dim=pooled + time_ids * 8,
        **extra,
    )


def build_tiny_refiner(base: Any, seed: int) -> Any:
    """A tiny SDXL refiner for the tiny SDXL ``base``: its own random UNet (conditioned on the
    second encoder alone, with the aesthetic score), the base's VAE and second encoder."""
    from diffusers import StableDiffusionXLImg2ImgPipeline

    width = base.text_encoder_2.config.hidden_size
    seeded(seed, 5)
    return StableDiffusionXLImg2ImgPipeline(
        vae=base.vae,
        text_encoder=None,
        text_encoder_2=base.text_encoder_2,
        tokenizer=None,
        tokenizer_2=base.tokenizer_2,
        # the pooled embedding comes with 5 numbers: size, crop and the aesthetic score
        unet=_sdxl_unet(width, width, 5),
        scheduler=type(base.scheduler).from_config(base.scheduler.config),
        requires_aesthetics_score=True,
        force_zeros_for_empty_prompt=False,
    )


def build_tiny_sdxl_pipeline(seed: int, *, tokenizer_dirs: tuple[Path, Path]) -> Any:
    """The tiny SDXL pipeline, in memory."""
    from diffusers import EulerDiscreteScheduler, StableDiffusionXLPipeline
    from transformers import CLIPTextModel, CLIPTextModelWithProjection, CLIPTokenizer

    seeded(seed, 0)
    # SDXL conditions on both encoders' hidden states, concatenated; the pooled embedding
    # (projection_dim) comes with 6 size/crop numbers
    unet = _sdxl_unet(2 * TEXT_HIDDEN, TEXT_HIDDEN, 6, transformer_layers_per_block=(1, 2))
    vae = tiny_vae(seed, 1024)
    seeded(seed, 2)
    text_encoder = CLIPTextModel(text_config())
    seeded(seed, 4)
    text_encoder_2 = CLIPTextModelWithProjection(text_config())
    scheduler = EulerDiscreteScheduler(
        beta_start=0.00085,
        beta_end=0.012,
        beta_schedule="scaled_linear",
        num_train_timesteps=1000,
        steps_offset=1,
        timestep_spacing="leading",
        interpolation_type="linear",
        prediction_type="epsilon",
        use_karras_sigmas=False,
    )
    return StableDiffusionXLPipeline(
        vae=vae,
        text_encoder=text_encoder,
        text_encoder_2=text_encoder_2,
        tokenizer=CLIPTokenizer.from_pretrained(tokenizer_dirs[0]),
        tokenizer_2=CLIPTokenizer.from_pretrained(tokenizer_dirs[1]),
        unet=unet,
        scheduler=scheduler,
        force_zeros_for_empty_prompt=True,
    )


def bake_tiny_sdxl(
    models_dir: Path,
    name: str = "tiny-sdxl",
    *,
    seed: int = 0,
    bpe_path: Path | None = None,
    refiner: bool = True,
) -> Path:
    """Bake the tiny SDXL model into ``models_dir/name`` and write its manifest; with
    ``refiner`` (the default) a tiny refiner is baked with it, in its ``refiner/`` folder."""
    with atomic_model_dir(Path(models_dir), name) as tmp, scratch_dir() as scratch:
        tok1 = write_tokenizer(scratch / "tokenizer", bpe_path)
        tok2 = write_tokenizer(scratch / "tokenizer_2", bpe_path, pad_token="!")
        pipe = build_tiny_sdxl_pipeline(seed, tokenizer_dirs=(tok1, tok2))
        save_pipeline(pipe, tmp, {"tokenizer": tok1, "tokenizer_2": tok2})
        if refiner:
            from sdworker.builder.refiner import copy_refiner

            full = scratch / "refiner-full"
            build_tiny_refiner(pipe, seed).save_pretrained(full, safe_serialization=True)
            copy_refiner(full, tmp, pipe.text_encoder_2.config.hidden_size)
        manifest = Manifest(
            name=name,
            family="sdxl",
            native_width=1024,
            native_height=1024,
            default_scheduler=type(pipe.scheduler).__name__,
            has_safety_checker=False,
            source=f"tiny-sdxl:seed={seed}",
            refiner=f"tiny-sdxl-refiner:seed={seed}" if refiner else "",
        )
        write_manifest(tmp, manifest, weights="unet/diffusion_pytorch_model.safetensors")
    return Path(models_dir) / name
