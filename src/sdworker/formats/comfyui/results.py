"""The images a workflow's jobs made, as its output nodes save them: each with its node, its
ComfyUI file name and the native output entry (``image`` or ``url``) it came from."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sdworker.formats.comfyui.files import Counters, SavedName
from sdworker.formats.comfyui.interpret import Output, Workflow


@dataclass(frozen=True)
class Saved:
    """One image an output node saved."""

    output: Output
    name: SavedName
    entry: dict[str, Any]


def per_job(workflow: Workflow, outputs: Sequence[dict[str, Any]]) -> list[list[dict[str, Any]]]:
    """The flat outputs of the jobs in order, split by job (each returns ``num_images``)."""
    split: list[list[dict[str, Any]]] = []
    at = 0
    for job in workflow.jobs:
        count = int(job.input.get("num_images", 1))
        split.append(list(outputs[at : at + count]))
        at += count
    return split


def saved(
    workflow: Workflow, by_job: Sequence[Sequence[dict[str, Any]]], counters: Counters
) -> list[Saved]:
    """Every image the output nodes save, node by node in the workflow's order; each node
    that saves a job's images names them anew (two SaveImage nodes on one sampler: two files
    each)."""
    found: list[Saved] = []
    for output in workflow.outputs:
        if output.job is None or output.job >= len(by_job):
            continue
        entries = by_job[output.job]
        native = workflow.jobs[output.job].input
        size = (int(native.get("width", 0)), int(native.get("height", 0)))
        names = counters.names(output.prefix, output.kind, len(entries), size)
        found += [Saved(output, n, e) for n, e in zip(names, entries, strict=True)]
    return found
