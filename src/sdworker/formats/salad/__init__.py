"""Salad Inference Endpoints / docker-diffusers-api: ``modelInputs`` + ``callInputs``.

``modelInputs`` are the diffusers pipeline's own arguments; ``callInputs`` choose the model
(``MODEL_ID``), the pipeline class (``PIPELINE``), the scheduler class (``SCHEDULER``) and the
safety checker. The answer is docker-diffusers-api's ``modelOutputs``: ``image_base64`` for
one image, ``images_base64`` for several. Over HTTP a task is queued (202 with its
``resultUrl``) and polled; inside a RunPod job the same body is an envelope.

``PIPELINE`` is one of the model family's diffusers classes (``FluxPipeline``,
``StableDiffusion3Img2ImgPipeline``...) or an ``AutoPipeline``: it says which mode is meant,
and a class of another family than the model's is refused, naming the classes it has.
"""

from __future__ import annotations

from typing import Any

from pydantic import Field, ValidationInfo, field_validator

from sdworker import families
from sdworker.core.aliases import unknown_model_message
from sdworker.core.errors import InvalidInput, Problem
from sdworker.core.input import ModelFacts
from sdworker.core.input.family import described
from sdworker.core.jobs import Failure
from sdworker.core.manifest import Manifest
from sdworker.formats.base import Decoded, Format, Models, Queued, http_status
from sdworker.formats.modelref import resolve, strip_ref
from sdworker.formats.validation import (
    FormatBody,
    LaxBool,
    LaxFloat,
    LaxInt,
    Prompt,
    Scheduler,
    Text,
    merge,
    refuse,
    validate,
)

#: what a request with (an image, a mask) asks of a pipeline, by the mode that runs it
_NEEDS: dict[str, tuple[bool, bool]] = {
    "txt2img": (False, False),
    "img2img": (True, False),
    "edit": (True, False),
    "inpaint": (True, True),
}
#: the pipelines that load any family's model for a mode (diffusers' AutoPipelines)
AUTO_PIPELINES: dict[str, tuple[bool, bool]] = {
    "AutoPipelineForText2Image": (False, False),
    "AutoPipelineForImage2Image": (True, False),
    "AutoPipelineForInpainting": (True, True),
}
#: docker-diffusers-api's older names for a family's own classes
LEGACY_PIPELINES = {"StableDiffusionInpaintPipelineLegacy": "StableDiffusionInpaintPipeline"}


def _pipelines() -> dict[str, frozenset[tuple[bool, bool]]]:
    """Pipeline class → the (image, mask_image) it is run with: every family's classes,
    the AutoPipelines and the legacy names."""
    found: dict[str, set[tuple[bool, bool]]] = {}
    for family in families.FAMILIES:
        for mode in family.pipelines.modes:
            found.setdefault(str(family.pipelines.of(mode)), set()).add(_NEEDS[mode])
    for legacy, name in LEGACY_PIPELINES.items():
        found[legacy] = found[name]
    for name, needs in AUTO_PIPELINES.items():
        found[name] = {needs}
    return {name: frozenset(needs) for name, needs in found.items()}


#: pipeline class → what it is run with: (image, mask_image) pairs
PIPELINES = _pipelines()

#: modelInputs key → native key (the diffusers argument names are the native ones, mostly)
MODEL_INPUTS: dict[str, str] = {
    "prompt": "prompt",
    "negative_prompt": "negative_prompt",
    "num_inference_steps": "num_inference_steps",
    "guidance_scale": "guidance_scale",
    "width": "width",
    "height": "height",
    "seed": "seed",
    "num_images_per_prompt": "num_images",
    "image": "image",
    "init_image": "image",
    "mask_image": "mask_image",
    "strength": "strength",
    "clip_skip": "clip_skip",
    "max_sequence_length": "max_sequence_length",
    "true_cfg_scale": "true_cfg_scale",
}

NATIVE_TO_SALAD: dict[str, str] = {
    **{v: f"modelInputs.{k}" for k, v in MODEL_INPUTS.items() if k != "init_image"},
    "model": "callInputs.MODEL_ID",
    "scheduler": "callInputs.SCHEDULER",
    "safety_checker": "callInputs.safety_checker",
}


