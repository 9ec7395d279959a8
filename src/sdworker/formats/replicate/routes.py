"""Replicate's and cog's routes on the local endpoint (auth: ``Authorization: Bearer KEY``, or
``Token KEY``).

Replicate's API, for ``replicate.Client(base_url="http://host")`` (the client adds ``/v1``):

* ``POST /v1/models/{owner}/{name}/predictions``, ``POST /v1/deployments/{owner}/{name}/predictions``
  and ``POST /v1/predictions`` (the model in ``version``): 201 with the prediction. With
  ``Prefer: wait`` (or ``wait=N``, 1-60 s), after it ends or the wait runs out; a prediction
  still running then shows ``starting``, as Replicate's does, so ``replicate.run`` polls it;
* ``GET /v1/predictions/{id}``, ``POST /v1/predictions/{id}/cancel``;
* ``GET /v1/models/{owner}/{name}/versions/{id}``, which ``run("owner/name:VERSION")`` reads.

cog's HTTP API: ``POST /predictions`` waits for the prediction (up to
``SDWORKER_DIALECT_WAIT_S``, then answers with it as it is; a client that leaves first, with no
webhook, has it cancelled), or with ``Prefer: respond-async`` answers 202 at once;
``POST /predictions/{id}/cancel`` (200 ``{}``, or 404 ``{}`` when it is not running); and
``GET /predictions/{id}``, which cog lacks (it has only webhooks).
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Request, Response
from fastapi.responses import JSONResponse

from sdworker.core.errors import InvalidInput, ModelNotFound
from sdworker.core.jobs import Failure
from sdworker.formats import auth
from sdworker.formats.base import FormatContext
from sdworker.formats.pipeline import CLIENT_LEFT, Pipeline, unless_left, wait_finished
from sdworker.formats.replicate import COG, REPLICATE, problem
from sdworker.formats.replicate.inputs import ReplicateInput
from sdworker.formats.replicate.predictions import iso
from sdworker.formats.replicate.request import PredictionBody, PredictionRequest, choose_model
from sdworker.formats.replicate.runner import Links, Made, Runner, api_links, cog_links
from sdworker.formats.web import FormatRoute, Refusal

#: the longest ``Prefer: wait=N`` (Replicate's)
MAX_WAIT_S = 60
#: the cog version a model's version shows (``replicate`` reads iterator outputs from it)
COG_VERSION = "0.16.12"

_BODY: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "content": {
            "application/json": {
                "schema": PredictionBody.model_json_schema(),
                "example": {"input": {"prompt": "a lighthouse", "aspect_ratio": "16:9"}},
            }
        },
    }
}
_OUTPUT = {"type": "array", "items": {"type": "string", "format": "uri"}, "title": "Output"}


def prefer(header: str | None) -> tuple[bool, int | None]:
    """``Prefer``'s ``respond-async`` and ``wait[=N]`` (None: no wait asked)."""
    respond_async, wait = False, None
    for token in (header or "").split(","):
        name, _, value = (part.strip() for part in token.partition("="))
        if name == "respond-async":
            respond_async = True
        elif name == "wait":
            wait = _seconds(value, header or "")
    return respond_async, wait


def _seconds(value: str, header: str) -> int:
    if not value:
        return MAX_WAIT_S
    if not value.isdigit() or not 1 <= int(value) <= MAX_WAIT_S:
        raise InvalidInput.one("Prefer", f"wait must be 1-{MAX_WAIT_S} seconds", header)
    return int(value)


def replicate_router(ctx: FormatContext) -> APIRouter:
    """Replicate's and cog's prediction routes, over one set of predictions."""
    runner = Runner(ctx)
    denied = Refusal(401, problem(401, "You did not pass a valid authentication token"))
    router = APIRouter(
        tags=["Replicate"],
        lifespan=runner.lifespan,
        route_class=FormatRoute,
        dependencies=[Depends(auth.bearer_or_token(ctx.settings, denied))],
    )
    _api_routes(router, runner, Pipeline(REPLICATE, ctx))
    _cog_routes(router, runner, Pipeline(COG, ctx))
    return router


async def _created(
    request: Request, runner: Runner, pipe: Pipeline[PredictionRequest], **where: str
) -> Response:
    """A prediction made on Replicate's API: 201 at once, or after ``Prefer: wait``."""
    with pipe.refusals():
        _, wait_s = prefer(request.headers.get("prefer"))
    made = await runner.create(request, pipe, **where)
    view, headers = made.view, {}
    if wait_s is not None:
        view = await wait_finished(made.gateway, view.id, wait_s) or view
        headers["Preference-Applied"] = f"wait={wait_s}"
    body = await runner.answer(made.gateway, made.prediction, view, _base(request), api_links)
    if wait_s is not None and not view.status.is_terminal():
        body["status"] = "starting"  # Replicate's answer to a wait that ran out
    return JSONResponse(body, status_code=201, headers=headers)


