"""Stochastic model API: ``submit`` → ``responseUrl`` + ``queuePosition``, then polling.

Pure translation. The images are handed back as ``generatedImages[].presigned_url``; the
route turns each native result into a fetchable URL (S3 when a bucket is configured, else a
file the local endpoint serves).
"""

from __future__ import annotations

from typing import Any

from sdworker.core.errors import Problem
from sdworker.core.jobs import Status
from sdworker.formats.fields import FieldReader

#: params key → native key
PARAMS: dict[str, str] = {
    "img_height": "height",
    "img_width": "width",
    "num_inference_steps": "num_inference_steps",
    "guidance_scale": "guidance_scale",
    "seed": "seed",
    "negative_prompt": "negative_prompt",
    "num_images": "num_images",
    "num_images_per_prompt": "num_images",
    "scheduler": "scheduler",
}
NATIVE_TO_STOCHASTIC: dict[str, str] = {
    **{v: f"params.{k}" for k, v in PARAMS.items() if k != "num_images_per_prompt"},
    "model": "model",
}
STATUS: dict[Status, str] = {
    Status.IN_QUEUE: "queued",
    Status.IN_PROGRESS: "processing",
    Status.COMPLETED: "completed",
    Status.FAILED: "failed",
    Status.CANCELLED: "cancelled",
    Status.TIMED_OUT: "failed",
}


def parse(body: Any, *, model: str, upload: bool = False) -> dict[str, Any]:
    """``{"prompt", "params"}`` → native input for the (already resolved) ``model``.

    ``upload``: a bucket is configured, so the worker uploads and the S3 URL is the
    ``presigned_url``; otherwise the images come back inline and the endpoint serves them.
    """
    root = FieldReader(body)
    root.unknown({"prompt", "params"})
    prompt = root.raw("prompt")
    if isinstance(prompt, list):
        # the API takes an array for text models; an image request is one prompt
        if len(prompt) != 1:
            root.bad("prompt", "must be one prompt (a string or a one-element array)", prompt)
        prompt = prompt[0] if prompt else None
    if not isinstance(prompt, str) or not prompt.strip():
        root.bad("prompt", "is required: a non-empty string", prompt)
    if "params" not in root.body:
        root.bad("params", "is required")
    params = root.child("params")
    params.unknown(PARAMS)
    native: dict[str, Any] = {"prompt": prompt, "model": model}
    if upload:
        native["upload"] = True
    for key, target in PARAMS.items():
        value = params.body.get(key)
        if value is not None:
            native[target] = value
    root.raise_if_bad()
    return native


def submitted(job_id: str, response_url: str, position: int | None) -> dict[str, Any]:
    """The answer to ``submit``; the documented shape writes the position as a string."""
    return {
        "success": True,
        "data": {"id": job_id, "responseUrl": response_url, "queuePosition": str(position or 0)},
    }


def result(
    job_id: str, status: Status, urls: list[str] | None, position: int | None = None
) -> dict[str, Any]:
    """The answer to polling ``responseUrl``: ``generatedImages`` only once the job is done."""
    data: dict[str, Any] = {"id": job_id, "status": STATUS[status]}
    if status is Status.IN_QUEUE:
        data["queuePosition"] = str(position or 0)
    if urls is not None:
        data["generatedImages"] = [{"presigned_url": u} for u in urls]
    return {"success": True, "data": data}


def error_body(message: str, problems: list[Problem] | None = None) -> dict[str, Any]:
    """Stochastic's failure answer: ``success: false`` with the message and the bad fields."""
    body: dict[str, Any] = {"success": False, "message": message}
    if problems:
        body["errors"] = [{"field": p.field, "message": str(p)} for p in problems]
    return body
