"""A1111's answers: txt2img/img2img results (``images``, ``parameters``, ``info``), errors, and
the listing routes (models, samplers, schedule types)."""

from __future__ import annotations

import json
import time
from collections.abc import Mapping
from typing import Any

from sdworker.core.jobs import Failure
from sdworker.core.manifest import Manifest
from sdworker.core.media import infotext as write_infotext
from sdworker.formats.a1111.request import A1111Request
from sdworker.formats.a1111.samplers import SamplerCatalog
from sdworker.formats.modelref import a1111_title


def infotext(req: A1111Request, seed: int, model_name: str, model_hash: str) -> str:
    """The generation parameters as A1111 writes them (infotexts), written by the same
    :func:`sdworker.core.media.infotext` that fills the PNG ``parameters`` chunk."""
    extra: dict[str, Any] = {}
    if req.kind == "img2img":
        extra["Denoising strength"] = req.denoising_strength
    if req.hires is not None:
        extra["Denoising strength"] = req.hires.strength
    if req.extra.get("clip_skip", 1) > 1:
        extra["Clip skip"] = req.extra["clip_skip"]
    if req.hires is not None:
        extra.update(req.hires.infotext(req.prompt, req.negative_prompt))
    sampler, schedule = req.shown_sampler
    return write_infotext(
        prompt=req.prompt,
        negative_prompt=req.negative_prompt,
        steps=req.steps,
        sampler=sampler,
        schedule_type=schedule,
        guidance_scale=req.cfg_scale,
        distilled_guidance=req.distilled_cfg_scale,
        seed=seed,
        width=req.width,
        height=req.height,
        model_name=model_name,
        model_hash=model_hash,
        extra=extra,
    )


def _info(
    req: A1111Request, seeds: list[int], count: int, model_name: str, model_hash: str, stamp: str
) -> dict[str, Any]:
    info = _common_info(req, seeds, count, model_name, model_hash, stamp)
    if req.distilled_cfg_scale is not None:
        info["distilled_cfg_scale"] = req.distilled_cfg_scale  # as Forge's info has it
    return info


def _common_info(
    req: A1111Request, seeds: list[int], count: int, model_name: str, model_hash: str, stamp: str
) -> dict[str, Any]:
    return {
        "prompt": req.prompt,
        "all_prompts": [req.prompt] * count,
        "negative_prompt": req.negative_prompt,
        "all_negative_prompts": [req.negative_prompt] * count,
        "seed": seeds[0] if seeds else req.seed,
        "all_seeds": seeds,
        "subseed": -1,
        "all_subseeds": [-1] * count,
        "subseed_strength": 0,
        "width": req.width,
        "height": req.height,
        "sampler_name": req.sampler_name,
        "cfg_scale": req.cfg_scale,
        "steps": req.steps,
        "batch_size": req.batch_size,
        "restore_faces": False,
        "face_restoration_model": None,
        "sd_model_name": model_name,
        "sd_model_hash": model_hash or None,
        "sd_vae_name": None,
        "sd_vae_hash": None,
        "seed_resize_from_w": -1,
        "seed_resize_from_h": -1,
        "denoising_strength": req.hires.strength if req.hires else req.denoising_strength,
        "extra_generation_params": _extra_params(req),
        "index_of_first_image": 0,
        "infotexts": [infotext(req, s, model_name, model_hash) for s in seeds],
        "styles": [],
        "job_timestamp": stamp,
        "clip_skip": req.extra.get("clip_skip", 1),
        "is_using_inpainting_conditioning": req.kind == "img2img" and "mask_image" in req.extra,
        "version": "sdworker",
    }


def _extra_params(req: A1111Request) -> dict[str, Any]:
    """``info.extra_generation_params``: what the infotext shows beyond the usual fields."""
    schedule = req.shown_sampler[1]
    params: dict[str, Any] = {"Schedule type": schedule} if schedule else {}
    if req.distilled_cfg_scale is not None:
        params["Distilled CFG Scale"] = req.distilled_cfg_scale
    if req.hires is not None:
        params["Denoising strength"] = req.hires.strength
        entries = req.hires.infotext(req.prompt, req.negative_prompt)
        params.update({k: v for k, v in entries.items() if v is not None})
    return params


def response(
    req: A1111Request,
    body: Mapping[str, Any],
    outputs: list[dict[str, Any]],
    *,
    model_name: str,
    model_hash: str = "",
    now: float | None = None,
) -> dict[str, Any]:
    """A1111's answer: ``images`` (base64), the request as ``parameters``, ``info`` as JSON text."""
    seeds = [int(o.get("seed", req.seed + k)) for k, o in enumerate(outputs)]
    stamp = time.strftime("%Y%m%d%H%M%S", time.localtime(now))
    info = _info(req, seeds, len(outputs), model_name, model_hash, stamp)
    images = [o["image"] for o in outputs if "image" in o] if req.send_images else []
    parameters = dict(body)
    parameters.update({"seed": req.seed, "sampler_name": req.sampler_name})
    if req.kind == "img2img":
        # A1111 echoes the request minus the (large) input images
        parameters["init_images"] = None
        parameters["mask"] = None
    return {"images": images, "parameters": parameters, "info": json.dumps(info)}


def error_body(failure: Failure) -> dict[str, Any]:
    """A1111's error answer (``api.py`` ``handle_exception``): error type, detail, errors."""
    message = failure.message
    return {"error": failure.kind, "detail": message, "body": "", "errors": message}


def sd_models(manifests: list[Manifest], models_dir: str) -> list[dict[str, Any]]:
    """``GET /sdapi/v1/sd-models``."""
    return [
        {
            "title": a1111_title(m),
            "model_name": m.name,
            "hash": m.short_hash or None,
            "sha256": m.sha256 or None,
            "filename": f"{models_dir.rstrip('/')}/{m.name}.safetensors",
            "config": None,
        }
        for m in manifests
    ]


def samplers(catalog: SamplerCatalog) -> list[dict[str, Any]]:
    """``GET /sdapi/v1/samplers``."""
    return [{"name": n, "aliases": [], "options": {}} for n in catalog.samplers]


def schedulers(catalog: SamplerCatalog) -> list[dict[str, Any]]:
    """``GET /sdapi/v1/schedulers``."""
    return [
        {
            "name": n.lower().replace(" ", "_"),
            "label": n,
            "aliases": None,
            "default_rho": -1,
            "need_inner_model": False,
        }
        for n in catalog.schedulers
    ]