class ModelInputs(FormatBody):
    """The pipeline's arguments; ranges are the native input's, checked by the job."""

    prompt: Prompt
    negative_prompt: Text | None = None
    num_inference_steps: LaxInt | None = None
    guidance_scale: LaxFloat | None = None
    width: LaxInt | None = None
    height: LaxInt | None = None
    seed: LaxInt | None = None
    num_images_per_prompt: LaxInt | None = None
    image: Text | None = None
    init_image: Text | None = None
    mask_image: Text | None = None
    strength: LaxFloat | None = None
    # the arguments of some families' pipelines only (refused, naming the family, elsewhere)
    clip_skip: LaxInt | None = None
    max_sequence_length: LaxInt | None = None
    true_cfg_scale: LaxFloat | None = None


class CallInputs(FormatBody):
    """How to run: model, pipeline class, scheduler, safety checker."""

    MODEL_ID: Text | None = None
    PIPELINE: Text | None = None
    SCHEDULER: Scheduler | None = None
    safety_checker: LaxBool | None = None
    inert = frozenset(
        {"MODEL_PRECISION", "MODEL_REVISION", "MODEL_URL", "CHECKPOINT_URL", "streaming_response",
         "xformers_memory_efficient_attention", "startRequestId"}
    )  # fmt: skip

    @field_validator("PIPELINE")
    @classmethod
    def _pipeline(cls, value: str) -> str:
        if value not in PIPELINES:
            raise refuse("unknown_pipeline", f"unknown (valid: {', '.join(sorted(PIPELINES))})")
        return value

    @field_validator("MODEL_ID")
    @classmethod
    def _model(cls, value: str, info: ValidationInfo) -> str:
        """The baked model's name (a baked name or the hub id it was baked from)."""
        manifests: list[Manifest] | None = (info.context or {}).get("manifests")
        if manifests is None:
            return strip_ref(value)[0]
        name = resolve(manifests, value)
        if name is None:
            rule = unknown_model_message(value, [m.name for m in manifests], named=False)
            raise refuse("unknown_model", rule)
        return name


class SaladBody(FormatBody):
    """A docker-diffusers-api task."""

    modelInputs: ModelInputs
    callInputs: CallInputs = Field(default_factory=CallInputs)


def _family_pipeline(pipeline: str, facts: ModelFacts | None) -> list[Problem]:
    """A pipeline class of another family than the model's is refused: it could not load it."""
    if facts is None or pipeline in AUTO_PIPELINES:
        return []
    classes = facts.family.pipelines.classes
    if LEGACY_PIPELINES.get(pipeline, pipeline) in classes:
        return []
    rule = (
        f"is not a pipeline of {described(facts)}; they run {', '.join(sorted(classes))} "
        f"(or {', '.join(AUTO_PIPELINES)})"
    )
    return [Problem("callInputs.PIPELINE", rule, pipeline)]


def _pipeline_problems(
    inputs: ModelInputs, pipeline: str | None, facts: ModelFacts | None = None
) -> list[Problem]:
    has_image = bool(inputs.image or inputs.init_image)
    has_mask = inputs.mask_image is not None
    if pipeline is None:
        if has_mask and not has_image:
            return [Problem("modelInputs.image", "is required with mask_image", has_value=False)]
        return []
    wrong = _family_pipeline(pipeline, facts)
    if wrong:
        return wrong
    runs = PIPELINES[pipeline]
    problems = []
    if all(image for image, _ in runs) and not has_image:
        problems.append(Problem("modelInputs.image", f"is required by {pipeline}", has_value=False))
    if all(mask for _, mask in runs) and not has_mask:
        problems.append(
            Problem("modelInputs.mask_image", f"is required by {pipeline}", has_value=False)
        )
    if not any(image for image, _ in runs) and has_image:
        hint = f"is not used by {pipeline} (use an Img2Img pipeline)"
        problems.append(Problem("modelInputs.image", hint, "<image>"))
    if not any(mask for _, mask in runs) and has_mask:
        hint = f"is not used by {pipeline} (use an Inpaint pipeline)"
        problems.append(Problem("modelInputs.mask_image", hint, "<image>"))
    return problems


