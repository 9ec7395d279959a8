"""An AUTOMATIC1111 txt2img/img2img body, checked and resolved into native jobs.

One A1111 request becomes ``n_iter`` native jobs of ``batch_size`` images each; image *k* of
the whole request uses ``seed + k`` exactly as A1111's ``all_seeds`` does, and as the native
seed promise does within a job. The HTTP route and the RunPod envelope both read requests
here, so they agree on limits, options and the jobs they make.

The model's family decides what some fields mean, as in Forge: on a guidance-distilled model
(FLUX.1) ``distilled_cfg_scale`` is the guidance the model reads and ``cfg_scale`` its true
CFG (1: off); a flow-matching model's sampler is its family's flow-match scheduler of that
name (:meth:`~.samplers.SamplerCatalog.for_model`).
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import Any, Literal

from pydantic import Field, ValidationInfo, field_validator

from sdworker.core import schedulers
from sdworker.core.errors import InvalidInput, Problem
from sdworker.core.input import ModelFacts
from sdworker.core.input.family import described
from sdworker.core.schema import SEED_LIMIT
from sdworker.core.settings import MAX_SIDE, MIN_SIDE, SIDE_STEP
from sdworker.formats.a1111 import extra_networks, hires
from sdworker.formats.a1111.hires import Hires, parse_hires
from sdworker.formats.a1111.options import (
    CLIP_SKIP,
    SAMPLE_FORMATS,
    Options,
    Settings,
    option_problems,
)
from sdworker.formats.a1111.samplers import SamplerCatalog
from sdworker.formats.a1111.scripts import script_problems
from sdworker.formats.base import Models
from sdworker.formats.validation import (
    FormatBody,
    LaxBool,
    LaxFloat,
    LaxInt,
    Prompt,
    Text,
    default_only,
    merge,
    refuse,
    validate,
)

Kind = Literal["txt2img", "img2img"]

MAX_BATCH = 8
MAX_IMAGES = 64
DEFAULT_SAMPLER = "Euler"

#: accepted and without effect here, whatever their value (saving, bookkeeping, tuning knobs
#: of samplers we do not expose); A1111 clients copied from ``/docs`` send them all
INERT = frozenset({
    "subseed", "seed_resize_from_h", "seed_resize_from_w", "do_not_save_samples",
    "do_not_save_grid", "eta", "s_min_uncond", "s_churn", "s_tmax", "s_tmin", "s_noise",
    "override_settings_restore_afterwards", "comments", "force_task_id", "infotext",
    "save_images", "script_args", "disable_extra_networks", "firstpass_image",
    "firstphase_width", "firstphase_height", "hr_additional_modules", "refiner_switch_at",
    "user", "mask_blur", "mask_blur_x", "mask_blur_y", "inpainting_fill", "inpaint_full_res",
    "inpaint_full_res_padding", "resize_mode", "image_cfg_scale", "initial_noise_multiplier",
    "mask_round", "include_init_images", "latent_mask", "sampler_noise_scheduler_override",
})  # fmt: skip
#: the hires fix's fields, read (by :mod:`.hires`) only when ``enable_hr`` is on, as A1111 does
HIRES_FIELDS = frozenset(hires.FIELDS) - {"denoising_strength"}
#: accepted only at the value that means "off": anything else asks for a feature this worker
#: does not have, and silently ignoring it would hand back a different picture than asked
OFF_ONLY: dict[str, tuple[Any, ...]] = {
    "restore_faces": (False,),
    "tiling": (False,),
    "subseed_strength": (0, 0.0),
    "styles": ([],),
    "refiner_checkpoint": ("",),
    "inpainting_mask_invert": (0, False),
}


class Txt2ImgBody(FormatBody):
    """``StableDiffusionProcessingTxt2Img`` as this server takes it (A1111's API defaults)."""

    inert = INERT | HIRES_FIELDS | {"denoising_strength"}

    prompt: Prompt
    negative_prompt: Text = ""
    seed: LaxInt = Field(default=-1, ge=-1, lt=SEED_LIMIT)
    sampler_name: Text | None = None
    sampler_index: Text | None = None
    scheduler: Text | None = None
    steps: LaxInt = Field(default=50, ge=1, le=500)
    cfg_scale: LaxFloat = Field(default=7.0, ge=0, le=30)
    #: Forge's: the guidance a guidance-distilled model (FLUX.1) reads; the model's by default
    distilled_cfg_scale: LaxFloat | None = Field(default=None, ge=0, le=30)
    width: LaxInt = Field(default=512, ge=MIN_SIDE, le=MAX_SIDE, multiple_of=SIDE_STEP)
    height: LaxInt = Field(default=512, ge=MIN_SIDE, le=MAX_SIDE, multiple_of=SIDE_STEP)
    batch_size: LaxInt = Field(default=1, ge=1, le=MAX_BATCH)
    n_iter: LaxInt = Field(default=1, ge=1, le=MAX_IMAGES)
    send_images: LaxBool = True
    override_settings: Settings = Field(default_factory=Settings)
    enable_hr: LaxBool = False
    restore_faces: Any = None
    tiling: Any = None
    subseed_strength: Any = None
    styles: Any = None
    script_name: Any = None
    alwayson_scripts: Any = None
    refiner_checkpoint: Any = None
    inpainting_mask_invert: Any = None

    @field_validator(*OFF_ONLY)
    @classmethod
    def _off_only(cls, value: Any, info: ValidationInfo) -> Any:
        return default_only(OFF_ONLY, value, info.field_name)

    @field_validator("sampler_name", "sampler_index")
    @classmethod
    def _sampler(cls, value: str, info: ValidationInfo) -> str | None:
        if not value.strip():
            return None  # A1111 falls back to its default sampler
        catalog: SamplerCatalog = (info.context or {})["catalog"]
        if not catalog.knows_sampler(value):
            raise refuse("unknown_sampler", catalog.unknown_sampler(value))
        return value

    @field_validator("scheduler")
    @classmethod
    def _schedule_type(cls, value: str, info: ValidationInfo) -> str | None:
        if not value.strip():
            return None
        catalog: SamplerCatalog = (info.context or {})["catalog"]
        if not catalog.knows_schedule(value):
            raise refuse("unknown_schedule_type", catalog.unknown_schedule(value))
        return value


class Img2ImgBody(Txt2ImgBody):
    """``StableDiffusionProcessingImg2Img``: an input image, an optional mask."""

    inert = INERT | HIRES_FIELDS

    init_images: list[Text] = Field(min_length=1)
    mask: Text | None = None
    denoising_strength: LaxFloat = Field(default=0.75, gt=0, le=1)

    @field_validator("init_images", mode="before")
    @classmethod
    def _images(cls, value: Any) -> Any:
        if not isinstance(value, list) or not value:
            raise refuse("images", "must be a list with at least one base64 image")
        return value


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
    #: a guidance-distilled model's guidance (Forge's ``distilled_cfg_scale``); ``cfg_scale``
    #: is then its true CFG scale (1: off). None on a model that reads ``cfg_scale`` as CFG
    distilled_cfg_scale: float | None = None
    #: the hires fix (txt2img with ``enable_hr``)
    hires: Hires | None = None
    extra: dict[str, Any] = field(default_factory=dict)
    #: the body as the client sent it, echoed as the answer's ``parameters``
    parameters: dict[str, Any] = field(default_factory=dict)
    #: the model as the answer names it, when the models are known
    model_name: str = ""
    model_hash: str = ""

    @property
    def total(self) -> int:
        """Images in the whole request."""
        return self.batch_size * self.n_iter

    @property
    def all_seeds(self) -> list[int]:
        """Every image's seed, in order, as A1111's ``all_seeds``."""
        return [self.seed + k for k in range(self.total)]

    @property
    def shown_sampler(self) -> tuple[str, str | None]:
        """The sampler and schedule type an infotext names: a flow-match scheduler as Forge
        names it (``Euler``, ``Simple``), as the image's own infotext does; else the
        request's own names."""
        sampler, schedule = schedulers.infotext_names(self.native_scheduler)
        return (sampler, schedule) if schedule is not None else (self.sampler_name, self.scheduler)

    def _guidance(self) -> dict[str, Any]:
        """The native guidance fields: ``cfg_scale`` as CFG, or a distilled model's guidance
        and, above 1, ``cfg_scale`` as its true CFG."""
        if self.distilled_cfg_scale is None:
            return {"guidance_scale": self.cfg_scale}
        fields: dict[str, Any] = {"guidance_scale": self.distilled_cfg_scale}
        if self.cfg_scale > 1:
            fields["true_cfg_scale"] = self.cfg_scale
        return fields

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
                **self._guidance(),
                "num_images": self.batch_size,
                "seed": self.seed + it * self.batch_size,
                "scheduler": self.native_scheduler,
                "output_format": self.output_format,
                # A1111 clients can only read base64 images
                "upload": False,
            }
            if self.model is not None:
                job["model"] = self.model
            if self.hires is not None:
                job["hires"] = self.hires.native()
            job.update(self.extra)
            jobs.append(job)
        return jobs


