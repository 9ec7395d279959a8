"""The OpenAI Images API's routes on the local endpoint (auth: ``Authorization: Bearer KEY``)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Request, Response
from fastapi.responses import JSONResponse

from sdworker.core.manifest import MANIFEST_NAME
from sdworker.formats import auth
from sdworker.formats.base import FormatContext
from sdworker.formats.openai import OPENAI, docs
from sdworker.formats.openai.errors import error_body
from sdworker.formats.pipeline import Pipeline
from sdworker.formats.web import FormatRoute, Refusal

#: OpenAI's own base path, and DeepInfra's OpenAI-compatible one
PREFIXES = ("/v1", "/v1/openai")
KINDS = ("generations", "edits", "variations")
OWNER = "sdworker"


def openai_router(ctx: FormatContext) -> APIRouter:
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
    pipe = Pipeline(OPENAI, ctx)
    for prefix in PREFIXES:
        suffix = prefix.replace("/", "_")
        for kind in KINDS:
            router.add_api_route(
                f"{prefix}/images/{kind}",
                _images(pipe, kind),
                methods=["POST"],
                name=f"openai_{kind}{suffix}",
                summary=f"OpenAI images.{kind}",
                openapi_extra=docs.BODIES[kind],
            )
        router.add_api_route(
            f"{prefix}/models", _models(ctx), methods=["GET"], name=f"openai_models{suffix}"
        )
        router.add_api_route(
            f"{prefix}/models/{{model:path}}",
            _model(ctx),
            methods=["GET"],
            name=f"openai_model{suffix}",
        )
    return router


def _images(pipe: Pipeline[Any], kind: str) -> Any:
    async def endpoint(request: Request) -> Response:
        return await pipe(request, kind=kind)

    endpoint.__name__ = f"images_{kind}"
    endpoint.__doc__ = f"OpenAI's ``images.{kind}``: waits for the images."
    return endpoint


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
        message = ctx.models().unknown_message(model)
        raise Refusal(404, error_body(message, 404, "model", "model_not_found"))

    return retrieve_model
