"""The worker token never reaches a log: worker output and the access log are redacted."""

from __future__ import annotations

import io
import logging
import os

from sdworker.server.redact import REDACTED, QueryTokenFilter, forward, redact_query


def test_forward_blanks_the_token_in_worker_output() -> None:
    read_fd, write_fd = os.pipe()
    sink = io.BytesIO()
    thread = forward(os.fdopen(read_fd, "rb"), sink, "s3cr3t-token")
    with os.fdopen(write_fd, "wb") as worker:
        worker.write(
            b"Failed to get job. url='http://127.0.0.1:9/_worker/job-take/w?token=s3cr3t-token'\n"
        )
        worker.write(b"a line without it\n")
    thread.join(5)
    text = sink.getvalue().decode()
    assert "s3cr3t-token" not in text and REDACTED in text and "a line without it" in text


def test_access_log_records_lose_their_token() -> None:
    record = logging.LogRecord(
        "uvicorn.access",
        logging.INFO,
        __file__,
        1,
        '%s - "%s %s HTTP/%s" %d',
        ("127.0.0.1:5", "GET", "/_worker/job-take/w?token=abc-_1&job_in_progress=0", "1.1", 200),
        None,
    )
    assert QueryTokenFilter().filter(record)
    assert "abc-_1" not in record.getMessage() and "job_in_progress=0" in record.getMessage()
    assert redact_query("/x?a=1&token=zz") == f"/x?a=1&token={REDACTED}"
