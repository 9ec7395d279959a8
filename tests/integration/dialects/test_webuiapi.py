"""The ``webuiapi`` package (A1111's most used Python client) against ``sdworker serve``.

Every call a new user would try, through the client itself with HTTP Basic auth, on the tiny
model (64x64, two steps, so it is quick on a CPU).
"""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

import pytest
import requests
import webuiapi
from PIL import Image

from tests.integration.waits import PATIENCE_S

SIZE = 64
STEPS = 2


@pytest.fixture(scope="module")
def api(served: Any) -> Any:
    """A client as its README makes one: host, port, user and password (the API key)."""
    host, port = served.url.removeprefix("http://").split(":")
    client = webuiapi.WebUIApi(
        host=host, port=int(port), username="admin", password=served.key, steps=STEPS
    )
    assert client.has_controlnet is False  # set_auth read /scripts
    return client


@pytest.fixture(scope="module")
def baked_lora(dialect_models: Path) -> str:
    """A LoRA baked next to the tiny model (listings read the folder each time)."""
    from sdworker.builder.loras import bake_loras
    from tests.integration.features.conftest import make_tiny_lora

    made = make_tiny_lora(dialect_models / "tiny", dialect_models / "made" / "ink.safetensors", 3)
    bake_loras(dialect_models, [made])
    return "ink"


def small(**kw: Any) -> dict[str, Any]:
    return {"width": SIZE, "height": SIZE, "steps": STEPS, "seed": 11, **kw}


def test_txt2img_and_img2img(api: Any) -> None:
    result = api.txt2img(prompt="a red cube", **small())
    assert len(result.images) == 1 and result.image.size == (SIZE, SIZE)
    assert result.info["seed"] == 11 and result.info["all_seeds"] == [11]
    assert "Steps: 2" in result.info["infotexts"][0]
    again = api.img2img(
        images=[result.image], prompt="a blue cube", denoising_strength=0.5, **small()
    )
    assert again.image.size == (SIZE, SIZE)


def test_listings(api: Any, baked_lora: str) -> None:
    assert any(m["model_name"] == "tiny" for m in api.get_sd_models())
    assert "Euler a" in [s["name"] for s in api.get_samplers()]
    assert "sgm_uniform" in [s["name"] for s in api.get_schedulers()]
    assert baked_lora in [lora["name"] for lora in api.get_loras()]
    assert api.session.post(f"{api.baseurl}/refresh-loras").status_code == 200
    assert api.get_sd_vae() == []
    assert api.get_embeddings() == {"loaded": {}, "skipped": {}}
    assert [u["name"] for u in api.get_upscalers()] == ["None", "Lanczos", "Nearest"]
    assert len(api.get_latent_upscale_modes()) == 6
    assert api.get_scripts() == {"txt2img": [], "img2img": []}
    assert api.session.get(f"{api.baseurl}/script-info").json() == []
    assert api.get_cmd_flags()["api"] is True
    memory = api.get_memory()
    assert memory["ram"]["total"] > 0 and "cuda" in memory
    assert api.get_prompt_styles() == []
    assert api.get_face_restorers() == []


def test_png_info_reads_what_txt2img_wrote(api: Any) -> None:
    made = api.txt2img(prompt="a green cone", **small(seed=21))
    read = api.png_info(made.image)
    assert read.info == made.info["infotexts"][0]
    assert read.parameters["Prompt"] == "a green cone" and read.parameters["Seed"] == "21"
    assert (read.parameters["Size-1"], read.parameters["Size-2"]) == (str(SIZE), str(SIZE))


def test_options_round_trip(api: Any, served: Any) -> None:
    options = api.get_options()
    assert len(options) >= 300 and options["live_previews_enable"] is True
    api.set_options({"live_previews_enable": False, "samples_format": "png"})
    assert api.get_options()["live_previews_enable"] is False
    wrong = api.session.post(f"{api.baseurl}/options", json={"live_preview_enable": False})
    assert wrong.status_code == 422 and "live_previews_enable" in wrong.json()["detail"]
    api.set_options({"live_previews_enable": True})


