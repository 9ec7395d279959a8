"""What the request-format unit tests share: the sampler catalog, manifests, a model registry,
an in-memory queue (a fake, held to the real queue by ``test_gateway_contract.py``)."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import io
import tempfile
import uuid
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from PIL import Image

from sdworker.core import strictjson
from sdworker.core.errors import InvalidInput
from sdworker.core.input import InputContext, ModelFacts, parse_input
from sdworker.core.jobs import Failure, JobGateway, JobView, Status
from sdworker.core.manifest import Manifest
from sdworker.core.models import ModelRegistry
from sdworker.core.settings import Settings
from sdworker.families import get as family
from sdworker.formats.a1111 import SamplerCatalog, default_catalog
from sdworker.formats.base import WebhookSend


@pytest.fixture
def catalog() -> SamplerCatalog:
    """The real catalog (``sdworker.core.schedulers``' names and rules): pure code, no fake."""
    return default_catalog()


def make_manifest(name: str, sha: str = "", source: str = "") -> Manifest:
    return Manifest(
        name=name,
        family="sd1",
        native_width=64,
        native_height=64,
        default_scheduler="PNDMScheduler",
        has_safety_checker=False,
        source=source,
        sha256=sha,
    )


@pytest.fixture
def manifests() -> list[Manifest]:
    return [
        make_manifest("tiny", "ab" * 32, "sdworker/tiny"),
        make_manifest(
            "v1-5-pruned-emaonly", "6ce0161689" + "0" * 54, "runwayml/stable-diffusion-v1-5"
        ),
    ]


@pytest.fixture
def registry(tmp_path: Path, manifests: list[Manifest]) -> ModelRegistry:
    for manifest in manifests:
        folder = tmp_path / manifest.name
        folder.mkdir()
        manifest.write(folder)
    return ModelRegistry(Settings(models_dir=tmp_path, default_model="tiny"))


#: what the native rules need to know of the models ``manifests`` bakes
FACTS = {name: ModelFacts(name, 64, 64, family("sd1")) for name in ("tiny", "v1-5-pruned-emaonly")}


def fake_run(job: dict[str, Any]) -> list[dict[str, Any]]:
    """A stand-in for generation: the job checked by the native input's own rules, then an
    8x8 PNG per image whose colour encodes its seed."""
    parse_input(job, InputContext.of(FACTS, default_model="tiny", max_pixels=2048 * 2048))
    seed = job.get("seed")
    seed = 1234 if seed is None else seed
    out = []
    for k in range(job.get("num_images", 1)):
        buf = io.BytesIO()
        s = seed + k
        Image.new("RGB", (8, 8), (s % 256, (s >> 8) % 256, (s >> 16) % 256)).save(buf, "PNG")
        out.append({"image": base64.b64encode(buf.getvalue()).decode(), "seed": s, "format": "png"})
    return out


class FakeGateway(JobGateway):
    """An in-memory :class:`JobGateway` that behaves as the real queue does (held to it by
    ``test_gateway_contract.py``, and to its interface by mypy); with ``auto`` a job finishes
    when first looked at, by ``run``."""

    def __init__(
        self, run: Callable[[dict[str, Any]], list[dict[str, Any]]] = fake_run, auto: bool = True
    ) -> None:
        self.run = run
        self.auto = auto
        self.jobs: dict[str, JobView] = {}
        self.files: dict[str, tuple[bytes, str]] = {}
        self.cancelled: list[str] = []
        #: running jobs asked to stop early (a real worker would end them COMPLETED)
        self.interrupted: list[str] = []
        self._waiters: dict[str, list[tuple[asyncio.AbstractEventLoop, asyncio.Event]]] = {}

    def start(self, job_id: str) -> None:
        """A worker takes the job."""
        self.jobs[job_id].status = Status.IN_PROGRESS

    def finish(self, job_id: str) -> None:
        """The job runs (``run``) and ends COMPLETED, or FAILED with its failure as data."""
        view = self.jobs[job_id]
        if view.status.is_terminal():
            return
        try:
            view.output = self.run(view.input)
            view.status = Status.COMPLETED
            view.execution_time_ms = 42
        except InvalidInput as exc:
            # as the runpod SDK stores a failed job: error moved out, the failure kept as data
            output = Failure.of(exc).to_output()
            view.error = output.pop("error")
            view.output = output
            view.status = Status.FAILED
        self._notify(job_id)

    def _notify(self, job_id: str) -> None:
        # a test may finish a job from its own thread while a route waits on the client's loop
        for loop, event in list(self._waiters.get(job_id, [])):
            with contextlib.suppress(RuntimeError):  # that loop is gone: no one waits there
                loop.call_soon_threadsafe(event.set)

    def _view(self, job_id: str) -> JobView | None:
        """The job as it is now: a copy, as the queue hands out (no caller sees it change)."""
        view = self.jobs.get(job_id)
        return replace(view) if view is not None else None

    async def submit(
        self,
        job_input: dict[str, Any],
        *,
        webhook: str | None = None,
        policy: dict[str, Any] | None = None,
        sync: bool = False,
    ) -> JobView:
        found = strictjson.find(job_input, "input")
        if found is not None:
            raise InvalidInput.one(found[0], found[1], has_value=False)
        view = JobView(id=uuid.uuid4().hex, status=Status.IN_QUEUE, input=job_input)
        self.jobs[view.id] = view
        return replace(view)

    async def get(self, job_id: str) -> JobView | None:
        if job_id in self.jobs and self.auto:
            self.finish(job_id)
        return self._view(job_id)

    async def wait(self, job_id: str, timeout_s: float) -> JobView | None:
        view = await self.get(job_id)
        if view is None or view.status.is_terminal():
            return view
        waiter = (asyncio.get_running_loop(), asyncio.Event())
        waiters = self._waiters.setdefault(job_id, [])
        waiters.append(waiter)
        try:
            if not self.jobs[job_id].status.is_terminal():  # it may have ended meanwhile
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(waiter[1].wait(), timeout_s)
        finally:
            waiters.remove(waiter)
        return self._view(job_id)

    async def cancel(self, job_id: str) -> JobView | None:
        view = self.jobs.get(job_id)
        if view is not None and not view.status.is_terminal():
            view.status = Status.CANCELLED
            self.cancelled.append(job_id)
            self._notify(job_id)
        return self._view(job_id)

    async def interrupt(self, job_id: str) -> JobView | None:
        """A queued job is cancelled; a running one is asked to stop (and runs on for now)."""
        view = self.jobs.get(job_id)
        if view is not None and view.status is Status.IN_QUEUE:
            return await self.cancel(job_id)
        if view is not None and view.status is Status.IN_PROGRESS:
            self.interrupted.append(job_id)
        return self._view(job_id)

    async def queue_position(self, job_id: str) -> int | None:
        queued = [j for j, v in self.jobs.items() if v.status is Status.IN_QUEUE]
        return queued.index(job_id) if job_id in queued else None

    async def store_file(self, job_id: str, name: str, data: bytes, content_type: str) -> str:
        self.files[name] = (data, content_type)
        return f"http://testserver/files/{job_id}/{name}"


@pytest.fixture
def gateway() -> FakeGateway:
    return FakeGateway()


def make_client(
    registry: ModelRegistry,
    gateway: FakeGateway,
    api_key: str | None = None,
    catalog: SamplerCatalog | None = None,
    body_limit: int | None = None,
    webhooks: WebhookSend | None = None,
) -> TestClient:
    from sdworker.formats.a1111 import A1111Format
    from sdworker.formats.base import FormatContext, app_webhooks
    from sdworker.formats.registry import format_routers

    settings = Settings(
        models_dir=Path("/models"),
        api_key=api_key,
        dialect_wait_s=5.0,
        state_dir=Path(tempfile.mkdtemp(prefix="sdworker-state-")),
    )
    if body_limit is not None:
        settings = settings.with_(runsync_body_limit_bytes=body_limit)
    hooks = app_webhooks if webhooks is None else (lambda request: webhooks)
    ctx = FormatContext(registry, settings, lambda request: gateway, hooks)
    cat = catalog or default_catalog()
    app = FastAPI()
    for router in format_routers(ctx, A1111Format(catalog=lambda: cat)):
        app.include_router(router)
    return TestClient(app)


@pytest.fixture
def client(registry: ModelRegistry, gateway: FakeGateway) -> TestClient:
    return make_client(registry, gateway)


ClientFactory = Callable[..., TestClient]


@pytest.fixture
def client_factory(registry: ModelRegistry) -> ClientFactory:
    """``client_factory(gateway, api_key=None, catalog=None, body_limit=None,
    webhooks=None)``: a TestClient over the format routers (``webhooks``: the sender their
    webhooks go to)."""

    def build(gateway: FakeGateway, api_key: str | None = None, **kw: Any) -> TestClient:
        return make_client(registry, gateway, api_key, **kw)

    return build


@pytest.fixture
def fake_gateway() -> type[FakeGateway]:
    return FakeGateway
