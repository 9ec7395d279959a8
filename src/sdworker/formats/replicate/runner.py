"""What the Replicate and cog routes share, after cog's ``runner.py``: a prediction made from a
request (decoded by the format's pipeline, submitted as one job), the predictions remembered,
each one's answer as its job is now, and its webhooks.

Webhooks: ``start`` is sent when the prediction is made (the prediction as it starts:
``starting``, or ``processing`` when a worker took it already), ``logs`` each time its log
grows (the endpoint looks at the job every :data:`LOOK_S`), ``completed`` when it ends
(``succeeded``, ``failed`` or ``canceled``, with its output). ``output`` is never sent: the
images are one list made at the end, as cog-flux's and cog-sdxl's are, and cog sends ``output``
for iterator outputs only; ``completed`` carries them. Which of these a webhook receives is its
``webhook_events_filter`` (default: all); ``webhook_completed`` receives ``completed`` only.
The server's webhook sender delivers them, through the guarded fetch, in order, the ones
before ``completed`` at most every 500 ms and tried once (:mod:`sdworker.server.webhooks`).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field, replace
from typing import Any

from fastapi import FastAPI, Request

from sdworker.core.errors import InvalidInput
from sdworker.core.jobs import JobGateway, JobView, Status
from sdworker.formats.base import FormatContext, WebhookSend
from sdworker.formats.pipeline import Pipeline, with_urls
from sdworker.formats.replicate.predictions import (
    Prediction,
    Predictions,
    of_job,
    output_urls,
    render,
)
from sdworker.formats.replicate.request import PredictionRequest

#: how often a prediction with a webhook is looked at for progress (Replicate's throttle)
LOOK_S = 0.5
#: links of a prediction, from the endpoint's base URL and its id
Links = Callable[[str, str], dict[str, str]]


@dataclass
class Made:
    """A prediction just made: its record, its job as it was then, and the queue it is in."""

    prediction: Prediction
    view: JobView
    gateway: JobGateway


@dataclass
class Runner:
    """The predictions of one app's routes, and their webhooks in flight."""

    ctx: FormatContext
    predictions: Predictions = field(default_factory=Predictions)
    _watching: set[asyncio.Task[None]] = field(default_factory=set)

    async def create(
        self, request: Request, pipe: Pipeline[PredictionRequest], **where: str
    ) -> Made:
        """Decode ``request`` with ``pipe``'s format, submit its job, remember it and send
        its ``start`` (a refusal is answered in the format's shape)."""
        decoded = await pipe.decode(request, **where)
        asked = decoded.request
        gateway = self.ctx.gateway(request)
        with pipe.refusals():
            if asked.client_id and self.predictions.taken(asked.client_id):
                raise InvalidInput.one(
                    "id",
                    "is another prediction's already; give a new one, or none",
                    asked.client_id,
                )
            view = await gateway.submit(decoded.inputs[0])
        prediction = Prediction(view.id, asked)
        self.predictions.add(prediction)
        if asked.webhook or asked.webhook_completed:
            await self._hooks(
                prediction, gateway, self.ctx.webhooks(request), str(request.base_url)
            )
        return Made(prediction, view, gateway)

    async def find(self, request: Request, prediction_id: str) -> tuple[Prediction, JobView] | None:
        """The prediction called ``prediction_id`` and its job now (None: unknown, or expired)."""
        job_id = self.predictions.job_id(prediction_id)
        view = await self.ctx.gateway(request).get(job_id)
        if view is None:
            return None
        prediction = self.predictions.get(job_id)
        if prediction is None:  # made before a restart, or by another route
            prediction = of_job(view, self.ctx.registry.default_name)
            self.predictions.add(prediction)
        return prediction, view

    async def answer(
        self,
        gateway: JobGateway,
        prediction: Prediction,
        view: JobView,
        base_url: str,
        links: Links,
    ) -> dict[str, Any]:
        """The prediction's JSON as its job is now (its images stored once, for their URLs)."""
        prediction.observe(view, time.time())
        output = None
        if view.status is Status.COMPLETED:
            if prediction.urls is None:
                prediction.urls = output_urls(await with_urls(gateway, view, base_url))
            output = prediction.urls
        return render(prediction, view, output, lambda pid: links(base_url, pid))

    # -- webhooks --------------------------------------------------------------------------

    async def _hooks(
        self, prediction: Prediction, gateway: JobGateway, send: WebhookSend, base_url: str
    ) -> None:
        """``start`` now; ``completed`` now too if the job is done already, else a watcher."""
        view = await gateway.get(prediction.job_id)
        if view is None:
            return
        hook = _Hook(self, prediction, gateway, send, base_url)
        await hook.start(view)
        if view.status.is_terminal():
            await hook.emit(view, "completed")
            return
        task = asyncio.create_task(hook.watch())
        self._watching.add(task)
        task.add_done_callback(self._watching.discard)

    @contextlib.asynccontextmanager
    async def lifespan(self, app: FastAPI) -> AsyncIterator[None]:
        """The routes' lifespan: watchers still running are stopped at shutdown."""
        try:
            yield
        finally:
            for task in self._watching:
                task.cancel()
            await asyncio.gather(*self._watching, return_exceptions=True)


@dataclass
class _Hook:
    """One prediction's webhooks: the targets, each with the events it wants."""

    runner: Runner
    prediction: Prediction
    gateway: JobGateway
    send: WebhookSend
    base_url: str

    def targets(self) -> list[tuple[str, frozenset[str]]]:
        asked = self.prediction.request
        found = []
        if asked.webhook:
            found.append((asked.webhook, asked.events))
        if asked.webhook_completed:
            found.append((asked.webhook_completed, frozenset({"completed"})))
        return found

    async def emit(self, view: JobView, event: str) -> None:
        body = await self.runner.answer(
            self.gateway, self.prediction, view, self.base_url, api_links
        )
        for index, (url, wanted) in enumerate(self.targets()):
            key = f"{self.prediction.job_id}/{index}"
            self.send(url, body, event=event, wanted=wanted, key=key)

    async def start(self, view: JobView) -> None:
        """The prediction as it started: not yet ended, whatever its job is now."""
        running = Status.IN_QUEUE if view.status is Status.IN_QUEUE else Status.IN_PROGRESS
        began = replace(view, status=running, output=None, error=None, execution_time_ms=None)
        await self.emit(began, "start")

    async def watch(self) -> None:
        """``logs`` as the log grows, then ``completed`` (nothing once the job is gone)."""
        job_id = self.prediction.job_id
        while True:
            view = await self.gateway.wait(job_id, LOOK_S)
            if view is None:
                for index, (url, _) in enumerate(self.targets()):
                    # the series ends unsent: the sender forgets it
                    self.send(url, {}, event="completed", wanted=(), key=f"{job_id}/{index}")
                return
            if view.status.is_terminal():
                await self.emit(view, "completed")
                return
            if self.prediction.observe(view, time.time()):
                await self.emit(view, "logs")


def api_links(base_url: str, prediction_id: str) -> dict[str, str]:
    """Replicate's ``urls``: where to poll and cancel the prediction."""
    root = f"{base_url.rstrip('/')}/v1/predictions/{prediction_id}"
    return {"get": root, "cancel": f"{root}/cancel"}


def cog_links(base_url: str, prediction_id: str) -> dict[str, str]:
    """The same on cog's routes."""
    root = f"{base_url.rstrip('/')}/predictions/{prediction_id}"
    return {"get": root, "cancel": f"{root}/cancel"}
