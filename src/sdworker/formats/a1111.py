"""AUTOMATIC1111 ``/sdapi/v1`` bodies to native inputs and native outputs back to A1111's answer.

Pure functions: no HTTP, no queue. One A1111 request becomes ``n_iter`` native jobs of
``batch_size`` images each; image *k* of the whole request uses ``seed + k`` exactly as A1111's
``all_seeds`` does, and as the native seed promise does within a job.
"""

from __future__ import annotations

import importlib
import json
import random
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from sdworker.core.errors import InvalidInput, SdworkerError
from sdworker.core.infotext import infotext as write_infotext
from sdworker.core.jobs import Failure
from sdworker.core.manifest import Manifest
from sdworker.core.schema import SEED_LIMIT
from sdworker.core.settings import MAX_SIDE, MIN_SIDE, SIDE_STEP
from sdworker.formats.fields import FieldReader
from sdworker.formats.modelref import a1111_title, resolve, strip_ref

Kind = Literal["txt2img", "img2img"]

#: A1111's own API defaults (``StableDiffusionProcessingTxt2Img`` via ``/docs``)
DEFAULTS: dict[str, Any] = {
    "steps": 50,
    "cfg_scale": 7.0,
    "width": 512,
    "height": 512,
    "batch_size": 1,
    "n_iter": 1,
    "sampler_name": "Euler",
    "denoising_strength": 0.75,
}
MAX_BATCH = 8
MAX_IMAGES = 64

#: native field → the A1111 field a client wrote, for error messages coming back from a job
NATIVE_TO_A1111: dict[str, str] = {
    "num_inference_steps": "steps",
    "guidance_scale": "cfg_scale",
    "num_images": "batch_size",
    "image": "init_images",
    "mask_image": "mask",
    "strength": "denoising_strength",
    "model": "override_settings.sd_model_checkpoint",
    "scheduler": "sampler_name",
    "output_format": "override_settings.samples_format",
}

_HONOURED = {
    "prompt", "negative_prompt", "seed", "sampler_name", "sampler_index", "scheduler", "steps",
    "cfg_scale", "width", "height", "batch_size", "n_iter", "override_settings", "send_images",
}  # fmt: skip
_HONOURED_IMG2IMG = {"init_images", "mask", "denoising_strength"}
#: accepted and without effect here, whatever their value (saving, bookkeeping, tuning knobs
#: of samplers we do not expose); A1111 clients copied from ``/docs`` send them all
_INERT = {
    "subseed", "seed_resize_from_h", "seed_resize_from_w", "do_not_save_samples",
    "do_not_save_grid", "eta", "s_min_uncond", "s_churn", "s_tmax", "s_tmin", "s_noise",
    "override_settings_restore_afterwards", "comments", "force_task_id", "infotext",
    "save_images", "script_args", "disable_extra_networks", "firstpass_image",
    "firstphase_width", "firstphase_height", "hr_scale", "hr_upscaler", "hr_second_pass_steps",
    "hr_resize_x", "hr_resize_y", "hr_checkpoint_name", "hr_sampler_name", "hr_scheduler",
    "hr_prompt", "hr_negative_prompt", "hr_additional_modules", "refiner_switch_at",
    "user", "mask_blur", "mask_blur_x", "mask_blur_y", "inpainting_fill", "inpaint_full_res",
    "inpaint_full_res_padding", "resize_mode", "image_cfg_scale", "initial_noise_multiplier",
    "mask_round", "include_init_images", "latent_mask", "sampler_noise_scheduler_override",
    "denoising_strength",
}  # fmt: skip
#: accepted only at the value that means "off": anything else asks for a feature this worker
#: does not have, and silently ignoring it would hand back a different picture than asked
_OFF_ONLY: dict[str, tuple[Any, ...]] = {
    "enable_hr": (False,),
    "restore_faces": (False, None),
    "tiling": (False, None),
    "subseed_strength": (0, 0.0),
    "styles": ([], None),
    "script_name": ("", None),
    "alwayson_scripts": ({},),
    "refiner_checkpoint": ("", None),
    "inpainting_mask_invert": (0, False),
}
_OVERRIDE_HONOURED = {"sd_model_checkpoint", "samples_format", "CLIP_stop_at_last_layers"}
#: override/option keys whose default we already match, accepted at that value
_OVERRIDE_DEFAULTS: dict[str, tuple[Any, ...]] = {
    "eta_noise_seed_delta": (0,),
}
#: A1111's "Clip skip" setting (1 = the text encoder's last layer), the native ``clip_skip``
CLIP_SKIP = "CLIP_stop_at_last_layers"
MAX_CLIP_SKIP = 12
#: override keys accepted with any value: the baked model carries its own VAE, and a client
#: naming one (often the model's own) must not be turned away for it
_OVERRIDE_INERT = {"sd_vae"}
_FORMATS = {"png": "png", "jpg": "jpeg", "jpeg": "jpeg", "webp": "webp"}


