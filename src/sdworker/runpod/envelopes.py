"""Request formats inside a RunPod job's ``input``, for clients moving to RunPod.

These envelopes are recognised:

* docker-diffusers-api / Salad: ``{"modelInputs": {...}, "callInputs": {...}}``;
* the A1111 RunPod workers' form: ``{"api": {"method", "endpoint"}, "payload": {...}}``;
* worker-comfyui's: ``{"workflow": {...}, "images": [...]}`` (or its JSON text);
* Hugging Face's text-to-image task: ``{"inputs": PROMPT, "parameters": {...}}`` (the output
  is the native one: a job answers in JSON, not with the image's bytes);
* a Replicate or cog prediction: ``{"input": {...}, "version"?: "owner/name"}`` (answered
  as cog answers a synchronous prediction, with ``data:`` URLs; its webhooks are refused:
  a job has its own).

:func:`unwrap` reads one with the same format objects the HTTP routes use
(:mod:`sdworker.formats`), so an A1111 ``n_iter`` is one native input per iteration here as
there, with the same limits and options. The adapter runs an envelope's native inputs one
after the other, and their outputs, or the first failure, are encoded in the envelope's format.

Torch-free and HTTP-free: it runs inside the worker process.
"""

from __future__ import annotations

import json
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from sdworker.core.errors import InvalidInput, SdworkerError
from sdworker.core.jobs import Failure
from sdworker.core.manifest import Manifest
from sdworker.formats.a1111 import (
    A1111Format,
    Options,
    SamplerCatalog,
    default_catalog,
    sd_models,
)
from sdworker.formats.a1111 import error_body as a1111_error
from sdworker.formats.base import Decoded, Models
from sdworker.formats.comfyui.worker import WORKER_COMFYUI
from sdworker.formats.comfyui.worker import answer as comfy_answer
from sdworker.formats.comfyui.worker import details as comfy_details
from sdworker.formats.huggingface import HUGGINGFACE, is_task
from sdworker.formats.replicate import REPLICATE, is_prediction
from sdworker.formats.salad import SALAD, error_output

_SDAPI = "/sdapi/v1/"
#: what generating one native input gives: its output list, or why there is none
Outcome = list[dict[str, Any]] | Failure


@dataclass
class Envelope:
    """A recognised envelope: the native inputs to run, or an answer that needs none."""

    format: str
    #: the native inputs to generate, in order; None when the request is answered without
    inputs: list[dict[str, Any]] | None = None
    #: the answer for requests that need no generation (samplers, models, options)
    answer: Any = None
    #: the envelope could not be translated: the job fails with this (in the format's names)
    failure: Failure | None = None
    #: native field -> the format's name for it, for failures of the native inputs
    names: Mapping[str, str] = field(default_factory=dict)
    #: the names of each native input, where they depend on the request (a workflow's nodes)
    input_names: Sequence[Mapping[str, str]] | None = None
    #: whether each native input's uploads need a key of their own (the inputs may share
    #: seeds, and so object names: a workflow's samplers)
    parts: bool = False
    _encode: Callable[[list[dict[str, Any]], int], Any] = field(default=lambda o, ms: o)
    _encode_error: Callable[[Failure], dict[str, Any]] = field(default=lambda f: f.to_output())

    def encode(self, outputs: list[dict[str, Any]], execution_ms: int = 0) -> Any:
        """The job's ``output`` in the format's shape, from every native input's outputs."""
        return self._encode(outputs, execution_ms)

    async def run(self, generate: Callable[[dict[str, Any]], Awaitable[Outcome]]) -> Any:
        """The job's answer: the native inputs generated in turn (``generate`` answers each
        with its outputs or a failure), or the answer that needs no generation, or the
        first failure, all in the format's shape."""
        if self.failure is not None:
            return self.encode_error(self.failure)
        if self.inputs is None:
            return self.answer
        started = time.monotonic()
        outputs: list[dict[str, Any]] = []
        for index, native in enumerate(self.inputs):
            outcome = await generate(native)
            if isinstance(outcome, Failure):
                names = self.input_names[index] if self.input_names else self.names
                return self.encode_error(outcome.renamed(names))
            outputs += outcome
        return self.encode(outputs, int((time.monotonic() - started) * 1000))

    def encode_error(self, failure: Failure) -> dict[str, Any]:
        """The handler's return value for a failure: ``error`` (a string), the failure as
        data, plus the format's own body. The runpod SDK moves ``error`` to the job's error
        and keeps the rest as its output."""
        return {**failure.to_output(), **self._encode_error(failure)}


def is_envelope(raw: Mapping[str, Any]) -> bool:
    """Whether ``raw`` is one of the recognised envelopes (not a native input)."""
    keys = set(raw)
    if "workflow" in keys:  # no native field is called so
        return True
    if "modelInputs" in keys and keys <= {"modelInputs", "callInputs"}:
        return True
    api = raw.get("api")
    if isinstance(api, Mapping) and "endpoint" in api and keys <= {"api", "payload"}:
        return True
    return is_task(raw) or is_prediction(raw)


