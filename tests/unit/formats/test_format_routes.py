"""The format routes over an in-memory queue (no workers, no models)."""

from __future__ import annotations

import asyncio
import base64
import io
import json
import time
from collections.abc import Callable
from typing import Any

import pytest
from fastapi.testclient import TestClient
from PIL import Image

from sdworker.core.errors import InvalidInput
from sdworker.core.jobs import Status

ClientFactory = Callable[..., TestClient]


def basic(user: str, password: str) -> dict[str, str]:
    token = base64.b64encode(f"{user}:{password}".encode()).decode()
    return {"Authorization": f"Basic {token}", "Content-Type": "application/json"}


def seed_of(b64: str) -> int:
    r, g, b = Image.open(io.BytesIO(base64.b64decode(b64))).convert("RGB").getpixel((0, 0))
    return r + (g << 8) + (b << 16)


def test_a1111_txt2img_with_basic_auth(client_factory: ClientFactory, gateway: Any) -> None:
    client = client_factory(gateway, api_key="admin1234")
    payload = {
        "prompt": "apple",
        "negative_prompt": "red",
        "sampler_name": "DPM++ 2M Karras",
        "seed": 98,
        "cfg_scale": 7,
        "steps": 20,
        "width": 64,
        "height": 64,
        "batch_size": 2,
        "n_iter": 2,
    }
    assert client.post("/sdapi/v1/txt2img", json=payload).status_code == 401
    assert (
        client.post("/sdapi/v1/txt2img", json=payload, headers=basic("admin", "wrong")).status_code
        == 401
    )
    r = client.post("/sdapi/v1/txt2img", json=payload, headers=basic("anyone", "admin1234"))
    assert r.status_code == 200, r.text
    body = r.json()
    assert [seed_of(i) for i in body["images"]] == [98, 99, 100, 101]
    info = json.loads(body["info"])
    assert info["all_seeds"] == [98, 99, 100, 101]
    assert (
        "Sampler: DPM++ 2M Karras" in info["infotexts"][0] and "Model: tiny" in info["infotexts"][0]
    )
    assert [j.input["seed"] for j in gateway.jobs.values()] == [98, 100]


def test_a1111_errors_name_fields_never_500(client: TestClient) -> None:
    r = client.post(
        "/sdapi/v1/txt2img", json={"prompt": "x", "steps": "lots", "sampler_name": "Bogus"}
    )
    assert r.status_code == 422
    body = r.json()
    assert (
        body["error"] == "InvalidInput" and "steps" in body["detail"] and "Bogus" in body["detail"]
    )
    r = client.post(
        "/sdapi/v1/txt2img", content=b"{not json", headers={"Content-Type": "application/json"}
    )
    assert r.status_code == 422 and "body" in r.json()["detail"]
    r = client.post("/sdapi/v1/txt2img", json=["a list"])
    assert r.status_code == 422
    # a rule only the job checks comes back renamed into A1111's field
    r = client.post(
        "/sdapi/v1/txt2img", json={"prompt": "x", "steps": 500, "width": 64, "height": 64}
    )
    assert r.status_code == 200
    r = client.post("/sdapi/v1/img2img", json={"prompt": "x"})
    assert r.status_code == 422 and "init_images" in r.json()["detail"]


def test_a1111_job_side_errors_are_renamed(
    client_factory: ClientFactory, fake_gateway: Any
) -> None:
    def strict(job: dict[str, Any]) -> list[dict[str, Any]]:
        raise InvalidInput.one(
            "num_inference_steps", "must be at most 10", job["num_inference_steps"]
        )

    client = client_factory(fake_gateway(run=strict))
    r = client.post("/sdapi/v1/txt2img", json={"prompt": "x", "steps": 20})
    assert r.status_code == 422
    assert r.json()["detail"] == "invalid input: steps: must be at most 10 (got 20)"


