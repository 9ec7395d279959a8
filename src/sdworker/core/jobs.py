"""What crosses the job boundary as data: job statuses, a job as clients see it, and the
queue as request formats see it (:class:`JobGateway`, which the server implements).

Neutral ground: request formats import this without importing the server.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from enum import Enum
from typing import Any, Protocol

from sdworker.core.errors import InvalidInput, Problem, SdworkerError, Shown


class Status(str, Enum):
    IN_QUEUE = "IN_QUEUE"
    IN_PROGRESS = "IN_PROGRESS"
    COMPLETED = "COMPLETED"
    FAILED = "FAILED"
    CANCELLED = "CANCELLED"
    TIMED_OUT = "TIMED_OUT"

    def is_terminal(self) -> bool:
        return self in {Status.COMPLETED, Status.FAILED, Status.CANCELLED, Status.TIMED_OUT}


@dataclass
class JobView:
    """A job as a client may see it (the body of ``/status``, less the HTTP framing)."""

    id: str
    status: Status
    input: dict[str, Any]
    output: Any = None
    error: str | None = None
    delay_time_ms: int | None = None
    execution_time_ms: int | None = None
    created_at: float = 0.0
    extra: dict[str, Any] = field(default_factory=dict)

    def status_body(self) -> dict[str, Any]:
        """The JSON body RunPod's ``/status`` returns for this job."""
        body: dict[str, Any] = {"id": self.id, "status": self.status.value}
        if self.delay_time_ms is not None:
            body["delayTime"] = self.delay_time_ms
        if self.execution_time_ms is not None:
            body["executionTime"] = self.execution_time_ms
        if self.error is not None:
            body["error"] = self.error
        if self.output is not None:
            # a failed job's output is the failure as data, beside its readable error
            body["output"] = self.output
        return body

    @property
    def failure(self) -> Failure:
        """Why this (failed, cancelled or timed-out) job has no result, as data."""
        return Failure.from_job(self.error or f"job {self.status.value.lower()}", self.output)


class JobGateway(Protocol):
    """The queue as the routes see it. All methods are safe to call from the event loop."""

    async def submit(
        self,
        job_input: dict[str, Any],
        *,
        webhook: str | None = None,
        policy: dict[str, Any] | None = None,
        sync: bool = False,
    ) -> JobView:
        """Queue a job (status IN_QUEUE) and return it."""
        ...

    async def get(self, job_id: str) -> JobView | None:
        """The job, or None when unknown or expired."""
        ...

    async def wait(self, job_id: str, timeout_s: float) -> JobView | None:
        """Wait until the job is terminal or ``timeout_s`` passes; return it as it is then."""
        ...

    async def cancel(self, job_id: str) -> JobView | None:
        """Cancel a queued or running job (a running one stops between denoising steps)."""
        ...

    async def interrupt(self, job_id: str) -> JobView | None:
        """Cancel a queued job; ask a running one to stop at the next denoising step and end
        COMPLETED with its images so far, the one being made decoded as it stood (marked
        ``"interrupted": true``). Returns the job as it is now (a running one still runs)."""
        ...

    async def queue_position(self, job_id: str) -> int | None:
        """0 for the next job to run; None when the job is not queued."""
        ...

    async def store_file(self, job_id: str, name: str, data: bytes, content_type: str) -> str:
        """Keep a result file as long as the job's result; return its URL.

        The URL is absolute, or relative to the server's base URL (no leading slash): callers
        resolve it with ``urljoin(str(request.base_url), url)``, which leaves absolute ones be.
        """
        ...


#: failure codes that are the client's doing (bad input, a URL it gave); the rest are ours
CLIENT_CODES = frozenset(
    {"invalid_input", "image_fetch_error", "model_not_found", "lora_error", "payload_too_large"}
)


@dataclass(frozen=True)
class Failure:
    """A job that ended without its result, as data.

    ``message`` is the readable ``error`` string RunPod clients read; ``code`` is the machine
    code of the error class; ``problems`` are the bad fields of an invalid input. A worker
    returns :meth:`to_output`; the runpod SDK moves ``error`` (and ``refresh_worker``) out of it
    and keeps the rest as the job's output, where :meth:`from_job` reads it back.
    """

    code: str
    message: str
    problems: tuple[Problem, ...] = ()
    refresh_worker: bool = False

    @classmethod
    def of(cls, exc: BaseException) -> Failure:
        """The failure ``exc`` stands for; an unexpected exception is an internal error."""
        if isinstance(exc, InvalidInput):
            return cls(exc.code, str(exc), tuple(exc.problems))
        if isinstance(exc, SdworkerError):
            return cls(exc.code, str(exc), (), exc.refresh_worker)
        return cls("internal_error", f"internal error: {type(exc).__name__}: {exc}")

    @property
    def kind(self) -> str:
        """The error's class name, as services that report one show it (``InvalidInput``)."""
        return "".join(part.title() for part in self.code.split("_"))

    @property
    def client_fault(self) -> bool:
        """Whether the client can fix it (an HTTP route answers 4xx, not 5xx)."""
        return self.code in CLIENT_CODES

    def renamed(self, names: Mapping[str, str]) -> Failure:
        """The same failure with its problems' fields in a request format's own names."""
        if not self.problems:
            return self
        problems = tuple(
            Problem(names.get(p.field, p.field), p.message, p.value, p.has_value)
            for p in self.problems
        )
        # a failure with problems is a bad input of some kind: its message is their list
        return replace(self, problems=problems, message=str(InvalidInput(list(problems))))

    def to_output(self) -> dict[str, Any]:
        """What a handler returns for this failure (every value JSON can carry)."""
        output: dict[str, Any] = {
            "error": self.message,
            "failure": {"code": self.code, "problems": [p.as_dict() for p in self.problems]},
        }
        if self.refresh_worker:
            output["refresh_worker"] = True
        return output

    @classmethod
    def from_job(cls, error: str | None, output: Any) -> Failure:
        """A failed job's failure, from its ``error`` and the ``failure`` its output carries.

        A job failed by something else (a handler of another kind, the endpoint itself: a
        timeout, a lost worker) has no ``failure`` object: its code is ``job_failed``."""
        data = output.get("failure") if isinstance(output, dict) else None
        message = error or "the job failed"
        if not isinstance(data, dict) or not isinstance(data.get("code"), str):
            return cls("job_failed", message)
        problems = tuple(
            Problem(str(p.get("field", "input")), str(p.get("rule", "")), Shown(p["value"]))
            if "value" in p
            else Problem(str(p.get("field", "input")), str(p.get("rule", "")), has_value=False)
            for p in data.get("problems") or []
            if isinstance(p, dict)
        )
        return cls(data["code"], message, problems)
