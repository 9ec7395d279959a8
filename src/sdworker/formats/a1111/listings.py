"""The A1111 routes that list what this server has and change nothing: LoRAs and embeddings
(baked and on the network volume), VAEs, upscalers, latent upscale modes, command-line flags, memory, prompt styles and face
restorers, each in A1111's shape and each true of this server.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from sdworker.core import embeddings as ti
from sdworker.core.assets import EMBEDDING, LORA, SAFE_EXTENSIONS, AssetRegistry, read_header
from sdworker.core.models import ModelInfo
from sdworker.core.settings import Settings
from sdworker.families import get as family_of
from sdworker.formats.a1111.hires import IMAGE_UPSCALERS, LATENT_MODES

#: why ``cuda`` has no figures: no NVIDIA driver tool on this machine (A1111 answers an
#: ``error`` there too)
DEVICE_MEMORY_NOTE = "no CUDA device: nvidia-smi is not on this machine's PATH"
#: the driver's reading of the first device's memory, in MiB
NVIDIA_SMI = (
    "nvidia-smi",
    "--query-gpu=memory.total,memory.used,memory.free",
    "--format=csv,noheader,nounits",
)


def loras(assets: AssetRegistry) -> list[dict[str, Any]]:
    """``GET /sdapi/v1/loras``: the baked and volume LoRAs, each under the name
    ``<lora:name:scale>`` and the native ``lora`` take (a volume one's path below
    ``models/loras``, without ``.safetensors``), with its file's metadata (kohya's ``ss_*``)."""
    listed = []
    for asset in assets.all(LORA):
        if asset.refused is not None:
            continue
        name = asset.name
        if asset.source == "volume":
            name = next((name[: -len(s)] for s in SAFE_EXTENSIONS if name.endswith(s)), name)
        try:
            metadata = dict(read_header(asset.path).metadata)
        except (OSError, ValueError):
            metadata = {}
        listed.append({"name": name, "alias": name, "path": str(asset.path), "metadata": metadata})
    return listed


def sd_vae() -> list[dict[str, Any]]:
    """``GET /sdapi/v1/sd-vae``: no separate VAE files; each baked model carries its own."""
    return []


def embeddings(assets: AssetRegistry, model: ModelInfo | None) -> dict[str, dict[str, Any]]:
    """``GET /sdapi/v1/embeddings``: every embedding by its trigger word, ``loaded`` when it
    fits the default model's text encoders (a prompt there uses it), else ``skipped``, as
    A1111 sorts them against its loaded checkpoint."""
    widths = _encoder_widths(model)
    answer: dict[str, dict[str, Any]] = {"loaded": {}, "skipped": {}}
    for asset in assets.all(EMBEDDING):
        if asset.refused is not None:
            continue
        try:
            shape = ti.layout(read_header(asset.path).shapes)
        except (OSError, ValueError):
            continue
        if shape is None:
            continue
        where = "loaded" if ti.fits(shape, widths) else "skipped"
        answer[where][asset.name] = ti.a1111_entry(shape)
    return answer


def _encoder_widths(model: ModelInfo | None) -> tuple[int, ...] | None:
    if model is None:
        return None
    try:
        encoding = family_of(model.manifest.family).prompts
    except LookupError:
        return None
    if not encoding.textual_inversion:
        return None
    return ti.encoder_widths(model.path, ti.ENCODERS[: len(encoding.encoders)])


def upscalers() -> list[dict[str, Any]]:
    """``GET /sdapi/v1/upscalers``: the image upscalers (A1111's built-in ones that need no
    model file)."""
    return [
        {"name": name, "model_name": None, "model_path": None, "model_url": None, "scale": 4}
        for name in IMAGE_UPSCALERS
    ]


def latent_upscale_modes() -> list[dict[str, str]]:
    """``GET /sdapi/v1/latent-upscale-modes``: what ``hr_upscaler`` takes besides upscalers."""
    return [{"name": name} for name in LATENT_MODES]


def prompt_styles() -> list[dict[str, Any]]:
    """``GET /sdapi/v1/prompt-styles``: no saved styles (``styles`` must be empty)."""
    return []


def face_restorers() -> list[dict[str, Any]]:
    """``GET /sdapi/v1/face-restorers``: none (``restore_faces`` must be off)."""
    return []


def cmd_flags(settings: Settings) -> dict[str, Any]:
    """``GET /sdapi/v1/cmd-flags``: A1111's command-line flags as they describe this server
    (an API without a web UI, its folders, its device); credentials are never shown."""
    cpu = settings.device == "cpu"
    return {
        "api": True,
        "nowebui": True,
        "api_log": False,
        "api_auth": None,
        "api_server_stop": False,
        "listen": False,
        "port": None,
        "share": False,
        "gradio_auth": None,
        "skip_torch_cuda_test": cpu,
        "use_cpu": ["all"] if cpu else [],
        "no_half": settings.dtype in ("float32", "fp32"),
        "no_half_vae": settings.dtype in ("float32", "fp32"),
        "precision": "full" if settings.dtype in ("float32", "fp32") else "autocast",
        "medvram": False,
        "lowvram": False,
        "xformers": settings.attention == "xformers",
        "opt_sdp_attention": settings.attention in ("auto", "sdpa"),
        "ckpt": None,
        "ckpt_dir": str(settings.models_dir),
        "lora_dir": str(settings.models_dir / "loras"),
        "vae_dir": None,
        "embeddings_dir": None,
        "hypernetwork_dir": None,
        "models_dir": str(settings.models_dir),
        "data_dir": str(settings.state_dir),
        "freeze_settings": False,
        "disable_safe_unpickle": False,
        "enable_insecure_extension_access": False,
        "disable_all_extensions": True,
        "no_download_sd_model": True,
        "do_not_download_clip": True,
        "skip_install": True,
        "skip_version_check": True,
    }


def _meminfo(path: Path = Path("/proc/meminfo")) -> dict[str, int]:
    """``/proc/meminfo`` in bytes."""
    values = {}
    for line in path.read_text().splitlines():
        name, _, rest = line.partition(":")
        parts = rest.split()
        if parts and parts[0].isdigit():
            values[name] = int(parts[0]) * (1024 if parts[1:] == ["kB"] else 1)
    return values


def _rss(path: Path = Path("/proc/self/status")) -> int:
    """This process's resident memory in bytes."""
    for line in path.read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise ValueError("no VmRSS")


