"""A1111's server options (``/sdapi/v1/options``) and a request's ``override_settings``.

Both take the same keys: what this server honours (the checkpoint, the image format, "Clip
skip"), what it accepts without effect (``sd_vae``: the baked model carries its own VAE), and
options whose default it already matches. The options an endpoint or a worker holds apply to
every later request there, as in A1111.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from pydantic import Field, ValidationInfo, field_validator

from sdworker.core.errors import InvalidInput
from sdworker.core.manifest import Manifest
from sdworker.formats.modelref import a1111_title, resolve, strip_ref
from sdworker.formats.validation import FormatBody, LaxInt, Text, default_only, refuse, validate

#: A1111's "Clip skip" setting (1 = the text encoder's last layer), the native ``clip_skip``
CLIP_SKIP = "CLIP_stop_at_last_layers"
MAX_CLIP_SKIP = 12
#: A1111's ``samples_format`` spellings → the native ``output_format``
SAMPLE_FORMATS = {"png": "png", "jpg": "jpeg", "jpeg": "jpeg", "webp": "webp"}
#: option keys whose default we already match, accepted at that value only
_DEFAULT_ONLY: dict[str, tuple[Any, ...]] = {"eta_noise_seed_delta": (0,)}


@dataclass
class Options:
    """The server-side A1111 options a client can read and set (``/sdapi/v1/options``).

    ``sd_model_checkpoint``, once set, is the name of a baked model."""

    values: dict[str, Any] = field(default_factory=lambda: {"samples_format": "png"})

    @property
    def model(self) -> str | None:
        """The model ``sd_model_checkpoint`` switched to, if any."""
        chosen = self.values.get("sd_model_checkpoint")
        return chosen if isinstance(chosen, str) else None


class Settings(FormatBody):
    """``override_settings`` of a request, and the body of ``POST /sdapi/v1/options``."""

    inert = frozenset({"sd_vae"})

    sd_model_checkpoint: Text | None = None
    samples_format: Text | None = None
    CLIP_stop_at_last_layers: LaxInt | None = Field(default=None, ge=1, le=MAX_CLIP_SKIP)
    eta_noise_seed_delta: Any = None

    @field_validator("sd_model_checkpoint")
    @classmethod
    def _checkpoint(cls, value: str, info: ValidationInfo) -> str:
        """The baked model named by a title, file name, hash or name (passed through, less its
        title decorations, where the models are not known)."""
        manifests: list[Manifest] | None = (info.context or {}).get("manifests")
        if manifests is None:
            return strip_ref(value)[0]
        name = resolve(manifests, value)
        if name is None:
            titles = ", ".join(a1111_title(m) for m in manifests) or "none"
            raise refuse("unknown_checkpoint", f"unknown checkpoint (available: {titles})")
        return name

    @field_validator("samples_format")
    @classmethod
    def _format(cls, value: str) -> str:
        # kept as the client spelled it (GET /options shows "jpg"); SAMPLE_FORMATS maps it
        if value.lower() not in SAMPLE_FORMATS:
            raise refuse("format", "must be png, jpg or webp")
        return value.lower()

    @field_validator(*_DEFAULT_ONLY)
    @classmethod
    def _default_only(cls, value: Any, info: ValidationInfo) -> Any:
        return default_only(_DEFAULT_ONLY, value, info.field_name)


def set_options(
    options: Options, body: Any, manifests: list[Manifest]
) -> tuple[dict[str, Any], str | None]:
    """Check a ``POST /sdapi/v1/options`` body; return the new values and the model to switch
    to (also kept as ``sd_model_checkpoint``).

    Nothing is changed on a bad body, so a client never leaves the server half-configured.
    """
    parsed, problems = validate(Settings, body, context={"manifests": manifests})
    if problems or parsed is None:
        raise InvalidInput(problems)
    values = dict(options.values)
    given = parsed.model_dump(exclude_none=True)
    values.update(given)
    if isinstance(body, dict) and "sd_vae" in body:
        values["sd_vae"] = body["sd_vae"]
    return values, given.get("sd_model_checkpoint")


def get_options(options: Options, manifest: Manifest | None) -> dict[str, Any]:
    """``GET /sdapi/v1/options``: the supported subset of A1111's options, with the current
    model (``manifest``) as its title."""
    values: dict[str, Any] = {
        "samples_format": "png",
        CLIP_SKIP: 1,
        "sd_vae": "Automatic",
        "eta_noise_seed_delta": 0,
    }
    values.update(options.values)
    values["sd_model_checkpoint"] = a1111_title(manifest) if manifest else None
    values["sd_checkpoint_hash"] = (manifest.sha256 or None) if manifest else None
    return values
