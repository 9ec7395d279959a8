"""Replicate's prediction API and cog's HTTP server: ``replicate.Client(base_url=...)`` and
plain ``POST /predictions`` clients, with cog-flux's and cog-sdxl's inputs.

A prediction is one native job (``num_outputs`` images are one job's images, image *i* with
seed ``seed + i``); its id is the job's, or the ``id`` a cog client chose. Two format
objects share the reading of a request (:mod:`.request`, :mod:`.inputs`) and the shape of a
prediction (:mod:`.predictions`), and differ in their refusals: Replicate answers with a
problem body ``{"title", "detail", "status"}``, cog with FastAPI's ``{"detail": [...]}``, one
entry per bad field (``loc: ["body", "input", "width"]``). A failed prediction is data (a
prediction with ``status: "failed"`` and its ``error``), as both services answer.

Inside a RunPod job, ``{"input": {...}, "version"?}`` is an envelope
(:mod:`sdworker.runpod.envelopes`) answered with the prediction as cog's synchronous answer
has it: ``output`` holds ``data:`` URLs (S3 URLs when the worker uploads).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from sdworker.core.jobs import Failure
from sdworker.formats.base import Decoded, Format, Models, http_status
from sdworker.formats.replicate.predictions import Prediction, output_urls, shape
from sdworker.formats.replicate.request import (
    EVENTS,
    PredictionBody,
    PredictionRequest,
    read_request,
)

_TITLES = {
    401: "Unauthenticated",
    404: "Not found",
    409: "Conflict",
    413: "Request too large",
    422: "Input validation failed",
}


class ReplicateFormat(Format[PredictionRequest]):
    """Replicate's HTTP API (``/v1/...``): a prediction is answered at once, or after a
    ``Prefer: wait``, and polled."""

    name = "replicate"
    answers = "queued"

    def decode(self, body: Any, models: Models, **where: str) -> Decoded[PredictionRequest]:
        """A create body → one native input. ``where``: ``model`` (the URL's
        ``owner/name``), ``needs_version`` (``POST /v1/predictions``), ``in_job`` (inside a
        RunPod job, where its webhooks are refused)."""
        native, request = read_request(
            body,
            models,
            model=where.get("model") or None,
            needs_version=bool(where.get("needs_version")),
            in_job=bool(where.get("in_job")),
        )
        return Decoded([native], request)

    def encode(
        self, decoded: Decoded[PredictionRequest], outputs: list[dict[str, Any]], execution_ms: int
    ) -> dict[str, Any]:
        """A finished prediction as cog's synchronous answer has it (no id, no times, the
        images as ``data:`` URLs unless uploaded), as a RunPod job answers one."""
        prediction = Prediction("", decoded.request)
        prediction.finish(outputs)
        return shape(prediction, "succeeded", output_urls(outputs), execution_ms=execution_ms)

    def encode_error(self, failure: Failure) -> tuple[int, dict[str, Any]]:
        """Replicate's problem body; a bad field lists every one in ``detail``."""
        status = http_status(failure, client=422, not_found=404)
        return status, problem(status, _detail(failure))

    def failed(self, decoded: Decoded[PredictionRequest], failure: Failure) -> dict[str, Any]:
        """A prediction that failed inside a job, as cog answers one (data, not an error)."""
        message = failure.renamed(decoded.request.names).message
        return shape(Prediction("", decoded.request), "failed", None, error=message)


class CogFormat(ReplicateFormat):
    """cog's own HTTP server (``/predictions``): synchronous unless ``Prefer:
    respond-async``; refusals in FastAPI's validation shape."""

    name = "cog"

    def encode_error(self, failure: Failure) -> tuple[int, dict[str, Any]]:
        status = http_status(failure, client=422, not_found=404)
        if failure.problems:
            detail: Any = [
                {
                    "type": "value_error",
                    "loc": ["body", *p.field.split(".")],
                    "msg": str(p),
                }
                for p in failure.problems
            ]
        else:
            detail = failure.message
        return status, {"detail": detail}


def _detail(failure: Failure) -> str:
    if not failure.problems:
        return failure.message
    return "\n".join(f"- {p}" for p in failure.problems)


def problem(status: int, detail: str) -> dict[str, Any]:
    """Replicate's error body (``replicate.exceptions.ReplicateError`` reads it)."""
    return {"title": _TITLES.get(status, "Error"), "detail": detail, "status": status}


def is_prediction(raw: Mapping[str, Any]) -> bool:
    """Whether a RunPod job's ``input`` is a prediction body: an ``input`` object, and only
    the body's own keys beside it (no native input has an ``input`` key)."""
    known = {f.alias or n for n, f in PredictionBody.model_fields.items()} | PredictionBody.inert
    return isinstance(raw.get("input"), Mapping) and set(raw) <= known


REPLICATE = ReplicateFormat()
COG = CogFormat()

__all__ = ["COG", "EVENTS", "REPLICATE", "CogFormat", "ReplicateFormat", "is_prediction", "problem"]
