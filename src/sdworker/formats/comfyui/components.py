"""The standard text-encoder and VAE files ComfyUI workflows name, and what each one is.

A split-loader workflow names the files of a model's parts (``clip_l.safetensors``,
``t5xxl_fp8_e4m3fn.safetensors``, ``ae.safetensors``). sdworker runs a baked model with its
own parts, so such a name is accepted when it is one of the standard files for what the
model reads (its family's text encoders: :attr:`PromptEncoding.encoders`), and refused
otherwise: a fine-tuned encoder or a custom VAE would not be what runs.
"""

from __future__ import annotations

import re

from sdworker.families import Family

#: a text encoder's file stem (lower case, any precision suffix) -> the encoder it is
_ENCODERS: tuple[tuple[re.Pattern[str], str], ...] = (
    (re.compile(r"^(clip_l|clip-l|clip_vit_l|openai_clip_vit_large)"), "clip-l"),
    (re.compile(r"^(clip_g|clip-g|open_clip_bigg|clip_vit_g)"), "openclip-g"),
    (re.compile(r"^(open_clip_h|clip_h|openclip_h)"), "openclip-h"),
    (re.compile(r"^(t5xxl|t5_xxl|t5-xxl|t5-v1_1-xxl|t5_v1_1_xxl|google_t5-v1_1-xxl)"), "t5"),
)

#: the standard VAE files (stems, lower case), and ComfyUI's approximate decoders, which the
#: model's own full VAE stands in for
STANDARD_VAES = frozenset(
    {
        "ae", "flux_vae", "flux1_vae", "sdxl_vae", "sdxl-vae-fp16-fix", "sdxl_vae_fp16_fix",
        "sd3_vae", "sd35_vae", "vae-ft-mse-840000-ema-pruned", "vae-ft-ema-560000-ema-pruned",
        "kl-f8", "diffusion_pytorch_model", "taesd", "taesdxl", "taesd3", "taef1",
    }
)  # fmt: skip


def _stem(file_name: str) -> str:
    base = file_name.replace("\\", "/").rsplit("/", 1)[-1].lower()
    for ext in (".safetensors", ".sft", ".ckpt", ".pt", ".pth", ".bin", ".gguf"):
        if base.endswith(ext):
            return base[: -len(ext)]
    return base


def encoder_kind(file_name: str) -> str | None:
    """The text encoder a standard file holds (``clip-l``, ``openclip-g``, ``t5``...)."""
    stem = _stem(file_name)
    return next((kind for pattern, kind in _ENCODERS if pattern.match(stem)), None)


def encoder_problem(file_name: str, family: Family) -> str | None:
    """Why ``file_name`` is not a text encoder the family's models read (None: it is)."""
    kind = encoder_kind(file_name)
    reads = family.prompts.encoders
    if kind in reads:
        return None
    what = f"holds a {kind} text encoder" if kind else "is not a standard text encoder file"
    return (
        f"{what}; {family.label} models read {', '.join(reads)}, and sdworker runs the "
        "model's own text encoders (name their standard files: clip_l.safetensors, "
        "clip_g.safetensors, t5xxl_fp16.safetensors...)"
    )


def vae_problem(file_name: str) -> str | None:
    """Why ``file_name`` is not a VAE the model's own can stand in for (None: it is)."""
    if _stem(file_name) in STANDARD_VAES:
        return None
    if file_name == "pixel_space":
        return "pixel_space has no equivalent here: sdworker decodes with the model's own VAE"
    return (
        "is not a standard VAE file; sdworker decodes with the model's own VAE (standard "
        "files: ae.safetensors, sdxl_vae.safetensors, vae-ft-mse-840000-ema-pruned.safetensors...)"
    )
