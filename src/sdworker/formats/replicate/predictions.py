"""A prediction: one native job seen as Replicate and cog show it, and what the job alone does
not keep (the request as given, the log lines), held in memory by the routes.

Statuses: ``starting`` (queued), ``processing`` (a worker runs it), ``succeeded``, ``failed``
(a timeout too) and ``canceled``. ``logs`` carries a ``Using seed: N`` line and one tqdm-style
line per progress update the endpoint saw (`` 40%|####      | 4/10``), the form
``replicate``'s ``Prediction.progress`` reads. The times come from the job (durable);
``logs`` and the input as given last as long as this process: after a restart a prediction
shows the native input and the progress it has now.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from sdworker.core.jobs import JobView, Status
from sdworker.core.media import CONTENT_TYPES
from sdworker.formats.replicate.request import PredictionRequest

#: the job's status → the prediction's
STATUSES: dict[Status, str] = {
    Status.IN_QUEUE: "starting",
    Status.IN_PROGRESS: "processing",
    Status.COMPLETED: "succeeded",
    Status.FAILED: "failed",
    Status.TIMED_OUT: "failed",
    Status.CANCELLED: "canceled",
}
#: how many predictions the routes remember (the oldest are forgotten first; their jobs keep
#: their own retention, and answer as after a restart)
REMEMBERED = 4096
_BAR = 10


def progress_line(step: int, steps: int) -> str:
    """`` 40%|####      | 4/10``: tqdm's shape, which ``Prediction.progress`` parses."""
    done = max(0, min(step, steps))
    percent = round(100 * done / steps) if steps else 100
    filled = round(_BAR * done / steps) if steps else _BAR
    return f"{percent:3d}%|{'#' * filled}{' ' * (_BAR - filled)}| {done}/{steps}"


@dataclass
class Prediction:
    """One prediction: its job, the request, and the log so far."""

    job_id: str
    request: PredictionRequest
    log: list[str] = field(default_factory=list)
    #: the last (step, steps) logged
    progress: tuple[int, int] | None = None
    #: when it was first seen ended (a job cancelled in the queue has no run time)
    ended_at: float | None = None
    #: its images' URLs, once they are stored
    urls: list[str] | None = None

    def __post_init__(self) -> None:
        seed = self.request.input.get("seed")
        if isinstance(seed, int) and not self.log:
            self.log.append(f"Using seed: {seed}")

    @property
    def shown_id(self) -> str:
        return self.request.client_id or self.job_id

    def observe(self, view: JobView, now: float) -> bool:
        """Take in the job as it is now; True when the log grew (a ``logs`` event)."""
        before = len(self.log)
        if view.status is Status.IN_PROGRESS and isinstance(view.output, dict):
            self._step(view.output.get("step"), view.output.get("steps"))
        if view.status.is_terminal() and self.ended_at is None:
            self.ended_at = now
            if view.status is Status.COMPLETED:
                self.finish([o for o in view.output or [] if isinstance(o, dict)])
        return len(self.log) > before

    def _step(self, step: Any, steps: Any) -> None:
        if not (isinstance(step, int) and isinstance(steps, int) and steps > 0):
            return
        if (step, steps) != self.progress:
            self.progress = (step, steps)
            self.log.append(progress_line(step, steps))

    def finish(self, outputs: list[dict[str, Any]]) -> None:
        """The last lines of a prediction that made ``outputs``: the seed used, when the
        request gave none, and the last step."""
        if self.progress is not None and self.progress[0] < self.progress[1]:
            self._step(self.progress[1], self.progress[1])
        seeds = [o.get("seed") for o in outputs]
        if seeds and not any(line.startswith("Using seed") for line in self.log):
            self.log.insert(0, f"Using seed: {seeds[0]}")


def of_job(view: JobView, default_model: str | None) -> Prediction:
    """A prediction for a job these routes did not make (or made before a restart)."""
    model = str(view.input.get("model") or default_model or "default")
    return Prediction(view.id, PredictionRequest(model=model, version=model, input=view.input))


