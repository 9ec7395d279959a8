"""The playground at ``/``: a static page that drives the endpoint's own public API.

The page (HTML, CSS and plain JavaScript under ``static/playground``, no build step, nothing
loaded from elsewhere) submits jobs to ``/v2/{endpoint_id}/run``, polls ``/status`` and
cancels with ``/cancel``, like any client. The one thing it cannot learn from that API is what
it may offer: ``GET /playground/config`` lists the baked models, samplers, LoRAs and limits,
read from the manifests (no model code is imported). Each model comes with what its family
says (:mod:`sdworker.families`, pure data): its defaults, the input fields that apply to it,
its samplers and its size rule, so the page shows a model's own fields only and sends
nothing that model would refuse.
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
from sdworker.core.input import ModelFacts
from sdworker.core.models import ModelInfo, ModelRegistry
from sdworker.core.schema import MAX_IMAGES, SEED_LIMIT, GenerateInput
from sdworker.core.settings import MAX_SIDE, MIN_SIDE, SIDE_STEP, Settings
from sdworker.families import FAMILY_FIELDS, Family
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


#: the family fields that need a refiner baked with the model besides its family's leave
REFINER_FIELDS = frozenset({"refiner_inference_steps", "high_noise_frac"})


def samplers(family: Family | None = None) -> list[dict[str, Any]]:
    """The samplers a model of ``family`` runs (None: Stable Diffusion's): A1111 sampler
    names, each with the schedule types (Karras, ...) that apply to it; for a flow-matching
    family its flow-match classes, labelled as Forge names them (``Euler``). ``name`` is what
    the native ``scheduler`` takes."""
    found: list[dict[str, Any]] = []
    for name in schedulers.A1111_SAMPLERS:
        spec = schedulers.resolve(name)
        if family is not None and (spec is None or not family.takes_scheduler(spec.class_name)):
            continue
        kinds = [
            kind
            for kind in schedulers.A1111_SCHEDULERS
            if kind not in ("Automatic", "Uniform")
            and schedulers.resolve(f"{name} {kind}") is not None
        ]
        found.append({"name": name, "label": name, "schedules": kinds})
    if family is not None and not found:
        for class_name in family.schedulers:
            label, _schedule = schedulers.infotext_names(class_name)
            found.append({"name": class_name, "label": label, "schedules": []})
    return found


def model_entry(info: ModelInfo) -> dict[str, Any]:
    """One baked model as the page offers it: its manifest's facts and its family's rules."""
    facts = ModelFacts.of(info.manifest)
    family = facts.family
    fields = sorted(
        name
        for name in FAMILY_FIELDS
        if family.applies(name) and (name not in REFINER_FIELDS or facts.has_refiner)
    )
    defaults = {
        "width": facts.native_width,
        "height": facts.native_height,
        **facts.default_values(),
    }
    return {
        "name": info.name,
        "family": info.manifest.family,
        "label": family.label,
        "width": facts.native_width,
        "height": facts.native_height,
        "scheduler": info.manifest.default_scheduler,
        "safety_checker": info.manifest.has_safety_checker,
        "defaults": defaults,
        "fields": fields,
        # a distilled model reads a negative prompt through true CFG only (Fill: not at all)
        "negative_prompt": family.guidance == "cfg" or family.applies("true_cfg_scale"),
        "guidance": family.guidance,
        "side_step": family.size.multiple,
        "max_sequence_length": family.prompts.max_sequence_length,
        "txt2img": family.pipelines.txt2img is not None,
        "image_mode": family.mode_for(True, False),
        "samplers": samplers(family),
    }


def config(settings: Settings) -> dict[str, Any]:
    """What the page offers: models (from their manifests), samplers, LoRAs (baked and on the
    volume) and the limits."""
    try:
        registry = ModelRegistry(settings)
    except SdworkerError as exc:
        raise EndpointError(500, f"cannot read the baked models: {exc}") from exc
    models = [model_entry(info) for info in registry.all()]
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
