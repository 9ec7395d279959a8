"""A1111's server options (``/sdapi/v1/options``) and a request's ``override_settings``.

Both take every option name A1111 itself knows (:data:`DEFAULTS`, read from
``option_defaults.json``: the names and default values of A1111's settings). A few take
effect here: the checkpoint, the image format and "Clip skip" (:data:`EFFECTIVE`); the rest
are stored and shown back as A1111 does, without effect. A value is checked against the type
of A1111's default, and a name A1111 does not know is refused with the closest known ones.

The endpoint keeps one :class:`Options` for every request it decodes, whichever worker runs
the job, and saves it under the state directory so it survives a restart.
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

from pydantic import Field, ValidationInfo, field_validator

from sdworker.core.errors import InvalidInput, Problem
from sdworker.core.manifest import Manifest
from sdworker.core.rules import closest
from sdworker.formats.modelref import a1111_title, resolve, strip_ref
from sdworker.formats.validation import (
    FormatBody,
    LaxInt,
    Text,
    default_only,
    merge,
    refuse,
    validate,
)

log = logging.getLogger(__name__)

#: A1111's "Clip skip" setting (1 = the text encoder's last layer), the native ``clip_skip``
CLIP_SKIP = "CLIP_stop_at_last_layers"
MAX_CLIP_SKIP = 12
#: A1111's ``samples_format`` spellings → the native ``output_format``
SAMPLE_FORMATS = {"png": "png", "jpg": "jpeg", "jpeg": "jpeg", "webp": "webp"}
#: option keys whose default we already match, accepted at that value only
_DEFAULT_ONLY: dict[str, tuple[Any, ...]] = {"eta_noise_seed_delta": (0,)}
#: every option A1111 knows, with A1111's default value
DEFAULTS: dict[str, Any] = json.loads(
    resources.files(__package__).joinpath("option_defaults.json").read_text("utf-8")
)
#: the options that change what this server makes
EFFECTIVE = ("sd_model_checkpoint", "samples_format", CLIP_SKIP)
#: where the endpoint keeps the options, under its state directory
STORE_NAME = "a1111-options.json"


@dataclass
class Options:
    """The A1111 options a client set (``/sdapi/v1/options``), read by every later request.

    ``sd_model_checkpoint``, once set, is the name of a baked model. With a ``path`` the
    values are saved there on every change and read back by :meth:`load`."""

    values: dict[str, Any] = field(default_factory=lambda: {"samples_format": "png"})
    path: Path | None = None

    @property
    def model(self) -> str | None:
        """The model ``sd_model_checkpoint`` switched to, if any."""
        chosen = self.values.get("sd_model_checkpoint")
        return chosen if isinstance(chosen, str) else None

    @classmethod
    def load(cls, path: Path) -> Options:
        """The options saved at ``path`` (the defaults when there are none, or the file is
        unreadable: a damaged store must not keep the server from starting)."""
        options = cls(path=path)
        try:
            saved = json.loads(path.read_text("utf-8"))
        except FileNotFoundError:
            return options
        except (OSError, ValueError) as exc:
            log.warning("ignoring the A1111 options in %s: %s", path, exc)
            return options
        if isinstance(saved, dict):
            options.values.update({k: v for k, v in saved.items() if k in DEFAULTS})
        return options

    def replace(self, values: dict[str, Any]) -> None:
        """Make ``values`` the options, and save them when there is a store."""
        self.values = values
        if self.path is None:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        partial = self.path.with_name(f".{self.path.name}.{os.getpid()}")
        partial.write_text(json.dumps(values, indent=1, sort_keys=True), "utf-8")
        partial.replace(self.path)


class Settings(FormatBody):
    """``override_settings`` of a request, and the body of ``POST /sdapi/v1/options``: the
    options that take effect are fields, every other A1111 option is accepted (``inert``)."""

    inert = frozenset(DEFAULTS) - {*EFFECTIVE, *_DEFAULT_ONLY}

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


def _kind(value: Any) -> str | None:
    """The JSON kind of an option value (numbers are one kind), None for null."""
    if value is None:
        return None
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "a list"
    return "an object"


def option_problems(body: Any, prefix: str = "") -> list[Problem]:
    """Names A1111 does not know (with the closest it does), and values not of the kind of
    A1111's default, for the options in ``body``; ``prefix`` is where the body sits."""
    if not isinstance(body, dict):
        return []
    problems = []
    for name, value in body.items():
        # a name that is not valid Unicode is shown escaped, so the answer can carry it
        where = f"{prefix}{name}".encode("utf-8", "backslashreplace").decode("utf-8")
        if name not in DEFAULTS:
            near = closest(str(name), list(DEFAULTS))
            hint = f" (closest: {', '.join(repr(n) for n in near)})" if near else ""
            problems.append(Problem(where, f"is not an option A1111 knows{hint}", value))
            continue
        want = _kind(DEFAULTS[name])
        if want is not None and value is not None and _kind(value) != want:
            problems.append(Problem(where, f"must be {want}, as A1111's default", value))
    return problems


def set_options(
    options: Options, body: Any, manifests: list[Manifest]
) -> tuple[dict[str, Any], str | None]:
    """Check a ``POST /sdapi/v1/options`` body; return the new values and the model to switch
    to (also kept as ``sd_model_checkpoint``).

    Nothing is changed on a bad body, so a client never leaves the server half-configured.
    """
    problems = option_problems(body)
    unknown = {p.field for p in problems}
    known = {k: v for k, v in body.items() if k not in unknown} if isinstance(body, dict) else body
    parsed, checked = validate(Settings, known, context={"manifests": manifests})
    problems = merge(checked, problems)
    if problems or parsed is None:
        order = list(body) if isinstance(body, dict) else []
        problems.sort(key=lambda p: order.index(p.field) if p.field in order else len(order))
        raise InvalidInput(problems)
    values = dict(options.values)
    given = parsed.model_dump(exclude_none=True)
    values.update({k: v for k, v in body.items() if k in Settings.inert})
    values.update(given)
    return values, given.get("sd_model_checkpoint")


def get_options(options: Options, manifest: Manifest | None) -> dict[str, Any]:
    """``GET /sdapi/v1/options``: every option A1111 knows, at its default unless set, with
    the current model (``manifest``) as its title."""
    values = dict(DEFAULTS)
    values.update(options.values)
    values["sd_model_checkpoint"] = a1111_title(manifest) if manifest else None
    values["sd_checkpoint_hash"] = (manifest.sha256 or None) if manifest else None
    return values
