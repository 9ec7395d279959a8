"""``/sdapi/v1``: the AUTOMATIC1111 web UI API on the local endpoint's queue.

txt2img/img2img are synchronous as in A1111: the request waits for its jobs. ``progress``
and ``interrupt`` act on the oldest A1111 request still running, as A1111's single-job
state does.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse

from sdworker.core.errors import SdworkerError
from sdworker.core.jobs import Failure, JobGateway, Status
from sdworker.formats import auth
from sdworker.formats import openapi as api
from sdworker.formats.a1111.routes_info import add_extras, add_listings, add_settings
from sdworker.formats.base import FormatContext, failure_of
from sdworker.formats.http import cancel_unfinished, outputs_of, read_json, wait_all
from sdworker.formats.web import FormatRoute, Refusal, refusal

if TYPE_CHECKING:
    from sdworker.formats.a1111 import A1111Format

PREFIX = "/sdapi/v1"
#: how the jobs of an interrupted request end
_STOPPED = ("cancelled", "timed_out")


@dataclass
class _Running:
    """One A1111 request in flight: its jobs, for progress and interrupt."""

    job_ids: list[str]
    started: float
    interrupted: bool = False


@dataclass
class _InFlight:
    running: dict[str, _Running] = field(default_factory=dict)

    def oldest(self) -> tuple[str, _Running] | None:
        """The first request still running, with its token."""
        return next(iter(self.running.items()), None)


def a1111_router(ctx: FormatContext, fmt: A1111Format) -> APIRouter:
    """The A1111 routes for ``fmt`` (whose options they read and set)."""
    flight = _InFlight()
    denied = Refusal(
        401, {"detail": "Incorrect username or password"}, headers={"WWW-Authenticate": "Basic"}
    )
    check = auth.basic_or_bearer(ctx.settings, denied)
    router = APIRouter(
        prefix=PREFIX,
        tags=["AUTOMATIC1111"],
        route_class=FormatRoute,
        dependencies=[Depends(check)],
    )

    @router.post("/txt2img", openapi_extra=api.A1111_TXT2IMG)
    async def txt2img(request: Request) -> JSONResponse:
        """A1111 ``txt2img``: ``{"images", "parameters", "info"}``."""
        return await _generate(ctx, fmt, flight, request, "txt2img")

    @router.post("/img2img", openapi_extra=api.A1111_IMG2IMG)
    async def img2img(request: Request) -> JSONResponse:
        """A1111 ``img2img`` (``mask`` → inpaint)."""
        return await _generate(ctx, fmt, flight, request, "img2img")

    add_settings(router, ctx, fmt)
    add_listings(router, ctx, fmt)
    add_extras(router, ctx, fmt)
    _add_progress(router, ctx, flight)
    return router


async def _generate(
    ctx: FormatContext, fmt: A1111Format, flight: _InFlight, request: Request, kind: str
) -> JSONResponse:
    """Submit the request's jobs, wait for all of them, answer in A1111's shape."""
    try:
        body = await read_json(request, ctx.body_limit)
        decoded = fmt.decode(body, ctx.models(), kind=kind)
    except SdworkerError as exc:
        raise refusal(fmt, Failure.of(exc)) from None
    gateway = ctx.gateway(request)
    ids = [(await gateway.submit(job)).id for job in decoded.inputs]
    flight.running[ids[0]] = _Running(ids, time.monotonic())
    try:
        finished = await wait_all(gateway, ids, ctx.wait_s)
    finally:
        entry = flight.running.pop(ids[0], None)
    interrupted = entry is not None and entry.interrupted
    outputs: list[dict[str, Any]] = []
    for view in finished:
        failure = failure_of(view, ctx.wait_s)
        # stopped with /interrupt: as in A1111, what was made before it is the answer (the
        # running job ends with its image as it stood; the queued ones are cancelled)
        if failure is not None and not (interrupted and failure.code in _STOPPED):
            # the request is answered now: nothing else of it may keep a worker busy
            await cancel_unfinished(gateway, ids)
            raise refusal(fmt, failure.renamed(fmt.names))
        outputs += outputs_of(view)
    return JSONResponse(fmt.encode(decoded, outputs, 0))


def _add_progress(router: APIRouter, ctx: FormatContext, flight: _InFlight) -> None:
    """``progress``, ``interrupt`` and ``skip``, on the oldest request in flight."""

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


async def _progress(gateway: JobGateway, flight: _InFlight) -> dict[str, Any]:
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
