"""The A1111 routes beyond txt2img/img2img: listings, png-info, extras, interrupt, options."""

from __future__ import annotations

import asyncio
import base64
import io
import json
import subprocess
import zlib
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient
from PIL import Image, PngImagePlugin

from sdworker.core.assets import AssetRegistry
from sdworker.core.jobs import JobView, Status
from sdworker.core.models import ModelRegistry
from sdworker.formats.a1111 import listings
from sdworker.formats.a1111.pnginfo import parse_infotext, png_text
from tests.unit.formats.conftest import FakeGateway, make_client

INFOTEXT = (
    "a cat, sitting\nNegative prompt: blur\nSteps: 20, Sampler: Euler a, CFG scale: 7, Seed: 1, "
    'Size: 512x768, Model: tiny, Hires prompt: "a, tiger", Hires upscale: 2'
)


def png(text: dict[str, str] | None = None, *, zipped: bool = False) -> bytes:
    info = PngImagePlugin.PngInfo()
    for key, value in (text or {}).items():
        if zipped:
            info.add_itxt(key, value, zip=True)
        else:
            info.add_text(key, value)
    buf = io.BytesIO()
    Image.new("RGB", (8, 8)).save(buf, "PNG", pnginfo=info)
    return buf.getvalue()


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        ("/sdapi/v1/sd-vae", []),
        ("/sdapi/v1/embeddings", {"loaded": {}, "skipped": {}}),
        ("/sdapi/v1/scripts", {"txt2img": [], "img2img": []}),
        ("/sdapi/v1/script-info", []),
        ("/sdapi/v1/prompt-styles", []),
        ("/sdapi/v1/face-restorers", []),
        ("/sdapi/v1/loras", []),
    ],
)
def test_empty_listings_in_a1111_shape(client: TestClient, path: str, expected: Any) -> None:
    r = client.get(path)
    assert r.status_code == 200 and r.json() == expected


def test_upscalers_and_latent_modes(client: TestClient) -> None:
    names = [u["name"] for u in client.get("/sdapi/v1/upscalers").json()]
    assert names == ["None", "Lanczos", "Nearest"]
    modes = [m["name"] for m in client.get("/sdapi/v1/latent-upscale-modes").json()]
    assert modes[0] == "Latent" and len(modes) == 6 and "Latent (nearest-exact)" in modes


def test_loras_lists_the_baked_and_volume_files(tmp_path: Path) -> None:
    from sdworker.core.settings import Settings
    from tests.loras import write_safetensors

    key = "unet.a.attn2.to_k.lora_A.weight"
    write_safetensors(tmp_path / "models" / "loras" / "ink.safetensors", {key: (4, 8)})
    (tmp_path / "models" / "loras" / "notes.txt").write_text("x")
    (tmp_path / "models" / "loras" / "broken.safetensors").write_bytes(b"x")
    volume = tmp_path / "volume" / "models" / "loras"
    write_safetensors(volume / "style" / "sea.safetensors", {key: (4, 8)}, {"ss_network_dim": "4"})
    settings = Settings(models_dir=tmp_path / "models", volume_dir=tmp_path / "volume")
    baked, sea = listings.loras(AssetRegistry(settings))
    assert baked["name"] == "ink" and baked["path"].endswith("loras/ink.safetensors")
    # <lora:style/sea:1> names it; its kohya metadata is shown as A1111 shows it
    assert (sea["name"], sea["alias"], sea["metadata"]) == (
        "style/sea",
        "style/sea",
        {"ss_network_dim": "4"},
    )


