"""A model loaded in half precision stays in half precision, job after job, in every mode."""

from __future__ import annotations

import base64
import io
from collections.abc import Iterator
from typing import Any

import pytest
import torch
from PIL import Image

from sdworker.core.settings import Settings
from sdworker.runpod.adapter import RunpodAdapter


@pytest.fixture(scope="module")
def half(settings: Settings) -> Iterator[RunpodAdapter]:
    yield RunpodAdapter(settings.with_(dtype="fp16", device="cpu"))


def dtypes(worker: RunpodAdapter) -> dict[str, torch.dtype]:
    base = worker.service.generator.cache.get("tiny").base
    return {
        name: module.dtype
        for name, module in base.components.items()
        if isinstance(module, torch.nn.Module)
    }


def png(size: int) -> str:
    buffer = io.BytesIO()
    Image.new("RGB", (size, size), (120, 80, 40)).save(buffer, format="PNG")
    return base64.b64encode(buffer.getvalue()).decode()


def test_jobs_never_cast_the_shared_modules(
    half: RunpodAdapter, capfd: pytest.CaptureFixture[str]
) -> None:
    fields: dict[str, Any] = {"prompt": "a lighthouse", "num_inference_steps": 2, "seed": 1}
    jobs = [
        {**fields, "width": 64, "height": 64},
        {**fields, "image": png(64), "strength": 0.5},
        {**fields, "image": png(64), "mask_image": png(64)},
        {**fields, "width": 64, "height": 64, "scheduler": "DPM++ 2M Karras"},
    ]
    for i, job in enumerate(jobs):
        out = half.handle_sync({"id": f"h{i}", "input": job})
        assert isinstance(out, list) and out[0]["image"], out
        # every module of the loaded model is still what it was loaded as
        assert set(dtypes(half).values()) == {torch.float16}, (i, dtypes(half))
    # diffusers' warning about casting to the dtype a module already has is not repeated
    assert "should be kept in float32" not in capfd.readouterr().err
