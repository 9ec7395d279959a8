"""``GET /object_info``: the nodes sdworker reads, in ComfyUI's shape, with the names this
deployment takes in each list (its models and aliases for ``ckpt_name``, its LoRAs, the
uploaded images), so clients that build workflows from it (and worker-comfyui's "available
checkpoints" hint) see what runs here."""

from __future__ import annotations

import typing
from collections.abc import Mapping, Sequence
from typing import Any

from pydantic.fields import FieldInfo

from sdworker.formats.comfyui.components import STANDARD_VAES
from sdworker.formats.comfyui.nodes import SPECS, NodeSpec
from sdworker.formats.comfyui.samplers import SAMPLER_NAMES, SCHEDULE_TYPES

_STANDARD_ENCODERS = ("clip_l.safetensors", "clip_g.safetensors", "t5xxl_fp16.safetensors",
                      "t5xxl_fp8_e4m3fn.safetensors")  # fmt: skip
_NUMBERS = {int: "INT", float: "FLOAT", str: "STRING", bool: "BOOLEAN"}


def _choices(field: FieldInfo) -> list[str] | None:
    args = typing.get_args(field.annotation)
    if typing.get_origin(field.annotation) is typing.Literal:
        return [str(a) for a in args]
    return None


def _kind(field: FieldInfo) -> str:
    annotation = field.annotation
    while typing.get_origin(annotation) is typing.Annotated:
        annotation = typing.get_args(annotation)[0]
    return _NUMBERS.get(annotation, "STRING") if isinstance(annotation, type) else "STRING"


def _options(field: FieldInfo) -> dict[str, Any]:
    options: dict[str, Any] = {}
    if not field.is_required():
        options["default"] = field.default
    for rule in field.metadata:
        for name, key in (("ge", "min"), ("le", "max")):
            bound = getattr(rule, name, None)
            if bound is not None:
                options[key] = bound
    return options


def _widget(name: str, field: FieldInfo, lists: Mapping[str, Sequence[str]]) -> list[Any]:
    choices = lists.get(name) or _choices(field)
    if choices is not None:
        return [list(choices), _options(field)]
    return [_kind(field), _options(field)]


def node_info(spec: NodeSpec, lists: Mapping[str, Sequence[str]]) -> dict[str, Any]:
    """One node class as ``/object_info`` describes it."""
    required: dict[str, Any] = {name: [kind] for name, kind in spec.sockets.items()}
    for name, field in spec.widgets.model_fields.items():
        required[name] = _widget(name, field, lists)
    names = [o.lower() for o in spec.outputs]
    return {
        "input": {"required": required, "optional": {}},
        "input_order": {"required": list(required), "optional": []},
        "output": list(spec.outputs),
        "output_is_list": [False] * len(spec.outputs),
        "output_name": names,
        "name": spec.class_type,
        "display_name": spec.class_type,
        "description": "",
        "python_module": "nodes",
        "category": spec.category,
        "output_node": spec.output_node,
    }


def object_info(
    models: Sequence[str], loras: Sequence[str], images: Sequence[str]
) -> dict[str, Any]:
    """Every node sdworker reads, with this deployment's names in its lists."""
    lists: dict[str, Sequence[str]] = {
        "ckpt_name": models,
        "unet_name": models,
        "lora_name": [_file_name(name) for name in loras],
        "vae_name": sorted(f"{stem}.safetensors" for stem in STANDARD_VAES),
        "clip_name": _STANDARD_ENCODERS,
        "clip_name1": _STANDARD_ENCODERS,
        "clip_name2": _STANDARD_ENCODERS,
        "image": images,
        "sampler_name": list(SAMPLER_NAMES),
        "scheduler": list(SCHEDULE_TYPES),
    }
    return {name: node_info(spec, lists) for name, spec in SPECS.items()}


def _file_name(name: str) -> str:
    """A LoRA as ComfyUI lists it: its file name (a volume LoRA's name is one already)."""
    return name if name.endswith(".safetensors") else f"{name}.safetensors"
