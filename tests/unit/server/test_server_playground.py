"""The playground page and its config route, the offline docs, and the OpenAPI document."""

from __future__ import annotations

import base64
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from sdworker.core.manifest import Manifest
from sdworker.core.models import ModelRegistry
from sdworker.core.settings import Settings
from sdworker.formats.registry import routers
from sdworker.server.app import create_app
from sdworker.server.clock import ManualClock
from tests.loras import write_safetensors


@pytest.fixture
def baked(settings: Settings, tmp_path: Path) -> Settings:
    """Two baked models (manifests only: nothing here loads weights) and one LoRA."""
    root = tmp_path / "models"
    for name, family, side in (("base", "sd1", 512), ("xl", "sdxl", 1024)):
        (root / name).mkdir(parents=True)
        Manifest(name, family, side, side, "PNDMScheduler", False).write(root / name)  # type: ignore[arg-type]
    lora = {"unet.a.attn2.to_k.lora_A.weight": (4, 8)}
    write_safetensors(root / "loras" / "ink.safetensors", lora)
    (root / "loras" / "empty.safetensors").write_bytes(b"")  # not safetensors: not offered
    return settings.with_(models_dir=root, default_model="xl", volume_dir=tmp_path / "no-volume")


def app_client(settings: Settings, clock: ManualClock) -> Iterator[TestClient]:
    app = create_app(
        settings,
        clock=clock,
        workers=0,
        extra_routers=routers(ModelRegistry(settings), settings),
    )
    with TestClient(app) as client:
        yield client


@pytest.fixture
def client(baked: Settings, clock: ManualClock) -> Iterator[TestClient]:
    yield from app_client(baked, clock)


@pytest.fixture
def keyed(baked: Settings, clock: ManualClock) -> Iterator[TestClient]:
    yield from app_client(baked.with_(api_key="k"), clock)


def assets_of(html: str) -> list[str]:
    return re.findall(r'(?:src|href)=["\']([^"\']+)', html)


def test_the_page_and_its_assets_are_served_from_here(client: TestClient) -> None:
    page = client.get("/")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert "default-src 'self'" in page.headers["content-security-policy"]
    assets = [a for a in assets_of(page.text) if a not in ("docs", "redoc", "data:,")]
    assert sorted(assets) == ["static/playground/playground.css", "static/playground/playground.js"]
    for asset in assets:
        assert client.get("/" + asset).status_code == 200, asset
    assert "http" not in client.get("/static/playground/playground.js").text.replace(
        "HttpError", ""
    )


def test_config_lists_models_samplers_loras_and_limits(client: TestClient) -> None:
    config = client.get("/playground/config").json()
    assert config["endpoint_id"] == "local"
    assert config["default_model"] == "xl"
    assert [(m["name"], m["family"], m["width"]) for m in config["models"]] == [
        ("base", "sd1", 512),
        ("xl", "sdxl", 1024),
    ]
    samplers = {s["name"]: s["schedules"] for s in config["samplers"]}
    assert "Karras" in samplers["DPM++ 2M"] and samplers["DDIM"] == []
    assert config["loras"] == ["ink"]
    assert config["limits"] | {"max_pixels": 0} == {
        "min_side": 64,
        "max_side": 2048,
        "side_step": 8,
        "max_pixels": 0,
        "max_images": 8,
        "max_steps": 500,
        "max_guidance": 30.0,
        "max_seed": 2**32 - 1,
    }


def test_with_a_key_the_page_is_public_and_the_config_is_not(keyed: TestClient) -> None:
    assert keyed.get("/").status_code == 200
    assert keyed.get("/static/playground/playground.js").status_code == 200
    assert keyed.get("/static/docs/swagger-ui-bundle.js").status_code == 200
    refused = keyed.get("/playground/config")
    assert refused.status_code == 401 and "error" in refused.json()
    assert keyed.get("/playground/config", headers={"Authorization": "Bearer k"}).status_code == 200
    assert keyed.get("/playground/config", headers={"Authorization": "k"}).status_code == 200