def test_a1111_models_options_switch_default(client: TestClient, gateway: Any) -> None:
    models = client.get("/sdapi/v1/sd-models").json()
    assert [m["title"] for m in models] == [
        "tiny.safetensors [abababab" + "ab]",
        "v1-5-pruned-emaonly.safetensors [6ce0161689]",
    ]
    assert (
        client.get("/sdapi/v1/options").json()["sd_model_checkpoint"].startswith("tiny.safetensors")
    )
    r = client.post(
        "/sdapi/v1/options",
        json={"sd_model_checkpoint": "v1-5-pruned-emaonly.safetensors [6ce0161689]"},
    )
    assert r.status_code == 200 and r.json() is None
    assert (
        client.get("/sdapi/v1/options").json()["sd_model_checkpoint"]
        == "v1-5-pruned-emaonly.safetensors [6ce0161689]"
    )
    client.post("/sdapi/v1/txt2img", json={"prompt": "x", "seed": 1})
    client.post(
        "/sdapi/v1/txt2img",
        json={"prompt": "x", "seed": 1, "override_settings": {"sd_model_checkpoint": "tiny"}},
    )
    assert [j.input["model"] for j in gateway.jobs.values()] == ["v1-5-pruned-emaonly", "tiny"]
    r = client.post("/sdapi/v1/options", json={"sd_model_checkpoint": "nope"})
    assert r.status_code == 422 and "sd_model_checkpoint" in r.json()["detail"]


def test_a1111_lists(client: TestClient) -> None:
    names = [s["name"] for s in client.get("/sdapi/v1/samplers").json()]
    assert "DPM++ 2M" in names and "Euler a" in names
    labels = [s["label"] for s in client.get("/sdapi/v1/schedulers").json()]
    assert "Karras" in labels
    idle = client.get("/sdapi/v1/progress").json()
    assert idle["progress"] == 0.0 and idle["state"]["job_count"] == 0
    assert client.post("/sdapi/v1/interrupt").status_code == 200


def test_salad_task_flow(client: TestClient) -> None:
    task = {
        "modelInputs": {
            "prompt": "An oil painting of a salad",
            "num_inference_steps": 5,
            "guidance_scale": 20,
            "width": 64,
            "height": 64,
            "seed": 7,
            "num_images_per_prompt": 2,
        },
        "callInputs": {
            "PIPELINE": "StableDiffusionPipeline",
            "SCHEDULER": "LMSDiscreteScheduler",
            "safety_checker": "true",
        },
    }
    url = "/api/beta/organizations/acme/inference-endpoints/stable-diffusion-2-1"
    r = client.post(url, json=task, headers={"Salad-Api-Key": "k"})
    assert r.status_code == 202
    created = r.json()
    assert created["resultUrl"] == f"http://testserver{url}/{created['requestId']}"
    result = client.get(created["resultUrl"]).json()
    assert result["status"] == "success" and result["requestId"] == created["requestId"]
    assert [seed_of(i) for i in result["modelOutputs"]["images_base64"]] == [7, 8]


def test_salad_errors(client_factory: ClientFactory, gateway: Any) -> None:
    client = client_factory(gateway, api_key="sekrit")
    url = "/api/beta/organizations/acme/inference-endpoints/sd"
    assert client.post(url, json={}).status_code == 401
    r = client.post(
        url, json={"modelInputs": {"prompt": "p", "widht": 64}}, headers={"Salad-Api-Key": "sekrit"}
    )
    assert r.status_code == 400 and "modelInputs.widht" in r.json()["errors"]
    r = client.post(
        url, json={"modelInputs": {"prompt": "p", "width": 60}}, headers={"Salad-Api-Key": "sekrit"}
    )
    failed = client.get(r.json()["resultUrl"], headers={"Salad-Api-Key": "sekrit"}).json()
    assert failed["status"] == "failed" and "modelInputs.width" in failed["error"]
    assert client.get(url + "/nope", headers={"Salad-Api-Key": "sekrit"}).status_code == 404