def _totals(body: Txt2ImgBody) -> list[Problem]:
    """The rules that span fields: the image count, and every image's seed."""
    problems = []
    total = body.batch_size * body.n_iter
    if total > MAX_IMAGES:
        rule = f"batch_size * n_iter must be at most {MAX_IMAGES}"
        problems.append(Problem("n_iter", rule, body.n_iter))
    if body.seed >= 0 and body.seed + total > SEED_LIMIT:
        rule = f"seed + batch_size * n_iter must stay below {SEED_LIMIT}"
        problems.append(Problem("seed", rule, body.seed))
    return problems


def parse(
    body: Any,
    kind: Kind,
    *,
    catalog: SamplerCatalog,
    models: Models,
    options: Options | None = None,
    rng: random.Random | None = None,
) -> A1111Request:
    """Check an A1111 body and resolve it; raise :class:`InvalidInput` naming A1111 fields,
    every one at once. ``models.manifests`` None means the models are not known here (inside a
    worker): model names pass through for the job's own validation."""
    model_cls = Img2ImgBody if kind == "img2img" else Txt2ImgBody
    context = {"catalog": catalog, "manifests": models.manifests}
    options = options or Options()
    parsed, problems = validate(model_cls, body, context=context)
    native_scheduler = ""
    facts: ModelFacts | None = None
    tags = None
    if parsed is not None:
        tags = extra_networks.take(parsed.prompt)
        facts = models.facts(_model(parsed, models, options))
        native_scheduler, more = _scheduler(parsed, catalog, facts)
        problems = merge(
            problems,
            [*_totals(parsed), *guidance_problems(parsed, facts), *more, *tags.problems],
        )
    problems = merge(script_problems(body), problems)
    if isinstance(body, dict):
        settings = body.get("override_settings")
        problems = merge(option_problems(settings, "override_settings."), problems)
    fix: Hires | None = None
    if parsed is not None and parsed.enable_hr:
        fix, more = _hires(body, kind, parsed, catalog, facts)
        problems = merge(problems, more)
    if problems or parsed is None:
        raise InvalidInput(problems)
    req = _resolve(parsed, kind, native_scheduler, models, options, rng, body, facts)
    req.hires = fix
    if tags is not None and tags.loras:  # <lora:name:weight> in the prompt
        req.prompt = tags.prompt
        req.extra["lora"] = tags.loras
    manifest = models.manifest(req.model)
    req.model_name = manifest.name if manifest else (req.model or "")
    req.model_hash = manifest.short_hash if manifest else ""
    return req