class Predictions:
    """The predictions the routes made, the newest :data:`REMEMBERED`, by id (the job's, or
    the one the client chose)."""

    def __init__(self, limit: int = REMEMBERED) -> None:
        self.limit = limit
        self._by_job: OrderedDict[str, Prediction] = OrderedDict()
        self._job_of: dict[str, str] = {}

    def add(self, prediction: Prediction) -> None:
        self._by_job[prediction.job_id] = prediction
        if prediction.request.client_id:
            self._job_of[prediction.request.client_id] = prediction.job_id
        while len(self._by_job) > self.limit:
            _, old = self._by_job.popitem(last=False)
            if old.request.client_id:
                self._job_of.pop(old.request.client_id, None)

    def taken(self, client_id: str) -> bool:
        """Whether a prediction already answers to ``client_id``."""
        return client_id in self._job_of

    def job_id(self, prediction_id: str) -> str:
        """The job behind ``prediction_id`` (a client's id, or the job's own)."""
        return self._job_of.get(prediction_id, prediction_id)

    def get(self, job_id: str) -> Prediction | None:
        return self._by_job.get(job_id)


def iso(timestamp: float | None) -> str | None:
    """Replicate's time format: ISO 8601 in UTC, with a ``Z``."""
    if timestamp is None:
        return None
    moment = datetime.fromtimestamp(timestamp, UTC)
    return moment.isoformat(timespec="microseconds").replace("+00:00", "Z")


def output_urls(outputs: list[dict[str, Any]]) -> list[str]:
    """Each image as a URL: its ``url`` (served here, or S3's), else a ``data:`` URL, as cog
    answers a synchronous prediction."""
    urls = []
    for out in outputs:
        if out.get("url"):
            urls.append(str(out["url"]))
        else:
            mime = CONTENT_TYPES.get(str(out.get("format") or "png"), "image/png")
            urls.append(f"data:{mime};base64,{out.get('image') or ''}")
    return urls


def render(
    prediction: Prediction,
    view: JobView,
    output: list[str] | None,
    links: Callable[[str], dict[str, str]] | None = None,
) -> dict[str, Any]:
    """The prediction's JSON as its job is now (the body of every answer and webhook)."""
    started = finished = None
    if view.delay_time_ms is not None:
        started = view.created_at + view.delay_time_ms / 1000
        if view.execution_time_ms is not None:
            finished = started + view.execution_time_ms / 1000
    if finished is None and view.status.is_terminal():
        finished = prediction.ended_at
    error = None
    if view.status in (Status.FAILED, Status.TIMED_OUT):
        error = view.failure.renamed(prediction.request.names).message
    body = shape(
        prediction,
        STATUSES[view.status],
        output if view.status is Status.COMPLETED else None,
        error=error,
        execution_ms=view.execution_time_ms,
    )
    body["created_at"] = iso(view.created_at)
    body["started_at"] = iso(started)
    body["completed_at"] = iso(finished) if view.status.is_terminal() else None
    if links is not None:
        body["urls"] = links(prediction.shown_id)
    return body


def shape(
    prediction: Prediction,
    status: str,
    output: list[str] | None,
    *,
    error: str | None = None,
    execution_ms: int | None = None,
) -> dict[str, Any]:
    """A prediction's JSON with no times (cog's answer for a prediction with no id, as
    inside a RunPod job); :func:`render` adds them."""
    request = prediction.request
    return {
        "id": prediction.shown_id or None,
        "model": request.model,
        "version": request.version,
        "input": request.input,
        "output": output,
        "logs": "".join(f"{line}\n" for line in prediction.log),
        "error": error,
        "status": status,
        "created_at": None,
        "started_at": None,
        "completed_at": None,
        "metrics": None if execution_ms is None else {"predict_time": execution_ms / 1000},
    }