def unwrap(
    raw: Any,
    *,
    manifests: list[Manifest] | None = None,
    default_model: str | None = None,
    options: Options | None = None,
    catalog: SamplerCatalog | None = None,
    uploads: bool = False,
) -> Envelope | None:
    """Recognise an envelope and translate it; None for a native input.

    ``manifests`` (the baked models) lets model names be resolved and sd-models be listed;
    ``options`` is the worker's A1111 options (a POST changes them for later jobs there);
    ``uploads``: whether the job's images go to a bucket (worker-comfyui's ``s3_url``).
    """
    raw = _json_text(raw)
    if not isinstance(raw, Mapping) or not is_envelope(raw):
        return None
    models = Models(manifests, default_model, uploads)
    if "workflow" in raw:
        return _comfy(raw, models)
    if "modelInputs" in raw:
        return _salad(raw, models)
    if is_task(raw):
        return _huggingface(raw, models)
    if is_prediction(raw):
        return _prediction(raw, models)
    fmt = A1111Format(options, catalog=(lambda: catalog) if catalog else default_catalog)
    return _a1111(raw, models, fmt, stateful=options is not None)


def _salad(raw: Mapping[str, Any], models: Models) -> Envelope:
    envelope = Envelope("salad", names=SALAD.names, _encode_error=error_output)
    try:
        decoded = SALAD.decode(dict(raw), models)
    except SdworkerError as exc:
        envelope.failure = Failure.of(exc)
        return envelope
    envelope.inputs = decoded.inputs
    envelope._encode = lambda out, ms: SALAD.encode(decoded, out, ms)
    return envelope


def _json_text(raw: Any) -> Any:
    """worker-comfyui takes its input as JSON text too: an object in text is read."""
    if isinstance(raw, str) and raw.lstrip().startswith("{") and '"workflow"' in raw:
        try:
            return json.loads(raw)
        except ValueError:
            return raw  # not JSON after all: refused as the native input it then is
    return raw


def _comfy(raw: Mapping[str, Any], models: Models) -> Envelope:
    envelope = Envelope("worker-comfyui", parts=True, _encode_error=comfy_details)
    try:
        decoded = WORKER_COMFYUI.decode_input(dict(raw), models)
    except SdworkerError as exc:
        envelope.failure = Failure.of(exc)
        return envelope
    envelope.inputs = decoded.inputs
    envelope.input_names = decoded.names
    workflow = decoded.request.workflow
    envelope._encode = lambda out, ms: comfy_answer(workflow, out)
    return envelope


def _huggingface(raw: Mapping[str, Any], models: Models) -> Envelope:
    envelope = Envelope("huggingface", names=HUGGINGFACE.names)
    try:
        envelope.inputs = HUGGINGFACE.decode(dict(raw), models).inputs
    except SdworkerError as exc:
        envelope.failure = Failure.of(exc)
    return envelope


def _prediction(raw: Mapping[str, Any], models: Models) -> Envelope:
    envelope = Envelope("replicate", _encode_error=lambda failure: {"status": "failed"})
    try:
        decoded = REPLICATE.decode(dict(raw), models, in_job="1")
    except SdworkerError as exc:
        envelope.failure = Failure.of(exc)
        return envelope
    envelope.inputs = decoded.inputs
    envelope.names = decoded.request.names
    envelope._encode = lambda out, ms: REPLICATE.encode(decoded, out, ms)
    envelope._encode_error = lambda failure: REPLICATE.failed(decoded, failure)
    return envelope


def _a1111(raw: Mapping[str, Any], models: Models, fmt: A1111Format, stateful: bool) -> Envelope:
    def fail(failure: Failure) -> dict[str, Any]:
        # the shape the A1111 RunPod workers give a failed API call
        return {"output": a1111_error(failure)}

    envelope = Envelope("a1111", names=fmt.names, _encode_error=fail)
    api = raw["api"]
    method = str(api.get("method", "POST")).upper()
    endpoint = str(api.get("endpoint", ""))
    route = endpoint[len(_SDAPI) :] if endpoint.startswith(_SDAPI) else endpoint.lstrip("/")
    payload = raw.get("payload") or {}
    try:
        if route in ("txt2img", "img2img") and method == "POST":
            # one native job per n_iter iteration, as the HTTP route submits them
            decoded: Decoded[Any] = fmt.decode(payload, models, kind=route)
            envelope.inputs = decoded.inputs
            envelope._encode = lambda out, ms: fmt.encode(decoded, out, ms)
        elif route == "options" and method == "POST":
            if not stateful or models.manifests is None:
                raise InvalidInput.one(
                    "api.endpoint",
                    "options cannot be changed on this worker; "
                    "send override_settings.sd_model_checkpoint with each request",
                    endpoint,
                )
            fmt.set_options(payload, models.manifests)
            envelope.answer = {}
        else:
            envelope.answer = _listing(fmt, models, method, route, endpoint)
    except SdworkerError as exc:
        envelope.failure = Failure.of(exc)
    return envelope


def _listing(fmt: A1111Format, models: Models, method: str, route: str, endpoint: str) -> Any:
    """The answers that read state and make nothing."""
    if method == "GET" and route == "samplers":
        return fmt.samplers()
    if method == "GET" and route == "schedulers":
        return fmt.schedulers()
    if method == "GET" and route == "sd-models":
        return sd_models(models.manifests or [], "/models")
    if method == "GET" and route == "options":
        return fmt.get_options(models)
    raise InvalidInput.one(
        "api.endpoint",
        "not supported here (supported: POST txt2img, img2img, options; "
        "GET samplers, schedulers, sd-models, options)",
        f"{method} {endpoint}",
    )


__all__ = ["Envelope", "is_envelope", "unwrap"]
