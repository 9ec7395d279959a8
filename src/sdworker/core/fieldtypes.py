"""The field types of the native input: loose booleans, finite numbers, valid Unicode text.

Shared by :mod:`.schema` and the nested objects of :mod:`.resize`.
"""

from __future__ import annotations

import math
from typing import Annotated, Any

from pydantic import AfterValidator, BeforeValidator, StrictBool, StrictFloat, StrictStr


def _bool_or_string(value: Any) -> Any:
    """Accept the strings "true"/"false" as docker-diffusers-api clients send them."""
    if isinstance(value, str) and value.strip().lower() in {"true", "false"}:
        return value.strip().lower() == "true"
    return value


def _number(value: Any) -> Any:
    """Ints are numbers too (``guidance_scale: 7``); bools are not; NaN and the infinities are
    no value a job can use, nor one JSON can carry back in an error. An integer past float
    range (``10**400``) is no finite number either."""
    if isinstance(value, int) and not isinstance(value, bool):
        try:
            return float(value)
        except OverflowError:
            # pydantic turns only ValueError into a problem on the field; anything else
            # would escape validation and fail the job with no field named
            raise ValueError("must be a finite number") from None
    if isinstance(value, float) and not math.isfinite(value):
        raise ValueError("must be a finite number")
    return value


def _text(value: Any) -> Any:
    """Text must be valid Unicode: a lone surrogate (``"\\ud800"`` in JSON) cannot be encoded,
    so no result or error carrying it could be posted back; it is refused here."""
    if isinstance(value, str):
        try:
            value.encode("utf-8")
        except UnicodeEncodeError as exc:
            raise ValueError("must be valid Unicode text (it holds a lone surrogate)") from exc
    return value


LooseBool = Annotated[StrictBool, BeforeValidator(_bool_or_string)]
#: a finite number: NaN and the infinities are no value a job can use (nor JSON carry)
Number = Annotated[StrictFloat, BeforeValidator(_number)]
Text = Annotated[StrictStr, AfterValidator(_text)]
