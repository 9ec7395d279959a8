"""Each service's documented client code, replayed unchanged against ``sdworker serve``.

Only the base URL, the key, the model name and (for speed on the tiny model) sizes and step
counts differ from the documentation in /shared/seeds; headers, bodies and polling loops are
the documented ones.
"""

from __future__ import annotations

import base64
import io
import json
import time
from typing import Any

import pytest
import requests
from PIL import Image

SIZE = 64
STEPS = 2


def pixels(b64: str) -> bytes:
    return Image.open(io.BytesIO(base64.b64decode(b64))).convert("RGB").tobytes()


def basic_headers(password: str) -> dict[str, str]:
    username = "admin"
    credentials = f"{username}:{password}"
    credentials = base64.b64encode(credentials.encode()).decode()
    return {"Authorization": f"Basic {credentials}", "Content-Type": "application/json"}


def test_a1111_documented_txt2img(served: Any, native: Any) -> None:
    url = served.url
    headers = basic_headers(served.key)
    payload = {
        "prompt": "apple",
        "negative_prompt": "red",
        "sampler_name": "DPM++ 2M Karras",
        "seed": 985454925,
        "cfg_scale": 7,
        "steps": STEPS,
        "width": SIZE,
        "height": SIZE,
        "batch_size": 2,
    }
    response = requests.post(url=f"{url}/sdapi/v1/txt2img", json=payload, headers=headers)
    r = response.json()
    image = Image.open(io.BytesIO(base64.b64decode(r["images"][0])))
    assert image.size == (SIZE, SIZE) and len(r["images"]) == 2
    info = json.loads(r["info"])
    assert info["all_seeds"] == [985454925, 985454926]
    assert "Seed: 985454926, Size: 64x64" in info["infotexts"][1]
    same = native(
        {
            "prompt": "apple",
            "negative_prompt": "red",
            "scheduler": "DPM++ 2M Karras",
            "seed": 985454926,
            "guidance_scale": 7,
            "num_inference_steps": STEPS,
            "width": SIZE,
            "height": SIZE,
        }
    )
    assert pixels(r["images"][1]) == same[0]
    assert requests.post(f"{url}/sdapi/v1/txt2img", json=payload).status_code == 401


def test_a1111_models_and_options(served: Any) -> None:
    url, headers = served.url, basic_headers(served.key)
    models = requests.get(url=f"{url}/sdapi/v1/sd-models", headers=headers).json()
    [tiny] = models
    assert tiny["model_name"] == "tiny" and tiny["title"].startswith("tiny.safetensors")
    payload = {"sd_model_checkpoint": tiny["title"]}
    response = requests.post(url=f"{url}/sdapi/v1/options", json=payload, headers=headers)
    assert response.status_code == 200
    assert (
        requests.get(f"{url}/sdapi/v1/options", headers=headers).json()["sd_model_checkpoint"]
        == tiny["title"]
    )
    bad = requests.post(
        f"{url}/sdapi/v1/options", json={"sd_model_checkpoint": "nope"}, headers=headers
    )
    assert bad.status_code == 422 and "sd_model_checkpoint" in bad.json()["detail"]


def test_a1111_every_listed_sampler_runs(served: Any) -> None:
    url, headers = served.url, basic_headers(served.key)
    names = [s["name"] for s in requests.get(f"{url}/sdapi/v1/samplers", headers=headers).json()]
    assert "Euler a" in names and "DPM++ 2M" in names
    failed = {}
    for name in names:
        payload = {
            "prompt": "x",
            "sampler_name": name,
            "steps": 2,
            "width": SIZE,
            "height": SIZE,
            "seed": 1,
        }
        r = requests.post(f"{url}/sdapi/v1/txt2img", json=payload, headers=headers)
        if r.status_code != 200 or len(r.json()["images"]) != 1:
            failed[name] = r.text[:200]
    assert failed == {}


def test_a1111_img2img_and_bad_requests(served: Any) -> None:
    url, headers = served.url, basic_headers(served.key)
    buf = io.BytesIO()
    Image.new("RGB", (SIZE, SIZE), (200, 30, 30)).save(buf, "PNG")
    init = base64.b64encode(buf.getvalue()).decode()
    mask = io.BytesIO()
    Image.new("L", (SIZE, SIZE), 255).save(mask, "PNG")
    body = {
        "prompt": "x",
        "init_images": [init],
        "mask": base64.b64encode(mask.getvalue()).decode(),
        "steps": 2,
        "width": SIZE,
        "height": SIZE,
        "seed": 3,
        "denoising_strength": 0.6,
    }
    r = requests.post(f"{url}/sdapi/v1/img2img", json=body, headers=headers)
    assert r.status_code == 200, r.text
    assert json.loads(r.json()["info"])["all_seeds"] == [3]
    for bad, field in [
        ({"prompt": "x", "width": 60}, "width"),
        ({"prompt": "x", "sampler_name": "Nope"}, "sampler_name"),
        ({"prompt": "x", "steps": 9999}, "steps"),
    ]:
        r = requests.post(f"{url}/sdapi/v1/txt2img", json=bad, headers=headers)
        assert r.status_code == 422 and field in r.json()["detail"], r.text


