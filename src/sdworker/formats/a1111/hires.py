"""A1111's hires fix (``enable_hr`` and the ``hr_*`` fields of txt2img) → the native ``hires``.

A1111 makes the picture at ``width`` x ``height``, upscales it (by ``hr_scale``, or to
``hr_resize_x`` x ``hr_resize_y``) with ``hr_upscaler`` and runs a second, img2img-like pass of
``hr_second_pass_steps`` at ``denoising_strength`` with the same seed. The native ``hires``
object does the same on the worker; this module reads A1111's fields, refuses upscalers this
server does not have (naming the field and listing those it has), and writes the infotext
entries A1111 writes for it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from pydantic import Field, field_validator

from sdworker.core.errors import InvalidInput, Problem
from sdworker.core.media import hires_fields
from sdworker.core.settings import MAX_SIDE, MIN_SIDE, SIDE_STEP
from sdworker.formats.a1111.samplers import SamplerCatalog
from sdworker.formats.validation import FormatBody, LaxFloat, LaxInt, Text, refuse, validate

#: A1111's latent upscale modes (``/latent-upscale-modes``) → the native ``hires.upscaler``
LATENT_MODES: dict[str, str] = {
    "Latent": "latent",
    "Latent (antialiased)": "latent-antialiased",
    "Latent (bicubic)": "latent-bicubic",
    "Latent (bicubic antialiased)": "latent-bicubic-antialiased",
    "Latent (nearest)": "latent-nearest",
    "Latent (nearest-exact)": "latent-nearest-exact",
}
#: A1111's image upscalers this server has (``/upscalers``) → the native name. A1111's "None"
#: upscaler leaves the image as it is and its resize step then uses Lanczos.
IMAGE_UPSCALERS: dict[str, str] = {"None": "lanczos", "Lanczos": "lanczos", "Nearest": "nearest"}
HIRES_UPSCALERS: dict[str, str] = {**LATENT_MODES, **IMAGE_UPSCALERS}
#: what A1111 writes in ``hr_sampler_name``/``hr_scheduler``/``hr_checkpoint_name`` for "the
#: first pass's"
_SAME = {"", "use same sampler", "use same scheduler", "use same checkpoint"}
DEFAULT_STRENGTH = 0.7
DEFAULT_SCALE = 2.0
#: the fields of a txt2img body that belong to the hires fix
FIELDS = (
    "hr_scale", "hr_upscaler", "hr_second_pass_steps", "hr_resize_x", "hr_resize_y",
    "hr_sampler_name", "hr_scheduler", "hr_prompt", "hr_negative_prompt", "hr_checkpoint_name",
    "denoising_strength",
)  # fmt: skip


def _lookup(table: dict[str, str], value: str) -> str | None:
    """The table's key for ``value``, in any case."""
    return next((k for k in table if k.casefold() == value.strip().casefold()), None)


def upscaler_names() -> str:
    """The upscaler names ``hr_upscaler`` takes, for messages."""
    return ", ".join(HIRES_UPSCALERS)


class HiresBody(FormatBody):
    """The hires fields of a txt2img body with ``enable_hr`` on (A1111's API defaults)."""

    hr_scale: LaxFloat = Field(default=DEFAULT_SCALE, ge=1, le=4)
    hr_upscaler: Text | None = None
    hr_second_pass_steps: LaxInt = Field(default=0, ge=0, le=500)
    hr_resize_x: LaxInt = Field(default=0, ge=0, le=MAX_SIDE)
    hr_resize_y: LaxInt = Field(default=0, ge=0, le=MAX_SIDE)
    hr_sampler_name: Text | None = None
    hr_scheduler: Text | None = None
    hr_prompt: Text = ""
    hr_negative_prompt: Text = ""
    hr_checkpoint_name: Text | None = None
    denoising_strength: LaxFloat = Field(default=DEFAULT_STRENGTH, gt=0, le=1)

    @field_validator("hr_upscaler")
    @classmethod
    def _upscaler(cls, value: str) -> str:
        name = _lookup(HIRES_UPSCALERS, value)
        if name is None:
            message = f"is not an upscaler this server has (it has: {upscaler_names()})"
            raise refuse("unknown_upscaler", message)
        return name

    @field_validator("hr_resize_x", "hr_resize_y")
    @classmethod
    def _side(cls, value: int) -> int:
        if value and (value < MIN_SIDE or value % SIDE_STEP):
            rule = f"must be 0 (from hr_scale) or a multiple of {SIDE_STEP} from {MIN_SIDE}"
            raise refuse("side", f"{rule} to {MAX_SIDE}")
        return value

    @field_validator("hr_checkpoint_name")
    @classmethod
    def _checkpoint(cls, value: str) -> str | None:
        if value.strip().casefold() not in _SAME:
            raise refuse("hr_checkpoint", "a second checkpoint for the hires pass is not "
                         "supported here; leave it empty or 'Use same checkpoint'")  # fmt: skip
        return None