def test_embeddings_are_loaded_when_they_fit_the_default_model(tmp_path: Path) -> None:
    import shutil

    from sdworker.core.manifest import Manifest
    from sdworker.core.models import ModelInfo
    from sdworker.core.settings import Settings
    from tests.loras import write_safetensors

    model = tmp_path / "models" / "tiny"
    (model / "text_encoder").mkdir(parents=True)
    (model / "text_encoder" / "config.json").write_text(json.dumps({"hidden_size": 768}))
    folder = tmp_path / "models" / "embeddings"
    write_safetensors(folder / "badhand.safetensors", {"emb_params": (2, 768)})
    write_safetensors(folder / "xl.safetensors", {"clip_l": (1, 768), "clip_g": (1, 1280)})
    settings = Settings(models_dir=tmp_path / "models", volume_dir=tmp_path / "volume")
    manifest = Manifest("tiny", "sd1", 64, 64, "PNDMScheduler", False)
    answer = listings.embeddings(AssetRegistry(settings), ModelInfo(manifest, model))
    entry = {"step": None, "sd_checkpoint": None, "sd_checkpoint_name": None}
    assert answer == {
        "loaded": {"badhand": {**entry, "shape": 768, "vectors": 2}},
        "skipped": {"xl": {**entry, "shape": 2048, "vectors": 1}},
    }
    shutil.rmtree(model / "text_encoder")  # no width known: nothing is loaded
    assert set(
        listings.embeddings(AssetRegistry(settings), ModelInfo(manifest, model))["skipped"]
    ) == {"badhand", "xl"}


def test_cmd_flags_and_memory(client: TestClient) -> None:
    flags = client.get("/sdapi/v1/cmd-flags").json()
    assert flags["api"] is True and flags["nowebui"] is True and flags["api_auth"] is None
    memory = client.get("/sdapi/v1/memory").json()
    ram = memory["ram"]
    assert ram["total"] > ram["used"] > 0 and ram["free"] == ram["total"] - ram["used"]
    assert memory["cuda"] == listings.device_memory()


def test_device_memory_is_the_drivers_reading() -> None:
    asked: list[list[str]] = []

    def smi(argv: Sequence[str]) -> str:
        asked.append(list(argv))
        return "81559, 1024, 80535\n81559, 0, 81559\n"

    mib = 1024 * 1024
    reading = listings.device_memory(smi)
    assert reading == {"system": {"free": 80535 * mib, "used": 1024 * mib, "total": 81559 * mib}}
    assert asked == [list(listings.NVIDIA_SMI)]


def test_device_memory_without_a_reading_is_an_error() -> None:
    def failing(argv: Sequence[str]) -> str:
        raise subprocess.CalledProcessError(9, list(argv))

    assert "CalledProcessError" in listings.device_memory(failing)["error"]
    assert "ValueError" in listings.device_memory(lambda argv: "N/A, N/A, N/A")["error"]


def test_memory_reads_proc(tmp_path: Path) -> None:
    meminfo = tmp_path / "meminfo"
    meminfo.write_text("MemTotal:       2048 kB\nMemAvailable:   1024 kB\nHugePages_Total: 0\n")
    assert listings._meminfo(meminfo) == {
        "MemTotal": 2048 * 1024,
        "MemAvailable": 1024 * 1024,
        "HugePages_Total": 0,
    }


# -- png-info -----------------------------------------------------------------------------


def test_png_info_reads_the_parameters_chunk(client: TestClient) -> None:
    data = png({"parameters": INFOTEXT, "Software": "sdworker"})
    r = client.post("/sdapi/v1/png-info", json={"image": "data:image/png;base64," + b64(data)})
    assert r.status_code == 200
    body = r.json()
    assert body["info"] == INFOTEXT and body["items"] == {"Software": "sdworker"}
    params = body["parameters"]
    assert params["Prompt"] == "a cat, sitting" and params["Negative prompt"] == "blur"
    assert (params["Size-1"], params["Size-2"]) == ("512", "768")
    assert params["Hires prompt"] == "a, tiger" and params["Sampler"] == "Euler a"


