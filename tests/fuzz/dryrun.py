"""The local endpoint with a dry worker: every request format's routes, the real queue, and a
worker that prepares each job for real (validation, the RunPod envelopes, image decoding and
the guarded fetch) and then makes a flat 8x8 image instead of running a model.

A job runs the moment it is submitted, so a synchronous route answers at once and a result a
format encodes (A1111 echoes the request as ``parameters``) is encoded for every input.
"""

from __future__ import annotations

import asyncio
import base64
import io
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from fastapi.testclient import TestClient
from PIL import Image

from sdworker.core.manifest import Manifest
from sdworker.core.models import ModelRegistry
from sdworker.core.settings import Settings
from sdworker.formats.registry import routers
from sdworker.runpod.adapter import RunpodAdapter
from sdworker.server.app import create_app
from sdworker.server.queue import JobQueue
from sdworker.service import Outcome, Prepared, Service

WORKER = "dry-worker"


def _dot() -> str:
    buf = io.BytesIO()
    Image.new("RGB", (8, 8), (30, 60, 90)).save(buf, format="PNG")
    return base64.b64encode(buf.getvalue()).decode()


DOT = _dot()


class DryService(Service):
    """The real :meth:`prepare`; an 8x8 image per requested image in place of generation."""

    def execute(self, group: list[Prepared], **_: Any) -> list[Outcome]:
        return [
            [{"image": DOT, "seed": p.request.seed + i, "format": "png"} for i in range(p.size)]
            for p in group
        ]


def sdk_payload(answer: Any) -> dict[str, Any]:
    """A handler's answer as the ``runpod`` SDK posts it to job-done."""
    if isinstance(answer, dict) and "error" in answer:
        rest = {k: v for k, v in answer.items() if k not in ("error", "refresh_worker")}
        return {"error": answer["error"], "output": rest}
    return {"output": answer}


class DryGateway:
    """The real queue; each submitted job is taken and answered by the dry worker at once."""

    def __init__(self, queue: JobQueue, adapter: RunpodAdapter) -> None:
        self.queue = queue
        self.adapter = adapter

    def __getattr__(self, name: str) -> Any:
        return getattr(self.queue, name)

    async def submit(self, job_input: dict[str, Any], **options: Any) -> Any:
        view = await self.queue.submit(job_input, **options)
        while tasks := await self.queue.take(WORKER, 1, 0.0):
            for task in tasks:
                answer = await asyncio.to_thread(self.adapter.handle_sync, task)
                await self.queue.report(task["id"], WORKER, sdk_payload(answer), is_stream=False)
        return view


def dry_settings(root: Path) -> Settings:
    """Baked models (manifests, no weights): ``tiny`` (SD 1.x), ``tiny-flux`` (FLUX.1 schnell,
    baked from its hub id) and ``tiny-sd3`` (SD 3.5 Medium), and a model ``outside`` next to
    the models folder, where only a name that escapes the folder could find it."""
    models = root / "models"
    for folder, name in ((models / "tiny", "tiny"), (root / "outside", "outside")):
        folder.mkdir(parents=True)
        Manifest(name, "sd1", 64, 64, "PNDMScheduler", False).write(folder)
    for name, family, hub in (
        ("tiny-flux", "flux", "black-forest-labs/FLUX.1-schnell"),
        ("tiny-sd3", "sd3", "stabilityai/stable-diffusion-3.5-medium"),
    ):
        (models / name).mkdir()
        flow = "FlowMatchEulerDiscreteScheduler"
        Manifest(name, family, 256, 256, flow, False, source=f"hub:{hub}@main").write(models / name)
    _dry_assets(root)
    return Settings(
        models_dir=models,
        default_model="tiny",
        state_dir=root / "state",
        volume_dir=root / "volume",
        hub_cache_dir=root / "hub",
        hub_downloads=False,
        workers=0,
        runsync_wait_s=5.0,
        dialect_wait_s=5.0,
        run_body_limit_bytes=256 * 1024,
        runsync_body_limit_bytes=256 * 1024,
    )


def _dry_assets(root: Path) -> None:
    """A volume LoRA ``style/dry.safetensors`` and a hub-cache one ``org/dry-lora``; LoRAs
    called ``outside`` beside the volume's LoRA folder, where only an escaping name reaches."""
    from tests.loras import write_safetensors
    from tests.unit.test_asset_fetch import hub_repo

    shapes = {
        "unet.down_blocks.1.attentions.0.transformer_blocks.0.attn2.to_k.lora_A.weight": (4, 768)
    }
    loras = root / "volume" / "models" / "loras"
    write_safetensors(loras / "style" / "dry.safetensors", shapes)
    for outside in (root / "volume" / "models", root / "volume", root):
        write_safetensors(outside / "outside.safetensors", shapes)
    lora = write_safetensors(root / "hub-file.safetensors", shapes).read_bytes()
    hub_repo(root / "hub", "org/dry-lora", {"lora.safetensors": lora})


def dry_client(root: Path, **changes: Any) -> Iterator[TestClient]:
    """A client of the endpoint with the dry worker (a generator: use it in a fixture);
    ``changes`` are settings changed from :func:`dry_settings`'."""
    settings = dry_settings(root)
    if changes:
        settings = settings.with_(**changes)
    adapter = RunpodAdapter(settings, service=DryService(settings))
    app = create_app(
        settings,
        workers=0,
        extra_routers=routers(
            ModelRegistry(settings), settings, gateway=lambda request: request.app.state.dry
        ),
    )
    with TestClient(app, raise_server_exceptions=False) as client:
        dry = DryGateway(app.state.gateway, adapter)
        # the native routes read app.state.gateway, the formats' app.state.dry: both the dry one
        app.state.gateway = app.state.dry = dry
        yield client
