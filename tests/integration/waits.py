"""How the integration tests wait: until the event they wait for, with a deadline generous
enough for a busy 2-core machine running two suites at once, where a worker that starts in
10 s alone can take minutes (torch, the model, every process sharing two cores). A deadline
is reached only when something is broken; pytest's own timeout (600 s) is the outer bound.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")

#: the longest one wait may take: a worker process to start, or a job to end
PATIENCE_S = 300.0


def wait_until(
    ready: Callable[[], T | None],
    what: str | Callable[[], str],
    timeout_s: float = PATIENCE_S,
    every_s: float = 0.05,
) -> T:
    """Call ``ready`` every ``every_s`` until it returns a true value, and return that;
    AssertionError naming ``what`` (a text, or a function that says how things stand) after
    ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    while True:
        found = ready()
        if found:
            return found
        if time.monotonic() >= deadline:
            told = what() if callable(what) else what
            raise AssertionError(f"{told}: not within {timeout_s:g} s")
        time.sleep(every_s)