def test_png_info_reads_compressed_chunks() -> None:
    assert png_text(png({"parameters": INFOTEXT}, zipped=True))["parameters"] == INFOTEXT
    ztxt = b"parameters\0\0" + zlib.compress(b"x" * 10)
    chunk = len(ztxt).to_bytes(4, "big") + b"zTXt" + ztxt + b"\0\0\0\0"
    data = png()
    spliced = data[:33] + chunk + data[33:]
    assert png_text(spliced)["parameters"] == "x" * 10


def test_png_info_without_parameters(client: TestClient) -> None:
    buf = io.BytesIO()
    Image.new("RGB", (8, 8)).save(buf, "JPEG")
    for data in (png(), buf.getvalue()):
        r = client.post("/sdapi/v1/png-info", json={"image": b64(data)})
        assert r.status_code == 200 and r.json() == {"info": "", "items": {}, "parameters": {}}


@pytest.mark.parametrize(
    "image",
    ["", "%%%", b64(b"just text"), b64(png()[:40]), b64(png()[:-12])],
    ids=["empty", "not-base64", "not-an-image", "truncated", "no-iend"],
)
def test_png_info_refuses_bad_images(client: TestClient, image: str) -> None:
    r = client.post("/sdapi/v1/png-info", json={"image": image})
    assert r.status_code == 422 and "image" in r.json()["detail"]


def test_png_info_caps_inflated_text() -> None:
    bomb = b"parameters\0\0" + zlib.compress(b"x" * (2 * 1024 * 1024))
    chunk = len(bomb).to_bytes(4, "big") + b"zTXt" + bomb + b"\0\0\0\0"
    data = png()
    with pytest.raises(Exception, match="over"):
        png_text(data[:33] + chunk + data[33:])


def test_parse_infotext_keeps_a_prompt_without_parameters() -> None:
    assert parse_infotext("just a prompt")["Prompt"] == "just a prompt"


# -- extras -------------------------------------------------------------------------------


def test_extra_single_image_submits_the_upscale_job(
    registry: ModelRegistry,
) -> None:
    seen: list[dict[str, Any]] = []

    def run(job: dict[str, Any]) -> list[dict[str, Any]]:
        seen.append(job)
        return [{"image": b64(png()), "seed": 0, "format": "png"}]

    client = make_client(registry, FakeGateway(run))
    body = {"image": b64(png()), "upscaling_resize": 3, "upscaler_1": "Lanczos"}
    r = client.post("/sdapi/v1/extra-single-image", json=body)
    assert r.status_code == 200 and r.json()["image"] == b64(png())
    assert "Postprocess upscale by: 3" in r.json()["html_info"]
    assert seen[0]["upscale"] == {
        "scale": 3.0,
        "width": None,
        "height": None,
        "upscaler": "lanczos",
    }
    # to a size: scaled to cover it (8x8 → 64x64 covers 64x16), then centred on a 64x16 canvas
    body = {
        "image": b64(png()),
        "resize_mode": 1,
        "upscaling_resize_w": 64,
        "upscaling_resize_h": 16,
        "upscaler_1": "Nearest",
    }
    r = client.post("/sdapi/v1/extra-single-image", json=body)
    assert seen[1]["upscale"] == {"scale": 8.0, "width": 64, "height": 64, "upscaler": "nearest"}
    assert Image.open(io.BytesIO(base64.b64decode(r.json()["image"]))).size == (64, 16)
    r = client.post("/sdapi/v1/extra-single-image", json={**body, "upscaling_crop": False})
    assert seen[2]["upscale"]["width"] == 64 and r.json()["image"] == b64(png())


def test_extra_single_image_with_no_upscaler_is_the_image(client: TestClient) -> None:
    r = client.post("/sdapi/v1/extra-single-image", json={"image": b64(png())})
    assert r.status_code == 200 and r.json() == {"html_info": "", "image": b64(png())}


