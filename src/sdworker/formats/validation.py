"""Request bodies as pydantic models, with every problem named the way the client wrote it.

Each request format declares its body as a :class:`FormatBody`: aliases carry the format's
own spellings, unknown keys are refused (a typo must not be silently ignored), and
:func:`validate` turns pydantic's errors into :class:`~sdworker.core.errors.Problem`\\ s
(``modelInputs.promt: is not a known field (did you mean 'prompt'?)``), all at once.

The field types are as lax as these services' clients are: form fields arrive as text and
JSON clients write ``"20"`` for 20, so numbers, integers and booleans accept their text
spellings; ``null`` means "not given", as does ``""`` for anything but text. What no format
takes: NaN, infinities, numbers too large for a float, and text that is not valid Unicode.
"""

from __future__ import annotations

import difflib
import types
import typing
from collections.abc import Mapping, Sequence
from typing import Annotated, Any, ClassVar, TypeVar

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    StrictBool,
    StrictFloat,
    StrictInt,
    StrictStr,
    ValidationError,
    model_validator,
)
from pydantic_core import ErrorDetails, PydanticCustomError

from sdworker.core import schedulers, strictjson
from sdworker.core.errors import Problem
from sdworker.core.rules import MESSAGES, SAMPLERS_ROUTE, field_name, unknown_name

M = TypeVar("M", bound=BaseModel)

_TRUE = {"true", "1", "yes", "on"}
_FALSE = {"false", "0", "no", "off"}

#: the native table, plus what the format types add
_MESSAGES: dict[str, str] = {
    **MESSAGES,
    "extra_forbidden": "is not a known field",
    "model_type": "must be a JSON object",
    "model_attributes_type": "must be a JSON object",
    "dict_type": "must be a JSON object",
    "finite_number": "must be a finite number",
    "int_from_float": "must be an integer",
    "too_short": "must not be empty",
}


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
    if isinstance(value, bool):
        return value  # refused by StrictFloat: true is not a number
    if isinstance(value, int):
        try:
            return float(value)
        except OverflowError:
            raise PydanticCustomError("finite_number", "must be a finite number") from None
    if isinstance(value, str):
        try:
            return float(value.strip())
        except ValueError:
            return value
    return value


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


def _unicode(value: str) -> str:
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        # a lone surrogate from a JSON "\ud800": nothing downstream can encode it
        raise PydanticCustomError(
            "unicode_text", "must be valid Unicode text (it holds a lone surrogate)"
        ) from None
    return value


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


#: an integer, or its decimal text; ``20.0`` is 20
LaxInt = Annotated[StrictInt, BeforeValidator(_lax_int)]
#: a finite number, or its text
LaxFloat = Annotated[StrictFloat, BeforeValidator(_lax_float)]
#: a boolean, 0/1, or true/false, yes/no, on/off as text
LaxBool = Annotated[StrictBool, BeforeValidator(_lax_bool)]
#: a string of valid Unicode
Text = Annotated[StrictStr, AfterValidator(_unicode)]
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
            _printable(k) if isinstance(k, str) else k: v
            for k, v in data.items()
            if v is not None
            and (v != "" or k in text)
            and not (k in cls.inert and strictjson.find(v, k) is None)
        }

    @classmethod
    def known_names(cls) -> list[str]:
        """The field names a client may send, in its spelling."""
        return [f.alias or name for name, f in cls.model_fields.items()] + sorted(cls.inert)


def _nested_model(model: type[BaseModel], loc: Sequence[int | str]) -> type[BaseModel] | None:
    """The model that validates the object at ``loc`` (None when it is not a model)."""
    current: type[BaseModel] | None = model
    for part in loc:
        if current is None or not isinstance(part, str):
            return None
        field = next((f for n, f in current.model_fields.items() if (f.alias or n) == part), None)
        if field is None:
            return None
        current = _model_in(field.annotation)
    return current


def _model_in(annotation: Any) -> type[BaseModel] | None:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for arg in typing.get_args(annotation):
        found = _model_in(arg)
        if found is not None:
            return found
    return None


def _printable(name: str) -> str:
    """A field name a client sent, safe to put into any JSON answer."""
    return name.encode("utf-8", "backslashreplace").decode("utf-8")


def problem_of(err: ErrorDetails, model: type[BaseModel], prefix: str = "") -> Problem:
    """One pydantic error as a :class:`Problem` on the field the client named."""
    loc = err["loc"]
    name = _printable(field_name(loc)) or "body"
    if prefix:
        name = f"{prefix}.{name}" if loc else prefix
    template = _MESSAGES.get(err["type"])
    message = template.format(**err.get("ctx", {})) if template else err["msg"]
    if err["type"] == "extra_forbidden" and loc and isinstance(loc[-1], str):
        owner = _nested_model(model, loc[:-1])
        if owner is not None and issubclass(owner, FormatBody) and loc[-1] in owner.inert:
            # an inert key kept by ``_absent``: its value is what is wrong, not its name
            message = _not_json(err.get("input"), name)
        elif owner is not None and issubclass(owner, FormatBody):
            near = difflib.get_close_matches(loc[-1], owner.known_names(), n=1, cutoff=0.6)
            if near:
                message += f" (did you mean {near[0]!r}?)"
    missing = err["type"] == "missing"
    return Problem(name, message, err.get("input"), has_value=not missing)


def _not_json(value: Any, name: str) -> str:
    """The rule a value of an inert field broke: JSON has no word for something in it."""
    found = strictjson.find(value, name)
    where, why = found if found is not None else (name, "it is not JSON")
    return f"must be plain JSON: {why}" + (f" (at {where})" if where != name else "")


def validate(
    model: type[M], body: Any, *, context: Mapping[str, Any] | None = None, prefix: str = ""
) -> tuple[M | None, list[Problem]]:
    """``body`` as ``model``, and the problems found; every field is checked.

    When some fields are bad, the model is built again from the good ones (the bad ones
    left at their defaults), so rules that span fields can still be checked in the same
    answer; it is None when even that fails (a required field is bad)."""
    try:
        return model.model_validate(body, context=dict(context or {})), []
    except ValidationError as exc:
        errors = exc.errors()
    problems = [problem_of(err, model, prefix) for err in errors]
    partial: M | None = None
    if isinstance(body, Mapping) and all(err["loc"] for err in errors):
        try:
            good = _without(body, [err["loc"] for err in errors])
            partial = model.model_validate(good, context=dict(context or {}))
        except ValidationError:
            partial = None
    return partial, problems


def _without(body: Mapping[str, Any], locs: Sequence[tuple[int | str, ...]]) -> dict[str, Any]:
    """A copy of ``body`` less the values at ``locs`` (a bad item of a list drops the list)."""
    copy: dict[str, Any] = dict(body)
    for loc in locs:
        node: dict[str, Any] = copy
        for depth, part in enumerate(loc):
            value = node.get(part) if isinstance(part, str) else None
            last = depth == len(loc) - 1 or not isinstance(loc[depth + 1], str)
            if last or not isinstance(value, Mapping):
                node.pop(str(part), None)
                break
            node[str(part)] = dict(value)
            node = node[str(part)]
    return copy


def merge(problems: list[Problem], more: Sequence[Problem]) -> list[Problem]:
    """``problems`` plus those of ``more`` on fields not already reported."""
    seen = {p.field for p in problems}
    return problems + [p for p in more if p.field not in seen]
