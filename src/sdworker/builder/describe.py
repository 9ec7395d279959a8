"""Describing a diffusers folder as a baked model: its family (asked of the families), native
size, default scheduler, defaults and files (the manifest), and the shipped configs of
single-file checkpoints.

Shared by every way of baking (:mod:`~sdworker.builder.bake`,
:mod:`~sdworker.builder.random_weights`), which is why it stands alone.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

from sdworker import families
from sdworker.builder.clip_bpe import EOS, write_tokenizer
from sdworker.builder.files import pipeline_components, read_model_index
from sdworker.core.errors import BuildError
from sdworker.core.manifest import Manifest
from sdworker.families import ModelConfigs

CONFIGS_DIR = Path(__file__).parent / "configs"


def folder_configs(folder: Path, source: str = "") -> ModelConfigs:
    """The configs of the diffusers folder ``folder``: its index and each component's."""
    index = read_model_index((folder / "model_index.json").read_text())
    components: dict[str, dict[str, Any]] = {}
    for component in pipeline_components(index):
        for name in ("config.json", "scheduler_config.json"):
            if (folder / component / name).is_file():
                components[component] = _json(folder / component / name)
                break
    return ModelConfigs(index, components, source)


def describe_folder(folder: Path, name: str, source: str, sha256: str = "") -> Manifest:
    """A manifest (without its file list) for the diffusers folder ``folder``: its family
    (the first of :data:`sdworker.families.FAMILIES` to recognise it), native size, default
    scheduler and the defaults the model carries."""
    configs = folder_configs(folder, source)
    family = families.recognise(configs)
    if family is None:
        raise BuildError(
            f"{folder}: {configs.pipeline_class or 'this pipeline'} is no model family "
            f"sdworker serves ({', '.join(families.names())})"
        )
    for required in (family.denoiser, "vae", "scheduler"):
        if required not in configs.components:
            raise BuildError(f"{folder / required} is missing: not a complete diffusers folder")
    problem = family.problem(configs)
    if problem:
        raise BuildError(f"{folder}: {problem}")
    scheduler = configs.config("scheduler")
    checker = configs.index.get("safety_checker")
    has_checker = (
        isinstance(checker, list)
        and checker[0] is not None
        and (folder / "safety_checker").is_dir()
    )
    native = native_side(configs, family.denoiser, family.size.native)
    return Manifest(
        name=name,
        family=family.name,
        native_width=native,
        native_height=native,
        default_scheduler=str(scheduler.get("_class_name", "")),
        has_safety_checker=has_checker,
        prediction_type=str(scheduler.get("prediction_type", "epsilon")),
        source=source,
        sha256=sha256,
        defaults=family.model_defaults(configs),
    )


def native_side(configs: ModelConfigs, denoiser: str, fallback: int) -> int:
    """The side the model was trained at: its denoiser's sample size (in latents) times the
    VAE's scale; ``fallback`` (the family's) when the config does not say."""
    sample = configs.config(denoiser).get("sample_size")
    blocks = configs.config("vae").get("block_out_channels", [0, 0, 0, 0])
    if not isinstance(sample, int):
        return fallback
    return sample * 2 ** (len(blocks) - 1)


def _json(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise BuildError(f"{path} is missing: not a complete diffusers folder")
    data: dict[str, Any] = json.loads(path.read_text())
    return data


def weights_file(folder: Path, denoiser: str = "unet") -> str:
    """The denoiser's weights file whose sha256 is the model's hash (for folder and hub
    bakes): the UNet's, or the transformer's."""
    for candidate in ("diffusion_pytorch_model.safetensors", "diffusion_pytorch_model.bin"):
        if (folder / denoiser / candidate).is_file():
            return f"{denoiser}/{candidate}"
    index = sorted((folder / denoiser).glob("*.index.json"))
    if index:
        return f"{denoiser}/{index[0].name}"
    raise BuildError(f"{folder}: no {denoiser} weights")


# ------------------------------------------------------------------------------ local folder


#: a tokenizer folder that holds a T5 tokenizer (built from the CLIP words), not a CLIP one
T5 = "t5"
#: the tokenizers each shipped config folder needs: a CLIP one by the token it pads with
#: (OpenCLIP-trained encoders, SD 2.x's and the second of SDXL and SD 3, pad with "!",
#: OpenAI's CLIP with its end-of-text token), or :data:`T5`
_TOKENIZERS: dict[str, dict[str, str]] = {
    "sd1": {"tokenizer": EOS},
    "sd2": {"tokenizer": "!"},
    "sdxl": {"tokenizer": EOS, "tokenizer_2": "!"},
    "flux-schnell": {"tokenizer": EOS, "tokenizer_2": T5},
    "sd35-medium": {"tokenizer": EOS, "tokenizer_2": "!", "tokenizer_3": T5},
}


def config_folder(name: str, dest: Path) -> Path:
    """The shipped config folder ``name`` copied to ``dest``, with its tokenizers."""
    from sdworker.builder.t5_tokenizer import write_t5_tokenizer

    src = CONFIGS_DIR / name
    if not src.is_dir() or name not in _TOKENIZERS:
        raise BuildError(f"no shipped configs {name!r} (shipped: {', '.join(_TOKENIZERS)})")
    shutil.copytree(src, dest)
    for folder, pad in _TOKENIZERS[name].items():
        if pad == T5:
            write_t5_tokenizer(dest / folder)
        else:
            write_tokenizer(dest / folder, pad_token=pad)
    return dest


def tokenizer_folders(name: str) -> list[str]:
    """The tokenizer folders of the shipped config folder ``name``."""
    return list(_TOKENIZERS.get(name, {}))


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
