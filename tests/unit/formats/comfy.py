"""What the ComfyUI format tests share: an SDXL and a FLUX.1 model (manifests only) named as a
worker-comfyui endpoint names them, the workflows as ComfyUI exports them, and a client of the
ComfyUI routes over the formats' fake queue."""

from __future__ import annotations

import base64
import copy
import io
import json
from pathlib import Path
from typing import Any

from fastapi import FastAPI
from fastapi.testclient import TestClient
from PIL import Image

from sdworker.core.input import InputContext, ModelFacts, parse_input
from sdworker.core.manifest import Manifest
from sdworker.core.models import ModelRegistry
from sdworker.core.settings import Settings
from sdworker.formats.base import FormatContext, Models
from sdworker.formats.comfyui.routes import comfyui_routers

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures" / "comfyui"
#: the file names a worker-comfyui endpoint's workflows use, as aliases of the tiny models
ALIASES = "sd_xl_base_1.0.safetensors=tiny-sdxl,flux1-schnell.safetensors=tiny-flux"
LORAS = ("neon",)


def workflow(name: str) -> dict[str, Any]:
    """A test workflow (tests/fixtures/comfyui/NAME.json), a fresh copy."""
    return copy.deepcopy(json.loads((FIXTURES / f"{name}.json").read_text()))


def png(size: tuple[int, int] = (64, 64), mode: str = "RGB", colour: Any = (90, 120, 200)) -> str:
    buf = io.BytesIO()
    Image.new(mode, size, colour).save(buf, format="PNG")
    return base64.b64encode(buf.getvalue()).decode()


def make_registry(root: Path) -> ModelRegistry:
    for manifest in (
        Manifest("tiny-sdxl", "sdxl", 1024, 1024, "EulerDiscreteScheduler", False),
        Manifest("tiny-flux", "flux", 1024, 1024, "FlowMatchEulerDiscreteScheduler", False),
    ):
        (root / manifest.name).mkdir(parents=True)
        manifest.write(root / manifest.name)
    return ModelRegistry(comfy_settings(root))


def comfy_settings(root: Path, **more: Any) -> Settings:
    return Settings(
        models_dir=root,
        default_model="tiny-sdxl",
        model_aliases=ALIASES,
        state_dir=root / "state",
        dialect_wait_s=5.0,
        **more,
    )


def models(registry: ModelRegistry, uploads: bool = False) -> Models:
    return Models([i.manifest for i in registry.all()], registry.default_name, uploads)


def runner(registry: ModelRegistry) -> Any:
    """Generation for the fake queue: the native rules, then an 8x8 PNG per image."""
    facts = {info.name: ModelFacts.of(info.manifest) for info in registry.all()}
    context = InputContext.of(
        facts, default_model="tiny-sdxl", max_pixels=2048 * 2048, loras=list(LORAS)
    )

    def run(job: dict[str, Any]) -> list[dict[str, Any]]:
        request = parse_input(job, context)
        return [
            {"image": png((8, 8), colour=(k, 0, 0)), "seed": seed, "format": "png"}
            for k, seed in enumerate(request.seeds)
        ]

    return run


def make_client(registry: ModelRegistry, gateway: Any, settings: Settings) -> TestClient:
    ctx = FormatContext(registry, settings, lambda request: gateway)
    app = FastAPI()
    for router in comfyui_routers(ctx):
        app.include_router(router)
    return TestClient(app)
