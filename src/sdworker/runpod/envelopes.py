"""Dialect request bodies inside a RunPod job's ``input``, for clients moving to RunPod.

Two envelopes are recognised:

* docker-diffusers-api / Salad: ``{"modelInputs": {...}, "callInputs": {...}}``;
* the A1111 RunPod workers' form: ``{"api": {"method", "endpoint"}, "payload": {...}}``.

:func:`unwrap` turns one into native input plus the wrappers that put the job's output (or
error) back into that dialect's shape. The adapter uses it before validation: an envelope's native inputs run one after the other
(an A1111 ``n_iter`` is one native input per iteration, as over HTTP), and their outputs, or
the first failure, are encoded in the envelope's format.

Torch-free and HTTP-free: it runs inside the worker process.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from sdworker.core.errors import InvalidInput, SdworkerError
from sdworker.core.jobs import Failure
from sdworker.core.manifest import Manifest
from sdworker.formats import a1111, salad
from sdworker.formats.modelref import find_manifest

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
        for native in self.inputs:
            outcome = await generate(native)
            if isinstance(outcome, Failure):
                return self.encode_error(outcome.renamed(self.names))
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
    envelope = Envelope(
        "salad",
        names=salad.NATIVE_TO_SALAD,
        _encode=salad.model_outputs,
        _encode_error=salad.error_output,
    )
    try:
        native = salad.parse(dict(raw), manifests=manifests, default_model=default_model)
        envelope.inputs = [native]
    except SdworkerError as exc:
        envelope.failure = Failure.of(exc)
    return envelope


def _a1111(
    raw: Mapping[str, Any],
    manifests: list[Manifest] | None,
    default_model: str | None,
    options: a1111.Options | None,
    catalog: a1111.SamplerCatalog | None,
) -> Envelope:
    def fail(failure: Failure) -> dict[str, Any]:
        # the shape the A1111 RunPod workers give a failed API call
        return {"output": a1111.error_body(failure)}

    envelope = Envelope("a1111", names=a1111.NATIVE_TO_A1111, _encode_error=fail)
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
            # one native job per n_iter iteration, as the HTTP route submits them
            envelope.inputs = req.jobs()
            envelope._encode = lambda out, ms: _a1111_answer(req, payload, out, manifests)
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
        envelope.failure = Failure.of(exc)
    return envelope


def _model_for(options: a1111.Options, default_model: str | None) -> str | None:
    chosen = options.values.get("sd_model_checkpoint")
    return chosen if isinstance(chosen, str) else default_model


def _manifest(manifests: list[Manifest] | None, name: str | None) -> Manifest | None:
    """The model ``name``; with no name (no default configured), the first baked one."""
    if name is None:
        return manifests[0] if manifests else None
    return find_manifest(manifests or [], name)


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