@dataclass(frozen=True)
class SamplerCatalog:
    """What A1111 calls samplers and schedule types, and how a pair becomes a native name."""

    samplers: list[str]
    schedulers: list[str]
    #: (sampler_name, scheduler or None) → native ``scheduler``; raises on an unknown pair
    normalise: Callable[[str, str | None], str]


def default_catalog() -> SamplerCatalog:
    """The catalog of :mod:`sdworker.core.schedulers`, strict about names the dialect must reject."""
    # imported by name at call time: the catalog belongs to the scheduler module, and the
    # translation must stay importable (and testable with a fake catalog) without it
    schedulers = importlib.import_module("sdworker.core.schedulers")
    types = {s.casefold() for s in schedulers.A1111_SCHEDULERS}

    def normalise(sampler: str, scheduler: str | None) -> str:
        if scheduler and scheduler.casefold() not in types:
            raise InvalidInput.one("scheduler", "unknown schedule type", scheduler)
        name = schedulers.normalise(sampler, scheduler)
        if name is None or schedulers.resolve(name) is None:
            raise InvalidInput.one("sampler_name", "unknown sampler", sampler)
        return str(name)

    return SamplerCatalog(
        samplers=list(schedulers.A1111_SAMPLERS),
        schedulers=list(schedulers.A1111_SCHEDULERS),
        normalise=normalise,
    )


@dataclass
class Options:
    """The server-side A1111 options a client can read and set (``/sdapi/v1/options``)."""

    values: dict[str, Any] = field(default_factory=lambda: {"samples_format": "png"})


@dataclass
class A1111Request:
    """One txt2img/img2img request, checked and resolved, ready to become native jobs."""

    kind: Kind
    prompt: str
    negative_prompt: str
    seed: int
    sampler_name: str
    scheduler: str | None
    native_scheduler: str
    steps: int
    cfg_scale: float
    width: int
    height: int
    batch_size: int
    n_iter: int
    model: str | None
    output_format: str
    send_images: bool
    denoising_strength: float | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def total(self) -> int:
        return self.batch_size * self.n_iter

    @property
    def all_seeds(self) -> list[int]:
        return [self.seed + k for k in range(self.total)]

    def jobs(self) -> list[dict[str, Any]]:
        """The native inputs, one per ``n_iter`` iteration."""
        jobs = []
        for it in range(self.n_iter):
            job: dict[str, Any] = {
                "prompt": self.prompt,
                "negative_prompt": self.negative_prompt,
                "width": self.width,
                "height": self.height,
                "num_inference_steps": self.steps,
                "guidance_scale": self.cfg_scale,
                "num_images": self.batch_size,
                "seed": self.seed + it * self.batch_size,
                "scheduler": self.native_scheduler,
                "output_format": self.output_format,
                # A1111 clients can only read base64 images
                "upload": False,
            }
            if self.model is not None:
                job["model"] = self.model
            job.update(self.extra)
            jobs.append(job)
        return jobs