def basic(user: str, password: str) -> dict[str, str]:
    token = base64.b64encode(f"{user}:{password}".encode()).decode()
    return {"Authorization": f"Basic {token}"}


def test_docs_take_the_key_as_a_basic_password_and_the_api_keeps_its_rules(
    keyed: TestClient,
) -> None:
    refused = keyed.get("/docs")
    assert refused.status_code == 401
    assert refused.headers["www-authenticate"] == 'Basic realm="sdworker docs"'
    assert "error" in refused.json()
    for path in ("/docs", "/redoc", "/openapi.json"):
        assert keyed.get(path, headers=basic("anyone", "k")).status_code == 200, path
        assert keyed.get(path, headers=basic("anyone", "nope")).status_code == 401, path
    malformed = keyed.get("/docs", headers={"Authorization": "Basic %%%"})
    assert malformed.status_code == 401 and "error" in malformed.json()
    # the native API takes the key as today: bare or Bearer, never Basic
    assert keyed.get("/v2/local/health", headers=basic("anyone", "k")).status_code == 401
    assert keyed.get("/v2/local/health", headers={"Authorization": "Bearer k"}).status_code == 200


def test_docs_pages_load_nothing_from_elsewhere(client: TestClient) -> None:
    for path, expected in (
        ("/docs", {"swagger-ui-bundle.js", "swagger-ui.css", "favicon.png"}),
        ("/redoc", {"redoc.standalone.js", "favicon.png"}),
    ):
        page = client.get(path)
        assert page.headers["content-security-policy"] == "img-src 'self' data:"
        assets = assets_of(page.text)
        assert {a.rsplit("/", 1)[-1] for a in assets} == expected, assets
        for asset in assets:
            assert asset.startswith("/static/docs/"), asset
            assert client.get(asset).status_code == 200, asset
        assert "fonts.googleapis" not in page.text and "cdn." not in page.text
    assert '"validatorUrl": null' in client.get("/docs").text


def test_openapi_declares_security_schemes_and_request_bodies(client: TestClient) -> None:
    doc = client.get("/openapi.json").json()
    schemes = doc["components"]["securitySchemes"]
    assert schemes["bearer"] == {
        "type": "http",
        "scheme": "bearer",
        "description": schemes["bearer"]["description"],
    }
    assert schemes["basic"]["scheme"] == "basic"
    assert schemes["apiKey"] | {"description": ""} == {
        "type": "apiKey",
        "in": "header",
        "name": "Authorization",
        "description": "",
    }
    assert schemes["saladApiKey"]["name"] == "Salad-Api-Key"
    assert schemes["stochasticApiKey"]["name"] == "apiKey"

    paths = doc["paths"]
    run = paths["/v2/{endpoint_id}/run"]["post"]
    assert {"bearer": []} in run["security"] and {"apiKey": []} in run["security"]
    assert {"basic": []} in paths["/sdapi/v1/txt2img"]["post"]["security"]
    assert {"saladApiKey": []} in paths[
        "/api/beta/organizations/{organization}/inference-endpoints/{endpoint}"
    ]["post"]["security"]
    assert paths["/playground/config"]["get"]["security"] == run["security"]

    with_body = {
        "/v2/{endpoint_id}/run": ["application/json"],
        "/v2/{endpoint_id}/runsync": ["application/json"],
        "/run": ["application/json"],
        "/runsync": ["application/json"],
        "/sdapi/v1/txt2img": ["application/json"],
        "/sdapi/v1/img2img": ["application/json"],
        "/sdapi/v1/options": ["application/json"],
        "/api/beta/organizations/{organization}/inference-endpoints/{endpoint}": [
            "application/json"
        ],
        "/v1/modelApi/submit/{model}": ["application/json"],
        "/v1/inference/{model}": ["application/json", "multipart/form-data"],
    }
    for path, types in with_body.items():
        body = paths[path]["post"]["requestBody"]
        assert sorted(body["content"]) == types, path
        assert body["content"]["application/json"]["schema"]["type"] == "object", path
    img2img = paths["/sdapi/v1/img2img"]["post"]["requestBody"]["content"]["application/json"]
    assert img2img["schema"]["required"] == ["init_images"]
    form = paths["/v1/inference/{model}"]["post"]["requestBody"]["content"]["multipart/form-data"]
    assert form["schema"]["properties"]["image"]["format"] == "binary"


