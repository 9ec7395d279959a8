"""Keeping the worker token out of every log.

The ``runpod`` SDK only takes its job-take URL whole (``RUNPOD_WEBHOOK_GET_JOB``), so our
worker token rides in its query string, and the SDK prints that URL when a take fails (the
``aiohttp`` error names it). So worker output passes through :func:`forward`, which blanks
the token, before it reaches a log; and :class:`QueryTokenFilter` blanks ``token=`` in the
server's own log records (uvicorn's access log prints each request's query).
"""

from __future__ import annotations

import logging
import re
import threading
from collections import deque
from typing import IO

REDACTED = "[redacted]"
_QUERY_TOKEN = re.compile(r"(?<=[?&]token=)[^&\s\"']+")


def redact_query(text: str) -> str:
    """``text`` with the value of every ``token=`` query parameter blanked."""
    return _QUERY_TOKEN.sub(REDACTED, text)


class QueryTokenFilter(logging.Filter):
    """A logging filter that blanks ``?token=`` values in a record's message and arguments."""

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.msg, str):
            record.msg = redact_query(record.msg)
        if isinstance(record.args, tuple):
            record.args = tuple(
                redact_query(arg) if isinstance(arg, str) else arg for arg in record.args
            )
        return True


def forward(
    source: IO[bytes], sink: IO[bytes], secret: str, tail: deque[str] | None = None
) -> threading.Thread:
    """Copy ``source`` to ``sink`` line by line with ``secret`` blanked, in a daemon thread
    that ends when ``source`` does (the worker exited). A full sink never blocks the worker
    for long: the thread drains the pipe as fast as the sink takes it. ``tail`` (a bounded
    deque) keeps the last lines, blanked too: why a worker that could not start stopped."""
    needle = secret.encode()
    mask = REDACTED.encode()

    def pump() -> None:
        with source:
            for raw in iter(source.readline, b""):
                line = raw.replace(needle, mask) if needle else raw
                if tail is not None:
                    tail.append(line.decode("utf-8", "replace").rstrip())
                try:
                    sink.write(line)
                    sink.flush()
                except (OSError, ValueError):  # the sink closed (server stopping)
                    pass

    thread = threading.Thread(target=pump, name="sdworker-worker-log", daemon=True)
    thread.start()
    return thread
