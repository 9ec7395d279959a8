"""The one route every format's requests go through, after LitServe's request handler.

:class:`Pipeline` runs a call in the same steps whatever the format:

1. **read** the body (JSON, or form fields where the format takes them), with the size cap;
2. **decode** it with the format's :meth:`~.base.Format.decode`;
3. **submit** each native input to the queue;
4. **wait** for the jobs (a ``sync`` format), cancelling them if the client leaves first or
   the wait runs out, or **answer at once** (a ``queued`` format, a request decoded to be
   answered so, or one with a webhook) with :meth:`~.base.Format.accepted` and, for a
   webhook, POST the answer later;
5. **answer** with :meth:`~.base.Format.encode` (JSON, or :class:`~.base.Raw` bytes), or
   with :meth:`~.base.Format.encode_error` for the first failure, the failure's fields in the
   format's names.

A format's routes declare paths and hand the request to its pipeline; a refusal at any step
comes back in the format's own shape. The pipeline also keeps the synchronous calls in flight
(:class:`InFlight`), for routes that report on them or stop them (A1111's ``/progress`` and
``/interrupt``).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar
from urllib.parse import urljoin

from fastapi import FastAPI, Request, Response
from fastapi.responses import JSONResponse

from sdworker.core.errors import SdworkerError
from sdworker.core.jobs import Failure, JobGateway, JobView
from sdworker.core.media import CONTENT_TYPES, EXTENSIONS
from sdworker.formats.base import Decoded, Format, FormatContext, Queued, Raw, failure_of
from sdworker.formats.http import is_form, read_form, read_json
from sdworker.formats.web import Refusal

log = logging.getLogger(__name__)

R = TypeVar("R")
T = TypeVar("T")
#: how long one wait on the queue lasts before the loop checks its own deadline again
_WAIT_SLICE_S = 30.0
#: the status of an answer no one reads: the client closed the connection first (nginx's)
CLIENT_LEFT = 499
#: how the jobs of an interrupted call end: not failures of the call, which answers with what
#: its jobs made before
_STOPPED = ("cancelled", "timed_out")


@dataclass
class Running:
    """One synchronous call in flight: its jobs, when it began, whether it was interrupted."""

    job_ids: list[str]
    started: float
    interrupted: bool = False


@dataclass
class InFlight:
    """The synchronous calls a pipeline waits on, oldest first."""

    running: dict[str, Running] = field(default_factory=dict)

    def oldest(self) -> tuple[str, Running] | None:
        """The first call still running, with its token (its first job's id)."""
        return next(iter(self.running.items()), None)

    @contextlib.contextmanager
    def track(self, job_ids: list[str]) -> Iterator[Running]:
        """Keep the call of ``job_ids`` in flight while the block runs."""
        running = Running(job_ids, time.monotonic())
        token = job_ids[0] if job_ids else f"empty-{id(running)}"
        self.running[token] = running
        try:
            yield running
        finally:
            self.running.pop(token, None)


class Pipeline(Generic[R]):
    """``fmt``'s calls on the endpoint of ``ctx`` (see the module docstring); one per router.

    Calling it answers a request: ``await pipeline(request, **where)``, where ``where`` are
    the path's parameters the format decodes with (a model name, an endpoint) and
    ``status_url`` makes the URL a ``queued`` answer points to, from the job's id."""

    def __init__(self, fmt: Format[R], ctx: FormatContext) -> None:
        self.fmt = fmt
        self.ctx = ctx
        self.flight = InFlight()
        #: webhook answers still waiting for their jobs
        self._delivering: set[asyncio.Task[None]] = set()

    async def __call__(
        self,
        request: Request,
        *,
        status_url: Callable[[str], str] | None = None,
        **where: str,
    ) -> Response:
        decoded = await self.decode(request, **where)
        gateway = self.ctx.gateway(request)
        decoded.job_ids = await self._submit(gateway, decoded.inputs)
        if (decoded.answers or self.fmt.answers) == "queued" or decoded.webhook:
            return await self._accept(request, gateway, decoded, status_url)
        with self.flight.track(decoded.job_ids) as running:
            views = await self._wait(request, gateway, decoded.job_ids)
        if views is None:
            log.info(
                "%s: the client left before its jobs finished; they are cancelled", self.fmt.name
            )
            return Response(status_code=CLIENT_LEFT)
        status, body, headers = await self._answer(
            gateway, decoded, views, str(request.base_url), running.interrupted
        )
        return self.response(status, body, headers)

    # -- the steps ---------------------------------------------------------------------------

    async def read(self, request: Request) -> Any:
        """The body: form fields where the format takes them and the client sent a form,
        else JSON; refused past the endpoint's body limit."""
        limit = self.ctx.body_limit
        if self.fmt.forms and is_form(request):
            return await read_form(request, limit)
        return await read_json(request, limit)

    async def decode(self, request: Request, **where: str) -> Decoded[R]:
        """The request read and decoded; a bad one is refused in the format's shape."""
        with self.refusals():
            return self.fmt.decode(await self.read(request), self.ctx.models(), **where)

    async def _submit(self, gateway: JobGateway, inputs: list[dict[str, Any]]) -> list[str]:
        """Queue each native input; an input the queue refuses (a value JSON cannot carry) is
        refused in the format's shape, and the call's jobs queued before it are cancelled."""
        job_ids: list[str] = []
        try:
            with self.refusals():
                for job in inputs:
                    job_ids.append((await gateway.submit(job)).id)
        except Refusal:
            await cancel_unfinished(gateway, job_ids)
            raise
        return job_ids

    async def _wait(
        self, request: Request, gateway: JobGateway, job_ids: list[str]
    ) -> list[JobView | None] | None:
        """Every job as it is once all are terminal or the wait runs out; None when the
        client left first (its jobs are cancelled: no one will read their result)."""
        done, views = await unless_left(request, wait_all(gateway, job_ids, self.ctx.wait_s))
        if done:
            return views
        await cancel_unfinished(gateway, job_ids)
        return None

    async def _answer(
        self,
        gateway: JobGateway,
        decoded: Decoded[R],
        views: list[JobView | None],
        base_url: str,
        interrupted: bool = False,
    ) -> tuple[int, Any, dict[str, str]]:
        """(status, body, headers) for jobs waited on: the first failure (the call's other
        jobs cancelled), else the format's answer from every job's outputs. The jobs of an
        interrupted call that were stopped are no failure: the call answers with what was
        made before (A1111's answer to an interrupt)."""
        for index, view in enumerate(views):
            failure = failure_of(view, self.ctx.wait_s)
            if failure is not None and not (interrupted and failure.code in _STOPPED):
                # the call is answered now: nothing else of it may keep a worker busy
                await cancel_unfinished(gateway, decoded.job_ids)
                names = decoded.names_of(index, self.fmt.names)
                status, body = self.fmt.encode_error(failure.renamed(names))
                return status, body, {}
        outputs: list[dict[str, Any]] = []
        for view in views:
            if view is not None and self.fmt.wants_urls(decoded):
                outputs += await with_urls(gateway, view, base_url)
            else:
                outputs += outputs_of(view)
        execution_ms = sum(v.execution_time_ms or 0 for v in views if v is not None)
        body = self.fmt.encode(decoded, outputs, execution_ms)
        return 200, body, self.fmt.headers(decoded, outputs)

    async def _accept(
        self,
        request: Request,
        gateway: JobGateway,
        decoded: Decoded[R],
        status_url: Callable[[str], str] | None,
    ) -> Response:
        """Answer at once; a webhook gets the answer once the jobs are done."""
        first = decoded.job_ids[0]
        if decoded.webhook:
            send = self.ctx.webhooks(request)
            task = asyncio.create_task(
                self._deliver(decoded.webhook, send, gateway, decoded, str(request.base_url))
            )
            self._delivering.add(task)
            task.add_done_callback(self._delivering.discard)
        queued = Queued(
            first, status_url(first) if status_url else None, await gateway.queue_position(first)
        )
        status, body = self.fmt.accepted(decoded, queued)
        return self.response(status, body)

    async def _deliver(
        self,
        url: str,
        send: Callable[[str, dict[str, Any]], object],
        gateway: JobGateway,
        decoded: Decoded[R],
        base_url: str,
    ) -> None:
        """Wait for the jobs, then hand the answer to ``send`` (the server's webhook sender,
        which retries)."""
        views = await wait_all(gateway, decoded.job_ids, self.ctx.wait_s)
        status, body, _ = await self._answer(gateway, decoded, views, base_url)
        send(url, self.fmt.webhook_body(decoded, status, body))

    # -- what routes of a format share ---------------------------------------------------------

    def response(self, status: int, body: Any, headers: dict[str, str] | None = None) -> Response:
        """The answer: JSON (an error in the format's content type), or :class:`Raw` bytes."""
        if isinstance(body, Raw):
            return Response(body.content, status, headers, media_type=body.media_type)
        media_type = self.fmt.media_type if status >= 400 else None
        return JSONResponse(body, status_code=status, headers=headers, media_type=media_type)

    def refuse(self, failure: Failure) -> Refusal:
        """``failure`` answered in the format's shape, ready to raise."""
        status, body = self.fmt.encode_error(failure)
        return Refusal(status, body, media_type=self.fmt.media_type)

    @contextlib.contextmanager
    def refusals(self) -> Iterator[None]:
        """Inside the block, an :class:`SdworkerError` is refused in the format's shape."""
        try:
            yield
        except SdworkerError as exc:
            raise self.refuse(Failure.of(exc)) from None

    async def job(self, request: Request, job_id: str) -> JobView:
        """The job a status route asks for; refused (404, the format's shape) when the queue
        does not know it, or no longer."""
        view = await self.ctx.gateway(request).get(job_id)
        if view is None:
            raise self.not_found(job_id)
        return view

    def not_found(self, job_id: str) -> Refusal:
        """The refusal for a job the queue does not know, or no longer."""
        message = f"no request {job_id!r} (unknown or expired)"
        return self.refuse(Failure("job_not_found", message))

    @contextlib.asynccontextmanager
    async def lifespan(self, app: FastAPI) -> AsyncIterator[None]:
        """The router's lifespan: webhook answers still waiting are cancelled at shutdown."""
        try:
            yield
        finally:
            for task in self._delivering:
                task.cancel()
            await asyncio.gather(*self._delivering, return_exceptions=True)


async def client_left(request: Request) -> None:
    """Return once the client has closed the connection (the body is read by then: the next
    message the server has for the app is the disconnect)."""
    while (await request.receive())["type"] != "http.disconnect":
        pass


async def unless_left(request: Request, work: Awaitable[T]) -> tuple[bool, T | None]:
    """``(True, work's result)``, or ``(False, None)`` when the client closed the connection
    first (``work`` is then cancelled)."""
    waiting = asyncio.ensure_future(work)
    leaving = asyncio.ensure_future(client_left(request))
    try:
        await asyncio.wait({waiting, leaving}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in (waiting, leaving):
            task.cancel()
    if waiting.done() and not waiting.cancelled():
        return True, waiting.result()
    return False, None


async def wait_finished(gateway: JobGateway, job_id: str, timeout_s: float) -> JobView | None:
    """Wait until the job is terminal or ``timeout_s`` passes (in slices, so a long wait is
    not one long call); the job as it is then."""
    deadline = time.monotonic() + timeout_s
    view = await gateway.get(job_id)
    while view is not None and not view.status.is_terminal():
        left = deadline - time.monotonic()
        if left <= 0:
            break
        view = await gateway.wait(job_id, min(left, _WAIT_SLICE_S))
    return view


async def wait_all(
    gateway: JobGateway, job_ids: list[str], timeout_s: float
) -> list[JobView | None]:
    """:func:`wait_finished` for each job, together."""
    return list(await asyncio.gather(*(wait_finished(gateway, j, timeout_s) for j in job_ids)))


async def cancel_unfinished(gateway: JobGateway, job_ids: list[str]) -> None:
    """Cancel those of ``job_ids`` still queued or running: their call is answered."""
    for job_id in job_ids:
        view = await gateway.get(job_id)
        if view is not None and not view.status.is_terminal():
            await gateway.cancel(job_id)


def outputs_of(view: JobView | None) -> list[dict[str, Any]]:
    """The list of output objects of a finished job (empty when it has none)."""
    if view is None or not isinstance(view.output, list):
        return []
    return [o for o in view.output if isinstance(o, dict)]


async def with_urls(gateway: JobGateway, view: JobView, base_url: str) -> list[dict[str, Any]]:
    """The job's outputs, each with its ``url``: the worker's upload, else a file the endpoint
    keeps as long as the job's result, under the job's unguessable id, at the address the
    client used (unless the server has an explicit public URL)."""
    found: list[dict[str, Any]] = []
    for index, out in enumerate(outputs_of(view)):
        if out.get("url"):
            found.append(out)
            continue
        kind = str(out.get("format") or "png")
        data = base64.b64decode(str(out.get("image") or ""))
        name = f"{index}-{out.get('seed')}.{EXTENSIONS.get(kind, kind)}"
        url = await gateway.store_file(view.id, name, data, CONTENT_TYPES.get(kind, "image/png"))
        found.append({**out, "url": urljoin(base_url, url)})
    return found
