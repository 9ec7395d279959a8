"""Every request format reaches SD 3.x and FLUX.1, through a real ``sdworker serve`` and the
clients people have: the ``openai`` package with a FLUX.1 hub id as its model, the
``deepinfra`` package on DeepInfra's FLUX.1 path, ``webuiapi`` as Forge serves FLUX.1
(``distilled_cfg_scale``, its infotext), Salad's ``MODEL_ID`` on an SD 3 model, and the
RunPod envelopes; each image is the native job's it stands for, and a field that does not
apply to the model's family is refused in each format's own shape, naming it and the family.
The models are tiny (256-pixel FLUX.1 schnell and SD 3), run at 64x64 in two steps."""

from __future__ import annotations

import base64
import io
from dataclasses import asdict
from typing import Any

import deepinfra
import openai
import pytest
import requests
import webuiapi
from PIL import Image

from tests.integration.serving import Served
from tests.integration.waits import PATIENCE_S, wait_until

SIZE = 64
STEPS = 2
FLOW = "FlowMatchEulerDiscreteScheduler"
FLUX_HUB = "black-forest-labs/FLUX.1-schnell"
SD35_HUB = "stabilityai/stable-diffusion-3.5-medium"


def pixels(b64: str) -> bytes:
    data = base64.b64decode(b64.partition(",")[2] if b64.startswith("data:") else b64)
    with Image.open(io.BytesIO(data)) as image:
        assert image.size == (SIZE, SIZE)
        return image.convert("RGB").tobytes()


def runsync(served: Served, job_input: dict[str, Any]) -> dict[str, Any]:
    answer = requests.post(
        f"{served.url}/v2/local/runsync",
        json={"input": job_input},
        headers={"Authorization": f"Bearer {served.key}"},
        timeout=PATIENCE_S,
    )
    body: dict[str, Any] = answer.json()
    return body


def native(served: Served, **fields: Any) -> list[bytes]:
    """The native job's images, each image's RGB pixels."""
    job = {"prompt": "a lighthouse", "width": SIZE, "height": SIZE, "num_inference_steps": STEPS}
    body = runsync(served, {**job, **fields})
    assert body["status"] == "COMPLETED", body
    return [pixels(o["image"]) for o in body["output"]]


# -- OpenAI ----------------------------------------------------------------------------------


def openai_client(served: Served) -> Any:
    return openai.OpenAI(base_url=served.url + "/v1", api_key=served.key, max_retries=0)


def test_the_openai_package_with_a_flux_hub_id(family_served: Served) -> None:
    response = openai_client(family_served).images.generate(
        model=FLUX_HUB,
        prompt="a lighthouse",
        n=2,
        size=f"{SIZE}x{SIZE}",
        response_format="b64_json",
        extra_body={"num_inference_steps": STEPS, "seed": 30},
    )
    made = [pixels(item.b64_json) for item in response.data]
    assert [item.model_extra["seed"] for item in response.data] == [30, 31]
    assert made == native(family_served, model="tiny-flux", seed=30, num_images=2)


def test_openai_refuses_a_field_flux_does_not_take_in_openais_shape(
    family_served: Served,
) -> None:
    with pytest.raises(openai.BadRequestError) as caught:
        openai_client(family_served).images.generate(
            model=FLUX_HUB,
            prompt="a lighthouse",
            size=f"{SIZE}x{SIZE}",
            extra_body={"num_inference_steps": STEPS, "use_compel": True},
        )
    error = caught.value.body
    assert isinstance(error, dict) and error["param"] == "use_compel"
    assert "does not apply to FLUX.1 models (model 'tiny-flux')" in error["message"]
    with pytest.raises(openai.BadRequestError) as caught:
        openai_client(family_served).images.generate(
            model=FLUX_HUB, prompt="a lighthouse", size="104x104"
        )
    error = caught.value.body
    assert isinstance(error, dict) and error["param"] == "size"
    assert "FLUX.1 models (model 'tiny-flux') cannot make 104x104" in error["message"]


def test_an_openai_edit_on_kontext_is_an_instruction_edit(family_served: Served) -> None:
    buf = io.BytesIO()
    Image.new("RGB", (SIZE, SIZE), (200, 30, 30)).save(buf, format="PNG")
    response = openai_client(family_served).images.edit(
        model="black-forest-labs/FLUX.1-Kontext-dev",
        image=("red.png", buf.getvalue(), "image/png"),
        prompt="make it blue",
        response_format="b64_json",
        extra_body={"num_inference_steps": STEPS, "seed": 4},
    )
    image = base64.b64encode(buf.getvalue()).decode()
    edited = native(
        family_served,
        model="tiny-flux-kontext",
        image=image,
        prompt="make it blue",
        seed=4,
        width=None,
        height=None,
    )
    assert [pixels(item.b64_json) for item in response.data] == edited


