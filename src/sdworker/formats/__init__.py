"""Translations between other Stable Diffusion services' request formats and the native input.

One module per dialect holds its pure translation (``a1111``, ``salad``, ``stochastic``,
``deepinfra``); ``routes/`` holds their HTTP routes on the local endpoint; ``envelopes``
lets the handler accept the A1111 and docker-diffusers-api bodies inside a job's ``input``.
Importing this package pulls in no web framework and no model code.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from fastapi import APIRouter

    from sdworker.core.models import ModelRegistry
    from sdworker.core.settings import Settings
    from sdworker.formats.routes.common import GatewayGetter


def routers(
    registry: ModelRegistry,
    settings: Settings,
    gateway: GatewayGetter | None = None,
) -> list[APIRouter]:
    """Every dialect's routes, for ``create_app(settings, extra_routers=routers(...))``.

    ``gateway`` finds the queue for a request; by default ``request.app.state.gateway``.
    The routers share ``registry``: A1111's ``sd_model_checkpoint`` option switches its
    default model for every dialect.
    """
    from sdworker.formats.routes.a1111 import a1111_router
    from sdworker.formats.routes.common import DialectContext, app_gateway
    from sdworker.formats.routes.deepinfra import deepinfra_router
    from sdworker.formats.routes.salad import salad_router
    from sdworker.formats.routes.stochastic import stochastic_router

    ctx = DialectContext(registry, settings, gateway or app_gateway)
    return [a1111_router(ctx), salad_router(ctx), stochastic_router(ctx), deepinfra_router(ctx)]
