"""SD 3.x and FLUX.1 models as the request-format tests bake them (manifests only), and the
native rules on them."""

from __future__ import annotations

import base64
import io
from typing import Any

from PIL import Image

from sdworker.core.input import InputContext, ModelFacts, parse_input
from sdworker.core.manifest import Manifest
from sdworker.formats.base import Models

FLOW = "FlowMatchEulerDiscreteScheduler"


def manifest(name: str, family: str, side: int = 1024, **kw: Any) -> Manifest:
    scheduler = "PNDMScheduler" if family.startswith("sd") and family != "sd3" else FLOW
    return Manifest(name, family, side, side, scheduler, False, **kw)


#: a FLUX.1 schnell (its defaults baked with it), a dev, a Kontext, a Fill, an SD 3.5 Medium
#: and an SD 1.x model, as real bakes from the hub record them
MANIFESTS = [
    manifest(
        "schnell",
        "flux",
        source="hub:black-forest-labs/FLUX.1-schnell@main",
        defaults={"num_inference_steps": 4, "guidance_scale": 0.0, "max_sequence_length": 256},
    ),
    manifest("dev", "flux", source="hub:black-forest-labs/FLUX.1-dev@main"),
    manifest("kontext", "flux-kontext", source="hub:black-forest-labs/FLUX.1-Kontext-dev@main"),
    manifest("fill", "flux-fill", source="hub:black-forest-labs/FLUX.1-Fill-dev@main"),
    manifest("sd35m", "sd3", source="hub:stabilityai/stable-diffusion-3.5-medium@main"),
    manifest("tiny", "sd1", 64, aliases=("sd15",)),
]
MODELS = Models(MANIFESTS, "schnell")
FACTS = {m.name: ModelFacts.of(m) for m in MANIFESTS}


def png(size: tuple[int, int], mode: str = "RGB", colour: Any = (200, 30, 30)) -> str:
    buf = io.BytesIO()
    Image.new(mode, size, colour).save(buf, format="PNG")
    return base64.b64encode(buf.getvalue()).decode()


def native_checks(job: dict[str, Any]) -> None:
    """The native rules pass the job a format made (on the families' facts)."""
    parse_input(job, InputContext.of(FACTS, default_model="schnell", max_pixels=2048 * 2048))