def test_scripts_by_name_are_refused(api: Any) -> None:
    with pytest.raises(RuntimeError, match=r"alwayson_scripts\.ADetailer"):
        api.txt2img(prompt="x", alwayson_scripts={"ADetailer": {"args": [True]}}, **small())


def test_every_listed_sampler_and_schedule_type(api: Any) -> None:
    failed = {}
    samplers = [s["name"] for s in api.get_samplers()]
    schedules = [s["name"] for s in api.get_schedulers()]
    runs = [(name, "automatic") for name in samplers] + [("Euler", s) for s in schedules]
    runs += [("DPM++ 2M", s) for s in schedules]
    for sampler, schedule in runs:
        try:
            result = api.txt2img(prompt="x", sampler_name=sampler, scheduler=schedule, **small())
            assert len(result.images) == 1
        except (RuntimeError, AssertionError) as exc:
            failed[f"{sampler} / {schedule}"] = str(exc)[:200]
    assert failed == {}


def test_hires_fix_makes_the_upscaled_size_and_repeats(api: Any) -> None:
    hires = {"enable_hr": True, "hr_scale": 2, "denoising_strength": 0.6, **small(seed=5)}
    first = api.txt2img(prompt="a lighthouse", **hires)
    second = api.txt2img(prompt="a lighthouse", **hires)
    assert first.image.size == (2 * SIZE, 2 * SIZE)
    assert first.image.tobytes() == second.image.tobytes()
    infotext = first.info["infotexts"][0]
    assert "Hires upscale: 2" in infotext and "Hires upscaler: Latent" in infotext
    # one infotext: the worker's PNG chunk says what A1111's info says
    assert first.image.info["parameters"] == infotext
    for upscaler in (webuiapi.HiResUpscaler.Lanczos, webuiapi.HiResUpscaler.LatentNearestExact):
        resized = api.txt2img(
            prompt="a lighthouse", enable_hr=True, hr_resize_x=96, hr_upscaler=upscaler, **small()
        )
        assert resized.image.size == (96, 96)
        assert resized.image.info["parameters"] == resized.info["infotexts"][0]


def test_hires_refuses_upscalers_it_lacks(api: Any) -> None:
    with pytest.raises(RuntimeError, match="hr_upscaler"):
        api.txt2img(prompt="x", enable_hr=True, hr_upscaler="R-ESRGAN 4x+", **small())


def test_extra_single_image(api: Any) -> None:
    image = Image.new("RGB", (SIZE, SIZE), (200, 30, 30))
    result = api.extra_single_image(image, upscaler_1=webuiapi.Upscaler.Lanczos, upscaling_resize=2)
    assert result.image.size == (2 * SIZE, 2 * SIZE)
    fitted = api.extra_single_image(
        image,
        resize_mode=1,
        upscaling_resize_w=96,
        upscaling_resize_h=64,
        upscaler_1=webuiapi.Upscaler.Nearest,
    )
    assert fitted.image.size == (96, 64)
    same = api.extra_single_image(image)  # upscaler_1 "None": the image as it is
    assert same.image.size == (SIZE, SIZE)


def test_interrupt_answers_with_the_image_as_it_stood(api: Any) -> None:
    answer: dict[str, Any] = {}

    def call() -> None:
        try:
            answer["result"] = api.txt2img(prompt="a long one", **small(steps=400))
        except Exception as exc:
            answer["error"] = exc

    thread = threading.Thread(target=call)
    thread.start()
    deadline = time.monotonic() + PATIENCE_S
    while api.get_progress()["state"]["sampling_step"] < 1 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert api.interrupt() == {}
    thread.join(timeout=PATIENCE_S)
    assert "error" not in answer, answer.get("error")
    assert len(answer["result"].images) == 1
    assert answer["result"].image.size == (SIZE, SIZE)


def test_interrupt_when_idle(api: Any, served: Any) -> None:
    r = requests.post(f"{served.url}/sdapi/v1/interrupt", auth=("admin", served.key), timeout=10)
    assert r.status_code == 200 and r.json() == {}
