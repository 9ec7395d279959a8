"""In the SDK's local test mode the adapter sends no progress: there is no platform to post to."""

from __future__ import annotations

import pytest

from sdworker.runpod.adapter import platform_posts

ON_RUNPOD = {
    "RUNPOD_WEBHOOK_GET_JOB": "https://api.runpod.ai/v2/ep/job-take/$RUNPOD_POD_ID",
    "RUNPOD_WEBHOOK_POST_OUTPUT": "https://api.runpod.ai/v2/ep/job-done/$RUNPOD_POD_ID/$ID",
}


def test_on_the_platform_progress_is_posted() -> None:
    assert platform_posts(ON_RUNPOD, ["handler.py"])


@pytest.mark.parametrize(
    ("environ", "argv"),
    [
        ({}, ["handler.py"]),  # no RunPod variables: test_input.json runs once
        ({"RUNPOD_WEBHOOK_POST_OUTPUT": "https://x/job-done"}, ["sdworker worker"]),
        (ON_RUNPOD, ["handler.py", "--test_input", '{"input": {}}']),
        (ON_RUNPOD, ["handler.py", '--test_input={"input": {}}']),
        ({"RUNPOD_WEBHOOK_GET_JOB": "https://x/job-take"}, ["handler.py"]),  # nowhere to post
        ({}, ["handler.py", "--rp_serve_api"]),  # the SDK's own test server
    ],
)
def test_local_test_mode_posts_nothing(environ: dict[str, str], argv: list[str]) -> None:
    assert not platform_posts(environ, argv)
