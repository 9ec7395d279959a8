"""ComfyUI's HTTP API and worker-comfyui's route on the local endpoint, over the formats' fake
queue: as ComfyUI's API examples and worker-comfyui call them."""

from __future__ import annotations

import base64
import io
import json
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from PIL import Image
from starlette.websockets import WebSocketDisconnect

from sdworker.core.jobs import Status
from sdworker.core.models import ModelRegistry
from sdworker.runpod.envelopes import unwrap
from tests.unit.formats.comfy import (
    comfy_settings,
    make_client,
    make_registry,
    png,
    runner,
    workflow,
)
from tests.unit.formats.conftest import FakeGateway


@pytest.fixture
def registry(tmp_path: Path) -> ModelRegistry:
    return make_registry(tmp_path)


@pytest.fixture
def gateway(registry: ModelRegistry) -> FakeGateway:
    return FakeGateway(runner(registry))


@pytest.fixture
def client(registry: ModelRegistry, gateway: FakeGateway, tmp_path: Path) -> TestClient:
    return make_client(registry, gateway, comfy_settings(tmp_path))


def queue_prompt(client: TestClient, prompt: dict[str, Any], **more: Any) -> Any:
    """As ComfyUI's basic API example posts it: urllib, no JSON content type."""
    data = json.dumps({"prompt": prompt, **more}).encode()
    return client.post(
        "/prompt", content=data, headers={"Content-Type": "application/x-www-form-urlencoded"}
    )


def upload(client: TestClient, name: str, data: bytes, **fields: str) -> Any:
    return client.post("/upload/image", files={"image": (name, data, "image/png")}, data=fields)


def test_prompt_history_view(client: TestClient, gateway: FakeGateway) -> None:
    r = queue_prompt(client, workflow("sdxl_txt2img"), client_id="c1")
    assert r.status_code == 200, r.text
    prompt_id = r.json()["prompt_id"]
    assert r.json()["node_errors"] == {} and isinstance(r.json()["number"], int)
    [job] = gateway.jobs.values()
    stored = json.loads(job.input["png_text"]["prompt"])
    assert stored["3"]["inputs"]["cfg"] == 8.0 and stored["9"]["class_type"] == "SaveImage"
    history = client.get(f"/history/{prompt_id}").json()
    entry = history[prompt_id]
    assert entry["status"]["status_str"] == "success" and entry["status"]["completed"] is True
    assert entry["prompt"][1] == prompt_id and entry["prompt"][3] == {"client_id": "c1"}
    assert entry["prompt"][4] == ["9"]
    [image] = entry["outputs"]["9"]["images"]
    assert image == {"filename": "ComfyUI_00001_.png", "subfolder": "", "type": "output"}
    view = client.get("/view", params=image)
    assert view.status_code == 200 and view.headers["content-type"] == "image/png"
    assert view.content.startswith(b"\x89PNG")
    assert client.get(f"/api/history/{prompt_id}").json() == history
    assert list(client.get("/history").json()) == [prompt_id]
    # the next prompt's image gets the next name
    second = queue_prompt(client, workflow("sdxl_txt2img")).json()["prompt_id"]
    [image] = client.get(f"/history/{second}").json()[second]["outputs"]["9"]["images"]
    assert image["filename"] == "ComfyUI_00002_.png"


def test_history_is_empty_until_the_prompt_ends(registry: ModelRegistry, tmp_path: Path) -> None:
    gateway = FakeGateway(runner(registry), auto=False)
    client = make_client(registry, gateway, comfy_settings(tmp_path))
    prompt_id = queue_prompt(client, workflow("sdxl_txt2img")).json()["prompt_id"]
    assert client.get(f"/history/{prompt_id}").json() == {}
    queue = client.get("/queue").json()
    assert queue["queue_running"] == [] and queue["queue_pending"][0][1] == prompt_id
    assert client.get("/prompt").json() == {"exec_info": {"queue_remaining": 1}}
    [job_id] = gateway.jobs
    gateway.start(job_id)
    assert client.get("/queue").json()["queue_running"][0][1] == prompt_id
    assert client.post("/interrupt", json={}).status_code == 200
    assert gateway.jobs[job_id].status is Status.CANCELLED
    entry = client.get(f"/history/{prompt_id}").json()[prompt_id]
    assert entry["status"]["status_str"] == "error"
    assert entry["status"]["messages"][-1][0] == "execution_interrupted"


