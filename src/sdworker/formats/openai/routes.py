"""The OpenAI Images API's routes on the local endpoint (auth: ``Authorization: Bearer KEY``)."""

from __future__ import annotations

import base64
from typing import TYPE_CHECKING, Any
from urllib.parse import urljoin

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse

from sdworker.core.errors import SdworkerError
from sdworker.core.jobs import Failure, JobGateway, JobView
from sdworker.core.manifest import MANIFEST_NAME
from sdworker.core.media import CONTENT_TYPES, EXTENSIONS
from sdworker.formats import auth
from sdworker.formats.base import Decoded, FormatContext, failure_of
from sdworker.formats.http import is_form, outputs_of, read_form, read_json, wait_finished
from sdworker.formats.modelref import unknown_model
from sdworker.formats.openai import docs
from sdworker.formats.openai.errors import error_body
from sdworker.formats.openai.request import SEEDS_HEADER, ImagesRequest
from sdworker.formats.web import FormatRoute, Refusal, refusal

if TYPE_CHECKING:
    from sdworker.formats.openai import OpenAIFormat

#: OpenAI's own base path, and DeepInfra's OpenAI-compatible one
PREFIXES = ("/v1", "/v1/openai")
OWNER = "sdworker"


def openai_router(fmt: OpenAIFormat, ctx: FormatContext) -> APIRouter:
    """``POST {prefix}/images/{generations,edits,variations}``, ``GET {prefix}/models`` and
    ``GET {prefix}/models/{model}``. An images call waits for its job up to
    ``SDWORKER_DIALECT_WAIT_S`` and cancels it if it has not finished by then."""
    denied = Refusal(
        401,
        error_body(
            "Incorrect API key provided: send the endpoint's key as 'Authorization: Bearer <key>'",
            401,
            None,
            "invalid_api_key",
        ),
    )
    router = APIRouter(
        tags=["OpenAI"],
        route_class=FormatRoute,
        dependencies=[Depends(auth.bearer(ctx.settings, denied))],
    )

    async def images(request: Request, kind: str) -> JSONResponse:
        try:
            body = await _read(request, ctx)
            decoded = fmt.decode(body, ctx.models(), kind=kind)
        except SdworkerError as exc:
            raise refusal(fmt, Failure.of(exc).renamed(fmt.names)) from None
        gateway = ctx.gateway(request)
        view = await gateway.submit(decoded.inputs[0])
        finished = await wait_finished(gateway, view.id, ctx.wait_s)
        if finished is not None and not finished.status.is_terminal():
            await gateway.cancel(view.id)
        failure = failure_of(finished, ctx.wait_s)
        if failure is not None:
            raise refusal(fmt, failure.renamed(fmt.names))
        assert finished is not None  # failure_of says a job it cannot find has failed
        return await _answer(fmt, decoded, gateway, finished, str(request.base_url))

    for prefix in PREFIXES:
        for kind in ("generations", "edits", "variations"):
            router.add_api_route(
                f"{prefix}/images/{kind}",
                _endpoint(images, kind),
                methods=["POST"],
                name=f"openai_{kind}{prefix.replace('/', '_')}",
                summary=f"OpenAI images.{kind}",
                openapi_extra=docs.BODIES[kind],
            )
        router.add_api_route(
            f"{prefix}/models",
            _models(ctx),
            methods=["GET"],
            name=f"openai_models{prefix.replace('/', '_')}",
        )
        router.add_api_route(
            f"{prefix}/models/{{model:path}}",
            _model(ctx),
            methods=["GET"],
            name=f"openai_model{prefix.replace('/', '_')}",
        )
    return router


def _endpoint(images: Any, kind: str) -> Any:
    async def endpoint(request: Request) -> JSONResponse:
        return await images(request, kind)

    endpoint.__name__ = f"images_{kind}"
    endpoint.__doc__ = f"OpenAI's ``images.{kind}``: waits for the images."
    return endpoint


async def _read(request: Request, ctx: FormatContext) -> Any:
    """The JSON or multipart body; the ``openai`` package sends a list of images as
    ``image[]``, which is ``image`` here (one image per edit)."""
    if not is_form(request):
        return await read_json(request, ctx.body_limit)
    fields = await read_form(request, ctx.body_limit)
    if "image[]" in fields and "image" not in fields:
        fields["image"] = fields.pop("image[]")
    return fields


async def _answer(
    fmt: OpenAIFormat,
    decoded: Decoded[ImagesRequest],
    gateway: JobGateway,
    view: JobView,
    base_url: str,
) -> JSONResponse:
    """The answer, with a fetchable URL for each image a ``url`` answer has inline."""
    outputs = outputs_of(view)
    if decoded.request.response_format == "url":
        outputs = [await _with_url(gateway, view.id, i, o, base_url) for i, o in enumerate(outputs)]
    seeds = ",".join(str(o.get("seed")) for o in outputs)
    body = fmt.encode(decoded, outputs, view.execution_time_ms or 0)
    return JSONResponse(body, headers={SEEDS_HEADER: seeds})


async def _with_url(
    gateway: JobGateway, job_id: str, index: int, out: dict[str, Any], base_url: str
) -> dict[str, Any]:
    """``out`` with its ``url``: the worker's upload, else a file the endpoint keeps as long
    as the job's result, under the job's unguessable id."""
    if out.get("url"):
        return out
    kind = str(out.get("format") or "png")
    data = base64.b64decode(str(out.get("image") or ""))
    name = f"{index}-{out.get('seed')}.{EXTENSIONS.get(kind, kind)}"
    url = await gateway.store_file(job_id, name, data, CONTENT_TYPES.get(kind, "image/png"))
    return {**out, "url": urljoin(base_url, url)}


def _model_entry(name: str, created: int, root: str | None = None) -> dict[str, Any]:
    entry: dict[str, Any] = {"id": name, "object": "model", "created": created, "owned_by": OWNER}
    if root is not None:
        entry["root"] = root
    return entry


def _entries(ctx: FormatContext) -> list[dict[str, Any]]:
    """Each baked model, then each alias (``root`` names the model it stands for)."""
    entries: list[dict[str, Any]] = []
    aliases: list[dict[str, Any]] = []
    for info in ctx.registry.all():
        manifest_file = info.path / MANIFEST_NAME
        created = int(manifest_file.stat().st_mtime) if manifest_file.is_file() else 0
        entries.append(_model_entry(info.name, created))
        aliases += [_model_entry(a, created, info.name) for a in info.manifest.aliases]
    return entries + aliases


def _models(ctx: FormatContext) -> Any:
    async def list_models() -> dict[str, Any]:
        """The baked models and their aliases, as OpenAI's ``models.list``."""
        return {"object": "list", "data": _entries(ctx)}

    return list_models


def _model(ctx: FormatContext) -> Any:
    async def retrieve_model(model: str) -> JSONResponse:
        """One model (a baked name or an alias), as OpenAI's ``models.retrieve``."""
        for entry in _entries(ctx):
            if entry["id"] == model:
                return JSONResponse(entry)
        message = unknown_model(ctx.manifests(), model)
        raise Refusal(404, error_body(message, 404, "model", "model_not_found"))

    return retrieve_model