def test_salad_documented_task(served: Any, native: Any) -> None:
    base = f"{served.url}/api/beta/organizations/acme/inference-endpoints/tiny"
    headers = {"Salad-Api-Key": served.key}
    task = {
        "modelInputs": {
            "prompt": "An oil painting of a salad",
            "num_inference_steps": STEPS,
            "guidance_scale": 20,
            "width": SIZE,
            "height": SIZE,
            "seed": 77,
            "num_images_per_prompt": 2,
        },
        "callInputs": {
            "PIPELINE": "StableDiffusionPipeline",
            "SCHEDULER": "LMSDiscreteScheduler",
            "safety_checker": "true",
        },
    }
    created = requests.post(base, json=task, headers=headers)
    assert created.status_code == 202
    result_url = created.json()["resultUrl"]
    while True:
        result = requests.get(result_url, headers=headers).json()
        if result["status"] != "pending":
            break
        time.sleep(0.2)
    assert result["status"] == "success", result
    images = result["modelOutputs"]["images_base64"]
    assert len(images) == 2
    same = native(
        {
            "prompt": "An oil painting of a salad",
            "num_inference_steps": STEPS,
            "guidance_scale": 20,
            "width": SIZE,
            "height": SIZE,
            "seed": 78,
            "scheduler": "LMSDiscreteScheduler",
        }
    )
    assert pixels(images[1]) == same[0]
    bad = requests.post(base, json={"modelInputs": {"prompt": "x", "widht": 64}}, headers=headers)
    assert bad.status_code == 400 and "modelInputs.widht" in bad.json()["errors"]
    assert requests.post(base, json=task).status_code == 401


def test_stochastic_documented_loop(served: Any, native: Any) -> None:
    response_step1 = requests.post(
        url=f"{served.url}/v1/modelApi/submit/tiny",
        headers={"apiKey": served.key},
        json={
            "prompt": "A turtle swimming underwater, expressionist painting.",
            "params": {
                "img_height": SIZE,
                "img_width": SIZE,
                "num_inference_steps": STEPS,
                "guidance_scale": 7.5,
                "seed": 5,
            },
        },
    )
    response_step1.raise_for_status()
    data_step1 = response_step1.json()["data"]
    assert int(data_step1["queuePosition"]) >= 0
    img_generated = False
    while not img_generated:
        response_step2 = requests.get(data_step1["responseUrl"], headers={"apiKey": served.key})
        response_step2.raise_for_status()
        data_step2 = response_step2.json()["data"]
        generated_images = data_step2.get("generatedImages")
        img_generated = generated_images is not None
        time.sleep(0.2)
    fetched = requests.get(generated_images[0].get("presigned_url"))
    assert fetched.status_code == 200
    got = Image.open(io.BytesIO(fetched.content)).convert("RGB").tobytes()
    same = native(
        {
            "prompt": "A turtle swimming underwater, expressionist painting.",
            "height": SIZE,
            "width": SIZE,
            "num_inference_steps": STEPS,
            "guidance_scale": 7.5,
            "seed": 5,
        }
    )
    assert got == same[0]
    bad = requests.post(
        f"{served.url}/v1/modelApi/submit/tiny",
        headers={"apiKey": served.key},
        json={"prompt": "x", "params": {"max_length": 256}},
    )
    assert bad.status_code == 400 and bad.json()["success"] is False


def test_deepinfra_documented_curl_form(served: Any, native: Any) -> None:
    # curl -X POST -H "Authorization: bearer $TOKEN" -F 'prompt=...' .../v1/inference/MODEL
    r = requests.post(
        f"{served.url}/v1/inference/tiny",
        headers={"Authorization": f"bearer {served.key}"},
        files={
            k: (None, v)
            for k, v in {
                "prompt": "A photo of an astronaut riding a horse on Mars.",
                "num_images": "2",
                "seed": "42",
                "width": str(SIZE),
                "height": str(SIZE),
                "num_inference_steps": str(STEPS),
            }.items()
        },
    )
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["seed"] == 42 and len(body["images"]) == 2
    assert body["inference_status"]["runtime_ms"] > 0
    header, data = body["images"][1].split(",", 1)
    assert header == "data:image/png;base64"
    same = native(
        {
            "prompt": "A photo of an astronaut riding a horse on Mars.",
            "seed": 43,
            "width": SIZE,
            "height": SIZE,
            "num_inference_steps": STEPS,
        }
    )
    assert pixels(data) == same[0]
    bad = requests.post(
        f"{served.url}/v1/inference/tiny",
        headers={"Authorization": f"bearer {served.key}"},
        files={"prompt": (None, "x"), "num_images": (None, "9")},
    )
    assert bad.status_code == 422 and bad.json()["detail"][0]["loc"] == ["body", "num_images"]


@pytest.mark.parametrize(
    ("job_input", "check"),
    [
        (
            {
                "api": {"method": "POST", "endpoint": "/sdapi/v1/txt2img"},
                "payload": {
                    "prompt": "a",
                    "seed": 9,
                    "steps": 2,
                    "width": SIZE,
                    "height": SIZE,
                    "batch_size": 2,
                },
            },
            lambda out: json.loads(out["info"])["all_seeds"] == [9, 10] and len(out["images"]) == 2,
        ),
        (
            {
                "modelInputs": {
                    "prompt": "a",
                    "seed": 9,
                    "num_inference_steps": 2,
                    "width": SIZE,
                    "height": SIZE,
                },
                "callInputs": {"PIPELINE": "StableDiffusionPipeline"},
            },
            lambda out: bool(pixels(out["image_base64"])),
        ),
    ],
    ids=["a1111", "salad"],
)
def test_handler_envelopes_through_runsync(
    served: Any, job_input: dict[str, Any], check: Any
) -> None:
    r = requests.post(
        f"{served.url}/v2/local/runsync",
        json={"input": job_input},
        headers={"Authorization": f"Bearer {served.key}"},
        timeout=120,
    )
    body = r.json()
    assert body["status"] == "COMPLETED", body
    assert check(body["output"])
