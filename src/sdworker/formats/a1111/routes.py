"""``/sdapi/v1``: the AUTOMATIC1111 web UI API on the local endpoint's queue.

txt2img, img2img and the extras upscale are synchronous as in A1111: the call waits for its
jobs (the route pipeline, :mod:`sdworker.formats.pipeline`). ``progress`` and ``interrupt``
act on the oldest generation still running, as A1111's single-job state does. The other
routes answer from what this server has: models, samplers, options, LoRAs, ``png-info``.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import Response

from sdworker.core.assets import AssetRegistry
from sdworker.core.errors import ModelNotFound, SdworkerError
from sdworker.core.jobs import JobGateway, Status
from sdworker.formats import auth
from sdworker.formats import openapi as api
from sdworker.formats.a1111 import A1111Format, listings, scripts
from sdworker.formats.a1111.answer import sd_models as list_models
from sdworker.formats.a1111.extras import ExtrasFormat
from sdworker.formats.a1111.options import STORE_NAME, Options
from sdworker.formats.a1111.pnginfo import png_info
from sdworker.formats.base import FormatContext
from sdworker.formats.pipeline import InFlight, Pipeline
from sdworker.formats.web import FormatRoute, Refusal

log = logging.getLogger(__name__)

PREFIX = "/sdapi/v1"


def a1111_router(ctx: FormatContext, fmt: A1111Format | None = None) -> APIRouter:
    """The A1111 routes for ``fmt`` (a new one by default), whose options they read and set:
    from now on they are the endpoint's store (saved under its state directory, read back
    from there)."""
    fmt = fmt or A1111Format()
    if fmt.options.path is None:
        fmt.options = _restore(ctx, fmt.options)
    denied = Refusal(
        401, {"detail": "Incorrect username or password"}, headers={"WWW-Authenticate": "Basic"}
    )
    router = APIRouter(
        prefix=PREFIX,
        tags=["AUTOMATIC1111"],
        route_class=FormatRoute,
        dependencies=[Depends(auth.basic_or_bearer(ctx.settings, denied))],
    )
    generate = Pipeline(fmt, ctx)
    extras = Pipeline(ExtrasFormat(), ctx)

    @router.post("/txt2img", openapi_extra=api.A1111_TXT2IMG)
    async def txt2img(request: Request) -> Response:
        """A1111 ``txt2img``: ``{"images", "parameters", "info"}``."""
        return await generate(request, kind="txt2img")

    @router.post("/img2img", openapi_extra=api.A1111_IMG2IMG)
    async def img2img(request: Request) -> Response:
        """A1111 ``img2img`` (``mask`` → inpaint)."""
        return await generate(request, kind="img2img")

    @router.post("/extra-single-image", openapi_extra=api.A1111_EXTRAS)
    async def extra_single_image(request: Request) -> Response:
        """Upscale one image with an upscaler ``/upscalers`` lists: ``{"html_info", "image"}``."""
        return await extras(request)

    _add_progress(router, ctx, generate.flight)
    _add_settings(router, ctx, fmt, generate)
    _add_listings(router, ctx, generate)
    return router


def _restore(ctx: FormatContext, options: Options) -> Options:
    """The endpoint's saved options over ``options``; a saved checkpoint is the default model
    again (and forgotten when it is no longer baked)."""
    stored = Options.load(ctx.settings.state_dir / STORE_NAME)
    stored.values = {**options.values, **stored.values}
    model = stored.model
    if model is not None:
        try:
            ctx.registry.set_default(model)
        except SdworkerError:
            log.warning("the saved sd_model_checkpoint %r is not baked; forgetting it", model)
            del stored.values["sd_model_checkpoint"]
    return stored


# -- progress and interrupt ------------------------------------------------------------------


def _add_progress(router: APIRouter, ctx: FormatContext, flight: InFlight) -> None:
    """``progress``, ``interrupt`` and ``skip``, on the oldest generation in flight."""

    @router.get("/progress")
    async def progress(request: Request) -> Any:
        """The oldest running request's progress (all zero when idle)."""
        return await _progress(ctx.gateway(request), flight)

    @router.post("/interrupt")
    async def interrupt(request: Request) -> dict[str, Any]:
        """Stop the oldest running request: it answers with the images it finished and the
        one being made, as it stood (A1111's answer to an interrupt)."""
        oldest = flight.oldest()
        if oldest is not None:
            oldest[1].interrupted = True
            await interrupt_jobs(ctx.gateway(request), oldest[1].job_ids)
        return {}

    @router.post("/skip")
    async def skip(request: Request) -> dict[str, Any]:
        """A1111 skips the current image of a batch; here a job is the smallest unit."""
        return await interrupt(request)