def _model(body: Txt2ImgBody, models: Models, options: Options) -> str | None:
    """The model the request runs on: its override, else the option, else the default."""
    return body.override_settings.sd_model_checkpoint or options.model or models.default_model


def _scheduler(
    body: Txt2ImgBody, catalog: SamplerCatalog, facts: ModelFacts | None
) -> tuple[str, list[Problem]]:
    """The native scheduler of the request's sampler and schedule type, on its model."""
    sampler = body.sampler_name or body.sampler_index or DEFAULT_SAMPLER
    if not catalog.knows_sampler(sampler):
        return "", [Problem("sampler_name", catalog.unknown_sampler(sampler), sampler)]
    try:
        return catalog.for_model(sampler, body.scheduler, facts), []
    except InvalidInput as exc:
        return "", list(exc.problems)


def guidance_problems(body: Txt2ImgBody, facts: ModelFacts | None) -> list[Problem]:
    """Forge's guidance fields against the model's family: ``distilled_cfg_scale`` only on a
    guidance-distilled model; there ``cfg_scale`` is true CFG, which a negative prompt needs
    (above 1) and which needs a negative prompt to guide away from."""
    distilled = body.distilled_cfg_scale
    if facts is None or facts.family.guidance != "distilled":
        if distilled is None:
            return []
        where = f"{described(facts)}: their guidance is cfg_scale" if facts else "this model"
        return [Problem("distilled_cfg_scale", f"does not apply to {where}", distilled)]
    true_cfg = "cfg_scale" in body.model_fields_set and body.cfg_scale > 1
    negative = body.negative_prompt
    if not facts.family.applies("true_cfg_scale"):
        own = f"does not apply to {described(facts)}"
        problems = [Problem("negative_prompt", own, negative)] if negative else []
        if true_cfg:
            rule = f"{own}: their guidance is distilled_cfg_scale (leave cfg_scale out, or 1)"
            problems.append(Problem("cfg_scale", rule, body.cfg_scale))
        return problems
    if negative and not true_cfg:
        rule = (
            f"{described(facts)} read a negative prompt only with true CFG: give cfg_scale "
            "above 1 (4 is typical; each step then runs the model twice)"
        )
        return [Problem("negative_prompt", rule, negative)]
    if true_cfg and not negative:
        rule = (
            f"is true CFG on {described(facts)}, which guides away from a negative_prompt: "
            "give one, or leave cfg_scale at 1 (their guidance is distilled_cfg_scale)"
        )
        return [Problem("cfg_scale", rule, body.cfg_scale)]
    return []


