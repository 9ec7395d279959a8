"""Dialect request bodies inside a RunPod job's ``input``, for clients moving to RunPod.

Two envelopes are recognised:

* docker-diffusers-api / Salad: ``{"modelInputs": {...}, "callInputs": {...}}``;
* the A1111 RunPod workers' form: ``{"api": {"method", "endpoint"}, "payload": {...}}``.

:func:`unwrap` turns one into native input plus the wrappers that put the job's output (or
error) back into that dialect's shape. The handler uses it before validation::

    envelope = unwrap(job["input"], manifests=..., options=...)
    if envelope is not None:
        return envelope.run(generate)      # generate(native_input) -> list of output objects

Torch-free and HTTP-free: it runs inside the worker process.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from sdworker.dialects import a1111, salad
from sdworker.dialects.fields import renamed
from sdworker.dialects.modelref import find_manifest
from sdworker.errors import InvalidInput, SdworkerError
from sdworker.manifest import Manifest
from sdworker.schema import MAX_IMAGES

Generate = Callable[[dict[str, Any]], list[dict[str, Any]]]

_SDAPI = "/sdapi/v1/"


@dataclass
class Envelope:
    """A recognised envelope: the native input to run (if any) and how to answer."""

    dialect: str
    #: the native input to generate; None when the request is answered without generating
    input: dict[str, Any] | None = None
    #: the answer for requests that need no generation (samplers, models, options)
    answer: Any = None
    #: the envelope could not be translated; :meth:`run` answers with it
    error: SdworkerError | None = None
    _output: Callable[[list[dict[str, Any]], int], Any] = field(default=lambda o, ms: o)
    _error: Callable[[BaseException], dict[str, Any]] = field(default=lambda e: {"error": str(e)})

    def wrap_output(self, output: list[dict[str, Any]], execution_ms: int = 0) -> Any:
        """The job's ``output`` in the dialect's shape."""
        return self._output(output, execution_ms)

    def wrap_error(self, error: BaseException) -> dict[str, Any]:
        """The handler's return value for a failure: ``error`` (a string) plus the dialect body.

        The runpod SDK moves ``error`` to the job's error and keeps the rest as its output.
        """
        return self._error(error)

    def run(self, generate: Generate) -> Any:
        """Translate, generate, answer: the whole handler for an envelope."""
        if self.error is not None:
            return self.wrap_error(self.error)
        if self.input is None:
            return self.answer
        started = time.monotonic()
        try:
            output = generate(self.input)
        except SdworkerError as exc:
            return self.wrap_error(exc)
        return self.wrap_output(output, int((time.monotonic() - started) * 1000))


def is_envelope(raw: Mapping[str, Any]) -> bool:
    """Whether ``raw`` is one of the recognised envelopes (not a native input)."""
    keys = set(raw)
    if "modelInputs" in keys and keys <= {"modelInputs", "callInputs"}:
        return True
    api = raw.get("api")
    return isinstance(api, Mapping) and "endpoint" in api and keys <= {"api", "payload"}


def unwrap(
    raw: Mapping[str, Any],
    *,
    manifests: list[Manifest] | None = None,
    default_model: str | None = None,
    options: a1111.Options | None = None,
    catalog: a1111.SamplerCatalog | None = None,
) -> Envelope | None:
    """Recognise an envelope and translate it; None for a native input.

    ``manifests`` (the baked models) lets model names be resolved and sd-models be listed;
    ``options`` is the worker's A1111 options (a POST changes them for later jobs there).
    """
    if not is_envelope(raw):
        return None
    if "modelInputs" in raw:
        return _salad(raw, manifests, default_model)
    return _a1111(raw, manifests, default_model, options, catalog)


def _salad(
    raw: Mapping[str, Any], manifests: list[Manifest] | None, default_model: str | None
) -> Envelope:
    def fail(error: BaseException) -> dict[str, Any]:
        if isinstance(error, InvalidInput):
            error = renamed(error, salad.NATIVE_TO_SALAD)
        return {"error": str(error), **salad.error_output(error)}

    envelope = Envelope("salad", _output=lambda out, ms: salad.model_outputs(out, ms), _error=fail)
    try:
        envelope.input = salad.parse(dict(raw), manifests=manifests, default_model=default_model)
    except SdworkerError as exc:
        envelope.error = exc
    return envelope


def _a1111(
    raw: Mapping[str, Any],
    manifests: list[Manifest] | None,
    default_model: str | None,
    options: a1111.Options | None,
    catalog: a1111.SamplerCatalog | None,
) -> Envelope:
    def fail(error: BaseException) -> dict[str, Any]:
        if isinstance(error, InvalidInput):
            error = renamed(error, a1111.NATIVE_TO_A1111)
        # the shape the A1111 RunPod workers give a failed API call
        return {"error": str(error), "output": a1111.error_body(error)}

    envelope = Envelope("a1111", _error=fail)
    api = raw["api"]
    method = str(api.get("method", "POST")).upper()
    endpoint = str(api.get("endpoint", ""))
    route = endpoint[len(_SDAPI) :] if endpoint.startswith(_SDAPI) else endpoint.lstrip("/")
    payload = raw.get("payload") or {}
    opts = options or a1111.Options()
    try:
        if route in ("txt2img", "img2img") and method == "POST":
            cat = catalog or a1111.default_catalog()
            model = _model_for(opts, default_model)
            req = a1111.parse(
                payload,
                "txt2img" if route == "txt2img" else "img2img",
                catalog=cat,
                manifests=manifests,
                default_model=model,
                options=opts,
            )
            envelope.input = _one_job(req)
            envelope._output = lambda out, ms: _a1111_answer(req, payload, out, manifests)
        elif route == "samplers" and method == "GET":
            envelope.answer = a1111.samplers(catalog or a1111.default_catalog())
        elif route == "schedulers" and method == "GET":
            envelope.answer = a1111.schedulers(catalog or a1111.default_catalog())
        elif route == "sd-models" and method == "GET":
            envelope.answer = a1111.sd_models(manifests or [], "/models")
        elif route == "options" and method == "GET":
            current = _manifest(manifests, _model_for(opts, default_model))
            envelope.answer = a1111.get_options(opts, current)
        elif route == "options" and method == "POST":
            if options is None or manifests is None:
                raise InvalidInput.one(
                    "api.endpoint",
                    "options cannot be changed on this worker; "
                    "send override_settings.sd_model_checkpoint with each request",
                    endpoint,
                )
            values, model = a1111.set_options(options, payload, manifests)
            if model is not None:
                values["sd_model_checkpoint"] = model
            options.values = values
            envelope.answer = {}
        else:
            raise InvalidInput.one(
                "api.endpoint",
                "not supported here (supported: POST txt2img, img2img, options; "
                "GET samplers, schedulers, sd-models, options)",
                f"{method} {endpoint}",
            )
    except SdworkerError as exc:
        envelope.error = exc
    return envelope


def _model_for(options: a1111.Options, default_model: str | None) -> str | None:
    chosen = options.values.get("sd_model_checkpoint")
    return chosen if isinstance(chosen, str) else default_model


def _manifest(manifests: list[Manifest] | None, name: str | None) -> Manifest | None:
    """The model ``name``; with no name (no default configured), the first baked one."""
    if name is None:
        return manifests[0] if manifests else None
    return find_manifest(manifests or [], name)


def _one_job(req: a1111.A1111Request) -> dict[str, Any]:
    """An A1111 request as one native job (a worker runs one job; ``n_iter`` folds in)."""
    job = req.jobs()[0]
    job["num_images"] = req.total
    if req.total > MAX_IMAGES:
        raise InvalidInput.one(
            "n_iter", f"batch_size * n_iter must be at most {MAX_IMAGES} here", req.n_iter
        )
    return job


def _a1111_answer(
    req: a1111.A1111Request,
    payload: Any,
    output: list[dict[str, Any]],
    manifests: list[Manifest] | None,
) -> dict[str, Any]:
    manifest = _manifest(manifests, req.model)
    name = manifest.name if manifest else (req.model or "")
    return a1111.response(
        req,
        payload if isinstance(payload, Mapping) else {},
        output,
        model_name=name,
        model_hash=manifest.short_hash if manifest else "",
    )


__all__ = ["Envelope", "is_envelope", "unwrap"]
