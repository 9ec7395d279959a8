"""Textual-inversion embeddings as files: their layout, which models they fit, and A1111's
listing of them. Torch-free; the GPU side (:mod:`sdworker.gpu.embeddings`) applies them.

An embedding is a few vectors that stand in for a word's token embeddings. The files people
use are safetensors with one tensor of ``vectors x width`` (A1111's ``emb_params``, or
diffusers' ``{token: tensor}``) for SD 1.x (width 768) and 2.x (1024), or a ``clip_l`` and a
``clip_g`` tensor for SDXL's two encoders (768 and 1280). Its trigger word is its file's
name without the extension, as in A1111.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

#: SDXL's tensors, in the order of its text encoders (CLIP-L, then OpenCLIP-G)
SDXL_KEYS = ("clip_l", "clip_g")


@dataclass(frozen=True)
class Layout:
    """What an embedding file holds: per text encoder, the tensor's name; and its shape."""

    #: the tensor for each text encoder, in the pipeline's order
    keys: tuple[str, ...]
    #: the width of each (the encoder's token embedding width it must match)
    widths: tuple[int, ...]
    #: how many tokens' worth of vectors it stands for
    vectors: int

    @property
    def shape(self) -> int:
        """A1111's ``shape``: the widths summed (2048 for SDXL)."""
        return sum(self.widths)


def layout(shapes: Mapping[str, Sequence[int]]) -> Layout | None:
    """The embedding in a file of these tensor shapes, or None when it holds none."""
    if set(SDXL_KEYS) <= set(shapes):
        pair = [shapes[k] for k in SDXL_KEYS]
        if all(len(s) == 2 and s[0] >= 1 for s in pair) and pair[0][0] == pair[1][0]:
            return Layout(SDXL_KEYS, (int(pair[0][1]), int(pair[1][1])), int(pair[0][0]))
        return None
    if len(shapes) != 1:
        return None
    [(key, shape)] = shapes.items()
    if len(shape) == 1 and shape[0] >= 1:
        return Layout((key,), (int(shape[0]),), 1)
    if len(shape) == 2 and shape[0] >= 1 and shape[1] >= 1:
        return Layout((key,), (int(shape[1]),), int(shape[0]))
    return None


def encoder_widths(model_dir: Path, components: tuple[str, ...]) -> tuple[int, ...] | None:
    """The token embedding width of each text encoder of a baked model (its configs'
    ``hidden_size``), or None when a config cannot be read."""
    widths = []
    for component in components:
        try:
            config: Any = json.loads((model_dir / component / "config.json").read_text())
            widths.append(int(config["hidden_size"]))
        except (OSError, ValueError, KeyError, TypeError):
            return None
    return tuple(widths)


#: the text encoder components an embedding's tensors go to, one per tensor
ENCODERS = ("text_encoder", "text_encoder_2")


def fits(found: Layout, widths: tuple[int, ...] | None) -> bool:
    """Whether an embedding of ``found`` layout fits a model whose encoders have ``widths``."""
    return widths is not None and found.widths == widths


def a1111_entry(found: Layout) -> dict[str, Any]:
    """One embedding as A1111's ``/sdapi/v1/embeddings`` shows it (a safetensors file has no
    training step or checkpoint recorded)."""
    return {
        "step": None,
        "sd_checkpoint": None,
        "sd_checkpoint_name": None,
        "shape": found.shape,
        "vectors": found.vectors,
    }
