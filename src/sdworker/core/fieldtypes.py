"""The field types of every input: the native job's and the request formats' bodies.

One library, two truth tables, each where it belongs:

* the native input is strict, as its JSON clients are: an integer is an integer, a boolean
  ``true``/``false`` (or that word as text, as docker-diffusers-api clients send it);
* the request formats are as lax as those services' clients: form fields arrive as text and
  JSON clients write ``"20"`` for 20, so :data:`LaxInt`, :data:`LaxFloat` and :data:`LaxBool`
  take their text spellings (and 0/1 for a boolean).

What neither takes: NaN, the infinities, numbers too large for a float, and text that is not
valid Unicode (no result or error carrying it could be posted back). Each refusal has its
error type, worded by the one message table (:data:`sdworker.core.rules.MESSAGES`).
"""

from __future__ import annotations

import math
from typing import Annotated, Any

from pydantic import AfterValidator, BeforeValidator, StrictBool, StrictFloat, StrictInt, StrictStr
from pydantic_core import PydanticCustomError

_TRUE = {"true", "1", "yes", "on"}
_FALSE = {"false", "0", "no", "off"}


def _not_finite() -> PydanticCustomError:
    return PydanticCustomError("finite_number", "must be a finite number")


def _as_float(value: int) -> float:
    """An integer as a float; one past a float's range is no number a job can use."""
    try:
        return float(value)
    except OverflowError:
        raise _not_finite() from None


def _number(value: Any) -> Any:
    """Ints are numbers too (``guidance_scale: 7``); bools are not; NaN and the infinities are
    no value a job can use, nor one JSON can carry back in an error. An integer past float
    range (``10**400``) is no finite number either."""
    if isinstance(value, int) and not isinstance(value, bool):
        return _as_float(value)
    if isinstance(value, float) and not math.isfinite(value):
        raise _not_finite()
    return value


def _word_bool(value: Any) -> Any:
    """Accept the strings "true"/"false" as docker-diffusers-api clients send them."""
    if isinstance(value, str) and value.strip().lower() in {"true", "false"}:
        return value.strip().lower() == "true"
    return value


def _unicode(value: str) -> str:
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        # a lone surrogate from a JSON "\ud800": nothing downstream can encode it
        raise PydanticCustomError(
            "unicode_text", "must be valid Unicode text (it holds a lone surrogate)"
        ) from None
    return value


def _lax_int(value: Any) -> Any:
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, str):
        try:
            return int(value.strip())
        except ValueError:
            return value
    return value


def _lax_float(value: Any) -> Any:
    if isinstance(value, str):
        try:
            value = float(value.strip())
        except ValueError:
            return value
    return _number(value)


def _lax_bool(value: Any) -> Any:
    if isinstance(value, int) and not isinstance(value, bool) and value in (0, 1):
        return bool(value)
    if isinstance(value, str):
        lowered = value.strip().lower()
        if lowered in _TRUE:
            return True
        if lowered in _FALSE:
            return False
    return value


#: a string of valid Unicode
Text = Annotated[StrictStr, AfterValidator(_unicode)]
#: a finite number; an integer is one too
Number = Annotated[StrictFloat, BeforeValidator(_number)]
#: true or false, or that word as text
LooseBool = Annotated[StrictBool, BeforeValidator(_word_bool)]

#: an integer, or its decimal text; ``20.0`` is 20
LaxInt = Annotated[StrictInt, BeforeValidator(_lax_int)]
#: a finite number, or its text
LaxFloat = Annotated[StrictFloat, BeforeValidator(_lax_float)]
#: a boolean, 0/1, or true/false, yes/no, on/off as text
LaxBool = Annotated[StrictBool, BeforeValidator(_lax_bool)]
