"""worker-comfyui jobs and ComfyUI API clients against a real ``sdworker serve`` (the tiny
models, the real worker loop).

The workflows are ComfyUI's exports (tests/fixtures/comfyui); only the sizes and step counts
are made small for the CPU. Each image is compared, pixel for pixel, with the native job
the workflow stands for: the mapping is the one the tests of the format check, run for real.
"""

from __future__ import annotations

import base64
import io
import json
import urllib.request
import uuid
from typing import Any

import pytest
import requests
from PIL import Image

from tests.integration.serving import Served
from tests.unit.formats.comfy import workflow

SIZE = 64
SEED_RANGE = 2**32 - 8


def headers(served: Served) -> dict[str, str]:
    return {"Authorization": f"Bearer {served.key}"}


def runsync(served: Served, job_input: Any) -> dict[str, Any]:
    r = requests.post(
        f"{served.url}/v2/local/runsync",
        json={"input": job_input},
        headers=headers(served),
        timeout=300,
    )
    assert r.status_code == 200, r.text
    body: dict[str, Any] = r.json()
    return body


def completed(served: Served, job_input: Any) -> dict[str, Any]:
    body = runsync(served, job_input)
    assert body["status"] == "COMPLETED", body
    output: dict[str, Any] = body["output"]
    return output


def native(served: Served, job_input: dict[str, Any]) -> list[bytes]:
    """The native job's images, as RGB pixels."""
    body = runsync(served, job_input)
    assert body["status"] == "COMPLETED", body
    return [rgb(o["image"]) for o in body["output"]]


def rgb(b64: str) -> bytes:
    return Image.open(io.BytesIO(base64.b64decode(b64))).convert("RGB").tobytes()


def small(graph: dict[str, Any], latent: str, sampler: str, steps: int = 2) -> dict[str, Any]:
    graph[latent]["inputs"].update(width=SIZE, height=SIZE)
    graph[sampler]["inputs"]["steps"] = steps
    return graph


def default_job(graph: dict[str, Any], **more: Any) -> dict[str, Any]:
    """The native job ComfyUI's default workflow (small) stands for on the SDXL checkpoint."""
    return {
        "model": "tiny-sdxl",
        "prompt": graph["6"]["inputs"]["text"],
        "negative_prompt": "text, watermark",
        "guidance_scale": 8,
        "scheduler": "Euler",
        "num_inference_steps": 2,
        "seed": 156680208700286 % SEED_RANGE,
        "width": SIZE,
        "height": SIZE,
        **more,
    }


def input_png() -> str:
    buf = io.BytesIO()
    Image.new("RGB", (SIZE, SIZE), (200, 80, 30)).save(buf, format="PNG")
    return base64.b64encode(buf.getvalue()).decode()


def test_an_sdxl_checkpoint_workflow(comfy_served: Served) -> None:
    graph = small(workflow("sdxl_txt2img"), "5", "3")
    output = completed(comfy_served, {"workflow": graph})
    [image] = output["images"]
    assert (image["filename"], image["type"]) == ("ComfyUI_00001_.png", "base64")
    picture = Image.open(io.BytesIO(base64.b64decode(image["data"])))
    # the PNG carries the workflow as ComfyUI writes it: prompt only, literals coerced
    assert set(picture.text) == {"prompt"}  # type: ignore[attr-defined]
    stored = json.loads(picture.text["prompt"])  # type: ignore[attr-defined]
    assert stored["3"]["inputs"]["cfg"] == 8.0 and stored["3"]["inputs"]["steps"] == 2
    assert stored["4"]["inputs"]["ckpt_name"] == "sd_xl_base_1.0.safetensors"
    assert rgb(image["data"]) == native(comfy_served, default_job(graph))[0]


def test_an_img2img_workflow_with_images(comfy_served: Served) -> None:
    graph = workflow("sdxl_img2img")
    graph["3"]["inputs"].update(steps=4, denoise=0.5)  # ComfyUI: the last 4 of 8 steps
    picture = input_png()
    job = {
        "workflow": graph,
        "images": [{"name": "example.png", "image": f"data:image/png;base64,{picture}"}],
    }
    [image] = completed(comfy_served, job)["images"]
    made = Image.open(io.BytesIO(base64.b64decode(image["data"])))
    assert made.size == (SIZE, SIZE)
    same = native(
        comfy_served,
        {
            "model": "tiny-sdxl",
            "prompt": graph["6"]["inputs"]["text"],
            "negative_prompt": "watermark, text",
            "guidance_scale": 8,
            "scheduler": "DPM++ 2M",
            "num_inference_steps": 8,
            "strength": 0.5,
            "image": picture,
            "seed": 280823642470253 % SEED_RANGE,
        },
    )
    assert rgb(image["data"]) == same[0]


def test_a_flux_split_loader_custom_sampling_workflow(comfy_served: Served) -> None:
    graph = small(workflow("flux_schnell_split"), "5", "17")
    [image] = completed(comfy_served, {"workflow": graph})["images"]
    same = native(
        comfy_served,
        {
            "model": "tiny-flux",
            "prompt": graph["6"]["inputs"]["text"],
            "scheduler": "FlowMatchEulerDiscreteScheduler",
            "num_inference_steps": 2,
            "seed": 972054013131368 % SEED_RANGE,
            "width": SIZE,
            "height": SIZE,
        },
    )
    assert rgb(image["data"]) == same[0]


