"""The local endpoint's interrupt channel, on the worker's side.

RunPod's stop channel (which the SDK polls) cancels a job's task and its result is dropped.
An interrupt keeps the result: the job stops at the next denoising step and ends COMPLETED
with its images so far. The SDK knows nothing of that, so the worker polls the endpoint
itself: ``SDWORKER_INTERRUPT_URL``, which only the local endpoint sets for the workers it
starts. On RunPod it is unset and nothing here runs.
"""

from __future__ import annotations

import json
import logging
import threading
import urllib.error
import urllib.request
from collections.abc import Callable

log = logging.getLogger(__name__)

#: the variable the local endpoint sets to its interrupt long-poll URL for each worker
INTERRUPT_URL_VAR = "SDWORKER_INTERRUPT_URL"


class Interrupts:
    """Job ids asked to stop early; thread-safe, asked from any thread."""

    def __init__(self) -> None:
        self._ids: set[str] = set()
        self._lock = threading.Lock()

    def add(self, job_id: str) -> None:
        with self._lock:
            self._ids.add(job_id)

    def asked(self, job_id: str) -> Callable[[], bool]:
        """Whether ``job_id`` has been asked to stop early, as a check to call between steps."""
        return lambda: job_id in self._ids

    def forget(self, job_id: str) -> None:
        """The job ended: an interrupt for it means nothing any more."""
        with self._lock:
            self._ids.discard(job_id)


def listen(
    url: str,
    interrupts: Interrupts,
    *,
    timeout_s: float = 90.0,
    stop: threading.Event | None = None,
) -> threading.Thread:
    """Poll ``url`` (a long poll answering ``{"jobsToInterrupt": [...]}`` or 204) in a daemon
    thread until ``stop`` is set (for as long as the process runs, by default), adding every
    id to ``interrupts``."""
    halt = stop or threading.Event()

    def run() -> None:
        while not halt.is_set():
            try:
                ids = _poll(url, timeout_s)
                for job_id in ids:
                    log.info("job %s: asked to stop early and keep its images", job_id)
                    interrupts.add(job_id)
                if not ids:
                    # a long poll that ends empty at once (the endpoint stopping) must not spin;
                    # an interrupt asked meanwhile waits on the endpoint for the next poll
                    halt.wait(0.1)
            except (OSError, ValueError) as exc:  # the endpoint restarting, say: try again
                log.debug("interrupt poll failed: %s", exc)
                halt.wait(1.0)

    thread = threading.Thread(target=run, name="sdworker-interrupts", daemon=True)
    thread.start()
    return thread


def _poll(url: str, timeout_s: float) -> list[str]:
    with urllib.request.urlopen(url, timeout=timeout_s) as response:
        if response.status == 204:
            return []
        payload = json.loads(response.read())
    ids = payload.get("jobsToInterrupt") if isinstance(payload, dict) else None
    return [i for i in ids if isinstance(i, str)] if isinstance(ids, list) else []
