"""The Docker build arguments of the bake step, as ``sdworker bake`` arguments.

``sdworker bake --from-env`` (the Dockerfile's bake step) reads them from the environment,
where ``ARG`` puts them. Each argument is one row of :data:`BUILD_ARGS`: the option of
``sdworker bake`` it becomes, and whether it holds a comma-separated list. A new build argument
is a new row (and its ``ARG`` line in the Dockerfile).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from sdworker.core.errors import ConfigError


@dataclass(frozen=True)
class BuildArg:
    """One Docker build argument and the ``sdworker bake`` option it becomes."""

    #: the variable (the Dockerfile's ``ARG``)
    name: str
    #: the option it sets, for the first model of ``MODEL_ID``
    option: str
    #: a comma-separated list: one option per entry
    many: bool
    #: what it means, for docs/image.md and the bake command's help
    help: str


#: the model references to bake, separated by commas; the rows below apply to the first
MODEL_ID = "MODEL_ID"

BUILD_ARGS: tuple[BuildArg, ...] = (
    BuildArg("MODEL_NAME", "--name", False, "the name of the model (and so the default model)"),
    BuildArg("LORAS", "--lora", True, "LoRA files to bake beside it, separated by commas"),
    BuildArg(
        "EMBEDDINGS",
        "--embedding",
        True,
        "textual-inversion embedding files (or folders of them) to bake, separated by commas",
    ),
    BuildArg("MODEL_ALIASES", "--alias", True, "other names of the model, separated by commas"),
)


def _items(value: str) -> list[str]:
    return [item.strip() for item in value.split(",") if item.strip()]


def bake_commands(environ: Mapping[str, str], extra: list[str]) -> list[list[str]]:
    """The ``sdworker bake`` argument lists for the build arguments in ``environ``: one per
    model of ``MODEL_ID``, each followed by ``extra`` (options given on the command line)."""
    refs = _items(environ.get(MODEL_ID, ""))
    if not refs:
        state = "empty" if MODEL_ID in environ else "not set"
        raise ConfigError(
            f"{MODEL_ID}: {state}; give the model(s) to bake, for example "
            f"--build-arg {MODEL_ID}=stable-diffusion-v1-5/stable-diffusion-v1-5 (or tiny)"
        )
    first = [refs[0]]
    for arg in BUILD_ARGS:
        value = environ.get(arg.name, "")
        values = _items(value) if arg.many else [value.strip()] if value.strip() else []
        for item in values:
            first += [arg.option, item]
    return [[*first, *extra], *([ref, *extra] for ref in refs[1:])]