def test_stochastic_submit_position_and_images(
    client_factory: ClientFactory, fake_gateway: Any
) -> None:
    gateway = fake_gateway(auto=False)
    client = client_factory(gateway, api_key="k1")
    body = {
        "prompt": "A turtle",
        "params": {
            "img_height": 64,
            "img_width": 64,
            "num_inference_steps": 5,
            "guidance_scale": 7.5,
            "seed": 3,
        },
    }
    first = client.post("/v1/modelApi/submit/tiny", json=body, headers={"apiKey": "k1"}).json()[
        "data"
    ]
    second = client.post("/v1/modelApi/submit/tiny", json=body, headers={"apiKey": "k1"}).json()[
        "data"
    ]
    assert (first["queuePosition"], second["queuePosition"]) == ("0", "1")
    pending = client.get(second["responseUrl"], headers={"apiKey": "k1"}).json()["data"]
    assert "generatedImages" not in pending and pending["status"] == "queued"
    gateway.finish(second["id"])
    done = client.get(second["responseUrl"], headers={"apiKey": "k1"}).json()["data"]
    [image] = done["generatedImages"]
    name = image["presigned_url"].rsplit("/", 1)[1]
    assert seed_of(base64.b64encode(gateway.files[name][0]).decode()) == 3
    assert client.get(second["responseUrl"]).status_code == 401


def test_stochastic_errors(client: TestClient) -> None:
    r = client.post("/v1/modelApi/submit/nope", json={"prompt": "x", "params": {}})
    assert r.status_code == 404 and r.json()["success"] is False and "tiny" in r.json()["message"]
    r = client.post("/v1/modelApi/submit/tiny", json={"prompt": "x", "params": {"max_length": 3}})
    assert r.status_code == 400 and r.json()["errors"][0]["field"] == "params.max_length"
    r = client.post("/v1/modelApi/submit/tiny", json={"prompt": "x", "params": {"img_width": 60}})
    polled = client.get(r.json()["data"]["responseUrl"])
    assert polled.status_code == 400 and "params.img_width" in polled.json()["message"]


def test_deepinfra_form_and_json(client: TestClient) -> None:
    r = client.post(
        "/v1/inference/tiny",
        data={
            "prompt": "A photo of an astronaut",
            "num_images": "2",
            "seed": "42",
            "width": "64",
            "height": "64",
        },
        headers={"Authorization": "bearer anything"},
    )
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["seed"] == 42 and body["nsfw_content_detected"] == [False, False]
    assert [seed_of(i.split(",", 1)[1]) for i in body["images"]] == [42, 43]
    assert body["inference_status"]["runtime_ms"] == 42
    r = client.post("/v1/inference/sdworker/tiny", json={"prompt": "x", "seed": 5})
    assert r.status_code == 200 and r.json()["seed"] == 5


def test_deepinfra_upload_file_and_errors(client_factory: ClientFactory, gateway: Any) -> None:
    client = client_factory(gateway, api_key="tok")
    assert client.post("/v1/inference/tiny", json={"prompt": "x"}).status_code == 401
    auth = {"Authorization": "bearer tok"}
    png = io.BytesIO()
    Image.new("RGB", (8, 8)).save(png, "PNG")
    r = client.post(
        "/v1/inference/tiny",
        data={"prompt": "x", "strength": "0.5"},
        files={"image": ("in.png", png.getvalue(), "image/png")},
        headers=auth,
    )
    assert r.status_code == 200
    [job] = list(gateway.jobs.values())
    assert base64.b64decode(job.input["image"]) == png.getvalue() and job.input["strength"] == 0.5
    r = client.post("/v1/inference/tiny", json={"prompt": "x", "num_images": 5}, headers=auth)
    assert r.status_code == 422 and r.json()["detail"][0]["loc"] == ["body", "num_images"]
    r = client.post("/v1/inference/tiny", json={"prompt": "x", "width": 60}, headers=auth)
    assert r.status_code == 422 and r.json()["detail"][0]["loc"] == ["body", "width"]


def _ending(status: Any, fake_gateway: Any) -> Any:
    """A gateway whose second job of a request ends with ``status`` instead of completing."""

    class Ending(fake_gateway):  # type: ignore[misc,valid-type]
        def finish(self, job_id: str) -> None:
            view = self.jobs[job_id]
            if list(self.jobs).index(job_id) == 1 and not view.status.is_terminal():
                view.status = status
                return
            super().finish(job_id)

    return Ending()


@pytest.mark.parametrize(("status", "code"), [(Status.TIMED_OUT, 504), (Status.CANCELLED, 409)])
def test_a1111_job_cancelled_or_timed_out_is_an_error(
    client_factory: ClientFactory, fake_gateway: Any, status: Status, code: int
) -> None:
    client = client_factory(_ending(status, fake_gateway))
    r = client.post("/sdapi/v1/txt2img", json={"prompt": "x", "seed": 1, "n_iter": 2})
    assert r.status_code == code, r.text
    body = r.json()
    assert "images" not in body
    assert body["error"] == {Status.TIMED_OUT: "TimedOut", Status.CANCELLED: "Cancelled"}[status]
    assert status.value.lower().split("_")[0] in body["detail"]


