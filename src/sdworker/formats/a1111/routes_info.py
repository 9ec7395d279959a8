"""The ``/sdapi/v1`` routes besides generation and progress: what requests use (models,
samplers, options), what this server has (:mod:`.listings`), ``png-info`` and the extras
upscale."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from sdworker.core.errors import SdworkerError
from sdworker.core.jobs import Failure
from sdworker.core.loras import LoraLibrary
from sdworker.formats import openapi as api
from sdworker.formats.a1111 import listings, scripts
from sdworker.formats.a1111.answer import sd_models as list_models
from sdworker.formats.a1111.extras import EXTRAS_NAMES, answer, parse_extras
from sdworker.formats.a1111.pnginfo import png_info
from sdworker.formats.base import FormatContext, failure_of
from sdworker.formats.http import outputs_of, read_json, wait_finished
from sdworker.formats.web import refusal

if TYPE_CHECKING:
    from sdworker.formats.a1111 import A1111Format


def add_settings(router: APIRouter, ctx: FormatContext, fmt: A1111Format) -> None:
    """The routes that list and set what requests use: models, samplers, options."""

    @router.get("/sd-models")
    async def sd_models() -> Any:
        """The baked models, titled as A1111 titles checkpoints."""
        return list_models(ctx.manifests(), str(ctx.settings.models_dir))

    @router.post("/refresh-checkpoints")
    async def refresh_checkpoints() -> None:
        """Read the models folder again."""
        ctx.registry.refresh()

    @router.get("/samplers")
    async def samplers() -> Any:
        """The sampler names ``sampler_name`` takes."""
        return fmt.samplers()

    @router.get("/schedulers")
    async def schedulers() -> Any:
        """The schedule types ``scheduler`` takes."""
        return fmt.schedulers()

    @router.get("/options")
    async def get_options() -> Any:
        """Every option A1111 knows; ``sd_model_checkpoint`` is the model requests use."""
        return fmt.get_options(ctx.models())

    @router.post("/options", openapi_extra=api.A1111_OPTIONS)
    async def set_options(request: Request) -> None:
        """Set options (kept for the endpoint, whichever worker runs a job);
        ``sd_model_checkpoint`` switches the default model of every format."""
        try:
            model = fmt.set_options(await read_json(request, ctx.body_limit), ctx.manifests())
        except SdworkerError as exc:
            raise refusal(fmt, Failure.of(exc)) from None
        if model is not None:
            ctx.registry.set_default(model)


def add_listings(router: APIRouter, ctx: FormatContext, fmt: A1111Format) -> None:
    """What this server has, in A1111's shapes, and ``png-info``."""
    library = LoraLibrary(ctx.settings.models_dir / "loras")
    empty: dict[str, Any] = {
        "/sd-vae": listings.sd_vae,
        "/embeddings": listings.embeddings,
        "/upscalers": listings.upscalers,
        "/latent-upscale-modes": listings.latent_upscale_modes,
        "/scripts": scripts.scripts,
        "/script-info": scripts.script_info,
        "/memory": listings.memory,
        "/prompt-styles": listings.prompt_styles,
        "/face-restorers": listings.face_restorers,
        "/hypernetworks": listings.hypernetworks,
        "/realesrgan-models": listings.realesrgan_models,
    }
    for path, answer_of in empty.items():
        router.add_api_route(path, answer_of, methods=["GET"])

    @router.get("/loras")
    async def loras() -> Any:
        """The baked LoRAs (``models_dir/loras``)."""
        return listings.loras(library)

    @router.post("/refresh-loras")
    async def refresh_loras() -> None:
        """LoRAs are read from the folder at each listing: nothing to do."""

    @router.get("/cmd-flags")
    async def cmd_flags() -> Any:
        """A1111's command-line flags, as they describe this server."""
        return listings.cmd_flags(ctx.settings)

    @router.post("/png-info", openapi_extra=api.A1111_PNG_INFO)
    async def pnginfo(request: Request) -> Any:
        """The generation parameters in an image's ``parameters`` text chunk."""
        try:
            return png_info(await read_json(request, ctx.body_limit))
        except SdworkerError as exc:
            raise refusal(fmt, Failure.of(exc)) from None


def add_extras(router: APIRouter, ctx: FormatContext, fmt: A1111Format) -> None:
    """``extra-single-image``: upscale one image (the native upscale-only job)."""

    @router.post("/extra-single-image", openapi_extra=api.A1111_EXTRAS)
    async def extra_single_image(request: Request) -> JSONResponse:
        """Upscale one image with an upscaler ``/upscalers`` lists: ``{"html_info", "image"}``."""
        try:
            extras = parse_extras(await read_json(request, ctx.body_limit))
        except SdworkerError as exc:
            raise refusal(fmt, Failure.of(exc)) from None
        if extras.job is None:
            return JSONResponse(answer(extras, []))
        gateway = ctx.gateway(request)
        job = await gateway.submit(extras.job)
        view = await wait_finished(gateway, job.id, ctx.wait_s)
        failure = failure_of(view, ctx.wait_s)
        if failure is not None:
            if view is not None and not view.status.is_terminal():
                await gateway.cancel(job.id)
            raise refusal(fmt, failure.renamed(EXTRAS_NAMES))
        return JSONResponse(answer(extras, outputs_of(view)))
