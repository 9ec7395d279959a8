"""The image's bake step: ``python builder/bake.py`` bakes ``$MODEL_ID`` into ``$SDWORKER_MODELS_DIR``.

A thin wrapper over ``sdworker bake`` (``sdworker.builder.cli.bake_command``), reading the
Docker build arguments from the environment:

- ``MODEL_ID``: what to bake (``tiny``, a hub id, a path); several separated by commas
- ``MODEL_NAME``: the name of the (first) model; default derived from ``MODEL_ID``
- ``LORAS``: LoRA files to bake alongside, separated by commas
- ``MODEL_ALIASES``: other names of the (first) model, separated by commas (``--alias``)

Extra command-line arguments are passed on to ``sdworker bake`` for every model.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

# the bake layer runs before the package is installed: import it from the source tree
SRC = Path(__file__).resolve().parent.parent / "src"
if SRC.is_dir():
    sys.path.insert(0, str(SRC))

from sdworker.builder.cli import bake_command  # noqa: E402


def commands(environ: dict[str, str], extra: list[str]) -> list[list[str]]:
    """The ``sdworker bake`` argument lists for the build arguments in ``environ``."""
    refs = [r.strip() for r in environ.get("MODEL_ID", "tiny").split(",") if r.strip()]
    if not refs:
        raise SystemExit("builder/bake.py: MODEL_ID is empty")
    name = environ.get("MODEL_NAME", "").strip()
    loras = [p.strip() for p in environ.get("LORAS", "").split(",") if p.strip()]
    aliases = [a.strip() for a in environ.get("MODEL_ALIASES", "").split(",") if a.strip()]
    out = []
    for i, ref in enumerate(refs):
        argv = [ref, *extra]
        if i == 0 and name:
            argv += ["--name", name]
        if i == 0:
            for lora in loras:
                argv += ["--lora", lora]
            for alias in aliases:
                argv += ["--alias", alias]
        out.append(argv)
    return out


def main(argv: list[str]) -> int:
    for args in commands(dict(os.environ), argv):
        code = bake_command(args)
        if code:
            return code
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