def test_a_lora_workflow(comfy_served: Served) -> None:
    graph = small(workflow("sdxl_lora"), "5", "3")
    graph["10"]["inputs"]["strength_model"] = graph["10"]["inputs"]["strength_clip"] = 0.8
    [image] = completed(comfy_served, {"workflow": graph})["images"]
    plain = small(workflow("sdxl_txt2img"), "5", "3")
    [without] = completed(comfy_served, {"workflow": plain})["images"]
    assert rgb(image["data"]) != rgb(without["data"])  # the LoRA changed the image
    same = native(comfy_served, default_job(graph, lora=[{"name": "neon", "scale": 0.8}]))
    assert rgb(image["data"]) == same[0]


def test_an_unsupported_node_is_refused_by_id_and_class(comfy_served: Served) -> None:
    body = runsync(comfy_served, {"workflow": workflow("custom_node")})
    assert body["status"] == "FAILED"
    assert body["error"].startswith("invalid input: node 9 (Image Save) images: is not a node")
    assert body["output"]["failure"]["problems"][0]["field"] == "node 9 (Image Save) images"
    assert body["output"]["details"] == [body["error"].removeprefix("invalid input: ")]


def test_a_simple_comfyui_api_client(comfy_served: Served) -> None:
    """ComfyUI's websocket API example, step by step: connect with a client id, queue the
    prompt (urllib, no content type), read until ``executing`` with no node, then the history
    and each image through ``/view``."""
    from websockets.sync.client import connect

    url, key = comfy_served.url, headers(comfy_served)
    graph = small(workflow("sdxl_txt2img"), "5", "3")
    client_id = str(uuid.uuid4())
    host = url.removeprefix("http://")
    with connect(f"ws://{host}/ws?clientId={client_id}", additional_headers=key) as ws:
        data = json.dumps({"prompt": graph, "client_id": client_id}).encode()
        request = urllib.request.Request(f"{url}/prompt", data=data, headers=key)
        prompt_id = json.loads(urllib.request.urlopen(request, timeout=60).read())["prompt_id"]
        seen = []
        while True:
            out = ws.recv(timeout=300)
            if isinstance(out, str):
                message = json.loads(out)
                seen.append(message["type"])
                if message["type"] == "executing":
                    done = message["data"]
                    if done["node"] is None and done["prompt_id"] == prompt_id:
                        break
    assert seen[0] == "status" and "execution_success" in seen and "executed" in seen
    history = requests.get(f"{url}/history/{prompt_id}", headers=key, timeout=30).json()
    outputs = history[prompt_id]["outputs"]
    [image] = outputs["9"]["images"]
    view = requests.get(f"{url}/view", params=image, headers=key, timeout=30)
    assert view.status_code == 200 and view.headers["content-type"] == "image/png"
    picture = Image.open(io.BytesIO(view.content))
    assert json.loads(picture.text["prompt"])["9"]["class_type"] == "SaveImage"  # type: ignore[attr-defined]
    # the same workflow as a worker-comfyui job makes the same image
    [same] = completed(comfy_served, {"workflow": graph})["images"]
    assert picture.convert("RGB").tobytes() == rgb(same["data"])


def test_upload_and_poll_history(comfy_served: Served) -> None:
    """A client that uploads its image, queues an img2img prompt and polls ``/history``."""
    url, key = comfy_served.url, headers(comfy_served)
    files = {"image": ("photo.png", base64.b64decode(input_png()), "image/png")}
    uploaded = requests.post(
        f"{url}/upload/image", files=files, data={"overwrite": "true"}, headers=key, timeout=30
    ).json()
    graph = workflow("sdxl_img2img")
    graph["10"]["inputs"]["image"] = uploaded["name"]
    graph["3"]["inputs"]["steps"] = 2
    answer = requests.post(f"{url}/api/prompt", json={"prompt": graph}, headers=key, timeout=60)
    prompt_id = answer.json()["prompt_id"]

    def history() -> dict[str, Any] | None:
        found = requests.get(f"{url}/api/history/{prompt_id}", headers=key, timeout=30).json()
        return found.get(prompt_id)

    from tests.integration.waits import wait_until

    entry = wait_until(history, f"the history of {prompt_id}", every_s=0.2)
    assert entry["status"]["status_str"] == "success", entry["status"]
    [image] = entry["outputs"]["9"]["images"]
    assert requests.get(f"{url}/view", params=image, headers=key, timeout=30).ok
    assert requests.get(f"{url}/queue", headers=key, timeout=30).json()["queue_pending"] == []


@pytest.mark.parametrize("route", ["/prompt", "/history", "/comfyui/runsync"])
def test_routes_take_the_key(comfy_served: Served, route: str) -> None:
    method = requests.get if route == "/history" else requests.post
    assert method(f"{comfy_served.url}{route}", timeout=30).status_code == 401