def parse(
    body: Any,
    kind: Kind,
    *,
    catalog: SamplerCatalog,
    manifests: list[Manifest] | None,
    default_model: str | None,
    options: Options | None = None,
    rng: random.Random | None = None,
) -> A1111Request:
    """Check an A1111 body and resolve it; raise :class:`InvalidInput` naming A1111 fields.

    ``manifests`` None means the models are not known here (inside a worker): model names are
    passed through for the job's own validation.
    """
    r = FieldReader(body)
    allowed = _HONOURED | _INERT | set(_OFF_ONLY)
    if kind == "img2img":
        allowed |= _HONOURED_IMG2IMG
    r.unknown(allowed)
    for key, offs in _OFF_ONLY.items():
        if key in r.body and r.body[key] not in offs:
            r.bad(key, "is not supported by this server (only the default is)", r.body[key])

    prompt = r.string("prompt", "") or ""
    if not prompt.strip():
        # A1111 renders an empty prompt; the native contract wants text, so say so up front
        r.bad("prompt", "must not be empty", r.body.get("prompt", ""))
    negative = r.string("negative_prompt", "") or ""
    steps = r.integer("steps", DEFAULTS["steps"], lo=1, hi=500)
    cfg = r.number("cfg_scale", DEFAULTS["cfg_scale"], lo=0, hi=30)
    width = _size(r, "width")
    height = _size(r, "height")
    batch = r.integer("batch_size", DEFAULTS["batch_size"], lo=1, hi=MAX_BATCH)
    n_iter = r.integer("n_iter", DEFAULTS["n_iter"], lo=1, hi=MAX_IMAGES)
    total = (batch or 1) * (n_iter or 1)
    if total > MAX_IMAGES:
        r.bad("n_iter", f"batch_size * n_iter must be at most {MAX_IMAGES}", n_iter)
    seed = r.integer("seed", -1, lo=-1, hi=SEED_LIMIT - 1)
    if seed is not None and seed >= 0 and seed + total > SEED_LIMIT:
        r.bad("seed", f"seed + batch_size * n_iter must stay below {SEED_LIMIT}", seed)
    send_images = r.boolean("send_images", True)

    sampler = r.string("sampler_name") or r.string("sampler_index") or DEFAULTS["sampler_name"]
    scheduler = r.string("scheduler")
    native_scheduler = ""
    try:
        native_scheduler = catalog.normalise(sampler, scheduler)
    except (SdworkerError, ValueError, KeyError) as exc:
        which = "scheduler" if scheduler and _known(sampler, catalog.samplers) else "sampler_name"
        choices = catalog.schedulers if which == "scheduler" else catalog.samplers
        value = scheduler if which == "scheduler" else sampler
        r.bad(which, f"unknown (valid: {', '.join(choices)})", value)
        del exc

    opts = dict(options.values) if options else {}
    overrides = r.child("override_settings")
    for key in overrides.body:
        if key in _OVERRIDE_HONOURED or key in _OVERRIDE_INERT:
            continue
        if key in _OVERRIDE_DEFAULTS and overrides.body[key] in _OVERRIDE_DEFAULTS[key]:
            continue
        overrides.bad(key, "is not supported by this server", overrides.body[key])
    model = _model(overrides, opts, manifests, default_model)
    fmt = _format(overrides, opts)

    extra: dict[str, Any] = {}
    strength: float | None = None
    if kind == "img2img":
        strength = r.number(
            "denoising_strength", DEFAULTS["denoising_strength"], lo=0, lo_open=True, hi=1
        )
        extra = _img2img(r)
        if strength is not None:
            extra["strength"] = strength
    clip_skip = overrides.integer(CLIP_SKIP, lo=1, hi=MAX_CLIP_SKIP)
    if clip_skip is None and isinstance(opts.get(CLIP_SKIP), int):
        clip_skip = opts[CLIP_SKIP]  # set with POST /sdapi/v1/options
    if clip_skip is not None and clip_skip > 1:
        extra["clip_skip"] = clip_skip
    r.raise_if_bad()

    assert steps is not None and cfg is not None and batch is not None and n_iter is not None
    if seed is None or seed < 0:
        seed = (rng or random.SystemRandom()).randrange(SEED_LIMIT - total)
    return A1111Request(
        kind=kind,
        prompt=prompt,
        negative_prompt=negative,
        seed=seed,
        sampler_name=sampler,
        scheduler=scheduler,
        native_scheduler=native_scheduler,
        steps=steps,
        cfg_scale=cfg,
        width=width,
        height=height,
        batch_size=batch,
        n_iter=n_iter,
        model=model,
        output_format=fmt,
        send_images=bool(send_images),
        denoising_strength=strength,
        extra=extra,
    )


def _known(name: str, names: list[str]) -> bool:
    return name.lower() in {n.lower() for n in names}


def _size(r: FieldReader, key: str) -> int:
    value = r.integer(key, DEFAULTS[key], lo=MIN_SIDE, hi=MAX_SIDE)
    if value is not None and value % SIDE_STEP:
        r.bad(key, f"must be a multiple of {SIDE_STEP}", value)
    return value or DEFAULTS[key]


def _model(
    overrides: FieldReader,
    opts: Mapping[str, Any],
    manifests: list[Manifest] | None,
    default_model: str | None,
) -> str | None:
    ref = overrides.string("sd_model_checkpoint")
    if ref is None:
        ref = opts.get("sd_model_checkpoint")
        if ref is None:
            return default_model
    if manifests is None:
        return strip_ref(ref)[0]
    name = resolve(manifests, ref)
    if name is None:
        titles = ", ".join(a1111_title(m) for m in manifests) or "none"
        overrides.bad("sd_model_checkpoint", f"unknown checkpoint (available: {titles})", ref)
    return name


def _format(overrides: FieldReader, opts: Mapping[str, Any]) -> str:
    raw = overrides.string("samples_format")
    if raw is None:
        raw = str(opts.get("samples_format") or "png")
    fmt = _FORMATS.get(raw.lower())
    if fmt is None:
        overrides.bad("samples_format", "must be png, jpg or webp", raw)
        return "png"
    return fmt


def _img2img(r: FieldReader) -> dict[str, Any]:
    extra: dict[str, Any] = {}
    images = r.body.get("init_images")
    if not isinstance(images, list) or not images or not all(isinstance(i, str) for i in images):
        r.bad("init_images", "must be a list with at least one base64 image", images)
    else:
        extra["image"] = images[0]
    mask = r.string("mask")
    if mask:
        extra["mask_image"] = mask
    return extra