@dataclass(frozen=True)
class Hires:
    """A checked hires fix: what the native ``hires`` gets and what the infotext shows."""

    scale: float
    resize_x: int
    resize_y: int
    upscaler: str
    steps: int
    strength: float
    #: A1111's names of the second pass's sampler and schedule type, when they differ
    sampler: str | None
    schedule: str | None
    native_scheduler: str | None
    prompt: str
    negative_prompt: str

    def native(self) -> dict[str, Any]:
        """The native ``hires`` object."""
        return {
            "scale": self.scale,
            "width": self.resize_x or None,
            "height": self.resize_y or None,
            "upscaler": HIRES_UPSCALERS[self.upscaler],
            "steps": self.steps or None,
            "strength": self.strength,
            "scheduler": self.native_scheduler,
            "prompt": self.prompt or None,
            "negative_prompt": self.negative_prompt or None,
        }

    def infotext(self, prompt: str, negative_prompt: str) -> dict[str, Any]:
        """The entries A1111 adds to the infotext, in its order (after ``Denoising
        strength``, which the caller writes where A1111 does)."""
        resize = (self.resize_x, self.resize_y) if self.resize_x or self.resize_y else None
        return hires_fields(
            scale=self.scale,
            resize=resize,
            steps=self.steps or None,
            upscaler=self.upscaler,
            sampler=self.sampler,
            schedule=self.schedule,
            prompt=self.prompt if self.prompt and self.prompt != prompt else None,
            negative_prompt=(
                self.negative_prompt
                if self.negative_prompt and self.negative_prompt != negative_prompt
                else None
            ),
        )


def parse_hires(
    body: dict[str, Any], sampler: str, schedule: str | None, catalog: SamplerCatalog
) -> Hires:
    """The hires fix of a txt2img ``body`` whose first pass uses ``sampler`` and ``schedule``;
    raises :class:`InvalidInput` naming A1111's fields."""
    given = {k: body[k] for k in FIELDS if k in body}
    parsed, problems = validate(HiresBody, given)
    if parsed is None or problems:
        raise InvalidInput(problems)
    hr_sampler = _other(parsed.hr_sampler_name, sampler)
    hr_schedule = _other(parsed.hr_scheduler, schedule or "")
    if hr_sampler and not catalog.knows_sampler(hr_sampler):
        problems.append(Problem("hr_sampler_name", catalog.unknown_sampler(hr_sampler), hr_sampler))
    if hr_schedule and not catalog.knows_schedule(hr_schedule):
        rule = catalog.unknown_schedule(hr_schedule)
        problems.append(Problem("hr_scheduler", rule, hr_schedule))
    if problems:
        raise InvalidInput(problems)
    native = None
    if hr_sampler or hr_schedule:
        native = catalog.normalise(hr_sampler or sampler, hr_schedule or schedule)
    return Hires(
        scale=parsed.hr_scale,
        resize_x=parsed.hr_resize_x,
        resize_y=parsed.hr_resize_y,
        upscaler=parsed.hr_upscaler or "Latent",
        steps=parsed.hr_second_pass_steps,
        strength=parsed.denoising_strength,
        sampler=hr_sampler,
        schedule=hr_schedule,
        native_scheduler=native,
        prompt=parsed.hr_prompt,
        negative_prompt=parsed.hr_negative_prompt,
    )


def _other(value: str | None, first: str) -> str | None:
    """``value`` when it names something other than the first pass's ``first``."""
    if value is None or value.strip().casefold() in _SAME:
        return None
    return None if value.strip().casefold() == first.casefold() else value.strip()
