"""The fuzz suite's budget and seed: hypothesis, derandomized (a fixed seed, so CI finds the
same cases every run), a bounded number of examples per property.

``SDWORKER_FUZZ_EXAMPLES`` raises the budget for a long run outside CI, and
``SDWORKER_FUZZ_SEED`` picks another fixed seed:

    SDWORKER_FUZZ_EXAMPLES=3000 SDWORKER_FUZZ_SEED=7 .venv/bin/python -m pytest tests/fuzz
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any, TypeVar

from hypothesis import HealthCheck, seed, settings

F = TypeVar("F", bound=Callable[..., Any])

EXAMPLES = int(os.environ.get("SDWORKER_FUZZ_EXAMPLES", "120"))
SEED = int(os.environ.get("SDWORKER_FUZZ_SEED", "0"))

settings.register_profile(
    "sdworker-fuzz",
    max_examples=EXAMPLES,
    derandomize=SEED == 0,
    deadline=None,
    database=None,
    print_blob=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
settings.load_profile("sdworker-fuzz")


def fuzz_seed(test: F) -> F:
    """A fixed seed other than the derandomized default, when ``SDWORKER_FUZZ_SEED`` asks."""
    return seed(SEED)(test) if SEED else test
