"""A1111's sampler catalog: the names ``sampler_name`` and ``scheduler`` (the schedule type)
take, and how a pair of them becomes a native ``scheduler``.

The txt2img/img2img body (:mod:`.request`), its hires fix (:mod:`.hires`) and the
``/samplers`` and ``/schedulers`` listings all read one catalog, so they agree on the names.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from sdworker.core import schedulers
from sdworker.core.errors import InvalidInput, Problem
from sdworker.core.input import ModelFacts
from sdworker.core.input.family import described
from sdworker.core.rules import unknown_name

#: where a client finds the names each field takes
SAMPLERS_LISTING = "GET /sdapi/v1/samplers"
SCHEDULES_LISTING = "GET /sdapi/v1/schedulers"
#: the schedule type of a flow-matching model's own sigmas (diffusers' shifted schedule), as
#: Forge (and A1111 since 1.10) calls it; with Automatic, the only one such a model follows here
SIMPLE = "Simple"
_FLOW_SCHEDULES = ("automatic", "simple")


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

    def for_model(
        self, sampler: str, schedule: str | None, facts: ModelFacts | None, field: str = ""
    ) -> str:
        """The native ``scheduler`` for A1111's ``sampler`` and ``schedule`` on the model of
        ``facts`` (None: not known here, the names pass as they are; ``Simple`` is dropped
        where the sampler's class cannot follow it, as any schedule type that does not apply).

        A flow-matching model (SD 3.x, FLUX.1) runs only its family's flow-match schedulers:
        a sampler that has one of them, as Forge names it (``Euler`` is FLUX.1's flow-match
        Euler), becomes that class, with its own ``Simple`` schedule; a sampler or schedule
        type without one is refused, naming the field (``field`` prefixes the names: the
        hires pass's ``hr_``) and what the family takes. Raises :class:`InvalidInput`."""
        native = self.normalise(sampler, None if _is_simple(schedule) else schedule)
        spec = schedulers.resolve(native)
        if facts is None or spec is None or facts.family.takes_scheduler(spec.class_name):
            # Simple is a flow-match model's own schedule: another sampler's class cannot
            # follow it, and like any schedule type that does not apply it is ignored
            return native
        flow = _flow_classes(facts)
        found = flow.get(_base_label(sampler))
        problems: list[Problem] = []
        if found is None:
            takes = ", ".join(flow) or ", ".join(facts.family.schedulers)
            rule = f"{sampler} does not run {described(facts)}; they take {takes}"
            problems.append(Problem(f"{field}sampler_name", rule, sampler))
        if schedule is not None and _schedule_key(schedule) not in _FLOW_SCHEDULES:
            rule = f"does not apply to {described(facts)}; they take Automatic or {SIMPLE}"
            problems.append(Problem(f"{field}scheduler", rule, schedule))
        if problems or found is None:
            raise InvalidInput(problems)
        return found


def _is_simple(schedule: str | None) -> bool:
    return schedule is not None and _schedule_key(schedule) == SIMPLE.casefold()


def _base_label(sampler: str) -> str:
    """The sampler as A1111 spells it (``euler`` → ``Euler``), without a schedule type."""
    spec = schedulers.resolve(sampler)
    return spec.label if spec is not None else sampler


def _flow_classes(facts: ModelFacts) -> dict[str, str]:
    """A1111's sampler name → the family's flow-match class that is that sampler, as Forge
    names them in an infotext (``Euler`` → ``FlowMatchEulerDiscreteScheduler``)."""
    found: dict[str, str] = {}
    for class_name in facts.family.schedulers:
        sampler, schedule = schedulers.infotext_names(class_name)
        if schedule is not None:
            found.setdefault(sampler, class_name)
    return found


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
        schedulers=[*schedulers.A1111_SCHEDULERS, SIMPLE],
        normalise=normalise,
    )