def infotext(req: A1111Request, seed: int, model_name: str, model_hash: str) -> str:
    """The generation parameters as A1111 writes them (infotexts), written by the same
    :func:`sdworker.core.infotext.infotext` that fills the PNG ``parameters`` chunk."""
    extra: dict[str, Any] = {}
    if req.kind == "img2img":
        extra["Denoising strength"] = req.denoising_strength
    if req.extra.get("clip_skip", 1) > 1:
        extra["Clip skip"] = req.extra["clip_skip"]
    return write_infotext(
        prompt=req.prompt,
        negative_prompt=req.negative_prompt,
        steps=req.steps,
        sampler=req.sampler_name,
        schedule_type=req.scheduler,
        guidance_scale=req.cfg_scale,
        seed=seed,
        width=req.width,
        height=req.height,
        model_name=model_name,
        model_hash=model_hash,
        extra=extra,
    )


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
    texts = [infotext(req, s, model_name, model_hash) for s in seeds]
    stamp = time.strftime("%Y%m%d%H%M%S", time.localtime(now))
    info = {
        "prompt": req.prompt,
        "all_prompts": [req.prompt] * len(outputs),
        "negative_prompt": req.negative_prompt,
        "all_negative_prompts": [req.negative_prompt] * len(outputs),
        "seed": seeds[0] if seeds else req.seed,
        "all_seeds": seeds,
        "subseed": -1,
        "all_subseeds": [-1] * len(outputs),
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
        "denoising_strength": req.denoising_strength,
        "extra_generation_params": {"Schedule type": req.scheduler} if req.scheduler else {},
        "index_of_first_image": 0,
        "infotexts": texts,
        "styles": [],
        "job_timestamp": stamp,
        "clip_skip": req.extra.get("clip_skip", 1),
        "is_using_inpainting_conditioning": req.kind == "img2img" and "mask_image" in req.extra,
        "version": "sdworker",
    }
    images = [o["image"] for o in outputs if "image" in o] if req.send_images else []
    parameters = dict(body)
    parameters.update({"seed": req.seed, "sampler_name": req.sampler_name})
    if req.kind == "img2img":
        # A1111 echoes the request minus the (large) input images
        parameters["init_images"] = None
        parameters["mask"] = None
    return {"images": images, "parameters": parameters, "info": json.dumps(info)}


def error_body(error: BaseException | Failure | str) -> dict[str, Any]:
    """A1111's error answer (``api.py`` ``handle_exception``): error type, detail, errors."""
    if isinstance(error, Failure):
        message, name = error.message, error.kind
    else:
        message = str(error)
        name = type(error).__name__ if isinstance(error, BaseException) else "RuntimeError"
    return {"error": name, "detail": message, "body": "", "errors": message}


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


def set_options(
    options: Options, body: Any, manifests: list[Manifest]
) -> tuple[dict[str, Any], str | None]:
    """Check a ``POST /sdapi/v1/options`` body; return the new values and the model to switch to.

    Nothing is changed on a bad body, so a client never leaves the server half-configured.
    """
    r = FieldReader(body)
    values = dict(options.values)
    model: str | None = None
    for key, value in r.body.items():
        if key == "sd_model_checkpoint":
            ref = r.string(key)
            if ref is not None:
                model = resolve(manifests, ref)
                if model is None:
                    titles = ", ".join(a1111_title(m) for m in manifests) or "none"
                    r.bad(key, f"unknown checkpoint (available: {titles})", ref)
        elif key == "samples_format":
            if not isinstance(value, str) or value.lower() not in _FORMATS:
                r.bad(key, "must be png, jpg or webp", value)
            else:
                values[key] = value.lower()
        elif key == CLIP_SKIP:
            skip = r.integer(key, lo=1, hi=MAX_CLIP_SKIP)
            if skip is not None:
                values[key] = skip
        elif key in _OVERRIDE_INERT or (
            key in _OVERRIDE_DEFAULTS and value in _OVERRIDE_DEFAULTS[key]
        ):
            values[key] = value
        else:
            r.bad(key, "is not an option this server supports", value)
    r.raise_if_bad()
    return values, model


def get_options(options: Options, manifest: Manifest | None) -> dict[str, Any]:
    """``GET /sdapi/v1/options``: the supported subset of A1111's options."""
    values: dict[str, Any] = {
        "samples_format": "png",
        "CLIP_stop_at_last_layers": 1,
        "sd_vae": "Automatic",
        "eta_noise_seed_delta": 0,
    }
    values.update(options.values)
    values["sd_model_checkpoint"] = a1111_title(manifest) if manifest else None
    values["sd_checkpoint_hash"] = (manifest.sha256 or None) if manifest else None
    return values
