"""A decoded sample (:class:`~.values.Decoded`) → one native ``input``, and the name of the
node input behind each native field (so a failure of the job names the workflow's inputs).

The parts a workflow wires together must be one model's: the text encoders and the VAE are
the checkpoint's own, or standard files of what its family reads (the model's own parts
stand in for them). Guidance is read as the family reads it: classifier-free guidance
(``cfg``) on SD models; on a guidance-distilled model (FLUX.1) ``FluxGuidance`` is its
guidance and a ``cfg`` above 1 its true CFG, which is when the negative prompt counts.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from sdworker.core.errors import InvalidInput, Problem
from sdworker.core.schema import MAX_IMAGES, SEED_LIMIT
from sdworker.families import Family
from sdworker.formats.comfyui import components, images, samplers
from sdworker.formats.comfyui import values as v
from sdworker.formats.comfyui.errors import NodeRef

#: an unescaped parenthesis: ComfyUI weighs ``(word)`` and ``(word:1.2)``
_WEIGHTED = re.compile(r"(?<!\\)\(")


@dataclass
class NativeJob:
    """One native input, and native field -> the workflow's name for it."""

    input: dict[str, Any] = field(default_factory=dict)
    names: dict[str, str] = field(default_factory=dict)

    def put(self, name: str, value: Any, at: NodeRef) -> None:
        self.input[name] = value
        self.names[name] = at.field


def native_seed(seed: int, batch: int) -> int:
    """ComfyUI's 64-bit seed as a native one: as it is when it fits (with its batch: image i
    uses seed + i), else taken modulo ``2**32 - 8``."""
    if seed + batch <= SEED_LIMIT:
        return seed
    return seed % (SEED_LIMIT - MAX_IMAGES)


def build(decoded: v.Decoded, max_pixels: int) -> NativeJob:
    """The native input of ``decoded``; :class:`InvalidInput` naming what cannot run."""
    plan = decoded.plan
    checkpoint = plan.model.checkpoint
    family = checkpoint.family
    problems = _parts(decoded, family)
    job = NativeJob()
    job.put("model", checkpoint.model, checkpoint.at)
    job.names["input"] = plan.at.field
    problems += _prompts(job, plan, family)
    problems += _scheduler(job, plan, family)
    _loras(job, plan.model)
    problems += _latent(job, plan, max_pixels)
    if problems:
        raise InvalidInput(problems)
    return job


def _same_model(
    at: NodeRef, what: str, checkpoint: v.Checkpoint | None, model: str
) -> list[Problem]:
    if checkpoint is None or checkpoint.model == model:
        return []
    rule = (
        f"is the {what} of model {checkpoint.model!r}, but the sampler runs {model!r}: "
        "sdworker runs a model with its own parts"
    )
    return [at.problem(rule, has_value=False)]


def _clip(clip: v.Clip, model: v.Model, family: Family | None) -> list[Problem]:
    name = model.checkpoint.model
    problems = _same_model(clip.at, "text encoder", clip.checkpoint, name)
    if family is not None:
        for at, file_name in clip.files:
            found = components.encoder_problem(file_name, family)
            if found is not None:
                problems.append(at.problem(found, file_name))
    for use in clip.loras:
        if use not in model.loras:
            rule = "is applied to the text encoder only: sdworker applies a LoRA to the model"
            problems.append(use.at.problem(rule, use.name))
    return problems


def _parts(decoded: v.Decoded, family: Family | None) -> list[Problem]:
    """The text encoders and VAEs the sample reads are its model's."""
    plan = decoded.plan
    name = plan.model.checkpoint.model
    problems: list[Problem] = []
    for conditioning in (plan.positive, plan.negative):
        if conditioning is not None:
            problems += _clip(conditioning.clip, plan.model, family)
    vaes = [decoded.vae] + ([plan.latent.vae] if isinstance(plan.latent, v.ImageLatent) else [])
    for vae in vaes:
        problems += _same_model(vae.at, "VAE", vae.checkpoint, name)
    return _unique(problems)


