"""The playground at ``/``: a static page that drives the endpoint's own public API.

The page (HTML, CSS and plain JavaScript under ``static/playground``, no build step, nothing
loaded from elsewhere) submits jobs to ``/v2/{endpoint_id}/run``, polls ``/status`` and
cancels with ``/cancel``, like any client. The one thing it cannot learn from that API is what
it may offer: ``GET /playground/config`` lists the baked models, samplers, LoRAs and limits,
read from the manifests (no model code is imported).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from fastapi import APIRouter, Depends, FastAPI, Request
from fastapi.responses import FileResponse
from fastapi.staticfiles import StaticFiles

from sdworker.core import schedulers
from sdworker.core.assets import LORA, AssetRegistry
from sdworker.core.errors import SdworkerError
from sdworker.core.models import ModelRegistry
from sdworker.core.schema import MAX_IMAGES, SEED_LIMIT, GenerateInput
from sdworker.core.settings import MAX_SIDE, MIN_SIDE, SIDE_STEP, Settings
from sdworker.server.auth import require_api_key
from sdworker.server.errors import EndpointError

STATIC_DIR = Path(__file__).resolve().parent / "static" / "playground"
#: where the page's CSS and JavaScript are served
ASSETS = "/static/playground"
#: the page may talk to this server only, and show images it was sent (data: URLs) or made
CSP = (
    "default-src 'self'; img-src 'self' data: blob:; style-src 'self'; script-src 'self'; "
    "connect-src 'self'; object-src 'none'; base-uri 'none'; frame-ancestors 'none'"
)


def mount_assets(app: FastAPI) -> None:
    app.mount(ASSETS, StaticFiles(directory=STATIC_DIR), name="playground-assets")


def _most(field: str) -> Any:
    """The upper bound (``le``) the input schema sets on ``field``."""
    return next(m.le for m in GenerateInput.model_fields[field].metadata if hasattr(m, "le"))


def samplers() -> list[dict[str, Any]]:
    """A1111 sampler names, each with the schedule types (Karras, ...) that apply to it."""
    found = []
    for name in schedulers.A1111_SAMPLERS:
        kinds = [
            kind
            for kind in schedulers.A1111_SCHEDULERS
            if kind not in ("Automatic", "Uniform")
            and schedulers.resolve(f"{name} {kind}") is not None
        ]
        found.append({"name": name, "schedules": kinds})
    return found


def config(settings: Settings) -> dict[str, Any]:
    """What the page offers: models (from their manifests), samplers, LoRAs (baked and on the
    volume) and the limits."""
    try:
        registry = ModelRegistry(settings)
    except SdworkerError as exc:
        raise EndpointError(500, f"cannot read the baked models: {exc}") from exc
    models = [
        {
            "name": info.name,
            "family": info.manifest.family,
            "width": info.manifest.native_width,
            "height": info.manifest.native_height,
            "scheduler": info.manifest.default_scheduler,
            "safety_checker": info.manifest.has_safety_checker,
        }
        for info in registry.all()
    ]
    return {
        "endpoint_id": settings.endpoint_id,
        "default_model": registry.default_name,
        "models": models,
        "samplers": samplers(),
        # baked and volume LoRAs, by the names the native lora entry takes
        "loras": AssetRegistry(settings).names(LORA),
        "limits": {
            "min_side": MIN_SIDE,
            "max_side": MAX_SIDE,
            "side_step": SIDE_STEP,
            "max_pixels": settings.max_pixels,
            "max_images": MAX_IMAGES,
            "max_steps": _most("num_inference_steps"),
            "max_guidance": _most("guidance_scale"),
            "max_seed": SEED_LIMIT - 1,
        },
    }


def playground_router() -> APIRouter:
    """``/`` (the page, public: it asks for the key) and ``/playground/config`` (keyed)."""
    router = APIRouter(tags=["playground"])

    @router.get("/", include_in_schema=False)
    async def page() -> FileResponse:
        return FileResponse(
            STATIC_DIR / "index.html",
            media_type="text/html",
            headers={"Content-Security-Policy": CSP, "Cache-Control": "no-cache"},
        )

    @router.get("/playground/config", dependencies=[Depends(require_api_key)])
    async def playground_config(request: Request) -> dict[str, Any]:
        """The baked models, samplers (with their schedule types), LoRAs and input limits."""
        return config(request.app.state.settings)

    return router