class SaladFormat(Format[SaladBody]):
    """docker-diffusers-api (Salad Inference Endpoints): a task is queued and polled."""

    name = "salad"
    names = NATIVE_TO_SALAD
    media_type = "application/problem+json"
    answers = "queued"

    def decode(self, body: Any, models: Models, **where: str) -> Decoded[SaladBody]:
        """``{"modelInputs", "callInputs"}`` → one native input.

        The model is ``callInputs.MODEL_ID``, else the endpoint name in the URL (``where``'s
        ``endpoint``) when it names a baked model, else the default."""
        context = {"manifests": models.manifests}
        parsed, problems = validate(SaladBody, body, context=context)
        endpoint = where.get("endpoint")
        if parsed is not None:
            facts = models.facts(_model(parsed, models, endpoint))
            problems = merge(
                problems, _pipeline_problems(parsed.modelInputs, parsed.callInputs.PIPELINE, facts)
            )
        if problems or parsed is None:
            raise InvalidInput(problems)
        return Decoded([self._native(parsed, models, endpoint)], parsed)

    def _native(self, parsed: SaladBody, models: Models, endpoint: str | None) -> dict[str, Any]:
        given = parsed.modelInputs.model_dump(exclude_none=True)
        native = {MODEL_INPUTS[key]: value for key, value in given.items()}
        calls = parsed.callInputs
        if calls.SCHEDULER:
            native["scheduler"] = calls.SCHEDULER
        model = _model(parsed, models, endpoint)
        if model is not None:
            native["model"] = model
        safety = calls.safety_checker
        found = models.manifest(model)
        if safety is not None and (safety is False or found is None or found.has_safety_checker):
            # docker-diffusers-api keeps a checker the model ships; for a model without one the
            # flag is a no-op there, so Salad's documented `"safety_checker": "true"` must not fail
            native["safety_checker"] = safety
        # the client reads base64 from modelOutputs, never a URL
        native["upload"] = False
        return native

    def encode(
        self, decoded: Decoded[SaladBody], outputs: list[dict[str, Any]], execution_ms: int
    ) -> dict[str, Any]:
        """docker-diffusers-api's ``modelOutputs`` for a finished task."""
        return model_outputs(outputs, execution_ms)

    def encode_error(self, failure: Failure) -> tuple[int, dict[str, Any]]:
        """Salad's API errors are RFC 9457 problem details; bad fields go under ``errors``."""
        status = http_status(failure, client=400)
        return status, problem_details(status, failure.message, failure.problems)

    def accepted(self, decoded: Decoded[SaladBody], queued: Queued) -> tuple[int, Any]:
        """202 ``{"requestId", "resultUrl"}``: the task is queued, its result is polled there."""
        return 202, {"requestId": queued.job_id, "resultUrl": queued.status_url}


def _model(parsed: SaladBody, models: Models, endpoint: str | None) -> str | None:
    """The model a task runs on: ``MODEL_ID``, else the endpoint's name when it names a baked
    model, else the default."""
    model = parsed.callInputs.MODEL_ID
    if model is None and models.manifests is not None and endpoint:
        model = resolve(models.manifests, endpoint)
    return model or models.default_model


def model_outputs(outputs: list[dict[str, Any]], execution_ms: int | None) -> dict[str, Any]:
    """docker-diffusers-api's answer for a finished job."""
    images = [o.get("image") or o.get("url") for o in outputs]
    result: dict[str, Any] = (
        {"image_base64": images[0]} if len(images) == 1 else {"images_base64": images}
    )
    flags = [o.get("nsfw_content_detected") for o in outputs]
    result["nsfw_content_detected"] = flags if any(f is not None for f in flags) else None
    result["$timings"] = {"init": 0, "inference": int(execution_ms or 0)}
    return result


_TITLES = {400: "Bad Request", 401: "Unauthorized", 404: "Not Found", 413: "Content Too Large"}


def problem_details(status: int, detail: str, problems: tuple[Problem, ...] = ()) -> dict[str, Any]:
    """An RFC 9457 body; each bad field's messages under ``errors``, keyed by the field."""
    body: dict[str, Any] = {
        "type": "about:blank",
        "title": _TITLES.get(status, "Error"),
        "status": status,
        "detail": detail,
    }
    if problems:
        errors: dict[str, list[str]] = {}
        for p in problems:
            errors.setdefault(p.field, []).append(str(p))
        body["errors"] = errors
    return body


def error_output(failure: Failure) -> dict[str, Any]:
    """docker-diffusers-api's ``$error`` object, for a task that failed."""
    message = failure.message
    return {"$error": {"code": failure.code, "name": failure.kind, "message": message}}


SALAD = SaladFormat()