def _unique(problems: list[Problem]) -> list[Problem]:
    seen: set[tuple[str, str]] = set()
    kept = []
    for p in problems:
        if (p.field, p.message) not in seen:
            seen.add((p.field, p.message))
            kept.append(p)
    return kept


def _prompts(job: NativeJob, plan: v.SamplePlan, family: Family | None) -> list[Problem]:
    positive, negative = plan.positive, plan.negative
    if positive.zero:
        return [positive.at.problem("is zeroed (ConditioningZeroOut): there is no prompt", "")]
    job.put("prompt", positive.text, positive.at)
    distilled = family is not None and family.guidance == "distilled"
    cfg = plan.cfg
    if distilled:
        if positive.guidance is not None and positive.guidance_at is not None:
            job.put("guidance_scale", positive.guidance, positive.guidance_at)
        # cfg 1 skips the negative (ComfyUI's cfg1 optimisation); above 1 it is true CFG
        if cfg is not None and float(cfg.value) > 1 and _applies(family, "true_cfg_scale"):
            job.put("true_cfg_scale", cfg.value, cfg.at)
            _negative(job, negative)
    elif cfg is None:
        job.input["guidance_scale"] = 1.0  # a guider without a negative: no CFG
    else:
        job.put("guidance_scale", cfg.value, cfg.at)
        _negative(job, negative)
    texts = [positive.text, str(job.input.get("negative_prompt", ""))]
    if _applies(family, "use_compel") and any(_WEIGHTED.search(t) for t in texts):
        job.input["use_compel"] = True
        job.names["use_compel"] = positive.at.field
    return []


def _applies(family: Family | None, name: str) -> bool:
    return family is not None and family.applies(name)


def _negative(job: NativeJob, negative: v.Conditioning | None) -> None:
    if negative is not None:
        job.put("negative_prompt", "" if negative.zero else negative.text, negative.at)


def _scheduler(job: NativeJob, plan: v.SamplePlan, family: Family | None) -> list[Problem]:
    sampler, schedule = str(plan.sampler.value), str(plan.scheduler.value)
    choice = samplers.native_scheduler(sampler, schedule, family)
    if choice.name is None:
        at = plan.sampler.at if choice.field == "sampler_name" else plan.scheduler.at
        shown = sampler if choice.field == "sampler_name" else schedule
        return [at.problem(choice.rule, shown)]
    job.put("scheduler", choice.name, plan.sampler.at)
    job.put("num_inference_steps", plan.steps.value, plan.steps.at)
    if plan.strength is not None:
        job.put("strength", plan.strength.value, plan.strength.at)
    return []


def _loras(job: NativeJob, model: v.Model) -> None:
    if not model.loras:
        return
    job.input["lora"] = [{"name": use.name, "scale": use.strength} for use in model.loras]
    for index, use in enumerate(model.loras):
        job.names[f"lora[{index}].name"] = use.at.field
        job.names[f"lora[{index}].scale"] = use.at.at("strength_model").field
        job.names[f"lora[{index}]"] = use.at.field


def _latent(job: NativeJob, plan: v.SamplePlan, max_pixels: int) -> list[Problem]:
    latent = plan.latent
    batch = latent.batch if isinstance(latent, v.EmptyLatent) else 1
    job.put("seed", native_seed(int(plan.seed.value), batch), plan.seed.at)
    if isinstance(latent, v.EmptyLatent):
        job.put("width", latent.width, latent.size_at.at("width"))
        job.put("height", latent.height, latent.size_at.at("height"))
        if batch != 1:
            job.put("num_images", batch, latent.at)
        return []
    try:
        made = images.native_images(latent, max_pixels)
    except InvalidInput as exc:
        return list(exc.problems)
    source = latent.image
    while isinstance(source, v.ScaledImage):
        source = source.source
    job.put("image", made["image"], source.at)
    if "mask_image" in made and latent.mask is not None:
        job.put("mask_image", made["mask_image"], latent.mask.at.at("image"))
    return []