# -- DeepInfra -------------------------------------------------------------------------------


def test_the_deepinfra_package_on_deepinfras_flux_path(
    family_served: Served, monkeypatch: pytest.MonkeyPatch
) -> None:
    from deepinfra.types.text_to_image import TextToImageRequest

    monkeypatch.setenv("DEEPINFRA_API_KEY", family_served.key)
    url = f"{family_served.url}/v1/inference/black-forest-labs/FLUX-1-schnell"
    request = TextToImageRequest(
        prompt="a lighthouse", width=SIZE, height=SIZE, num_inference_steps=STEPS, seed=12
    )
    response = deepinfra.TextToImage(url).generate(asdict(request))
    assert response.seed == 12 and response.inference_status["status"] == "succeeded"
    assert [pixels(i) for i in response.images] == native(family_served, model="tiny-flux", seed=12)


def test_deepinfra_refuses_use_compel_on_flux_in_deepinfras_shape(family_served: Served) -> None:
    answer = requests.post(
        f"{family_served.url}/v1/inference/black-forest-labs/FLUX-1-schnell",
        headers={"Authorization": f"bearer {family_served.key}"},
        json={"prompt": "x", "width": SIZE, "height": SIZE, "use_compel": True},
        timeout=PATIENCE_S,
    )
    assert answer.status_code == 422
    [detail] = answer.json()["detail"]
    assert detail["loc"] == ["body", "use_compel"]
    assert "does not apply to FLUX.1 models (model 'tiny-flux')" in detail["msg"]


def test_deepinfra_sd35_aspect_ratio(family_served: Served) -> None:
    answer = requests.post(
        f"{family_served.url}/v1/inference/stabilityai/sd3.5-medium",
        headers={"Authorization": f"bearer {family_served.key}"},
        json={"prompt": "x", "aspect_ratio": "16:9", "num_inference_steps": 1, "seed": 1},
        timeout=PATIENCE_S,
    )
    assert answer.status_code == 200, answer.text
    data = base64.b64decode(answer.json()["images"][0].partition(",")[2])
    with Image.open(io.BytesIO(data)) as image:
        width, height = image.size
    assert width > height and width % 16 == height % 16 == 0  # about 256x256's pixels


# -- A1111 as Forge serves FLUX.1 ----------------------------------------------------------


@pytest.fixture(scope="module")
def webui(family_served: Served) -> Any:
    host, port = family_served.url.removeprefix("http://").split(":")
    return webuiapi.WebUIApi(
        host=host,
        port=int(port),
        username="admin",
        password=family_served.key,
        sampler="Euler",
        steps=STEPS,
    )


FORGE = {
    "prompt": "a lighthouse",
    "width": SIZE,
    "height": SIZE,
    "steps": STEPS,
    "seed": 21,
    "sampler_name": "Euler",
    "scheduler": "Simple",
    "cfg_scale": 1,
    "distilled_cfg_scale": 2.5,
    "override_settings": {"sd_model_checkpoint": "tiny-flux"},
}


def test_webuiapi_txt2img_on_flux_with_distilled_cfg_scale(
    webui: Any, family_served: Served
) -> None:
    result = webui.custom_post("txt2img", payload=FORGE, baseurl=True)
    text = result.info["infotexts"][0]
    assert "Sampler: Euler, Schedule type: Simple, CFG scale: 1, Distilled CFG Scale: 2.5" in text
    assert "Model: tiny-flux" in text and result.info["distilled_cfg_scale"] == 2.5
    # the PNG carries the same infotext, and the picture is the native job's
    assert webui.png_info(result.image).info == text
    same = native(family_served, model="tiny-flux", seed=21, guidance_scale=2.5, scheduler=FLOW)
    assert result.image.convert("RGB").tobytes() == same[0]


def test_webuiapi_txt2img_on_flux_with_its_own_arguments(webui: Any) -> None:
    """The client's own call (it cannot send distilled_cfg_scale): A1111's Euler runs as
    FLUX.1's flow-match Euler, at the model's own guidance."""
    result = webui.txt2img(
        prompt="a lighthouse",
        width=SIZE,
        height=SIZE,
        seed=3,
        cfg_scale=1,
        override_settings={"sd_model_checkpoint": "tiny-flux"},
    )
    assert result.image.size == (SIZE, SIZE)
    assert "Distilled CFG Scale: 0" in result.info["infotexts"][0]  # schnell's


def test_a1111_refuses_what_flux_does_not_take_in_a1111s_shape(webui: Any) -> None:
    with pytest.raises(RuntimeError) as caught:
        webui.txt2img(
            prompt="x",
            width=SIZE,
            height=SIZE,
            sampler_name="Euler a",
            override_settings={"sd_model_checkpoint": "tiny-flux"},
        )
    status, text = caught.value.args
    assert status == 422
    assert "sampler_name: Euler a does not run FLUX.1 models (model 'tiny-flux')" in text
    # webuiapi's default cfg_scale (7) is FLUX.1's true CFG, which needs a negative prompt
    assert "cfg_scale: is true CFG on FLUX.1 models" in text