def memory() -> dict[str, Any]:
    """``GET /sdapi/v1/memory``: the system's RAM and this server process's share of it
    (A1111's ``ram``), and device memory as A1111 answers without CUDA (``cuda.error``)."""
    ram: dict[str, Any]
    try:
        info = _meminfo()
        total, rss = info["MemTotal"], _rss()
        available = info.get("MemAvailable", info.get("MemFree", 0))
        # as A1111: "used" is this process's resident memory, "free" the rest of the total
        ram = {"free": total - rss, "used": rss, "total": total, "available": available}
    except (OSError, KeyError, ValueError) as exc:
        ram = {"error": f"not readable on {sys.platform} ({exc.__class__.__name__})"}
    return {"ram": ram, "cuda": device_memory()}


def _nvidia_smi(argv: Sequence[str]) -> str:
    return subprocess.run(argv, capture_output=True, text=True, timeout=5, check=True).stdout


def device_memory(read: Callable[[Sequence[str]], str] = _nvidia_smi) -> dict[str, Any]:
    """The first CUDA device's memory as the driver reports it (A1111's ``cuda.system``:
    bytes ``free``, ``used``, ``total``, for every process on the device, the workers'
    included), or ``{"error": ...}`` when no driver tool is there or it fails."""
    if read is _nvidia_smi and shutil.which(NVIDIA_SMI[0]) is None:
        return {"error": DEVICE_MEMORY_NOTE}
    try:
        first = read(NVIDIA_SMI).strip().splitlines()[0]
        total, used, free = (int(float(v)) * 1024 * 1024 for v in first.split(","))
    except (OSError, subprocess.SubprocessError, IndexError, ValueError) as exc:
        return {"error": f"nvidia-smi gave no reading ({exc.__class__.__name__})"}
    return {"system": {"free": free, "used": used, "total": total}}


def hypernetworks() -> list[dict[str, Any]]:
    """``GET /sdapi/v1/hypernetworks``: none."""
    return []


def realesrgan_models() -> list[dict[str, Any]]:
    """``GET /sdapi/v1/realesrgan-models``: none (``/upscalers`` lists what there is)."""
    return []