def _api_routes(router: APIRouter, runner: Runner, pipe: Pipeline[PredictionRequest]) -> None:
    async def created(request: Request, **where: str) -> Response:
        return await _created(request, runner, pipe, **where)

    @router.post("/v1/models/{owner}/{name}/predictions", openapi_extra=_BODY)
    async def create_model_prediction(request: Request, owner: str, name: str) -> Response:
        """``replicate.run("owner/name")``, ``predictions.create(model="owner/name")``."""
        return await created(request, model=f"{owner}/{name}")

    @router.post("/v1/deployments/{owner}/{name}/predictions", openapi_extra=_BODY)
    async def create_deployment_prediction(request: Request, owner: str, name: str) -> Response:
        """``deployments.predictions.create("owner/name")``: the deployment names the model."""
        return await created(request, model=f"{owner}/{name}")

    @router.post("/v1/predictions", openapi_extra=_BODY)
    async def create_prediction(request: Request) -> Response:
        """``predictions.create(version=...)``, ``run("owner/name:VERSION")``."""
        return await created(request, needs_version="1")

    @router.get("/v1/predictions/{prediction_id}")
    async def get_prediction(request: Request, prediction_id: str) -> Response:
        """``predictions.get(id)``, ``Prediction.reload()`` and ``wait()``."""
        return await _shown(request, runner, pipe, prediction_id, api_links)

    @router.post("/v1/predictions/{prediction_id}/cancel")
    async def cancel_prediction(request: Request, prediction_id: str) -> Response:
        """``predictions.cancel(id)``: the prediction, ``canceled`` unless it had ended."""
        job_id = runner.predictions.job_id(prediction_id)
        if await pipe.ctx.gateway(request).cancel(job_id) is None:
            raise _not_found(pipe, prediction_id)
        return await _shown(request, runner, pipe, prediction_id, api_links)

    @router.get("/v1/models/{owner}/{name}/versions/{version_id}")
    async def get_version(owner: str, name: str, version_id: str) -> dict[str, Any]:
        """The version ``run("owner/name:VERSION")`` reads: its output is a list of URLs."""
        return version_body(pipe.ctx, f"{owner}/{name}", version_id)


def _cog_routes(router: APIRouter, runner: Runner, pipe: Pipeline[PredictionRequest]) -> None:
    @router.post("/predictions", openapi_extra=_BODY)
    async def cog_prediction(request: Request) -> Response:
        """cog's ``POST /predictions``: waits for the prediction, or 202 at once with
        ``Prefer: respond-async``."""
        with pipe.refusals():
            respond_async, _ = prefer(request.headers.get("prefer"))
        made = await runner.create(request, pipe)
        if respond_async:
            body = await runner.answer(
                made.gateway, made.prediction, made.view, _base(request), cog_links
            )
            return JSONResponse(body, status_code=202)
        return await _cog_wait(request, runner, pipe, made)

    @router.get("/predictions/{prediction_id}")
    async def cog_get_prediction(request: Request, prediction_id: str) -> Response:
        """The prediction now (cog itself has no such route)."""
        return await _shown(request, runner, pipe, prediction_id, cog_links)

    @router.post("/predictions/{prediction_id}/cancel")
    async def cog_cancel_prediction(request: Request, prediction_id: str) -> Response:
        """200 ``{}`` when it was queued or running (now canceled), 404 ``{}`` otherwise."""
        gateway = pipe.ctx.gateway(request)
        job_id = runner.predictions.job_id(prediction_id)
        view = await gateway.get(job_id)
        if view is None or view.status.is_terminal():
            return JSONResponse({}, status_code=404)
        await gateway.cancel(job_id)
        return JSONResponse({})


async def _cog_wait(
    request: Request, runner: Runner, pipe: Pipeline[PredictionRequest], made: Made
) -> Response:
    """cog's synchronous answer; a client that leaves first, with no webhook to tell, has
    its prediction cancelled (no one would read it)."""
    waiting = wait_finished(made.gateway, made.view.id, pipe.ctx.wait_s)
    done, view = await unless_left(request, waiting)
    asked = made.prediction.request
    if not done:
        if not (asked.webhook or asked.webhook_completed):
            await made.gateway.cancel(made.view.id)
        return Response(status_code=CLIENT_LEFT)
    view = view or made.view
    body = await runner.answer(made.gateway, made.prediction, view, _base(request), cog_links)
    return JSONResponse(body)


async def _shown(
    request: Request,
    runner: Runner,
    pipe: Pipeline[PredictionRequest],
    prediction_id: str,
    links: Links,
) -> Response:
    found = await runner.find(request, prediction_id)
    if found is None:
        raise _not_found(pipe, prediction_id)
    prediction, view = found
    gateway = pipe.ctx.gateway(request)
    return JSONResponse(await runner.answer(gateway, prediction, view, _base(request), links))


def _not_found(pipe: Pipeline[PredictionRequest], prediction_id: str) -> Refusal:
    message = f"no prediction {prediction_id!r} (unknown or expired)"
    return pipe.refuse(Failure("job_not_found", message))


def _base(request: Request) -> str:
    return str(request.base_url)


def version_body(ctx: FormatContext, model: str, version_id: str) -> dict[str, Any]:
    """A model version as ``replicate``'s ``Version`` reads it: its input and output schema;
    refused (404) when neither it nor ``model`` names a baked model."""
    try:
        baked = choose_model(ctx.models(), None, f"{model}:{version_id}").baked
    except (InvalidInput, ModelNotFound) as exc:
        message = f"no model answers to {model}:{version_id}: {exc}"
        raise Refusal(404, problem(404, message)) from None
    created = 0.0
    for info in ctx.registry.all():
        if info.name == baked and info.path.exists():
            created = info.path.stat().st_mtime
    schema = {
        "openapi": "3.0.2",
        "info": {"title": "Cog", "version": "0.1.0"},
        "paths": {},
        "components": {"schemas": {"Input": ReplicateInput.model_json_schema(), "Output": _OUTPUT}},
    }
    return {
        "id": version_id,
        "created_at": iso(created),
        "cog_version": COG_VERSION,
        "openapi_schema": schema,
    }


__all__ = ["prefer", "replicate_router"]
