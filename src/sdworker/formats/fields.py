"""Reading a dialect's request body field by field, collecting every problem at once.

Each dialect names its fields its own way (``steps`` vs ``num_inference_steps``); a
:class:`FieldReader` reads one body, checks types and ranges in the dialect's own terms and
records a :class:`~sdworker.core.errors.Problem` per bad field, so the client is told about every
mistake in one answer, with the names it used.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping
from typing import Any

from sdworker.core.errors import InvalidInput, Problem

_MISSING: Any = object()


class FieldReader:
    """Typed access to one request body (or a nested part of it) with problem collection."""

    def __init__(
        self,
        body: Any,
        prefix: str = "",
        problems: list[Problem] | None = None,
        *,
        where: str = "body",
    ) -> None:
        self.problems: list[Problem] = [] if problems is None else problems
        self.prefix = prefix
        if body is None:
            body = {}
        if not isinstance(body, Mapping):
            self.problems.append(Problem(prefix or where, "must be a JSON object", body))
            body = {}
        self.body: Mapping[str, Any] = body

    def name(self, key: str) -> str:
        return f"{self.prefix}.{key}" if self.prefix else key

    def child(self, key: str) -> FieldReader:
        """A reader for the nested object ``key`` (an absent key reads as ``{}``)."""
        return FieldReader(self.body.get(key), self.name(key), self.problems)

    def bad(self, key: str, message: str, value: Any = _MISSING) -> None:
        if value is _MISSING:
            self.problems.append(Problem(self.name(key), message, has_value=False))
        else:
            self.problems.append(Problem(self.name(key), message, value))

    def has(self, key: str) -> bool:
        return self.body.get(key) is not None

    def raw(self, key: str, default: Any = None) -> Any:
        value = self.body.get(key)
        return default if value is None else value

    def string(self, key: str, default: str | None = None, *, required: bool = False) -> str | None:
        value = self.body.get(key)
        if value is None:
            if required:
                self.bad(key, "is required")
            return default
        if not isinstance(value, str):
            self.bad(key, "must be a string", value)
            return default
        if required and not value.strip():
            self.bad(key, "must not be empty", value)
        return value

    def integer(
        self,
        key: str,
        default: int | None = None,
        *,
        lo: int | None = None,
        hi: int | None = None,
        required: bool = False,
    ) -> int | None:
        value = self.body.get(key)
        if value is None or value == "":
            if required:
                self.bad(key, "is required")
            return default
        number = _as_int(value)
        if number is None:
            self.bad(key, "must be an integer", value)
            return default
        if lo is not None and number < lo:
            self.bad(key, f"must be at least {lo}", value)
            return default
        if hi is not None and number > hi:
            self.bad(key, f"must be at most {hi}", value)
            return default
        return number

    def number(
        self,
        key: str,
        default: float | None = None,
        *,
        lo: float | None = None,
        hi: float | None = None,
        lo_open: bool = False,
    ) -> float | None:
        value = self.body.get(key)
        if value is None or value == "":
            return default
        number = _as_float(value)
        if number is None:
            self.bad(key, "must be a number", value)
            return default
        if lo is not None and (number <= lo if lo_open else number < lo):
            self.bad(key, f"must be {'greater than' if lo_open else 'at least'} {lo:g}", value)
            return default
        if hi is not None and number > hi:
            self.bad(key, f"must be at most {hi:g}", value)
            return default
        return number

    def boolean(self, key: str, default: bool | None = None) -> bool | None:
        value = self.body.get(key)
        if value is None or value == "":
            return default
        parsed = as_bool(value)
        if parsed is None:
            self.bad(key, "must be true or false", value)
            return default
        return parsed

    def unknown(self, allowed: Iterable[str]) -> None:
        """Every key not in ``allowed`` is a problem: a typo must not be silently ignored."""
        known = set(allowed)
        for key in self.body:
            if key not in known:
                self.bad(key, "is not a recognised field", self.body[key])

    def raise_if_bad(self) -> None:
        if self.problems:
            raise InvalidInput(list(self.problems))


def as_bool(value: Any) -> bool | None:
    """``true``/``false`` as JSON booleans, or the strings form fields and env files use."""
    if isinstance(value, bool):
        return value
    if isinstance(value, int) and value in (0, 1):
        return bool(value)
    if isinstance(value, str):
        lowered = value.strip().lower()
        if lowered in {"true", "1", "yes", "on"}:
            return True
        if lowered in {"false", "0", "no", "off"}:
            return False
    return None


def _as_int(value: Any) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, str):
        try:
            return int(value.strip())
        except ValueError:
            return None
    return None


def _as_float(value: Any) -> float | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, (int, float)):
        number = float(value)
    elif isinstance(value, str):
        try:
            number = float(value.strip())
        except ValueError:
            return None
    else:
        return None
    return number if math.isfinite(number) else None


_PROBLEM_HEAD = re.compile(r"(^invalid input: |; )([A-Za-z_][A-Za-z0-9_.\[\]]*)(: )")


def rename_fields(message: str, names: Mapping[str, str]) -> str:
    """Rewrite the native field names of an ``invalid input: ...`` message in dialect terms.

    A job the worker rejects reports ``num_inference_steps: must be ...``; an A1111 client
    sent ``steps``, and that is the name it must read.
    """

    def swap(match: re.Match[str]) -> str:
        field = match.group(2)
        return match.group(1) + names.get(field, field) + match.group(3)

    return _PROBLEM_HEAD.sub(swap, message)


def renamed(error: InvalidInput, names: Mapping[str, str]) -> InvalidInput:
    """``error`` (a job's validation error) with its native field names in a dialect's terms."""
    return InvalidInput(
        [
            Problem(names.get(p.field, p.field), p.message, p.value, p.has_value)
            for p in error.problems
        ]
    )
