"""The AUTOMATIC1111 web UI API (``/sdapi/v1``): requests, answers, options and routes.

:class:`A1111Format` is the format object both the HTTP routes (:mod:`.routes`) and the RunPod
envelope use: ``decode`` makes one native job per ``n_iter`` iteration, ``encode`` writes
A1111's ``{"images", "parameters", "info"}``. The extras upscale is a format object of its own
(:class:`.extras.ExtrasFormat`): another body, another answer, A1111's errors.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from typing import Any

from sdworker.core.jobs import Failure
from sdworker.core.manifest import Manifest
from sdworker.formats.a1111.answer import (
    error_body,
    infotext,
    response,
    samplers,
    schedulers,
    sd_models,
)
from sdworker.formats.a1111.options import Options, get_options, set_options
from sdworker.formats.a1111.request import (
    MAX_BATCH,
    MAX_IMAGES,
    A1111Request,
    Kind,
    parse,
)
from sdworker.formats.a1111.samplers import SamplerCatalog, default_catalog
from sdworker.formats.base import Decoded, Format, Models, http_status

#: native field → the A1111 field a client wrote, for failures coming back from a job
NATIVE_TO_A1111: dict[str, str] = {
    "num_inference_steps": "steps",
    "guidance_scale": "cfg_scale",
    "num_images": "batch_size",
    "image": "init_images",
    "mask_image": "mask",
    "strength": "denoising_strength",
    "model": "override_settings.sd_model_checkpoint",
    "scheduler": "sampler_name",
    "output_format": "override_settings.samples_format",
    "clip_skip": "override_settings.CLIP_stop_at_last_layers",
    "hires": "enable_hr",
    "hires.scale": "hr_scale",
    "hires.width": "hr_resize_x",
    "hires.height": "hr_resize_y",
    "hires.upscaler": "hr_upscaler",
    "hires.steps": "hr_second_pass_steps",
    "hires.strength": "denoising_strength",
    "hires.scheduler": "hr_sampler_name",
    "hires.prompt": "hr_prompt",
    "hires.negative_prompt": "hr_negative_prompt",
}


class A1111Format(Format[A1111Request]):
    """The A1111 format, with the state A1111 keeps: its options (and a seed source).

    ``catalog`` gives the sampler names, read at each call."""

    name = "a1111"
    names = NATIVE_TO_A1111

    def __init__(
        self,
        options: Options | None = None,
        catalog: Callable[[], SamplerCatalog] = default_catalog,
        rng: random.Random | None = None,
    ) -> None:
        self.options = options if options is not None else Options()
        self.catalog = catalog
        self.rng = rng or random.SystemRandom()

    def decode(self, body: Any, models: Models, **where: str) -> Decoded[A1111Request]:
        """A txt2img or img2img body (``where``'s ``kind``) → one native job per ``n_iter``."""
        kind: Kind = "img2img" if where.get("kind") == "img2img" else "txt2img"
        req = parse(
            body, kind, catalog=self.catalog(), models=models, options=self.options, rng=self.rng
        )
        return Decoded(req.jobs(), req)

    def encode(
        self, decoded: Decoded[A1111Request], outputs: list[dict[str, Any]], execution_ms: int
    ) -> dict[str, Any]:
        """A1111's ``{"images", "parameters", "info"}``."""
        req = decoded.request
        return response(
            req, req.parameters, outputs, model_name=req.model_name, model_hash=req.model_hash
        )

    def encode_error(self, failure: Failure) -> tuple[int, dict[str, Any]]:
        """422 for what the client can fix (as A1111's FastAPI validation), never 500."""
        return http_status(failure, client=422), error_body(failure)

    # -- what needs no generation -----------------------------------------------------------

    def current(self, models: Models) -> Manifest | None:
        """The model requests use now: the option's, else the default (else the first baked)."""
        name = self.options.model or models.default_model
        if name is None:
            return models.manifests[0] if models.manifests else None
        return models.manifest(name)

    def get_options(self, models: Models) -> dict[str, Any]:
        """``GET /sdapi/v1/options``."""
        return get_options(self.options, self.current(models))

    def set_options(self, body: Any, manifests: list[Manifest]) -> str | None:
        """``POST /sdapi/v1/options``: apply a checked body; the model it switches to."""
        values, model = set_options(self.options, body, manifests)
        self.options.replace(values)
        return model

    def samplers(self) -> list[dict[str, Any]]:
        """``GET /sdapi/v1/samplers``."""
        return samplers(self.catalog())

    def schedulers(self) -> list[dict[str, Any]]:
        """``GET /sdapi/v1/schedulers``."""
        return schedulers(self.catalog())


__all__ = [
    "MAX_BATCH",
    "MAX_IMAGES",
    "NATIVE_TO_A1111",
    "A1111Format",
    "A1111Request",
    "Kind",
    "Options",
    "SamplerCatalog",
    "default_catalog",
    "error_body",
    "get_options",
    "infotext",
    "parse",
    "response",
    "samplers",
    "schedulers",
    "sd_models",
    "set_options",
]
