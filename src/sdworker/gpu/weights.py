"""What a model's weights weigh and in which dtype they run: the dtype a setting names, the
parameters a safetensors file holds (from its header alone), the bytes of loaded modules."""

from __future__ import annotations

import itertools
import json
import math
from pathlib import Path
from typing import Any

import torch


def resolve_dtype(setting: str, device: torch.device, preferred: str = "fp16") -> torch.dtype:
    """The dtype ``SDWORKER_DTYPE`` names; ``auto`` is ``preferred`` (the model family's) on a
    CUDA device, float32 elsewhere."""
    if setting == "auto":
        setting = preferred if device.type == "cuda" else "fp32"
    named = {
        "fp16": torch.float16,
        "float16": torch.float16,
        "bf16": torch.bfloat16,
        "bfloat16": torch.bfloat16,
        "fp32": torch.float32,
        "float32": torch.float32,
    }
    return named[setting]


def parameter_count(path: Path) -> int | None:
    """Elements in a safetensors file, read from its header alone; None if unreadable."""
    try:
        with path.open("rb") as fh:
            size = int.from_bytes(fh.read(8), "little")
            header = json.loads(fh.read(size))
    except (OSError, ValueError):
        return None
    return sum(math.prod(meta["shape"]) for key, meta in header.items() if key != "__metadata__")


def tensor_bytes(module: torch.nn.Module) -> int:
    """Bytes of a module's parameters and buffers."""
    tensors = itertools.chain(module.parameters(), module.buffers())
    return sum(t.numel() * t.element_size() for t in tensors)


def module_bytes(pipe: Any) -> int:
    """Bytes of every module of a pipeline."""
    modules = pipe.components.values()
    return sum(tensor_bytes(m) for m in modules if isinstance(m, torch.nn.Module))
