"""Describing a diffusers folder as a baked model: its family, native size, default
scheduler and files (the manifest), and the shipped configs of single-file checkpoints.

Shared by every way of baking (:mod:`~sdworker.builder.bake`,
:mod:`~sdworker.builder.random_weights`), which is why it stands alone.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

from sdworker.builder.clip_bpe import write_tokenizer
from sdworker.builder.files import read_model_index
from sdworker.core.errors import BuildError
from sdworker.core.manifest import Family, Manifest

CONFIGS_DIR = Path(__file__).parent / "configs"


def describe_folder(folder: Path, name: str, source: str, sha256: str = "") -> Manifest:
    """A manifest (without its file list) for the diffusers folder ``folder``."""
    index = read_model_index((folder / "model_index.json").read_text())
    unet = _json(folder / "unet" / "config.json")
    vae = _json(folder / "vae" / "config.json")
    scheduler = _json(folder / "scheduler" / "scheduler_config.json")
    text = (
        _json(folder / "text_encoder" / "config.json") if (folder / "text_encoder").is_dir() else {}
    )
    family = detect_family(index, unet, text)
    channels = int(unet.get("in_channels", 4))
    if channels != 4:
        # an inpainting-only UNet (9 channels) cannot serve txt2img or img2img, and the
        # worker's one-weights-three-pipelines design assumes it can
        raise BuildError(
            f"{folder}: the UNet takes {channels} input channels (an inpainting-only model); "
            "sdworker serves txt2img, img2img and inpaint from one standard (4-channel) model"
        )
    scale = 2 ** (len(vae.get("block_out_channels", [0, 0, 0, 0])) - 1)
    native = int(unet.get("sample_size", 64)) * scale
    checker = index.get("safety_checker")
    has_checker = (
        isinstance(checker, list)
        and checker[0] is not None
        and (folder / "safety_checker").is_dir()
    )
    return Manifest(
        name=name,
        family=family,
        native_width=native,
        native_height=native,
        default_scheduler=str(scheduler.get("_class_name", "")),
        has_safety_checker=has_checker,
        prediction_type=str(scheduler.get("prediction_type", "epsilon")),
        source=source,
        sha256=sha256,
    )


def detect_family(
    index: dict[str, Any], unet: dict[str, Any], text_encoder: dict[str, Any]
) -> Family:
    """SD 1.x, SD 2.x or SDXL, from the pipeline class and the text encoder's width."""
    if "XL" in str(index.get("_class_name", "")) or unet.get("addition_embed_type") == "text_time":
        return "sdxl"
    if unet.get("cross_attention_dim") == 1024 or text_encoder.get("hidden_size") == 1024:
        return "sd2"
    return "sd1"


def _json(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise BuildError(f"{path} is missing: not a complete diffusers folder")
    data: dict[str, Any] = json.loads(path.read_text())
    return data


def weights_file(folder: Path) -> str:
    """The UNet weights file whose sha256 is the model's hash (for folder and hub bakes)."""
    for candidate in ("diffusion_pytorch_model.safetensors", "diffusion_pytorch_model.bin"):
        if (folder / "unet" / candidate).is_file():
            return f"unet/{candidate}"
    index = sorted((folder / "unet").glob("*.index.json"))
    if index:
        return f"unet/{index[0].name}"
    raise BuildError(f"{folder}: no UNet weights")


# ------------------------------------------------------------------------------ local folder


def config_folder(family: Family, dest: Path) -> Path:
    """The shipped config folder of ``family`` copied to ``dest``, with its CLIP tokenizers."""
    src = CONFIGS_DIR / family
    if not src.is_dir():
        raise BuildError(f"no shipped configs for family {family!r}")
    shutil.copytree(src, dest)
    # OpenCLIP-trained encoders (SD 2.x, SDXL's second) pad with "!", OpenAI CLIP with EOS
    write_tokenizer(dest / "tokenizer", pad_token="!" if family == "sd2" else "<|endoftext|>")
    if family == "sdxl":
        write_tokenizer(dest / "tokenizer_2", pad_token="!")
    return dest


def restore_index_names(folder: Path, config_index: dict[str, Any]) -> None:
    """Keep the class names the config folder used in ``model_index.json``.

    Saving records the classes actually instantiated (``CLIPImageProcessorPil`` where
    torchvision is absent); the config's generic names load everywhere.
    """
    path = folder / "model_index.json"
    index = json.loads(path.read_text())
    for key, value in config_index.items():
        if isinstance(value, list) and key in index and index[key][0] is not None:
            index[key] = value
    path.write_text(json.dumps(index, indent=2, sort_keys=True) + "\n")
