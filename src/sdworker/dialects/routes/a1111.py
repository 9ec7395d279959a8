"""``/sdapi/v1``: the AUTOMATIC1111 web UI API on the local endpoint's queue.

txt2img/img2img are synchronous as in A1111: the request waits for its jobs. ``progress``
and ``interrupt`` act on the oldest A1111 request still running, as A1111's single-job
state does.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from sdworker.dialects import a1111
from sdworker.dialects import openapi as api
from sdworker.dialects.routes.common import (
    DialectContext,
    basic_password,
    job_error,
    outputs_of,
    read_json,
    wait_all,
)
from sdworker.errors import InvalidInput
from sdworker.server.gateway import JobGateway, JobView, Status

PREFIX = "/sdapi/v1"


@dataclass
class _Running:
    """One A1111 request in flight: its jobs, for progress and interrupt."""

    job_ids: list[str]
    started: float
    interrupted: bool = False


@dataclass
class A1111State:
    options: a1111.Options = field(default_factory=a1111.Options)
    running: dict[str, _Running] = field(default_factory=dict)
    rng: random.Random = field(default_factory=random.SystemRandom)


def _error(status: int, error: BaseException | str) -> JSONResponse:
    return JSONResponse(a1111.error_body(error), status_code=status)


def a1111_router(
    ctx: DialectContext,
    catalog: Callable[[], a1111.SamplerCatalog] = a1111.default_catalog,
    state: A1111State | None = None,
) -> APIRouter:
    """The A1111 routes; ``catalog`` gives the sampler names (read at each call)."""
    st = state or A1111State()
    router = APIRouter(prefix=PREFIX, tags=["AUTOMATIC1111"])

    def denied(request: Request) -> JSONResponse | None:
        header = request.headers.get("authorization")
        if ctx.authorised(basic_password(header), header):
            return None
        return JSONResponse(
            {"detail": "Incorrect username or password"},
            status_code=401,
            headers={"WWW-Authenticate": "Basic"},
        )

    async def generate(request: Request, kind: a1111.Kind) -> JSONResponse:
        if (no := denied(request)) is not None:
            return no
        try:
            body = await read_json(request)
            req = a1111.parse(
                body,
                kind,
                catalog=catalog(),
                manifests=ctx.manifests(),
                default_model=ctx.registry.default_name,
                options=st.options,
                rng=st.rng,
            )
        except InvalidInput as exc:
            return _error(422, exc)
        gateway = ctx.gateway(request)
        views = [await gateway.submit(job) for job in req.jobs()]
        token = views[0].id
        st.running[token] = _Running([v.id for v in views], time.monotonic())
        try:
            finished = await wait_all(gateway, [v.id for v in views], ctx.settings.dialect_wait_s)
        finally:
            entry = st.running.pop(token, None)
        interrupted = entry is not None and entry.interrupted
        outputs: list[dict[str, Any]] = []
        for view in finished:
            failure = _failure(view, interrupted, ctx.settings.dialect_wait_s)
            if failure is not None:
                # the request is answered now: nothing else of it may keep a worker busy
                await _cancel_all(gateway, [v.id for v in views])
                return failure
            outputs += outputs_of(view)
        if not outputs and interrupted:
            return _error(409, "interrupted before any image was finished")
        manifest = ctx.manifest(req.model)
        return JSONResponse(
            a1111.response(
                req,
                body,
                outputs,
                model_name=req.model or "",
                model_hash=manifest.short_hash if manifest else "",
            )
        )

    @router.post("/txt2img", openapi_extra=api.A1111_TXT2IMG)
    async def txt2img(request: Request) -> JSONResponse:
        """A1111 ``txt2img``: ``{"images", "parameters", "info"}``."""
        return await generate(request, "txt2img")

    @router.post("/img2img", openapi_extra=api.A1111_IMG2IMG)
    async def img2img(request: Request) -> JSONResponse:
        """A1111 ``img2img`` (``mask`` → inpaint)."""
        return await generate(request, "img2img")

    @router.get("/sd-models", openapi_extra=api.A1111_AUTH)
    async def sd_models(request: Request) -> Any:
        return denied(request) or a1111.sd_models(ctx.manifests(), str(ctx.settings.models_dir))

    @router.post("/refresh-checkpoints", openapi_extra=api.A1111_AUTH)
    async def refresh_checkpoints(request: Request) -> Any:
        if (no := denied(request)) is not None:
            return no
        ctx.registry.refresh()
        return None

    @router.get("/samplers", openapi_extra=api.A1111_AUTH)
    async def samplers(request: Request) -> Any:
        return denied(request) or a1111.samplers(catalog())

    @router.get("/schedulers", openapi_extra=api.A1111_AUTH)
    async def schedulers(request: Request) -> Any:
        return denied(request) or a1111.schedulers(catalog())

    @router.get("/options", openapi_extra=api.A1111_AUTH)
    async def get_options(request: Request) -> Any:
        if (no := denied(request)) is not None:
            return no
        return a1111.get_options(st.options, ctx.manifest(ctx.registry.default_name))

    @router.post("/options", openapi_extra=api.A1111_OPTIONS)
    async def set_options(request: Request) -> Any:
        if (no := denied(request)) is not None:
            return no
        try:
            values, model = a1111.set_options(st.options, await read_json(request), ctx.manifests())
        except InvalidInput as exc:
            return _error(422, exc)
        if model is not None:
            ctx.registry.set_default(model)
        st.options.values = values
        return None

    @router.get("/progress", openapi_extra=api.A1111_AUTH)
    async def progress(request: Request) -> Any:
        if (no := denied(request)) is not None:
            return no
        return await _progress(ctx.gateway(request), st)

    @router.post("/interrupt", openapi_extra=api.A1111_AUTH)
    async def interrupt(request: Request) -> Any:
        if (no := denied(request)) is not None:
            return no
        if st.running:
            entry = next(iter(st.running.values()))
            entry.interrupted = True
            await _cancel_all(ctx.gateway(request), entry.job_ids)
        return None

    @router.post("/skip", openapi_extra=api.A1111_AUTH)
    async def skip(request: Request) -> Any:
        # A1111 skips the current image of a batch; here a job is the smallest unit
        return await interrupt(request)

    return router


def _failure(view: JobView | None, interrupted: bool, wait_s: float) -> JSONResponse | None:
    """A1111's error answer for a job that did not complete; None when its images count.

    A job cancelled or timed out is an error unless the request was stopped with
    ``/interrupt``: then, as in A1111, the images finished before it are the answer.
    """
    if view is None:
        return _error(500, "a job of this request expired before it was read")
    if view.status is Status.FAILED:
        client_fault, message = job_error(view, a1111.NATIVE_TO_A1111)
        return _error(422 if client_fault else 500, message)
    if not view.status.is_terminal():
        return _error(504, f"generation did not finish within {wait_s:g} s")
    if view.status is Status.COMPLETED or interrupted:
        return None
    if view.status is Status.TIMED_OUT:
        return _error(504, view.error or f"job {view.id} timed out before it finished")
    return _error(409, view.error or f"job {view.id} was cancelled before it finished")


async def _cancel_all(gateway: JobGateway, job_ids: list[str]) -> None:
    for job_id in job_ids:
        view = await gateway.get(job_id)
        if view is not None and not view.status.is_terminal():
            await gateway.cancel(job_id)


async def _progress(gateway: JobGateway, st: A1111State) -> dict[str, Any]:
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
    if not st.running:
        return answer
    token, entry = next(iter(st.running.items()))
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
