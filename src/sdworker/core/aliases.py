"""Model aliases: other names for baked models, as clients that migrated here already use them.

An alias comes from ``SDWORKER_MODEL_ALIASES`` (``alias=baked_name,alias2=baked_name``) or from
``sdworker bake ... --alias NAME`` (recorded in the model's manifest). The registry
(:mod:`sdworker.core.models`) checks them at start and resolves them; this module only reads
and checks the names.
"""

from __future__ import annotations

#: what an alias may not contain: the list's own separators, and white space
_FORBIDDEN = frozenset(",=") | frozenset(" \t\r\n")
MAX_ALIAS_CHARS = 200


def alias_problem(alias: str) -> str | None:
    """Why ``alias`` cannot be an alias (None when it can)."""
    if not alias:
        return "an alias must not be empty"
    if len(alias) > MAX_ALIAS_CHARS:
        return f"alias {alias[:40]!r}... is longer than {MAX_ALIAS_CHARS} characters"
    if any(c in _FORBIDDEN for c in alias):
        return f"alias {alias!r} contains a comma, '=' or white space"
    return None


def parse_aliases(text: str | None) -> dict[str, str]:
    """``"stable-diffusion-2=sd21, stabilityai/stable-diffusion-2-1=sd21"`` → alias → baked
    name. Raises ValueError naming the bad entry (an entry without ``=``, an empty side, an
    alias given twice for different models)."""
    found: dict[str, str] = {}
    for entry in (part.strip() for part in (text or "").split(",")):
        if not entry:
            continue
        alias, sep, target = (side.strip() for side in entry.partition("="))
        if not sep or not target:
            raise ValueError(f"expected ALIAS=BAKED_NAME[,ALIAS=BAKED_NAME...] (got {entry!r})")
        problem = alias_problem(alias)
        if problem:
            raise ValueError(problem)
        if found.get(alias, target) != target:
            raise ValueError(f"alias {alias!r} names two models ({found[alias]!r} and {target!r})")
        found[alias] = target
    return found


def how_to_alias(name: str | None, baked: list[str]) -> str:
    """The hint an unknown-model error ends with: how to make ``name`` mean a baked model."""
    target = baked[0] if baked else "BAKED_NAME"
    shown = name or "NAME"
    return (
        f"to use the name {shown!r} for a baked model, set SDWORKER_MODEL_ALIASES="
        f"'{shown}={target}' or bake it with --alias {shown}"
    )


def unknown_model_message(name: str | None, baked: list[str], *, named: bool = True) -> str:
    """The one message for a model name that is neither baked nor an alias, wherever it is
    found (the registry, the native input's rules, every request format): the baked names,
    and how to make the name an alias. ``named=False`` leaves the name out, for a problem
    that shows it as its value."""
    subject = f"unknown model {name!r}" if named else "unknown model"
    names = ", ".join(baked) or "none (run `sdworker bake`)"
    return f"{subject}; baked models: {names}; {how_to_alias(name, baked)}"
