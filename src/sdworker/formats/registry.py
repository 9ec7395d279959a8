"""The formats' routes on the local endpoint: one router per format, sharing one context.

Each format's routes live beside its format object (``a1111/routes.py``, ``salad/routes.py``,
``openai/routes.py``, and in ``deepinfra.py`` and ``stochastic.py``); this registry is the one
place that calls them. Worker processes never import it: the format objects themselves load
no web framework.
"""

from __future__ import annotations

from fastapi import APIRouter

from sdworker.core.models import ModelRegistry
from sdworker.core.settings import Settings
from sdworker.formats.a1111 import A1111Format
from sdworker.formats.a1111.routes import a1111_router
from sdworker.formats.base import (
    FormatContext,
    GatewayGetter,
    WebhookGetter,
    app_gateway,
    app_webhooks,
)
from sdworker.formats.comfyui.routes import comfyui_routers
from sdworker.formats.deepinfra import deepinfra_router
from sdworker.formats.huggingface.routes import huggingface_router
from sdworker.formats.openai.routes import openai_router
from sdworker.formats.replicate.routes import replicate_router
from sdworker.formats.salad.routes import salad_router
from sdworker.formats.stochastic import stochastic_router


def routers(
    registry: ModelRegistry,
    settings: Settings,
    gateway: GatewayGetter | None = None,
    webhooks: WebhookGetter | None = None,
) -> list[APIRouter]:
    """Every format's routes, for ``create_app(settings, extra_routers=routers(...))``.

    ``gateway`` finds the queue for a request (default ``request.app.state.gateway``) and
    ``webhooks`` the sender of webhook answers (default ``request.app.state.send_webhook``).
    The routers share ``registry``: A1111's ``sd_model_checkpoint`` option switches its
    default model for every format.
    """
    ctx = FormatContext(registry, settings, gateway or app_gateway, webhooks or app_webhooks)
    return format_routers(ctx)


def format_routers(ctx: FormatContext, a1111: A1111Format | None = None) -> list[APIRouter]:
    """Every format's routes over ``ctx``; ``a1111`` is the A1111 format object, with its
    options and sampler catalog (a new one by default)."""
    return [
        a1111_router(ctx, a1111),
        salad_router(ctx),
        stochastic_router(ctx),
        deepinfra_router(ctx),
        # before OpenAI's: its GET /v1/models/{model:path} would take the versions route
        replicate_router(ctx),
        openai_router(ctx),
        *comfyui_routers(ctx),
        huggingface_router(ctx),
    ]
