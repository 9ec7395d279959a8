"""A1111's scripts: this server has none. ``/scripts`` and ``/script-info`` say so in A1111's
shapes, and a request naming a script (``script_name``, a key of ``alwayson_scripts``) is
refused naming it, since running without it would hand back a different picture."""

from __future__ import annotations

from typing import Any

from sdworker.core.errors import Problem

_LISTING = "GET /sdapi/v1/scripts lists them: none"


def scripts() -> dict[str, list[str]]:
    """``GET /sdapi/v1/scripts``: the selectable scripts of txt2img and img2img."""
    return {"txt2img": [], "img2img": []}


def script_info() -> list[dict[str, Any]]:
    """``GET /sdapi/v1/script-info``: each script's name, tabs and arguments."""
    return []


def script_problems(body: Any) -> list[Problem]:
    """Scripts named in a txt2img/img2img body; empty selections are fine."""
    if not isinstance(body, dict):
        return []
    problems = []
    name = body.get("script_name")
    if name not in (None, "", "None"):
        problems.append(Problem("script_name", f"no script of that name here ({_LISTING})", name))
    always = body.get("alwayson_scripts")
    if isinstance(always, dict):
        rule = f"no always-on script of that name here ({_LISTING})"
        for key, value in always.items():
            where = f"alwayson_scripts.{key}".encode("utf-8", "backslashreplace").decode("utf-8")
            problems.append(Problem(where, rule, value))
    elif always is not None:
        problems.append(Problem("alwayson_scripts", "must be a JSON object", always))
    return problems
