"""Hugging Face's routes on the local endpoint (auth: ``Authorization: Bearer KEY``, the
endpoint's key where a Hugging Face endpoint takes the user's token).

``POST /hf/models/{model}`` names its model in the path; ``POST /`` is an Inference
Endpoint's root, for ``InferenceClient(base_url="http://host/")``: the default model. The root
takes only ``POST``: ``GET /`` stays the playground page, and the RunPod SDK's root routes
(``/run``, ``/runsync``, ``/status``...) are other paths.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Request, Response

from sdworker.formats import auth
from sdworker.formats.base import FormatContext
from sdworker.formats.huggingface import HUGGINGFACE, HFBody, error_body
from sdworker.formats.pipeline import Pipeline
from sdworker.formats.web import FormatRoute, Refusal

PATH = "/hf/models/{model:path}"
ROOT = "/"

_BODY: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "content": {
            "application/json": {
                "schema": HFBody.model_json_schema(),
                "example": {"inputs": "a lighthouse at dusk", "parameters": {"seed": 7}},
            }
        },
    },
    "responses": {"200": {"content": {m: {} for m in ("image/png", "image/jpeg", "image/webp")}}},
}


def huggingface_router(ctx: FormatContext) -> APIRouter:
    """The text-to-image task at ``/hf/models/{model}`` and at the root; each call waits for
    its image up to ``SDWORKER_DIALECT_WAIT_S``."""
    denied = Refusal(401, error_body("Invalid credentials in Authorization header"))
    router = APIRouter(
        tags=["Hugging Face"],
        route_class=FormatRoute,
        dependencies=[Depends(auth.bearer(ctx.settings, denied))],
    )
    pipe = Pipeline(HUGGINGFACE, ctx)

    @router.post(PATH, openapi_extra=_BODY, summary="HF text-to-image (a named model)")
    async def hf_model(request: Request, model: str) -> Response:
        """``InferenceClient(model=".../hf/models/NAME").text_to_image(...)``: the image."""
        return await pipe(request, model=model, accept=request.headers.get("accept", ""))

    @router.post(ROOT, openapi_extra=_BODY, summary="HF text-to-image (an endpoint's root)")
    async def hf_endpoint(request: Request) -> Response:
        """``InferenceClient(base_url="http://host/").text_to_image(...)``: the default
        model's image."""
        return await pipe(request, accept=request.headers.get("accept", ""))

    return router
