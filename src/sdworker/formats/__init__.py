"""Other Stable Diffusion services' request formats, spoken over the native jobs.

One object per format (:mod:`.a1111`, :mod:`.salad`, :mod:`.stochastic`, :mod:`.deepinfra`,
:mod:`.openai`)
decodes its requests into native inputs, encodes results and failures in its own shapes, and
makes its routes; :mod:`.base` holds the contract. The local endpoint mounts the routes
(:func:`routers`) and the RunPod handler reads the same formats inside a job's ``input``
(:mod:`sdworker.runpod.envelopes`). This package imports ``sdworker.core`` only: the server
hands it the queue and the webhook sender through :class:`~.base.FormatContext`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from fastapi import APIRouter

    from sdworker.core.models import ModelRegistry
    from sdworker.core.settings import Settings
    from sdworker.formats.base import GatewayGetter, WebhookGetter


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
    from sdworker.formats.a1111 import A1111Format
    from sdworker.formats.base import Format, FormatContext, app_gateway, app_webhooks
    from sdworker.formats.deepinfra import DEEPINFRA
    from sdworker.formats.openai import OPENAI
    from sdworker.formats.salad import SALAD
    from sdworker.formats.stochastic import STOCHASTIC

    ctx = FormatContext(registry, settings, gateway or app_gateway, webhooks or app_webhooks)
    formats: list[Format[Any]] = [A1111Format(), SALAD, STOCHASTIC, DEEPINFRA, OPENAI]
    return [fmt.router(ctx) for fmt in formats]
