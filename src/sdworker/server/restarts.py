"""When a worker process that cannot start is started again, and how its failure is told.

A worker that exits before it ever took a job (it never polled the queue) failed to start: a
syntax error in a handler script, no baked models, a damaged model file. Starting it again at
once would spin, so each failure in a row doubles the wait (:class:`Backoff`), up to a bound;
the first worker of that slot the queue hears from resets it. The reason shown in the log,
in ``/health`` and in a waiting job's ``/status`` is the worker's own last line of output
(:func:`start_failure`).
"""

from __future__ import annotations

import signal
from collections.abc import Iterable
from dataclasses import dataclass

#: lines of a worker's output kept to tell why it stopped
TAIL_LINES = 20
#: a reason longer than this is cut (a log line, a /health field)
_REASON_CHARS = 400


@dataclass
class Backoff:
    """Seconds before the next start of a worker that failed to start: ``first_s`` after the
    first failure, doubling with each failure in a row, never more than ``max_s``."""

    first_s: float
    max_s: float
    failures: int = 0

    def failed(self) -> float:
        """Count one more failure in a row; the wait before the next start."""
        self.failures += 1
        # the exponent is bounded so that a worker failing for days cannot overflow a float
        return float(min(self.max_s, self.first_s * 2.0 ** min(self.failures - 1, 64)))

    def reset(self) -> None:
        """The worker started: the next failure waits ``first_s`` again."""
        self.failures = 0


def exit_status(code: int) -> str:
    """``exit code 1``, or ``killed by SIGKILL`` for a process a signal ended."""
    if code < 0:
        try:
            return f"killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"killed by signal {-code}"
    return f"exit code {code}"


def start_failure(lines: Iterable[str], code: int) -> str:
    """Why a worker stopped before it served: its last line of output, with the place a
    traceback points to when the line does not say it (a handler's ``SyntaxError``), and how
    it exited."""
    text = [line.strip() for line in lines if line.strip()]
    status = exit_status(code)
    if not text:
        return f"it printed nothing ({status})"
    last = text[-1]
    where = next((line for line in reversed(text) if line.startswith('File "')), None)
    if where is not None and where not in last:
        last = f"{last} ({where})"
    if len(last) > _REASON_CHARS:
        last = last[: _REASON_CHARS - 3] + "..."
    return f"{last} [{status}]"
