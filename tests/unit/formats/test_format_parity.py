"""The same A1111 request over HTTP and inside a RunPod job envelope makes the same native jobs,
with the same limits and the same options, because both go through one format object; on a
FLUX.1 or SD 3.x model too, where the format maps its fields by the model's family."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from sdworker.core.manifest import Manifest
from sdworker.core.models import ModelRegistry
from sdworker.core.settings import Settings
from sdworker.formats.a1111 import Options, SamplerCatalog
from sdworker.runpod.envelopes import Outcome, unwrap
from tests.unit.formats.conftest import FakeGateway, make_client
from tests.unit.formats.families import FLOW, MANIFESTS, native_checks, png

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


# -- the same FLUX.1 request over HTTP and in a RunPod envelope -------------------------------


def _images(job: dict[str, Any]) -> list[dict[str, Any]]:
    seed = job.get("seed") or 0
    count = job.get("num_images", 1)
    return [{"image": png((8, 8)), "seed": seed + k, "format": "png"} for k in range(count)]


def family_run(job: dict[str, Any]) -> list[dict[str, Any]]:
    """The fake gateway's generation: the native rules on the families' models, then images."""
    native_checks(job)
    return _images(job)


@pytest.fixture
def family_client(tmp_path: Path) -> tuple[TestClient, FakeGateway]:
    for m in MANIFESTS:
        (tmp_path / m.name).mkdir()
        m.write(tmp_path / m.name)
    registry = ModelRegistry(Settings(models_dir=tmp_path, default_model="schnell"))
    gateway = FakeGateway(run=family_run)
    return make_client(registry, gateway), gateway


async def _generate_family(job: dict[str, Any]) -> Outcome:
    return _images(job)


FORGE_FLUX = {
    "prompt": "a lighthouse",
    "negative_prompt": "fog",
    "seed": 100,
    "steps": 4,
    "cfg_scale": 3,
    "distilled_cfg_scale": 2.5,
    "sampler_name": "Euler",
    "scheduler": "Simple",
    "width": 512,
    "height": 512,
    "batch_size": 2,
    "n_iter": 2,
    "override_settings": {"sd_model_checkpoint": "dev"},
}


def test_a_flux_a1111_request_makes_the_same_jobs_over_http_and_in_an_envelope(
    family_client: tuple[TestClient, FakeGateway],
) -> None:
    client, gateway = family_client
    r = client.post("/sdapi/v1/txt2img", json=FORGE_FLUX)
    assert r.status_code == 200, r.text
    over_http = [view.input for view in gateway.jobs.values()]
    envelope = {"api": {"method": "POST", "endpoint": "/sdapi/v1/txt2img"}, "payload": FORGE_FLUX}
    env = unwrap(envelope, manifests=MANIFESTS, default_model="schnell")
    assert env is not None and env.inputs == over_http
    assert {(j["guidance_scale"], j["true_cfg_scale"], j["scheduler"]) for j in over_http} == {
        (2.5, 3, FLOW)
    }
    answer = asyncio.run(env.run(_generate_family))
    http_info, env_info = json.loads(r.json()["info"]), json.loads(answer["info"])
    for info in (http_info, env_info):
        info.pop("job_timestamp")
    assert env_info == http_info and "Distilled CFG Scale: 2.5" in http_info["infotexts"][0]


def test_a_salad_sd3_task_makes_the_same_job_over_http_and_in_an_envelope(
    family_client: tuple[TestClient, FakeGateway],
) -> None:
    client, gateway = family_client
    task = {
        "modelInputs": {"prompt": "a lighthouse", "max_sequence_length": 64, "seed": 3},
        "callInputs": {"MODEL_ID": "stabilityai/stable-diffusion-3.5-medium"},
    }
    r = client.post("/api/beta/organizations/o/inference-endpoints/e", json=task)
    assert r.status_code == 202, r.text
    [over_http] = [view.input for view in gateway.jobs.values()]
    env = unwrap(task, manifests=MANIFESTS, default_model="schnell")
    assert env is not None and env.inputs == [over_http]
    assert over_http["model"] == "sd35m"


def test_a_refusal_names_the_family_alike_over_http_and_in_an_envelope(
    family_client: tuple[TestClient, FakeGateway],
) -> None:
    client, gateway = family_client
    body = {
        "prompt": "x",
        "distilled_cfg_scale": 2,
        "override_settings": {"sd_model_checkpoint": "tiny"},
    }
    r = client.post("/sdapi/v1/txt2img", json=body)
    assert r.status_code == 422 and not gateway.jobs
    envelope = {"api": {"method": "POST", "endpoint": "/sdapi/v1/txt2img"}, "payload": body}
    env = unwrap(envelope, manifests=MANIFESTS, default_model="schnell")
    assert env is not None and env.failure is not None
    assert env.failure.message == r.json()["detail"]
    assert (
        "distilled_cfg_scale: does not apply to SD 1.x models (model 'tiny')" in r.json()["detail"]
    )
