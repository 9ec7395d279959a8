"""Validating a body against a pydantic model, every problem named, and the partial model.

:func:`validate` is the one way an input is checked field by field, the native job's and
every request format's: pydantic's errors become :class:`~sdworker.core.errors.Problem`\\ s
worded by the one message table, an unknown key gets the closest known name
(``promt: is not a known field (did you mean 'prompt'?)``), and when some fields are bad the
model is built again from the good ones, so the rules that span fields can still be checked
in the same answer.
"""

from __future__ import annotations

import difflib
import typing
from collections.abc import Mapping, Sequence
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError
from pydantic_core import ErrorDetails

from sdworker.core import strictjson
from sdworker.core.errors import Problem
from sdworker.core.rules import field_name, rule_message

M = TypeVar("M", bound=BaseModel)


def known_names(model: type[BaseModel]) -> list[str]:
    """The keys a client may send to ``model``: its own ``known_names()`` when it has one
    (spellings, inert keys), else its fields as the client spells them."""
    names = getattr(model, "known_names", None)
    if callable(names):
        return list(names())
    return [f.alias or name for name, f in model.model_fields.items()]


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


def printable(name: str) -> str:
    """A field name a client sent, safe to put into any JSON answer."""
    return name.encode("utf-8", "backslashreplace").decode("utf-8")


def problem_of(err: ErrorDetails, model: type[BaseModel], prefix: str = "") -> Problem:
    """One pydantic error as a :class:`Problem` on the field the client named."""
    loc = err["loc"]
    name = printable(field_name(loc)) or "body"
    if prefix:
        name = f"{prefix}.{name}" if loc else prefix
    message = rule_message(err)
    if err["type"] == "extra_forbidden" and loc and isinstance(loc[-1], str):
        owner = _nested_model(model, loc[:-1])
        if owner is not None and loc[-1] in getattr(owner, "inert", ()):
            # an inert key a format body kept: its value is what is wrong, not its name
            message = _not_json(err.get("input"), name)
        elif owner is not None:
            near = difflib.get_close_matches(loc[-1], known_names(owner), n=1, cutoff=0.6)
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
    """``problems`` plus those of ``more`` on fields not already reported (one per field)."""
    merged = list(problems)
    seen = {p.field for p in problems}
    for problem in more:
        if problem.field not in seen:
            merged.append(problem)
            seen.add(problem.field)
    return merged
