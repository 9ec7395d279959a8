"""Replicate's API and cog's HTTP server over the format routes (the fake queue): cog-flux's
and cog-sdxl's inputs read into one native job, the prediction's shape and statuses, Prefer,
cancel, the versions route, refusals naming their field, and the webhooks' events."""

from __future__ import annotations

from typing import Any

import pytest
from fastapi.testclient import TestClient

from sdworker.core.errors import InvalidInput
from sdworker.formats.replicate.inputs import table_size
from sdworker.formats.replicate.predictions import progress_line
from sdworker.formats.replicate.routes import prefer


class Sent:
    """The webhook sender as the routes see it: records (url, body, event, wanted, key)."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, dict[str, Any], str, Any, Any]] = []

    def __call__(
        self,
        url: str,
        body: dict[str, Any],
        *,
        event: str = "completed",
        wanted: Any = None,
        key: Any = None,
    ) -> None:
        self.calls.append((url, body, event, wanted, key))

    def events(self, url: str) -> list[str]:
        return [c[2] for c in self.calls if c[0] == url and (c[3] is None or c[2] in c[3])]


@pytest.fixture
def sent() -> Sent:
    return Sent()


def _client(
    client_factory: Any, gateway: Any, sent: Sent, api_key: str | None = None
) -> TestClient:
    client: TestClient = client_factory(gateway, api_key, webhooks=sent)
    return client


@pytest.fixture
def rclient(client_factory: Any, gateway: Any, sent: Sent) -> TestClient:
    return _client(client_factory, gateway, sent)


def _job(gateway: Any) -> dict[str, Any]:
    [job] = [v.input for v in gateway.jobs.values()]
    return job


def test_cog_flux_inputs_become_one_native_job(rclient: TestClient, gateway: Any) -> None:
    body = {
        "input": {
            "prompt": "a fox",
            "aspect_ratio": "16:9",
            "num_outputs": 2,
            "num_inference_steps": 4,
            "guidance": 3.5,
            "seed": 9,
            "output_format": "jpg",
            "output_quality": 70,
            "go_fast": True,
            "megapixels": "1",
            "disable_safety_checker": True,
        }
    }
    r = rclient.post("/v1/models/black-forest-labs/tiny/predictions", json=body)
    assert r.status_code == 201, r.text
    job = _job(gateway)
    assert job == {
        "prompt": "a fox",
        "num_images": 2,
        "num_inference_steps": 4,
        "seed": 9,
        "output_quality": 70,
        "output_format": "jpeg",
        "safety_checker": False,
        "guidance_scale": 3.5,
        "width": 80,  # tiny's native side is 64: 16:9 at its area
        "height": 64,
        "model": "tiny",
        "upload": False,
    }
    prediction = r.json()
    assert prediction["model"] == "black-forest-labs/tiny"
    assert prediction["version"] == "ab" * 32  # the weights' sha256
    assert prediction["status"] == "starting"
    assert prediction["input"]["aspect_ratio"] == "16:9"
    assert prediction["urls"]["get"].endswith(f"/v1/predictions/{prediction['id']}")


def test_cog_sdxl_inputs(rclient: TestClient, gateway: Any) -> None:
    body = {
        "version": "stability-ai/sdxl:v1-5-pruned-emaonly",
        "input": {
            "prompt": "a fox",
            "negative_prompt": "fog",
            "width": 64,
            "height": 72,
            "scheduler": "KarrasDPM",
            "num_inference_steps": 3,
            "guidance_scale": 6,
            "refine": "expert_ensemble_refiner",
            "high_noise_frac": 0.7,
            "apply_watermark": False,
            "lora_scale": 0.6,
        },
    }
    r = rclient.post("/v1/predictions", json=body)
    assert r.status_code == 201, r.text
    assert _job(gateway) == {
        "prompt": "a fox",
        "negative_prompt": "fog",
        "num_inference_steps": 3,
        "scheduler": "DPM++ 2M Karras",
        "guidance_scale": 6.0,
        "width": 64,
        "height": 72,
        "high_noise_frac": 0.7,
        "model": "v1-5-pruned-emaonly",
        "upload": False,
    }
    assert r.json()["model"] == "stability-ai/sdxl"
    assert r.json()["version"] == "v1-5-pruned-emaonly"


def test_img2img_takes_the_image_size(rclient: TestClient, gateway: Any) -> None:
    body = {
        "input": {
            "prompt": "x",
            "image": "aGk=",
            "prompt_strength": 0.5,
            "aspect_ratio": "1:1",
            "width": 1024,
        }
    }
    assert (
        rclient.post("/predictions", json=body, headers={"Prefer": "respond-async"}).status_code
        == 202
    )
    job = _job(gateway)
    assert "width" not in job and "height" not in job
    assert job["strength"] == 0.5 and job["image"] == "aGk="


def test_loras_map_to_the_native_list(rclient: TestClient, gateway: Any) -> None:
    body = {"input": {"prompt": "x", "lora_weights": "ink", "lora_scale": 0.5, "extra_lora": "pen"}}
    assert rclient.post("/v1/models/o/tiny/predictions", json=body).status_code == 201
    assert _job(gateway)["lora"] == [{"name": "ink", "scale": 0.5}, {"name": "pen", "scale": 1.0}]


def test_refusals_name_each_field(rclient: TestClient, gateway: Any) -> None:
    body = {
        "input": {
            "prompt": "",
            "aspect_ratio": "7:5",
            "megapixels": "2",
            "output_format": "gif",
            "guidance": "lots",
            "hf_api_token": "hf_secret",
            "wings": True,
        },
        "webhook_events_filter": ["start", "done"],
        "output_file_prefix": "http://example.com/",
    }
    r = rclient.post("/v1/models/o/tiny/predictions", json=body)
    assert r.status_code == 422, r.text
    answer = r.json()
    assert answer["title"] == "Input validation failed" and answer["status"] == 422
    for name in (
        "input.prompt",
        "input.aspect_ratio",
        "input.megapixels",
        "input.output_format",
        "input.guidance",
        "input.wings",
        "webhook_events_filter",
        "output_file_prefix",
    ):
        assert name in answer["detail"], name
    assert not gateway.jobs
    r = rclient.post(
        "/v1/models/o/tiny/predictions",
        json={"input": {"prompt": "x", "hf_api_token": "hf_secret"}},
    )
    assert r.status_code == 422 and "input.hf_api_token" in r.json()["detail"]
    assert "hf_secret" not in r.text
    both = {
        "input": {
            "prompt": "x",
            "aspect_ratio": "1:1",
            "width": 64,
            "guidance": 1,
            "guidance_scale": 2,
        }
    }
    r = rclient.post("/v1/models/o/tiny/predictions", json=both)
    assert (
        "input.aspect_ratio" in r.json()["detail"] and "input.guidance_scale" in r.json()["detail"]
    )


def test_cog_refusals_are_fastapi_shaped(rclient: TestClient) -> None:
    r = rclient.post("/predictions", json={"input": {"prompt": "x", "num_outputs": "two"}})
    assert r.status_code == 422
    [entry] = r.json()["detail"]
    assert entry["loc"] == ["body", "input", "num_outputs"]


def test_a_native_rule_names_the_cog_field(rclient: TestClient) -> None:
    r = rclient.post(
        "/predictions", json={"input": {"prompt": "x", "num_outputs": 12, "width": 500}}
    )
    assert r.status_code == 200, r.text
    failed = r.json()
    assert failed["status"] == "failed"
    assert "input.num_outputs" in failed["error"] and "input.width" in failed["error"]


def test_unknown_models(rclient: TestClient) -> None:
    r = rclient.post("/v1/models/o/nope/predictions", json={"input": {"prompt": "x"}})
    assert r.status_code == 404 and "o/nope" in r.json()["detail"]
    r = rclient.post("/v1/predictions", json={"version": "deadbeef", "input": {"prompt": "x"}})
    assert r.status_code == 422 and "version" in r.json()["detail"] and "tiny" in r.json()["detail"]
    r = rclient.post("/v1/predictions", json={"input": {"prompt": "x"}})
    assert r.status_code == 422 and "version: is required" in r.json()["detail"]


def test_prefer_wait_answers_the_finished_prediction(rclient: TestClient, gateway: Any) -> None:
    r = rclient.post(
        "/v1/models/o/tiny/predictions",
        json={"input": {"prompt": "x", "seed": 3}},
        headers={"Prefer": "wait=5"},
    )
    assert r.status_code == 201 and r.headers["preference-applied"] == "wait=5"
    prediction = r.json()
    assert prediction["status"] == "succeeded"
    assert prediction["output"] == [f"http://testserver/files/{prediction['id']}/0-3.png"]
    assert prediction["logs"].startswith("Using seed: 3\n")
    assert prediction["metrics"]["predict_time"] == 0.042
    for stamp in ("created_at", "completed_at"):
        assert prediction[stamp].endswith("Z")


def test_a_wait_that_runs_out_shows_starting(
    client_factory: Any, fake_gateway: Any, sent: Sent
) -> None:
    gateway = fake_gateway(auto=False)
    client = _client(client_factory, gateway, sent)
    r = client.post(
        "/v1/models/o/tiny/predictions",
        json={"input": {"prompt": "x"}},
        headers={"Prefer": "wait=1"},
    )
    assert r.status_code == 201 and r.json()["status"] == "starting"
    job_id = r.json()["id"]
    gateway.start(job_id)
    gateway.jobs[job_id].output = {"step": 2, "steps": 4, "progress": 0.5}
    got = client.get(f"/v1/predictions/{job_id}").json()
    assert got["status"] == "processing" and got["output"] is None
    assert got["logs"] == " 50%|#####     | 2/4\n"
    canceled = client.post(f"/v1/predictions/{job_id}/cancel").json()
    assert canceled["status"] == "canceled" and canceled["completed_at"]
    # cog: nothing is running any more
    assert client.post(f"/predictions/{job_id}/cancel").status_code == 404
    assert client.get("/v1/predictions/nope").status_code == 404


def test_cog_cancel_and_client_ids(client_factory: Any, fake_gateway: Any, sent: Sent) -> None:
    gateway = fake_gateway(auto=False)
    client = _client(client_factory, gateway, sent)
    body = {"id": "my-pred", "input": {"prompt": "x"}}
    r = client.post("/predictions", json=body, headers={"Prefer": "respond-async"})
    assert r.status_code == 202 and r.json()["id"] == "my-pred" and r.json()["status"] == "starting"
    again = client.post("/predictions", json=body, headers={"Prefer": "respond-async"})
    assert again.status_code == 422 and again.json()["detail"][0]["loc"] == ["body", "id"]
    assert client.post("/predictions/my-pred/cancel").json() == {}
    assert client.get("/predictions/my-pred").json()["status"] == "canceled"
    assert client.post("/predictions/my-pred/cancel").status_code == 404


def test_webhook_events_follow_the_filter(rclient: TestClient, sent: Sent) -> None:
    body = {
        "input": {"prompt": "x"},
        "webhook": "https://example.com/hook",
        "webhook_events_filter": ["start", "completed"],
        "webhook_completed": "https://example.com/done",
    }
    r = rclient.post("/v1/models/o/tiny/predictions", json=body)
    assert r.status_code == 201
    assert sent.events("https://example.com/hook") == ["start", "completed"]
    assert sent.events("https://example.com/done") == ["completed"]
    start, completed = [c[1] for c in sent.calls if c[0] == "https://example.com/hook"]
    assert start["status"] in ("starting", "processing") and start["output"] is None
    assert completed["status"] == "succeeded" and completed["output"]


def test_the_versions_route(rclient: TestClient) -> None:
    r = rclient.get("/v1/models/o/tiny/versions/" + "ab" * 32)
    assert r.status_code == 200
    version = r.json()
    assert version["cog_version"] and version["created_at"].endswith("Z")
    output = version["openapi_schema"]["components"]["schemas"]["Output"]
    assert output["type"] == "array" and "x-cog-array-type" not in output
    assert rclient.get("/v1/models/o/nope/versions/zzz").status_code == 404


def test_the_key(client_factory: Any, gateway: Any, sent: Sent) -> None:
    client = _client(client_factory, gateway, sent, api_key="k")
    body = {"input": {"prompt": "x"}}
    r = client.post("/v1/models/o/tiny/predictions", json=body)
    assert r.status_code == 401 and r.json()["title"] == "Unauthenticated"
    for header in ("Bearer k", "Token k"):
        ok = client.post(
            "/v1/models/o/tiny/predictions", json=body, headers={"Authorization": header}
        )
        assert ok.status_code == 201


def test_size_table() -> None:
    assert table_size("16:9", "1", 1024) == (1344, 768)
    assert table_size("16:9", "0.25", None) == (672, 384)
    assert table_size("1:1", "1", 512) == (512, 512)
    assert table_size("3:2", "1", 768) == (912, 624)


def test_prefer_and_progress() -> None:
    assert prefer("respond-async") == (True, None)
    assert prefer("wait") == (False, 60)
    assert prefer("wait=5, respond-async") == (True, 5)
    with pytest.raises(InvalidInput):
        prefer("wait=0")
    assert progress_line(0, 4) == "  0%|          | 0/4"
    assert progress_line(4, 4) == "100%|##########| 4/4"
