"""How a broken rule is worded, the same in the native input and every request format: ONE
table of pydantic error types, field paths, and the closest valid names for an unknown one."""

from __future__ import annotations

import difflib
from collections.abc import Sequence

from pydantic_core import ErrorDetails

#: pydantic error type -> our rule, with the error's context values filled in (the native
#: input and every request format's body word their problems with it)
MESSAGES: dict[str, str] = {
    "missing": "is required",
    "extra_forbidden": "is not a known field",
    "string_type": "must be a string",
    "int_type": "must be an integer",
    "int_from_float": "must be an integer",
    "float_type": "must be a number",
    "bool_type": "must be true or false",
    "list_type": "must be a list",
    "model_type": "must be an object",
    "model_attributes_type": "must be an object",
    "dict_type": "must be an object",
    "greater_than_equal": "must be at least {ge}",
    "greater_than": "must be greater than {gt}",
    "less_than_equal": "must be at most {le}",
    "less_than": "must be less than {lt}",
    "multiple_of": "must be a multiple of {multiple_of}",
    "literal_error": "must be one of {expected}",
    "string_too_short": "must not be empty",
    "too_short": "must not be empty",
    "finite_number": "must be a finite number",
}


def rule_message(err: ErrorDetails) -> str:
    """The rule a pydantic error broke, in the words of :data:`MESSAGES`; our own validators'
    rules (custom error types, ``ValueError``) as written."""
    if err["type"] == "value_error":
        return str(err.get("ctx", {}).get("error", err["msg"]))
    template = MESSAGES.get(err["type"])
    if template is not None:
        return template.format(**err.get("ctx", {}))
    message = err["msg"]
    # pydantic's own sentences start with a capital ("Input should be..."): ours follow a name
    return message[:1].lower() + message[1:] if "url" in err else message


def field_name(loc: Sequence[int | str]) -> str:
    """``("lora", 0, "name")`` → ``"lora[0].name"``."""
    parts: list[str] = []
    for part in loc:
        if isinstance(part, int):
            parts[-1] = f"{parts[-1]}[{part}]" if parts else f"[{part}]"
        else:
            parts.append(part if part else '""')  # an empty key is still a key the client sent
    return ".".join(parts)


#: where a client finds every scheduler name (the A1111 listing, served by the local endpoint)
SAMPLERS_ROUTE = "GET /sdapi/v1/samplers"


def closest(value: str, choices: Sequence[str], n: int = 3) -> list[str]:
    """The ``n`` names of ``choices`` nearest to ``value`` (case-insensitive), best first."""
    by_key: dict[str, str] = {}
    for choice in choices:
        by_key.setdefault(choice.casefold(), choice)
    found = difflib.get_close_matches(value.casefold().strip(), list(by_key), n=n, cutoff=0.5)
    return [by_key[key] for key in found]


def unknown_name(what: str, value: str, choices: Sequence[str], listing: str) -> str:
    """``unknown scheduler; closest: 'Euler a', 'Euler' (GET /sdapi/v1/samplers lists them
    all)``: a few suggestions instead of every valid name (there are ~80 schedulers)."""
    near = closest(value, choices)
    hint = f"; closest: {', '.join(repr(n) for n in near)}" if near else ""
    return f"unknown {what}{hint} ({listing} lists them all)"
