"""The project's own handler (tiny model) behind ``sdworker serve``: the production code path,
as the packaged worker (the default) and as the root ``handler.py`` shim."""

from __future__ import annotations

import base64
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest
from server_harness import PACKAGED, ServerProcess

HANDLER = Path(__file__).resolve().parents[3] / "handler.py"


@pytest.mark.parametrize("handler", [PACKAGED, str(HANDLER)], ids=["packaged", "handler.py"])
def test_real_handler_generates_through_the_endpoint(
    serve: Callable[..., ServerProcess], models_dir: Path, handler: str
) -> None:
    server = serve(
        handler,
        workers=1,
        SDWORKER_MODELS_DIR=str(models_dir),
        SDWORKER_DEFAULT_MODEL="tiny",
        HF_HUB_OFFLINE="1",
    )
    job = {"prompt": "a lighthouse", "num_inference_steps": 2, "width": 64, "height": 64, "seed": 7}
    body = httpx.post(f"{server.url}/runsync", json={"input": job}, timeout=120).json()
    assert body["status"] == "COMPLETED", body
    [image] = body["output"]
    assert image["seed"] == 7
    assert base64.b64decode(image["image"]).startswith(b"\x89PNG")
    bad = httpx.post(f"{server.url}/runsync", json={"input": {"prompt": ""}}, timeout=60).json()
    assert bad["status"] == "FAILED" and "prompt" in bad["error"]
