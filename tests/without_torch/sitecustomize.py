"""Hides torch from the interpreter that puts this folder on ``PYTHONPATH``, as on a machine
without it: ``import torch`` fails and importlib finds no spec (so libraries that probe for
torch, transformers among them, see none). ``make test-without-torch`` runs the unit tests so,
less those marked ``torch``."""

from __future__ import annotations

import sys
from collections.abc import Iterable, Sequence
from importlib.machinery import ModuleSpec, PathFinder
from types import ModuleType
from typing import Any


class _WithoutTorch:
    """The path finder, blind to ``torch`` and its submodules."""

    @classmethod
    def find_spec(
        cls, name: str, path: Sequence[str] | None = None, target: ModuleType | None = None
    ) -> ModuleSpec | None:
        if name.partition(".")[0] == "torch":
            return None
        return PathFinder.find_spec(name, path, target)

    @classmethod
    def invalidate_caches(cls) -> None:
        PathFinder.invalidate_caches()

    @classmethod
    def find_distributions(cls, *args: Any, **kwargs: Any) -> Iterable[Any]:
        return PathFinder.find_distributions(*args, **kwargs)


sys.meta_path[:] = [_WithoutTorch if f is PathFinder else f for f in sys.meta_path]
