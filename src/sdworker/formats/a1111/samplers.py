"""A1111's sampler catalog: the names ``sampler_name`` and ``scheduler`` (the schedule type)
take, and how a pair of them becomes a native ``scheduler``.

The txt2img/img2img body (:mod:`.request`), its hires fix (:mod:`.hires`) and the
``/samplers`` and ``/schedulers`` listings all read one catalog, so they agree on the names.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from sdworker.core import schedulers
from sdworker.core.errors import InvalidInput
from sdworker.core.rules import unknown_name

#: where a client finds the names each field takes
SAMPLERS_LISTING = "GET /sdapi/v1/samplers"
SCHEDULES_LISTING = "GET /sdapi/v1/schedulers"


@dataclass(frozen=True)
class SamplerCatalog:
    """What A1111 calls samplers and schedule types, and how a pair becomes a native name."""

    samplers: list[str]
    schedulers: list[str]
    #: (sampler_name, scheduler or None) → native ``scheduler``; raises on an unknown pair
    normalise: Callable[[str, str | None], str]

    def knows_sampler(self, name: str) -> bool:
        """Whether ``sampler_name`` may be ``name`` (with or without a schedule type in it)."""
        try:
            self.normalise(name, None)
        except (InvalidInput, ValueError, KeyError):
            return False
        return True

    def knows_schedule(self, name: str) -> bool:
        """Whether ``scheduler`` (the schedule type) may be ``name``: its label (``SGM
        Uniform``) or the name ``/schedulers`` lists (``sgm_uniform``), in any case."""
        return _schedule_key(name) in {_schedule_key(s) for s in self.schedulers}

    def unknown_sampler(self, name: str) -> str:
        """The rule an unknown sampler name breaks: the names there are, and where they are
        listed."""
        return unknown_name("sampler", name, self.samplers, SAMPLERS_LISTING)

    def unknown_schedule(self, name: str) -> str:
        """The rule an unknown schedule type breaks."""
        return unknown_name("schedule type", name, self.schedulers, SCHEDULES_LISTING)


def _schedule_key(name: str) -> str:
    return " ".join(name.replace("_", " ").split()).casefold()


def default_catalog() -> SamplerCatalog:
    """The catalog of :mod:`sdworker.core.schedulers`."""

    def normalise(sampler: str, scheduler: str | None) -> str:
        name = schedulers.normalise(sampler, scheduler)
        if name is None or schedulers.resolve(name) is None:
            raise InvalidInput.one("sampler_name", "unknown sampler", sampler)
        return name

    return SamplerCatalog(
        samplers=list(schedulers.A1111_SAMPLERS),
        schedulers=list(schedulers.A1111_SCHEDULERS),
        normalise=normalise,
    )
