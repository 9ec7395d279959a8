"""Fixture handler: says which process ran the job; ``input.refresh`` fails the job and asks
for a fresh worker (``refresh_worker``), as a handler does after a corrupting error."""

import os
from typing import Any

import runpod


def handler(job: dict[str, Any]) -> dict[str, Any]:
    if job["input"].get("refresh"):
        return {"error": "the pipeline is in a bad state", "refresh_worker": True}
    return {"pid": os.getpid(), "worker": os.environ.get("RUNPOD_POD_ID")}


if __name__ == "__main__":
    runpod.serverless.start({"handler": handler})