async def interrupt_jobs(gateway: JobGateway, job_ids: list[str]) -> None:
    """Interrupt each unfinished job: a queued one is cancelled, a running one stops early
    and completes with what it has (the queue's ``interrupt``)."""
    for job_id in job_ids:
        view = await gateway.get(job_id)
        if view is not None and not view.status.is_terminal():
            await gateway.interrupt(job_id)


async def _progress(gateway: JobGateway, flight: InFlight) -> dict[str, Any]:
    """A1111's ``/progress`` for the oldest running request (all zero when idle)."""
    state: dict[str, Any] = {
        "skipped": False,
        "interrupted": False,
        "job": "",
        "job_count": 0,
        "job_timestamp": "0",
        "job_no": 0,
        "sampling_step": 0,
        "sampling_steps": 0,
    }
    answer: dict[str, Any] = {
        "progress": 0.0,
        "eta_relative": 0.0,
        "state": state,
        "current_image": None,
        "textinfo": None,
    }
    oldest = flight.oldest()
    if oldest is None:
        return answer
    token, entry = oldest
    done = 0.0
    job_no = 0
    for index, job_id in enumerate(entry.job_ids):
        view = await gateway.get(job_id)
        if view is None or view.status.is_terminal():
            done += 1
            continue
        if view.status is Status.IN_PROGRESS:
            job_no = index
            out = view.output if isinstance(view.output, dict) else {}
            steps = int(out.get("steps") or 0)
            step = int(out.get("step") or 0)
            state["sampling_step"], state["sampling_steps"] = step, steps
            done += float(out.get("progress") or (step / steps if steps else 0.0))
        break
    fraction = min(done / len(entry.job_ids), 1.0)
    elapsed = time.monotonic() - entry.started
    state.update(
        {
            "interrupted": entry.interrupted,
            "job": f"task({token})",
            "job_count": len(entry.job_ids),
            "job_no": job_no,
            "job_timestamp": time.strftime("%Y%m%d%H%M%S"),
        }
    )
    answer["progress"] = round(fraction, 4)
    answer["eta_relative"] = round(elapsed / fraction - elapsed, 2) if fraction > 0 else 0.0
    return answer


# -- what requests use, and what this server has ---------------------------------------------


def _add_settings(
    router: APIRouter, ctx: FormatContext, fmt: A1111Format, pipe: Pipeline[Any]
) -> None:
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
        with pipe.refusals():
            model = fmt.set_options(await pipe.read(request), ctx.manifests())
        if model is not None:
            ctx.registry.set_default(model)


def _add_listings(router: APIRouter, ctx: FormatContext, pipe: Pipeline[Any]) -> None:
    """What this server has, in A1111's shapes, and ``png-info``."""
    assets = AssetRegistry(ctx.settings)
    empty: dict[str, Any] = {
        "/sd-vae": listings.sd_vae,
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
        """The baked LoRAs (``models_dir/loras``) and the volume's (``models/loras``)."""
        return listings.loras(assets)

    @router.post("/refresh-loras")
    async def refresh_loras() -> None:
        """Read the LoRA and embedding folders again (baked and on the volume)."""
        assets.refresh()

    @router.get("/embeddings")
    async def embeddings() -> Any:
        """The textual-inversion embeddings, ``loaded`` (they fit the default model) or
        ``skipped``."""
        try:
            model = ctx.registry.get(ctx.registry.default_name)
        except ModelNotFound:
            model = None
        return listings.embeddings(assets, model)

    @router.post("/refresh-embeddings")
    async def refresh_embeddings() -> None:
        """Read the embedding folders again (baked and on the volume)."""
        assets.refresh()

    @router.get("/cmd-flags")
    async def cmd_flags() -> Any:
        """A1111's command-line flags, as they describe this server."""
        return listings.cmd_flags(ctx.settings)

    @router.post("/png-info", openapi_extra=api.A1111_PNG_INFO)
    async def pnginfo(request: Request) -> Any:
        """The generation parameters in an image's ``parameters`` text chunk."""
        with pipe.refusals():
            return png_info(await pipe.read(request))