def _hires(
    body: Any, kind: Kind, parsed: Txt2ImgBody, catalog: SamplerCatalog, facts: ModelFacts | None
) -> tuple[Hires | None, list[Problem]]:
    """The hires fix a body with ``enable_hr`` on asks for (txt2img only, as in A1111, on a
    model whose family has one)."""
    if kind != "txt2img":
        return None, [Problem("enable_hr", "the hires fix is a txt2img option", True)]
    if facts is not None and not facts.family.applies("hires"):
        return None, [Problem("enable_hr", f"does not apply to {described(facts)}", True)]
    sampler = parsed.sampler_name or parsed.sampler_index or DEFAULT_SAMPLER
    try:
        return parse_hires(body, sampler, parsed.scheduler, catalog), []
    except InvalidInput as exc:
        return None, list(exc.problems)


def _resolve(
    body: Txt2ImgBody,
    kind: Kind,
    native_scheduler: str,
    models: Models,
    options: Options,
    rng: random.Random | None,
    raw: Any,
    facts: ModelFacts | None,
) -> A1111Request:
    overrides = body.override_settings
    opts = options.values
    model = _model(body, models, options)
    samples_format = overrides.samples_format or str(opts.get("samples_format") or "png")
    extra: dict[str, Any] = {}
    strength: float | None = None
    if isinstance(body, Img2ImgBody):
        strength = body.denoising_strength
        extra.update({"image": body.init_images[0], "strength": strength})
        if body.mask:
            extra["mask_image"] = body.mask
    clip_skip = overrides.CLIP_stop_at_last_layers
    takes_clip_skip = facts is None or facts.family.applies("clip_skip")
    if clip_skip is None and isinstance(opts.get(CLIP_SKIP), int) and takes_clip_skip:
        # set with POST /sdapi/v1/options: a setting for the models it applies to (an
        # override is the request's own, and refused where it does not apply)
        clip_skip = opts[CLIP_SKIP]
    if clip_skip is not None and clip_skip > 1:
        extra["clip_skip"] = clip_skip
    seed = body.seed
    total = body.batch_size * body.n_iter
    if seed < 0:
        seed = (rng or random.SystemRandom()).randrange(SEED_LIMIT - total)
    cfg_scale, distilled = _guidance(body, facts)
    return A1111Request(
        kind=kind,
        prompt=body.prompt,
        negative_prompt=body.negative_prompt,
        seed=seed,
        sampler_name=body.sampler_name or body.sampler_index or DEFAULT_SAMPLER,
        scheduler=body.scheduler,
        native_scheduler=native_scheduler,
        steps=body.steps,
        cfg_scale=cfg_scale,
        width=body.width,
        height=body.height,
        batch_size=body.batch_size,
        n_iter=body.n_iter,
        model=model,
        output_format=SAMPLE_FORMATS.get(samples_format, "png"),
        send_images=body.send_images,
        denoising_strength=strength,
        distilled_cfg_scale=distilled,
        extra=extra,
        parameters=dict(raw),
    )


def _guidance(body: Txt2ImgBody, facts: ModelFacts | None) -> tuple[float, float | None]:
    """``(cfg_scale, distilled_cfg_scale)`` as the request means them on its model: on a
    guidance-distilled one, the CFG scale is 1 (off) unless the request gives more, and the
    distilled guidance is the model's own unless it gives one (Forge's fixed 3.5 would burn
    a Kontext or Fill model's images, and schnell reads none)."""
    if facts is None or facts.family.guidance != "distilled":
        return body.cfg_scale, None
    given = "cfg_scale" in body.model_fields_set and body.cfg_scale > 1
    distilled = body.distilled_cfg_scale
    if distilled is None:
        distilled = float(facts.default_values()["guidance_scale"])
    return (body.cfg_scale if given else 1.0), distilled