def test_a1111_clip_skip_override_is_refused_on_flux_naming_the_option(
    family_served: Served,
) -> None:
    answer = requests.post(
        f"{family_served.url}/sdapi/v1/txt2img",
        auth=("admin", family_served.key),
        json={
            **FORGE,
            "override_settings": {**FORGE["override_settings"], "CLIP_stop_at_last_layers": 2},
        },
        timeout=PATIENCE_S,
    )
    assert answer.status_code == 422, answer.text
    detail = answer.json()["detail"]
    assert "override_settings.CLIP_stop_at_last_layers: does not apply to FLUX.1 models" in detail


# -- Salad -----------------------------------------------------------------------------------


def salad(served: Served, task: dict[str, Any]) -> requests.Response:
    return requests.post(
        f"{served.url}/api/beta/organizations/acme/inference-endpoints/sd35",
        json=task,
        headers={"Salad-Api-Key": served.key},
        timeout=PATIENCE_S,
    )


def salad_result(served: Served, created: requests.Response) -> dict[str, Any]:
    """The task's result once it is no longer pending (its ``resultUrl`` polled)."""
    assert created.status_code == 202, created.text
    headers = {"Salad-Api-Key": served.key}

    def done() -> dict[str, Any] | None:
        result = requests.get(created.json()["resultUrl"], headers=headers, timeout=60).json()
        return None if result["status"] == "pending" else result

    found: dict[str, Any] = wait_until(done, "the Salad task's result", every_s=0.2)
    return found


#: a small SD 3 task's model inputs
SALAD_INPUTS = {
    "prompt": "a lighthouse",
    "num_inference_steps": STEPS,
    "width": SIZE,
    "height": SIZE,
    "seed": 8,
}


def test_salad_model_id_on_an_sd3_model(family_served: Served) -> None:
    inputs = {**SALAD_INPUTS, "max_sequence_length": 64}
    task = {
        "modelInputs": inputs,
        "callInputs": {"MODEL_ID": SD35_HUB, "PIPELINE": "StableDiffusion3Pipeline"},
    }
    result = salad_result(family_served, salad(family_served, task))
    assert result["status"] == "success", result
    made = pixels(result["modelOutputs"]["image_base64"])
    assert [made] == native(family_served, model="tiny-sd3", seed=8, max_sequence_length=64)


def test_salad_refuses_a_flux_pipeline_for_an_sd3_model_and_flux_fields(
    family_served: Served,
) -> None:
    task = {
        "modelInputs": {"prompt": "x", "true_cfg_scale": 3},
        "callInputs": {"MODEL_ID": SD35_HUB, "PIPELINE": "FluxPipeline"},
    }
    refused = salad(family_served, task)
    assert refused.status_code == 400
    errors = refused.json()["errors"]
    assert (
        "is not a pipeline of SD 3.x models (model 'tiny-sd3')" in errors["callInputs.PIPELINE"][0]
    )
    task["callInputs"] = {"MODEL_ID": SD35_HUB}
    # the family field is the job's to refuse
    result = salad_result(family_served, salad(family_served, task))
    assert result["status"] == "failed"
    assert "modelInputs.true_cfg_scale: does not apply to SD 3.x models" in str(result)


# -- the RunPod envelopes ------------------------------------------------------------------


def test_an_a1111_envelope_on_flux_answers_as_the_http_route(
    family_served: Served, webui: Any
) -> None:
    body = runsync(
        family_served,
        {"api": {"method": "POST", "endpoint": "/sdapi/v1/txt2img"}, "payload": FORGE},
    )
    assert body["status"] == "COMPLETED", body
    over_http = webui.custom_post("txt2img", payload=FORGE, baseurl=True)
    assert pixels(body["output"]["images"][0]) == over_http.image.convert("RGB").tobytes()
    assert "Distilled CFG Scale: 2.5" in body["output"]["info"]


def test_a_salad_envelope_on_sd3_and_its_refusal_naming_the_family(family_served: Served) -> None:
    inputs = SALAD_INPUTS
    body = runsync(family_served, {"modelInputs": inputs, "callInputs": {"MODEL_ID": SD35_HUB}})
    assert body["status"] == "COMPLETED", body
    assert [pixels(body["output"]["image_base64"])] == native(
        family_served, model="tiny-sd3", seed=8
    )
    refused = runsync(
        family_served,
        {"modelInputs": {**inputs, "clip_skip": 2}, "callInputs": {"MODEL_ID": "tiny-flux"}},
    )
    assert refused["status"] == "FAILED"
    assert (
        "modelInputs.clip_skip: does not apply to FLUX.1 models (model 'tiny-flux')"
        in refused["error"]
    )