def test_pending_prompts_are_deleted_from_the_queue(
    registry: ModelRegistry, tmp_path: Path
) -> None:
    gateway = FakeGateway(runner(registry), auto=False)
    client = make_client(registry, gateway, comfy_settings(tmp_path))
    first = queue_prompt(client, workflow("sdxl_txt2img")).json()["prompt_id"]
    queue_prompt(client, workflow("sdxl_txt2img"))
    assert client.post("/queue", json={"delete": [first]}).status_code == 200
    assert [v.status for v in gateway.jobs.values()] == [Status.CANCELLED, Status.IN_QUEUE]
    client.post("/queue", json={"clear": True})
    assert client.get("/queue").json() == {"queue_running": [], "queue_pending": []}


def test_a_workflow_refused_in_comfyuis_shape(client: TestClient, gateway: FakeGateway) -> None:
    r = queue_prompt(client, workflow("custom_node"))
    assert r.status_code == 400
    body = r.json()
    assert body["error"]["type"] == "prompt_outputs_failed_validation"
    error = body["node_errors"]["9"]
    assert error["class_type"] == "Image Save"
    assert error["errors"][0]["extra_info"] == {"input_name": "images"}
    assert not gateway.jobs
    missing = client.post("/prompt", json={"client_id": "x"})
    assert missing.status_code == 400 and "prompt" in missing.json()["error"]["details"]
    graph = workflow("sdxl_txt2img")
    graph["3"]["inputs"]["steps"] = 0
    r = client.post("/api/prompt", json={"prompt": graph})
    [error] = r.json()["node_errors"]["3"]["errors"]
    assert error["details"] == "node 3 (KSampler) steps: must be at least 1 (got 0)"


def test_a_native_failure_shows_as_an_execution_error(client: TestClient) -> None:
    graph = workflow("sdxl_txt2img")
    graph["3"]["inputs"]["steps"] = 600
    prompt_id = queue_prompt(client, graph).json()["prompt_id"]
    entry = client.get(f"/history/{prompt_id}").json()[prompt_id]
    kind, data = entry["status"]["messages"][-1]
    assert kind == "execution_error" and (data["node_id"], data["node_type"]) == ("3", "KSampler")
    assert "node 3 (KSampler) steps: must be at most 500 (got 600)" in data["exception_message"]


def test_uploaded_images_feed_load_image(client: TestClient, gateway: FakeGateway) -> None:
    data = base64.b64decode(png((64, 64)))
    assert upload(client, "example.png", data).json() == {
        "name": "example.png",
        "subfolder": "",
        "type": "input",
    }
    assert upload(client, "example.png", data).json()["name"] == "example.png"  # same bytes
    other = base64.b64decode(png((32, 32)))
    assert upload(client, "example.png", other).json()["name"] == "example (1).png"
    assert upload(client, "example.png", other, overwrite="true").json()["name"] == "example.png"
    r = queue_prompt(client, workflow("sdxl_img2img"))
    assert r.status_code == 200, r.text
    [job] = gateway.jobs.values()
    assert base64.b64decode(job.input["image"]) == other
    view = client.get("/view", params={"filename": "example.png", "type": "input"})
    assert view.status_code == 200 and view.content == other


@pytest.mark.parametrize("name", ["../x.png", "/etc/passwd", "a/../../x.png", "~/x.png"])
def test_upload_names_stay_in_their_folder(client: TestClient, name: str) -> None:
    r = upload(client, name, b"x", subfolder="../../outside")
    assert r.status_code == 400, r.text
    assert client.get("/view", params={"filename": name}).status_code in (400, 404)


def test_view_of_unknown_images(client: TestClient) -> None:
    assert client.get("/view", params={"filename": "ComfyUI_09999_.png"}).status_code == 404
    assert client.get("/view", params={"filename": ""}).status_code == 400
    assert client.get("/view", params={"filename": "x.png", "subfolder": ".."}).status_code == 400


def test_worker_comfyui_route(client: TestClient) -> None:
    r = client.post(
        "/comfyui/runsync", json={"input": {"workflow": workflow("flux_schnell_split")}}
    )
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["status"] == "COMPLETED"
    [image] = body["output"]["images"]
    assert image["filename"] == "ComfyUI_00001_.png" and image["type"] == "base64"
    bad = client.post("/comfyui/runsync", json={"input": {"workflow": workflow("custom_node")}})
    assert bad.status_code == 400
    assert bad.json()["error"].startswith("invalid input: node 9 (Image Save) images")
    graph = workflow("sdxl_txt2img")
    graph["3"]["inputs"]["steps"] = 600
    failed = client.post("/comfyui/runsync", json={"input": {"workflow": graph}}).json()
    assert failed["status"] == "FAILED"
    assert (
        failed["error"] == "invalid input: node 3 (KSampler) steps: must be at most 500 (got 600)"
    )


