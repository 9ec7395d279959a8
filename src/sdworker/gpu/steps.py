"""Between denoising steps: the calls a group makes, each job's progress over them, and the
step callback that stops a call (cancelled: it raises; interrupted: it ends early and the
pipeline decodes the latents as they stand).

A call ends early through diffusers' own ``interrupt`` flag: the pipeline skips the steps
left and decodes its current latents, so an interrupted image costs one VAE decode.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from sdworker.core.errors import Cancelled
from sdworker.core.schema import Request
from sdworker.gpu.results import Generated, Inputs

#: called with (steps done, total steps) after every denoising step
StepCallback = Callable[[int, int], None]


@dataclass(frozen=True)
class Job:
    """One request in a group: what to generate, where its progress goes, whether it is off."""

    request: Request
    inputs: Inputs
    on_step: StepCallback | None = None
    cancelled: Callable[[], bool] = lambda: False
    #: asked to stop early: its images so far, and the one being made as it stands
    interrupted: Callable[[], bool] = lambda: False

    def wants(self, made: list[Generated]) -> bool:
        """Whether this job wants another image, having ``made`` these."""
        return not self.cancelled() and not (made and self.interrupted())


@dataclass(frozen=True)
class Call:
    """One pipeline call: the (job index, seed) of each image it makes."""

    items: list[tuple[int, int]]


def plan(jobs: list[Job]) -> list[Call]:
    """A job alone: one call per image (the seed promise is bit-for-bit). A group: one call."""
    if len(jobs) == 1:
        return [Call([(0, seed)]) for seed in jobs[0].request.seeds]
    return [Call([(j, seed) for j, job in enumerate(jobs) for seed in job.request.seeds])]


class Progress:
    """Counts each job's denoising steps over all the calls (and passes) it is in."""

    def __init__(self, jobs: list[Job], calls: list[Call], passes: dict[str, int]) -> None:
        self.jobs = jobs
        self._calls_of = [
            sum(any(j == i for i, _ in c.items) for c in calls) for j in range(len(jobs))
        ]
        #: steps of each pass of one image (the base, then hires), as the pipelines count them
        self._passes = dict(passes)
        self._done = [0] * len(jobs)

    def step_end(self, live: list[tuple[int, int]], stage: str | None = "base") -> StepEnd:
        """The callback of one call of ``stage`` (None: a pass that is not counted)."""
        return StepEnd(self, sorted({j for j, _ in live}), stage)

    def measured(self, stage: str, steps: int) -> None:
        """A pipeline of ``stage`` counts ``steps`` steps per image."""
        self._passes[stage] = steps

    def count(self, members: list[int]) -> None:
        """One more step done for each job of ``members``."""
        for j in members:
            self._done[j] += 1
            sink = self.jobs[j].on_step
            total = sum(self._passes.values()) * self._calls_of[j]
            if sink is not None:
                sink(min(self._done[j], total), total)


class StepEnd:
    """A call's ``callback_on_step_end``: reports progress, raises :class:`Cancelled` once
    every job in the call is cancelled, and ends the call early (``interrupted``) once every
    job in it is cancelled or interrupted."""

    def __init__(self, progress: Progress, members: list[int], stage: str | None) -> None:
        self._progress = progress
        self._members = members
        self._stage = stage
        self._first = True
        self.interrupted = False

    def __call__(
        self, pipe: Any, step: int, timestep: Any, kwargs: dict[str, Any]
    ) -> dict[str, Any]:
        progress, jobs = self._progress, self._progress.jobs
        if self._stage is not None:
            if self._first:
                # some schedulers take an extra warm-up step (PNDM): trust the pipeline's count
                steps = int(getattr(pipe, "num_timesteps", 0) or 0)
                if steps:
                    progress.measured(self._stage, steps)
                self._first = False
            progress.count(self._members)
        if all(jobs[j].cancelled() for j in self._members):
            raise Cancelled("cancelled between denoising steps")
        if all(jobs[j].cancelled() or jobs[j].interrupted() for j in self._members):
            # diffusers skips the steps left and decodes the latents as they stand
            pipe._interrupt = True
            self.interrupted = True
        return kwargs