def test_extra_single_image_refuses_upscalers_we_lack(client: TestClient) -> None:
    body = {"image": b64(png()), "upscaler_1": "R-ESRGAN 4x+", "gfpgan_visibility": 0.5}
    r = client.post("/sdapi/v1/extra-single-image", json=body)
    detail = r.json()["detail"]
    assert r.status_code == 422 and "upscaler_1" in detail and "gfpgan_visibility" in detail
    assert "Lanczos" in detail


# -- interrupt ----------------------------------------------------------------------------


class InterruptibleGateway(FakeGateway):
    """Jobs run until interrupted; an interrupted job completes with its image as it stood."""

    def __init__(self) -> None:
        super().__init__(auto=False)
        self.interrupted: list[str] = []

    async def wait(self, job_id: str, timeout_s: float) -> JobView | None:
        await asyncio.sleep(0.01)
        return self.jobs.get(job_id)

    async def interrupt(self, job_id: str) -> JobView | None:
        view = self.jobs[job_id]
        self.interrupted.append(job_id)
        view.output = [{"image": b64(png()), "seed": view.input["seed"], "interrupted": True}]
        view.status = Status.COMPLETED
        return view


def test_interrupt_answers_with_the_image_as_it_stood(registry: ModelRegistry) -> None:
    gateway = InterruptibleGateway()
    app = make_client(registry, gateway).app

    async def scenario() -> httpx.Response:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as http:
            call = asyncio.create_task(
                http.post("/sdapi/v1/txt2img", json={"prompt": "x", "seed": 7})
            )
            while not gateway.jobs:
                await asyncio.sleep(0.01)
            assert (await http.post("/sdapi/v1/interrupt")).json() == {}
            return await call

    r = asyncio.run(scenario())
    assert r.status_code == 200 and len(r.json()["images"]) == 1
    assert gateway.interrupted == list(gateway.jobs)


def test_options_route_keeps_every_known_name(client: TestClient) -> None:
    r = client.post("/sdapi/v1/options", json={"live_previews_enable": False})
    assert r.status_code == 200
    assert client.get("/sdapi/v1/options").json()["live_previews_enable"] is False
    r = client.post("/sdapi/v1/options", json={"live_previews_enabled": False})
    assert r.status_code == 422 and "live_previews_enable" in r.json()["detail"]


def saved_options_client(registry: ModelRegistry, state: Path, saved: dict[str, Any]) -> TestClient:
    """A1111 routes over an endpoint whose state directory holds ``saved`` options."""
    from fastapi import FastAPI

    from sdworker.core.settings import Settings
    from sdworker.formats.a1111.options import STORE_NAME
    from sdworker.formats.a1111.routes import a1111_router
    from sdworker.formats.base import FormatContext

    state.mkdir(exist_ok=True)
    (state / STORE_NAME).write_text(json.dumps(saved))
    settings = Settings(models_dir=Path("/models"), state_dir=state)
    app = FastAPI()
    app.include_router(a1111_router(FormatContext(registry, settings, lambda r: None)))
    return TestClient(app)


def test_saved_options_come_back_after_a_restart(registry: ModelRegistry, tmp_path: Path) -> None:
    saved = {"sd_model_checkpoint": "v1-5-pruned-emaonly", "live_previews_enable": False}
    client = saved_options_client(registry, tmp_path / "state", saved)
    shown = client.get("/sdapi/v1/options").json()
    assert shown["live_previews_enable"] is False
    assert shown["sd_model_checkpoint"].startswith("v1-5-pruned-emaonly")
    assert registry.default_name == "v1-5-pruned-emaonly"
    client.post("/sdapi/v1/options", json={"jpeg_quality": 90})
    assert json.loads((tmp_path / "state" / "a1111-options.json").read_text())["jpeg_quality"] == 90


def test_a_saved_checkpoint_no_longer_baked_is_forgotten(
    registry: ModelRegistry, tmp_path: Path
) -> None:
    client = saved_options_client(registry, tmp_path / "state", {"sd_model_checkpoint": "gone"})
    assert client.get("/sdapi/v1/options").json()["sd_model_checkpoint"].startswith("tiny")