def test_parity_http_and_envelope_make_the_same_jobs(
    client: TestClient, gateway: FakeGateway, registry: ModelRegistry
) -> None:
    """The same workflow over ComfyUI's /prompt, over /comfyui/runsync and inside a RunPod
    job makes the same native jobs."""
    image = png((64, 64))
    graph = workflow("sdxl_img2img")
    graph["20"] = {
        "class_type": "SaveImage",
        "inputs": {"images": ["8", 0], "filename_prefix": "b"},
    }
    job = {"workflow": graph, "images": [{"name": "example.png", "image": image}]}
    env = unwrap(job, manifests=[i.manifest for i in registry.all()], default_model="tiny-sdxl")
    assert env is not None and env.inputs is not None and len(env.inputs) == 1
    assert client.post("/comfyui/runsync", json={"input": job}).status_code == 200
    upload(client, "example.png", base64.b64decode(image))
    assert queue_prompt(client, graph).status_code == 200
    over_runsync, over_prompt = (view.input for view in gateway.jobs.values())
    assert env.inputs == [over_runsync] == [over_prompt]


def test_the_websocket_as_comfyuis_example_reads_it(client: TestClient) -> None:
    with client.websocket_connect("/ws?clientId=me") as ws:
        hello = ws.receive_json()
        assert hello == {
            "type": "status",
            "data": {"status": {"exec_info": {"queue_remaining": 0}}, "sid": "me"},
        }
        prompt_id = queue_prompt(
            client, workflow("sdxl_txt2img"), client_id="me", prompt_id="p-1"
        ).json()["prompt_id"]
        assert prompt_id == "p-1"
        seen = []
        while True:
            message = ws.receive_json()
            seen.append(message["type"])
            if message["type"] == "executing":
                assert message["data"]["prompt_id"] == "p-1"  # the example reads it on each
                if message["data"]["node"] is None:
                    break
            if message["type"] == "executed":
                assert message["data"]["output"]["images"][0]["type"] == "output"
    assert seen == [
        "execution_start",
        "execution_cached",
        "executing",
        "executed",
        "execution_success",
        "executing",
    ]


def test_auth_with_a_key(registry: ModelRegistry, gateway: FakeGateway, tmp_path: Path) -> None:
    client = make_client(registry, gateway, comfy_settings(tmp_path, api_key="k"))
    assert client.post("/prompt", json={"prompt": workflow("sdxl_txt2img")}).status_code == 401
    assert client.get("/history").status_code == 401
    assert client.post("/comfyui/runsync", json={"input": {}}).status_code == 401
    headers = {"Authorization": "Bearer k"}
    assert client.get("/history", headers=headers).status_code == 200
    with pytest.raises(WebSocketDisconnect), client.websocket_connect("/ws") as ws:
        ws.receive_json()
    with client.websocket_connect("/ws?token=k") as ws:
        assert ws.receive_json()["type"] == "status"


def test_object_info_lists_what_runs_here(client: TestClient) -> None:
    info = client.get("/object_info").json()
    assert "KSampler" in info and "Image Save" not in info
    names = info["CheckpointLoaderSimple"]["input"]["required"]["ckpt_name"][0]
    assert "sd_xl_base_1.0.safetensors" in names and "tiny-sdxl.safetensors" in names
    steps = info["KSampler"]["input"]["required"]["steps"]
    assert steps == ["INT", {"min": 1, "max": 10000}]
    assert info["SaveImage"]["output_node"] is True
    assert client.get("/object_info/KSampler").json()["KSampler"] == info["KSampler"]
    assert client.get("/object_info/Nope").json() == {}
    assert client.get("/system_stats").json()["system"]["comfyui_version"]
    assert client.get("/embeddings").json() == []


def test_a_png_from_view_is_an_image(client: TestClient) -> None:
    prompt_id = queue_prompt(client, workflow("sdxl_txt2img")).json()["prompt_id"]
    [image] = client.get(f"/history/{prompt_id}").json()[prompt_id]["outputs"]["9"]["images"]
    content = client.get("/view", params=image).content
    assert Image.open(io.BytesIO(content)).size == (8, 8)  # the fake generator's