def test_the_server_imports_no_model_code() -> None:
    script = (
        "import sys\n"
        "import sdworker.server.app, sdworker.server.cli, sdworker.server.playground\n"
        "import sdworker.formats.openapi\n"
        "from sdworker.formats.registry import routers\n"
        "import sdworker.formats.a1111.routes, sdworker.formats.deepinfra\n"
        "heavy = ('torch', 'diffusers', 'sdworker.gpu.pipelines', 'sdworker.gpu.generate',"
        " 'sdworker.runpod.adapter')\n"
        "print([m for m in heavy if m in sys.modules])\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=120, check=True
    )
    assert done.stdout.strip() == "[]", done.stdout + done.stderr


@pytest.fixture
def families_baked(settings: Settings, tmp_path: Path) -> Settings:
    """An SD 1.x, an SDXL with a refiner, a FLUX.1 schnell (its own defaults), a Fill and an
    SD 3.x model: manifests only."""
    root = tmp_path / "family-models"
    models = (
        Manifest("base", "sd1", 512, 512, "PNDMScheduler", False),
        Manifest("xl", "sdxl", 1024, 1024, "EulerDiscreteScheduler", False, refiner="hub:r"),
        Manifest(
            "schnell",
            "flux",
            1024,
            1024,
            "FlowMatchEulerDiscreteScheduler",
            False,
            defaults={"num_inference_steps": 4, "guidance_scale": 0.0, "max_sequence_length": 256},
        ),
        Manifest("fill", "flux-fill", 1024, 1024, "FlowMatchEulerDiscreteScheduler", False),
        Manifest("sd35", "sd3", 1024, 1024, "FlowMatchEulerDiscreteScheduler", False),
    )
    for manifest in models:
        (root / manifest.name).mkdir(parents=True)
        manifest.write(root / manifest.name)
    return settings.with_(models_dir=root, default_model="schnell")


@pytest.fixture
def family_client(families_baked: Settings, clock: ManualClock) -> Iterator[TestClient]:
    yield from app_client(families_baked, clock)


def test_config_gives_each_model_its_familys_fields_defaults_and_samplers(
    family_client: TestClient,
) -> None:
    config = family_client.get("/playground/config").json()
    models = {m["name"]: m for m in config["models"]}
    assert models["base"]["fields"] == ["clip_skip", "hires", "use_compel"]
    assert models["xl"]["fields"] == [
        "clip_skip", "high_noise_frac", "hires", "refiner_inference_steps", "use_compel",
    ]  # fmt: skip
    assert models["schnell"]["fields"] == ["max_sequence_length", "true_cfg_scale"]
    assert models["fill"]["fields"] == ["max_sequence_length"]
    assert models["sd35"]["fields"] == ["clip_skip", "max_sequence_length"]
    schnell = models["schnell"]
    assert schnell["label"] == "FLUX.1" and schnell["guidance"] == "distilled"
    assert schnell["defaults"] | {"strength": 0} == {
        "width": 1024,
        "height": 1024,
        "num_inference_steps": 4,
        "guidance_scale": 0.0,
        "strength": 0,
        "max_sequence_length": 256,
        "true_cfg_scale": 1.0,
    }
    assert schnell["side_step"] == 16 and models["base"]["side_step"] == 8
    assert [s["name"] for s in schnell["samplers"]] == ["FlowMatchEulerDiscreteScheduler"]
    assert [s["label"] for s in models["sd35"]["samplers"]] == ["Euler", "Heun"]
    assert "DPM++ 2M" in [s["name"] for s in models["base"]["samplers"]]
    # what the page needs to show or hide the negative prompt, the strength, the image
    assert (schnell["negative_prompt"], models["fill"]["negative_prompt"]) == (True, False)
    assert (models["fill"]["txt2img"], models["fill"]["image_mode"]) == (False, "img2img")
    assert models["base"]["defaults"]["num_inference_steps"] == 25
