"""Request bodies as pydantic models, with every problem named the way the client wrote it.

Each request format declares its body as a :class:`FormatBody`: aliases carry the format's
own spellings, unknown keys are refused (a typo must not be silently ignored), and
:func:`validate` (the one the native input uses too) turns pydantic's errors into
:class:`~sdworker.core.errors.Problem`\\ s
(``modelInputs.promt: is not a known field (did you mean 'prompt'?)``), all at once.

The field types are the lax ones of :mod:`sdworker.core.fieldtypes`, as lax as these
services' clients are; ``null`` means "not given", as does ``""`` for anything but text.
"""

from __future__ import annotations

import types
import typing
from collections.abc import Mapping
from typing import Annotated, Any, ClassVar

from pydantic import AfterValidator, BaseModel, ConfigDict, model_validator
from pydantic_core import PydanticCustomError

from sdworker.core import schedulers, strictjson
from sdworker.core.fieldtypes import LaxBool, LaxFloat, LaxInt, Text
from sdworker.core.input.validate import merge, printable, problem_of, validate
from sdworker.core.rules import SAMPLERS_ROUTE, unknown_name

__all__ = [
    "FormatBody",
    "LaxBool",
    "LaxFloat",
    "LaxInt",
    "Prompt",
    "Scheduler",
    "Text",
    "default_only",
    "merge",
    "problem_of",
    "refuse",
    "validate",
]


def refuse(kind: str, message: str) -> PydanticCustomError:
    """A validation error with ``message`` as the rule (raise it in a validator)."""
    return PydanticCustomError(kind, "{rule}", {"rule": message})


def default_only(allowed: Mapping[str, tuple[Any, ...]], value: Any, field: str | None) -> Any:
    """``value`` when it is one ``allowed`` lists for ``field`` (its default, or "off"): any
    other asks for a feature this server does not have, and is refused, not ignored."""
    if field and value not in allowed[field]:
        raise refuse("unsupported", "is not supported by this server (only the default is)")
    return value


def _not_blank(value: str) -> str:
    if not value.strip():
        raise refuse("blank", "must not be empty")
    return value


def _scheduler(value: str) -> str:
    if schedulers.resolve(value) is None:
        choices = schedulers.valid_names()
        raise refuse("unknown_scheduler", unknown_name("scheduler", value, choices, SAMPLERS_ROUTE))
    return value


#: text with something in it besides spaces
Prompt = Annotated[Text, AfterValidator(_not_blank)]
#: a scheduler name the native input takes (diffusers class or A1111 sampler name)
Scheduler = Annotated[Text, AfterValidator(_scheduler)]


def _is_text(annotation: Any) -> bool:
    if annotation is str:
        return True
    origin = typing.get_origin(annotation)
    if origin is Annotated:
        return _is_text(typing.get_args(annotation)[0])
    if origin in (typing.Union, types.UnionType):
        return any(_is_text(arg) for arg in typing.get_args(annotation))
    return False


class FormatBody(BaseModel):
    """Base of the request-format bodies: strict about names, lax about spellings of values."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False, populate_by_name=False)
    #: keys accepted with any value and without effect (the service's housekeeping)
    inert: ClassVar[frozenset[str]] = frozenset()

    @model_validator(mode="before")
    @classmethod
    def _absent(cls, data: Any) -> Any:
        """``null`` is "not given" for every field, ``""`` for every field but text; inert
        keys are dropped, unless their value is one JSON cannot carry (NaN, a lone
        surrogate): kept, such a key is refused (see :func:`problem_of`), as any field's
        NaN is, rather than echoed into an answer that cannot be written."""
        if not isinstance(data, Mapping):
            return data
        text = {f.alias or name for name, f in cls.model_fields.items() if _is_text(f.annotation)}
        return {
            # a key that is not valid Unicode is kept, escaped, to be refused as unknown
            printable(k) if isinstance(k, str) else k: v
            for k, v in data.items()
            if v is not None
            and (v != "" or k in text)
            and not (k in cls.inert and strictjson.find(v, k) is None)
        }

    @classmethod
    def known_names(cls) -> list[str]:
        """The field names a client may send, in its spelling."""
        return [f.alias or name for name, f in cls.model_fields.items()] + sorted(cls.inert)