def test_stochastic_url_cache_forgets_expired_jobs(registry: Any, fake_gateway: Any) -> None:
    from fastapi import FastAPI

    from sdworker.core.settings import Settings
    from sdworker.formats.base import FormatContext
    from sdworker.formats.stochastic import stochastic_router

    gateway = fake_gateway()
    urls: dict[str, list[str]] = {}
    app = FastAPI()
    ctx = FormatContext(registry, Settings(dialect_wait_s=5.0), lambda request: gateway)
    app.include_router(stochastic_router(ctx, urls))
    client = TestClient(app)
    body = {"prompt": "A turtle", "params": {"img_height": 64, "img_width": 64, "seed": 3}}
    ids = []
    for _ in range(3):
        data = client.post("/v1/modelApi/submit/tiny", json=body).json()["data"]
        assert client.get(data["responseUrl"]).json()["data"]["status"] == "completed"
        ids.append(data["id"])
    assert set(urls) == set(ids)
    # the queue forgets two finished jobs (their retention passed); the next submit prunes
    del gateway.jobs[ids[0]], gateway.jobs[ids[1]]
    client.post("/v1/modelApi/submit/tiny", json=body)
    assert set(urls) == {ids[2]}


def _deepinfra_app(registry: Any, gateway: Any, posted: list[Any]) -> TestClient:
    from fastapi import FastAPI

    from sdworker.core.settings import Settings
    from sdworker.formats.base import FormatContext
    from sdworker.formats.deepinfra import deepinfra_router
    from sdworker.server.webhooks import WebhookSender

    async def poster(url: str, body: dict[str, Any]) -> int:
        posted.append((url, body))
        return 500 if len(posted) == 1 else 200  # the first attempt fails: retried

    sender = WebhookSender(retries=2, interval_s=0.0, poster=poster)
    # the server's sender, handed to the format as the app would hand it
    ctx = FormatContext(
        registry,
        Settings(dialect_wait_s=600.0),
        lambda request: gateway,
        webhooks=lambda request: sender.send,
    )
    app = FastAPI()
    app.include_router(deepinfra_router(ctx))
    return TestClient(app)


def test_deepinfra_webhook_goes_through_the_server_sender(registry: Any, fake_gateway: Any) -> None:
    posted: list[Any] = []
    with _deepinfra_app(registry, fake_gateway(), posted) as client:
        r = client.post("/v1/inference/tiny", json={"prompt": "x", "webhook": "http://h/w"})
        assert r.status_code == 200 and r.json()["inference_status"]["status"] == "queued"
        deadline = time.monotonic() + 5
        while len(posted) < 2 and time.monotonic() < deadline:
            time.sleep(0.01)
    assert [url for url, _ in posted] == ["http://h/w", "http://h/w"]
    body = posted[1][1]
    assert body["request_id"] == r.json()["request_id"] and body["images"][0].startswith("data:")


def test_deepinfra_webhook_waits_are_cancelled_at_shutdown(
    registry: Any, fake_gateway: Any
) -> None:
    class Never(fake_gateway):  # type: ignore[misc,valid-type]
        """Jobs never finish; a wait blocks until it is cancelled, and says so."""

        started = 0
        cancelled_waits = 0

        async def wait(self, job_id: str, timeout_s: float) -> Any:
            Never.started += 1
            try:
                await asyncio.sleep(timeout_s)
            except asyncio.CancelledError:
                Never.cancelled_waits += 1
                raise
            return self.jobs.get(job_id)

    posted: list[Any] = []
    with _deepinfra_app(registry, Never(auto=False), posted) as client:
        r = client.post("/v1/inference/tiny", json={"prompt": "x", "webhook": "http://h/w"})
        assert r.status_code == 200
        deadline = time.monotonic() + 5
        while not Never.started and time.monotonic() < deadline:
            time.sleep(0.01)  # let the background wait start
    assert Never.cancelled_waits == 1 and posted == []
