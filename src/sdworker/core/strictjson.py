"""Strict JSON: only values every JSON parser (and the ``runpod`` SDK's result POST) can carry.

Python's ``json`` reads and writes ``NaN``, ``Infinity`` and lone surrogates (``"\\ud800"``),
and reads ``1e309`` as infinity. None of them survives the round trip a job makes (client ->
queue -> worker -> result -> client): a job input that holds one is accepted and then never
ends, because its worker cannot post the result. So the endpoint reads bodies with
:func:`loads`, and the worker checks what it returns with :func:`problem`; both name the path
of the first bad value (``input.guidance_scale: NaN is not JSON``).
"""

from __future__ import annotations

import json
import math
from typing import Any

#: deeper than any real request; far below what would exhaust Python's recursion
MAX_DEPTH = 64


class NotJson(ValueError):
    """Text that is not strict JSON, or a value strict JSON cannot carry; ``str()`` names where."""


class _Refused:
    """Stands in for a value the parser met that strict JSON has no word for."""

    def __init__(self, text: str) -> None:
        self.text = text


def _constant(text: str) -> _Refused:
    return _Refused(text)


def _float(text: str) -> float | _Refused:
    value = float(text)
    # ``1e309`` parses as infinity: a number JSON can write but no program can read back
    return value if math.isfinite(value) else _Refused(text)


def loads(raw: bytes | str, root: str = "", max_depth: int = MAX_DEPTH) -> Any:
    """Parse ``raw`` as strict JSON; :class:`NotJson` names the first value that is not
    (paths start at the top object's keys unless ``root`` names the whole).

    Refused: malformed text, ``NaN``/``Infinity``, numbers too large for a float, lone
    surrogates in strings or keys, nesting deeper than ``max_depth``.
    """
    try:
        value = json.loads(raw, parse_constant=_constant, parse_float=_float)
    except RecursionError as exc:
        raise NotJson(f"{root or 'body'}: nested deeper than {max_depth} levels") from exc
    except ValueError as exc:  # JSONDecodeError, bad UTF-8, a 5000-digit integer
        raise NotJson(f"{root or 'the body'} is not valid JSON: {exc}") from exc
    found = problem(value, root, max_depth)
    if found is not None:
        raise NotJson(found)
    return value


def problem(value: Any, root: str = "output", max_depth: int = MAX_DEPTH) -> str | None:
    """Why ``value`` cannot travel as strict JSON (``"output[0].seed: NaN is not JSON"``), or
    None when it can."""
    found = find(value, root, max_depth)
    return None if found is None else f"{found[0]}: {found[1]}"


def find(value: Any, root: str = "output", max_depth: int = MAX_DEPTH) -> tuple[str, str] | None:
    """(path, reason) of the first value strict JSON cannot carry, or None. Walks iteratively,
    so a deep value cannot exhaust the stack."""
    stack: list[tuple[str, Any, int]] = [(root, value, 0)]
    while stack:
        where, item, depth = stack.pop()
        path = where or "body"
        if depth > max_depth:
            return path, f"nested deeper than {max_depth} levels"
        reason = _refusal(item)
        if reason is not None:
            return path, reason
        if isinstance(item, dict):
            for key, child in reversed(list(item.items())):
                reason = _key_refusal(key)
                if reason is not None:
                    return path, reason
                stack.append((f"{where}.{key}" if where else key, child, depth + 1))
        elif isinstance(item, (list, tuple)):
            for index in reversed(range(len(item))):
                stack.append((f"{path}[{index}]", item[index], depth + 1))
    return None


def _refusal(item: Any) -> str | None:
    """Why ``item`` itself (not what it contains) cannot be strict JSON, or None."""
    if isinstance(item, _Refused):
        return f"{item.text} is not JSON"
    if isinstance(item, float) and not math.isfinite(item):
        word = "NaN" if math.isnan(item) else "Infinity" if item > 0 else "-Infinity"
        return f"{word} is not JSON"
    if isinstance(item, str) and _lone_surrogate(item):
        return "a lone surrogate (unpaired \\ud800-\\udfff) is not JSON text"
    if item is None or isinstance(item, (str, bool, int, float, dict, list, tuple)):
        return None
    return f"a {type(item).__name__} is not JSON"


def _key_refusal(key: Any) -> str | None:
    """Why ``key`` cannot be a key of a strict JSON object, or None."""
    if not isinstance(key, str):
        return f"key {key!r} is not a string"
    if _lone_surrogate(key):
        return "a key holds a lone surrogate, which is not JSON text"
    return None


def _lone_surrogate(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return True
    return False
