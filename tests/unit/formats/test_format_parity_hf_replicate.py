"""The same Hugging Face task or Replicate prediction over HTTP and inside a RunPod job
envelope makes the same native jobs, and is refused identically, because both go through one
format object."""

from __future__ import annotations

import asyncio
from typing import Any

from fastapi.testclient import TestClient

from sdworker.core.manifest import Manifest
from sdworker.runpod.envelopes import Outcome, is_envelope, unwrap

HF_TASK = {
    "inputs": "a lighthouse",
    "parameters": {
        "negative_prompt": "fog",
        "width": 64,
        "height": 72,
        "seed": 5,
        "num_inference_steps": 3,
        "scheduler": "DPMSolverMultistepScheduler",
    },
}
PREDICTION = {
    "version": "stability-ai/sdxl:v1-5-pruned-emaonly",
    "input": {
        "prompt": "a fox",
        "aspect_ratio": "3:2",
        "num_outputs": 2,
        "seed": 11,
        "guidance": 4,
        "output_format": "webp",
        "output_quality": 60,
        "lora_weights": "ink",
        "lora_scale": 0.5,
    },
}


async def _generate(job: dict[str, Any]) -> Outcome:
    return [
        {"image": "aW1n", "seed": job.get("seed", 1) + k, "format": job.get("output_format", "png")}
        for k in range(job.get("num_images", 1))
    ]


def test_hf_over_http_and_in_an_envelope(
    client: TestClient, gateway: Any, manifests: list[Manifest]
) -> None:
    r = client.post("/", json=HF_TASK)
    assert r.status_code == 200, r.text
    over_http = [view.input for view in gateway.jobs.values()]
    assert is_envelope(HF_TASK)
    env = unwrap(HF_TASK, manifests=manifests, default_model="tiny")
    assert env is not None and env.format == "huggingface"
    assert env.inputs == over_http
    answer = asyncio.run(env.run(_generate))
    assert answer == [{"image": "aW1n", "seed": 5, "format": "png"}]


def test_hf_refusals_agree(client: TestClient, manifests: list[Manifest]) -> None:
    bad = {"inputs": "x", "parameters": {"width": "wide", "strength": 1}}
    r = client.post("/", json=bad)
    env = unwrap(bad, manifests=manifests, default_model="tiny")
    assert env is not None and env.failure is not None
    assert r.status_code == 400 and r.json()["error"] == env.failure.message
    answer = asyncio.run(env.run(_generate))
    assert answer["error"] == env.failure.message
    assert [p["field"] for p in answer["failure"]["problems"]] == [
        "parameters.width",
        "parameters.strength",
    ]
    # a native rule, in HF's names, in the job as over HTTP
    failed = asyncio.run(unwrap({"inputs": "x"}, manifests=manifests).run(_refuse_width))  # type: ignore[union-attr]
    assert failed["failure"]["problems"][0]["field"] == "parameters.width"


async def _refuse_width(job: dict[str, Any]) -> Outcome:
    from sdworker.core.errors import InvalidInput
    from sdworker.core.jobs import Failure

    return Failure.of(InvalidInput.one("width", "must be a multiple of 8", 500))


def test_replicate_over_http_and_in_an_envelope(
    client: TestClient, gateway: Any, manifests: list[Manifest]
) -> None:
    r = client.post("/v1/predictions", json=PREDICTION)
    assert r.status_code == 201, r.text
    over_http = [view.input for view in gateway.jobs.values()]
    # its native side is 64 (the fixture's): 3:2 at that area
    assert (over_http[0]["width"], over_http[0]["height"]) == (80, 64)
    assert over_http[0]["lora"] == [{"name": "ink", "scale": 0.5}]
    assert is_envelope(PREDICTION)
    env = unwrap(PREDICTION, manifests=manifests, default_model="tiny")
    assert env is not None and env.format == "replicate"
    assert env.inputs == over_http
    answer = asyncio.run(env.run(_generate))
    assert answer["status"] == "succeeded" and answer["id"] is None
    assert answer["output"] == ["data:image/webp;base64,aW1n", "data:image/webp;base64,aW1n"]
    assert answer["model"] == "stability-ai/sdxl" and answer["logs"].startswith("Using seed: 11")
    got = client.get(f"/v1/predictions/{r.json()['id']}").json()
    assert got["input"] == answer["input"] and got["logs"] == answer["logs"]


def test_replicate_refusals_agree(client: TestClient, manifests: list[Manifest]) -> None:
    bad = {"input": {"prompt": "x", "megapixels": "3", "go_slow": 1}}
    r = client.post("/predictions", json=bad)
    env = unwrap(bad, manifests=manifests, default_model="tiny")
    assert env is not None and env.failure is not None
    assert r.status_code == 422
    assert [e["loc"] for e in r.json()["detail"]] == [
        ["body", *p.field.split(".")] for p in env.failure.problems
    ]
    # in a job, the prediction's webhooks are refused: the job has its own
    hooked = unwrap(
        {"input": {"prompt": "x"}, "webhook": "https://example.com/h"}, manifests=manifests
    )
    assert hooked is not None and hooked.failure is not None
    assert [p.field for p in hooked.failure.problems] == ["webhook"]
    # a native rule fails the job, named as the client named the field
    env = unwrap({"input": {"prompt": "x", "num_outputs": 2}}, manifests=manifests)
    assert env is not None
    answer = asyncio.run(env.run(_refuse_count))
    assert answer["status"] == "failed" and "input.num_outputs" in answer["error"]


async def _refuse_count(job: dict[str, Any]) -> Outcome:
    from sdworker.core.errors import InvalidInput
    from sdworker.core.jobs import Failure

    return Failure.of(InvalidInput.one("num_images", "must be at most 8", 12))


def test_native_inputs_are_not_envelopes() -> None:
    assert not is_envelope({"prompt": "x"})
    assert not is_envelope({"inputs": "x", "prompt": "y"})
    assert not is_envelope({"input": "x"})
