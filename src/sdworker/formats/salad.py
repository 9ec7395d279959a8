"""Salad Inference Endpoints / docker-diffusers-api: ``modelInputs`` + ``callInputs``.

Pure translation. ``modelInputs`` are the diffusers pipeline's own arguments; ``callInputs``
choose the model (``MODEL_ID``), the pipeline class (``PIPELINE``), the scheduler class
(``SCHEDULER``) and the safety checker. The answer is docker-diffusers-api's
``modelOutputs``: ``image_base64`` for one image, ``images_base64`` for several.
"""

from __future__ import annotations

from typing import Any

from sdworker.core.jobs import Failure
from sdworker.core.manifest import Manifest
from sdworker.formats.fields import FieldReader
from sdworker.formats.modelref import resolve, strip_ref

#: pipeline class → what it needs: (image, mask_image)
PIPELINES: dict[str, tuple[bool, bool]] = {
    "StableDiffusionPipeline": (False, False),
    "StableDiffusionImg2ImgPipeline": (True, False),
    "StableDiffusionInpaintPipeline": (True, True),
    "StableDiffusionInpaintPipelineLegacy": (True, True),
    "StableDiffusionXLPipeline": (False, False),
    "StableDiffusionXLImg2ImgPipeline": (True, False),
    "StableDiffusionXLInpaintPipeline": (True, True),
    "AutoPipelineForText2Image": (False, False),
    "AutoPipelineForImage2Image": (True, False),
    "AutoPipelineForInpainting": (True, True),
}

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
}
#: accepted and without effect (docker-diffusers-api housekeeping)
_INERT_CALL = {"MODEL_PRECISION", "MODEL_REVISION", "MODEL_URL", "CHECKPOINT_URL", "xformers_memory_efficient_attention", "streaming_response", "startRequestId"}  # fmt: skip

NATIVE_TO_SALAD: dict[str, str] = {
    **{v: f"modelInputs.{k}" for k, v in MODEL_INPUTS.items() if k != "init_image"},
    "model": "callInputs.MODEL_ID",
    "scheduler": "callInputs.SCHEDULER",
    "safety_checker": "callInputs.safety_checker",
}


def parse(
    body: Any,
    *,
    manifests: list[Manifest] | None,
    default_model: str | None,
    endpoint_name: str | None = None,
) -> dict[str, Any]:
    """``{"modelInputs", "callInputs"}`` → native input; :class:`InvalidInput` names the field.

    The model is ``callInputs.MODEL_ID`` (a baked name or the hub id it was baked from), else
    the endpoint name in the URL when it names a baked model, else the default.
    """
    root = FieldReader(body)
    root.unknown({"modelInputs", "callInputs"})
    if "modelInputs" not in root.body:
        root.bad("modelInputs", "is required")
    inputs = root.child("modelInputs")
    calls = root.child("callInputs")
    inputs.unknown(MODEL_INPUTS)
    calls.unknown({"MODEL_ID", "PIPELINE", "SCHEDULER", "safety_checker", *_INERT_CALL})

    native: dict[str, Any] = {}
    prompt = inputs.string("prompt", required=True)
    if prompt is not None:
        native["prompt"] = prompt
    for key, target in MODEL_INPUTS.items():
        if key != "prompt" and key in inputs.body and inputs.body[key] is not None:
            native[target] = inputs.body[key]

    pipeline = calls.string("PIPELINE")
    if pipeline is not None:
        needs = PIPELINES.get(pipeline)
        if needs is None:
            calls.bad("PIPELINE", f"unknown (valid: {', '.join(PIPELINES)})", pipeline)
        else:
            _check_pipeline(inputs, pipeline, needs, native)
    elif "mask_image" in native and "image" not in native:
        inputs.bad("image", "is required with mask_image")
    scheduler = calls.string("SCHEDULER")
    if scheduler:
        native["scheduler"] = scheduler
    safety = calls.boolean("safety_checker")
    model = _model(calls, manifests, default_model, endpoint_name)
    if model is not None:
        native["model"] = model
    if safety is not None and (safety is False or _has_checker(manifests, model)):
        # docker-diffusers-api keeps a checker the model ships; for a model without one the
        # flag is a no-op there, so Salad's documented `"safety_checker": "true"` must not fail
        native["safety_checker"] = safety
    # the client reads base64 from modelOutputs, never a URL
    native["upload"] = False
    root.raise_if_bad()
    return native


def _has_checker(manifests: list[Manifest] | None, model: str | None) -> bool:
    found = next((m for m in manifests or [] if m.name == model), None)
    return found is None or found.has_safety_checker


def _check_pipeline(
    inputs: FieldReader, pipeline: str, needs: tuple[bool, bool], native: dict[str, Any]
) -> None:
    wants_image, wants_mask = needs
    if wants_image and "image" not in native:
        inputs.bad("image", f"is required by {pipeline}")
    if wants_mask and "mask_image" not in native:
        inputs.bad("mask_image", f"is required by {pipeline}")
    if not wants_image and "image" in native:
        inputs.bad("image", f"is not used by {pipeline} (use an Img2Img pipeline)", "<image>")
    if not wants_mask and "mask_image" in native:
        inputs.bad("mask_image", f"is not used by {pipeline} (use an Inpaint pipeline)", "<image>")


def _model(
    calls: FieldReader,
    manifests: list[Manifest] | None,
    default_model: str | None,
    endpoint_name: str | None,
) -> str | None:
    ref = calls.string("MODEL_ID")
    if ref is None:
        if manifests is not None and endpoint_name:
            return resolve(manifests, endpoint_name) or default_model
        return default_model
    if manifests is None:
        return strip_ref(ref)[0]
    name = resolve(manifests, ref)
    if name is None:
        names = ", ".join(m.name for m in manifests) or "none"
        calls.bad("MODEL_ID", f"unknown model (available: {names})", ref)
    return name


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


def error_output(failure: Failure) -> dict[str, Any]:
    """docker-diffusers-api's ``$error`` object."""
    return {"$error": {"code": failure.code, "name": failure.kind, "message": failure.message}}
