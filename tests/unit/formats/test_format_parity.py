"""The same A1111 request over HTTP and inside a RunPod job envelope makes the same native jobs,
with the same limits and the same options, because both go through one format object."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from typing import Any

from fastapi.testclient import TestClient

from sdworker.core.manifest import Manifest
from sdworker.formats.a1111 import Options, SamplerCatalog
from sdworker.runpod.envelopes import Outcome, unwrap

ClientFactory = Callable[..., TestClient]

PAYLOAD = {
    "prompt": "apple",
    "negative_prompt": "red",
    "sampler_name": "DPM++ SDE",
    "scheduler": "Karras",
    "seed": 1000,
    "steps": "12",
    "cfg_scale": 6.5,
    "width": 64,
    "height": 64,
    "batch_size": 2,
    "n_iter": 3,
    "override_settings": {
        "sd_model_checkpoint": "v1-5-pruned-emaonly.safetensors [6ce0161689]",
        "CLIP_stop_at_last_layers": 2,
        "samples_format": "jpg",
    },
}


def envelope(payload: Any, endpoint: str = "/sdapi/v1/txt2img", method: str = "POST") -> Any:
    return {"api": {"method": method, "endpoint": endpoint}, "payload": payload}


async def _generate(job: dict[str, Any]) -> Outcome:
    return [{"image": "aW1n", "seed": job["seed"] + k} for k in range(job["num_images"])]


def test_http_and_envelope_make_the_same_jobs(
    client: TestClient, gateway: Any, catalog: SamplerCatalog, manifests: list[Manifest]
) -> None:
    r = client.post("/sdapi/v1/txt2img", json=PAYLOAD)
    assert r.status_code == 200, r.text
    over_http = [view.input for view in gateway.jobs.values()]
    env = unwrap(envelope(PAYLOAD), manifests=manifests, default_model="tiny", catalog=catalog)
    assert env is not None and env.inputs is not None
    assert env.inputs == over_http
    assert len(over_http) == 3 and [j["seed"] for j in over_http] == [1000, 1002, 1004]
    assert {j["model"] for j in over_http} == {"v1-5-pruned-emaonly"}
    assert {(j["clip_skip"], j["output_format"]) for j in over_http} == {(2, "jpeg")}
    # and the answers agree on what was made (info's timestamp aside)
    answer = asyncio.run(env.run(_generate))
    http_info, env_info = json.loads(r.json()["info"]), json.loads(answer["info"])
    for info in (http_info, env_info):
        info.pop("job_timestamp")
    assert env_info == http_info and len(answer["images"]) == len(r.json()["images"]) == 6


def test_limits_are_refused_identically(
    client: TestClient, gateway: Any, catalog: SamplerCatalog, manifests: list[Manifest]
) -> None:
    too_many = {"prompt": "x", "batch_size": 8, "n_iter": 9, "seed": 5}
    r = client.post("/sdapi/v1/txt2img", json=too_many)
    assert r.status_code == 422
    assert not gateway.jobs
    env = unwrap(envelope(too_many), manifests=manifests, default_model="tiny", catalog=catalog)
    assert env is not None and env.failure is not None
    assert env.failure.message == r.json()["detail"]
    assert [p.field for p in env.failure.problems] == ["n_iter"]
    assert "batch_size * n_iter must be at most 64" in env.failure.message
    answer = asyncio.run(env.run(_generate))
    assert answer["output"]["detail"] == r.json()["detail"]
    assert answer["failure"]["problems"][0]["field"] == "n_iter"
    too_big = {"prompt": "x", "batch_size": 9}
    r = client.post("/sdapi/v1/txt2img", json=too_big)
    env = unwrap(envelope(too_big), manifests=manifests, default_model="tiny", catalog=catalog)
    assert env is not None and env.failure is not None
    assert r.status_code == 422 and env.failure.message == r.json()["detail"]


def test_options_apply_identically(
    client_factory: ClientFactory,
    gateway: Any,
    catalog: SamplerCatalog,
    manifests: list[Manifest],
) -> None:
    client = client_factory(gateway, catalog=catalog)
    settings = {"sd_model_checkpoint": "v1-5-pruned-emaonly", "samples_format": "webp"}
    settings["CLIP_stop_at_last_layers"] = 3  # type: ignore[assignment]
    assert client.post("/sdapi/v1/options", json=settings).status_code == 200
    body = {"prompt": "x", "seed": 3}
    assert client.post("/sdapi/v1/txt2img", json=body).status_code == 200
    [over_http] = [view.input for view in gateway.jobs.values()]

    options = Options()
    common = {"manifests": manifests, "default_model": "tiny", "catalog": catalog}
    posted = unwrap(envelope(settings, "/sdapi/v1/options"), options=options, **common)
    assert posted is not None and asyncio.run(posted.run(_generate)) == {}
    env = unwrap(envelope(body), options=options, **common)
    assert env is not None and env.inputs == [over_http]
    assert (over_http["model"], over_http["output_format"], over_http["clip_skip"]) == (
        "v1-5-pruned-emaonly",
        "webp",
        3,
    )
    shown = client.get("/sdapi/v1/options").json()
    listed = unwrap(envelope(None, "/sdapi/v1/options", "GET"), options=options, **common)
    assert listed is not None and listed.answer == shown
