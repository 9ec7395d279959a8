"""worker-comfyui's S3 answer: with a bucket, every saved image is uploaded and comes back as
``{"type": "s3_url", "data": <presigned URL>}``, its PNG carrying the workflow; two samplers
of one workflow with the same seed upload under keys of their own."""

from __future__ import annotations

import io
import json
import urllib.request
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
from PIL import Image

from sdworker.runpod.adapter import RunpodAdapter
from tests.fuzz.strategies import comfy_workflow

if TYPE_CHECKING:  # the fixture's type; conftest modules are not imported by name
    from conftest import S3Server

pytest.importorskip("boto3")


def two_samplers() -> dict[str, Any]:
    """The default workflow twice over: a second prompt, sampler and SaveImage, same seed."""
    graph = comfy_workflow()
    graph["16"] = {"class_type": "CLIPTextEncode", "inputs": {"text": "y", "clip": ["4", 1]}}
    graph["13"] = {
        "class_type": "KSampler",
        "inputs": {**graph["3"]["inputs"], "positive": ["16", 0]},
    }
    graph["18"] = {"class_type": "VAEDecode", "inputs": {"samples": ["13", 0], "vae": ["4", 2]}}
    graph["19"] = {
        "class_type": "SaveImage",
        "inputs": {"images": ["18", 0], "filename_prefix": "second"},
    }
    return graph


def fetch(url: str, server: S3Server) -> bytes:
    assert url.startswith(server.endpoint_url + "/"), url
    with urllib.request.urlopen(url, timeout=10) as response:
        data: bytes = response.read()
        return data


def test_saved_images_go_to_the_bucket(
    s3_server: S3Server, models_dir: Path, tmp_path: Path
) -> None:
    bucket = s3_server.new_bucket()
    settings = s3_server.settings(
        bucket, models_dir=models_dir, default_model="tiny", state_dir=tmp_path
    )
    adapter = RunpodAdapter(settings)
    answer = adapter.handle_sync({"id": "job-1", "input": {"workflow": two_samplers()}})
    first, second = answer["images"]
    assert (first["filename"], first["type"]) == ("ComfyUI_00001_.png", "s3_url")
    assert (second["filename"], second["type"]) == ("second_00001_.png", "s3_url")
    seed = 156680208700286 % (2**32 - 8)
    assert s3_server.keys(bucket) == [f"job-1-1/0-{seed}.png", f"job-1/0-{seed}.png"]
    pictures = [Image.open(io.BytesIO(fetch(i["data"], s3_server))) for i in (first, second)]
    for picture in pictures:
        prompt = json.loads(picture.text["prompt"])  # type: ignore[attr-defined]
        assert prompt["19"]["inputs"]["filename_prefix"] == "second"
    assert pictures[0].tobytes() != pictures[1].tobytes()  # two prompts, two images


def test_a_jobs_own_s3_config(s3_server: S3Server, models_dir: Path, tmp_path: Path) -> None:
    bucket = s3_server.new_bucket()
    adapter = RunpodAdapter(
        s3_server.settings("unused", models_dir=models_dir, state_dir=tmp_path).with_(
            bucket_endpoint_url=None,
            bucket_access_key_id=None,
            bucket_secret_access_key=None,
            bucket_name=None,
        )
    )
    job = {
        "id": "job-2",
        "input": {"workflow": comfy_workflow()},
        "s3Config": s3_server.s3_config(bucket),
    }
    [image] = adapter.handle_sync(job)["images"]
    assert image["type"] == "s3_url" and fetch(image["data"], s3_server).startswith(b"\x89PNG")
