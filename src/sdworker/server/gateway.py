"""What the routes (native and dialects) need from the job queue, as a protocol.

The dialect routers are written against :class:`JobGateway`; the server implements it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum
from typing import Any, Protocol


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
        elif self.output is not None:
            body["output"] = self.output
        return body


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

    async def queue_position(self, job_id: str) -> int | None:
        """0 for the next job to run; None when the job is not queued."""
        ...

    async def store_file(self, job_id: str, name: str, data: bytes, content_type: str) -> str:
        """Keep a result file as long as the job's result; return its URL.

        The URL is absolute, or relative to the server's base URL (no leading slash): callers
        resolve it with ``urljoin(str(request.base_url), url)``, which leaves absolute ones be.
        """
        ...
