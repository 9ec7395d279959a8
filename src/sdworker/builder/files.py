"""Which files of a diffusers repository a baked model needs.

A hub repository of a Stable Diffusion model often holds the weights three or four times over
(``.bin`` and ``.safetensors``, full and ``fp16`` variants, an original-layout checkpoint at the
root, ONNX and Flax exports). A bake keeps one copy: ``model_index.json``, each pipeline
component's configs and tokenizer files, and that component's weights in one format — the
``fp16`` variant when it exists (unless another variant is asked for), else the full weights;
``.safetensors`` over ``.bin``.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from pathlib import PurePosixPath

from sdworker.core.errors import BuildError

WEIGHT_EXTS = (".safetensors", ".bin")
#: small files a component needs besides its weights (configs, tokenizer vocabularies)
AUX_EXTS = (".json", ".txt", ".model")
#: weight formats that diffusers/transformers in PyTorch never read
FOREIGN = re.compile(
    r"(\.onnx|\.msgpack|\.h5|\.pb|\.ckpt|\.pt|\.pth|\.xml|\.mlmodel)$|onnx|openvino"
)
_INDEX = re.compile(r"^(?P<stem>[^.]+)\.(?P<fmt>safetensors|bin)\.index(?:\.(?P<var>\w+))?\.json$")
_SHARD = re.compile(
    r"^(?P<stem>[^.]+)(?:\.(?P<var>\w+))?-\d{5}-of-\d{5}\.(?P<fmt>safetensors|bin)$"
)
_SINGLE = re.compile(r"^(?P<stem>[^.]+)(?:\.(?P<var>\w+))?\.(?P<fmt>safetensors|bin)$")


def pipeline_components(model_index: dict[str, object]) -> list[str]:
    """The component folders ``model_index.json`` names (those not set to null)."""
    names = []
    for key, value in model_index.items():
        if key.startswith("_") or not isinstance(value, list) or len(value) != 2:
            continue
        if value[0] is not None:
            names.append(key)
    return sorted(names)


def weight_info(filename: str) -> tuple[str, str | None] | None:
    """``(format, variant)`` of a weights file, shard or shard index; None for other files."""
    for pattern in (_INDEX, _SHARD, _SINGLE):
        if m := pattern.match(filename):
            return m["fmt"], m["var"]
    return None


def select_files(
    files: Iterable[str], model_index: dict[str, object], variant: str | None = "auto"
) -> list[str]:
    """The repository paths to bake, from the full list ``files``.

    ``variant`` is ``"auto"`` (fp16 when present), a variant name, or None (full weights only).
    Raises :class:`BuildError` naming the component whose weights cannot be found.
    """
    all_files = sorted(set(files))
    if "model_index.json" not in all_files:
        raise BuildError("not a diffusers repository: no model_index.json")
    chosen = ["model_index.json"]
    for component in pipeline_components(model_index):
        inside = [
            f[len(component) + 1 :]
            for f in all_files
            if f.startswith(component + "/") and "/" not in f[len(component) + 1 :]
        ]
        usable = [f for f in inside if not FOREIGN.search(f)]
        weights = {f: info for f in usable if (info := weight_info(f)) is not None}
        if not weights and len(usable) < len(inside):
            raise BuildError(
                f"component {component}: no PyTorch weights (.safetensors or .bin), only "
                + ", ".join(sorted(set(inside) - set(usable)))
            )
        inside = usable
        aux = [f for f in inside if f not in weights and f.endswith(AUX_EXTS)]
        chosen += [f"{component}/{f}" for f in aux]
        if weights:
            chosen += [f"{component}/{f}" for f in _pick_weights(component, weights, variant)]
        elif not any(f.endswith(("config.json", "_config.json")) for f in aux):
            raise BuildError(f"component {component}: no config or weights in the repository")
    return sorted(chosen)


def _pick_weights(
    component: str, weights: dict[str, tuple[str, str | None]], variant: str | None
) -> list[str]:
    wanted_variants: list[str | None]
    if variant == "auto":
        wanted_variants = ["fp16", None]
    elif variant is None:
        wanted_variants = [None]
    else:
        # as diffusers does: a component without the variant loads its full weights
        wanted_variants = [variant, None]
    for wanted in wanted_variants:
        for fmt in ("safetensors", "bin"):
            picked = [
                f for f, (f_fmt, f_var) in weights.items() if f_fmt == fmt and f_var == wanted
            ]
            if picked:
                return sorted(picked)
    raise BuildError(
        f"component {component}: no weights for variant {variant!r} "
        f"(found: {', '.join(sorted(weights))})"
    )


def canonical_name(filename: str) -> str:
    """The name a variant file gets in the baked folder, so it loads without ``variant=``.

    ``diffusion_pytorch_model.fp16.safetensors`` → ``diffusion_pytorch_model.safetensors``, the
    shard index likewise; shard files keep their names (the index refers to them).
    """
    path = PurePosixPath(filename)
    if (m := _INDEX.match(path.name)) and m["var"]:
        return str(path.with_name(f"{m['stem']}.{m['fmt']}.index.json"))
    if (m := _SINGLE.match(path.name)) and m["var"]:
        return str(path.with_name(f"{m['stem']}.{m['fmt']}"))
    return filename


def read_model_index(text: str) -> dict[str, object]:
    """Parse ``model_index.json``; a clear error when it is not a pipeline index."""
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise BuildError(f"model_index.json is not JSON: {exc}") from exc
    if not isinstance(data, dict) or "_class_name" not in data:
        raise BuildError("model_index.json has no _class_name: not a diffusers pipeline")
    return data
