"""Process-wide configuration of the GPU side, applied once when it starts.

cuDNN autotuning and dynamo's recompile limit belong to the process, not to a model: they are
set here, from :class:`~sdworker.core.settings.Settings`, once, instead of as a side effect of
every model load (the libraries' log notices are :mod:`sdworker.gpu.quiet`'s).
"""

from __future__ import annotations

import logging

import torch
import torch._dynamo

from sdworker.core.settings import Settings
from sdworker.gpu.optimize import RECOMPILE_LIMIT, plan

log = logging.getLogger(__name__)


def configure(settings: Settings, device: torch.device) -> None:
    """Apply the process-wide settings for ``device`` (the worker's service calls this once,
    when its GPU side starts; every step is idempotent)."""
    chosen = plan(settings, device)
    if chosen.cudnn_benchmark:
        torch.backends.cudnn.benchmark = True
        log.info("cuDNN autotuning on")
    if chosen.compile:
        # every model, size and batch shape of the warm-ups counts against the limit
        torch._dynamo.config.recompile_limit = max(
            torch._dynamo.config.recompile_limit, RECOMPILE_LIMIT
        )
