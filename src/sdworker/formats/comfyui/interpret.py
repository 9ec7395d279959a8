"""A workflow → the native jobs that make its images: follow each output node's links back
to its loaders, read every node on the way, and turn each sample an output saves into one
native ``input``.

The steps, each refusing with every problem it finds, naming node, class and input:

1. the graph is read, bounded (:mod:`.graph`);
2. every node's class must be one sdworker reads (:data:`.nodes.SPECS`): as ComfyUI refuses
   a prompt with a node it does not have, a node of any other class is refused wherever it
   is, and the input it feeds is named;
3. the nodes the outputs need are ordered, each after those it reads (cycles and links to
   nodes that are not there are refused where they are);
4. each node is read in that order: its links must bring the types its sockets take, its
   widgets pass ComfyUI's ranges, and its meaning must be one sdworker runs
   (:mod:`.evaluate`);
5. each output's sample becomes a native job (:mod:`.plan`), one per sampler whatever the
   number of outputs that save it.

Nothing is run, fetched or loaded: the models are named through the registry's resolution.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from pydantic import BaseModel

from sdworker.core.errors import InvalidInput, Problem
from sdworker.formats.comfyui import files, graph
from sdworker.formats.comfyui import values as v
from sdworker.formats.comfyui.errors import NodeRef
from sdworker.formats.comfyui.evaluate import EVALUATORS, Context
from sdworker.formats.comfyui.graph import Node
from sdworker.formats.comfyui.nodes import OUTPUT_NODES, PENDING, SPECS, NodeSpec
from sdworker.formats.comfyui.plan import NativeJob, build
from sdworker.formats.validation import validate

#: the most samplers (native jobs) one workflow may run
MAX_JOBS = 16


@dataclass(frozen=True)
class Output:
    """An output node: what it saves and under which name, and the job that makes it."""

    ref: NodeRef
    #: ``output`` (SaveImage) or ``temp`` (PreviewImage), as ComfyUI's history says
    kind: Literal["output", "temp"]
    prefix: str
    #: the index of its job (None: a preview not made, where previews are not returned)
    job: int | None


@dataclass
class Workflow:
    """A workflow read: its native jobs, its outputs in order, and the graph as ComfyUI
    stores it (its literal values coerced to their types), for the images' ``prompt``."""

    jobs: list[NativeJob] = field(default_factory=list)
    outputs: list[Output] = field(default_factory=list)
    prompt: dict[str, Any] = field(default_factory=dict)


def id_order(node_id: str) -> tuple[int, int, str]:
    """Node ids in the editor's order: numbers by value, then the others."""
    return (0, int(node_id), "") if node_id.isdigit() and len(node_id) < 18 else (1, 0, node_id)


def interpret(workflow: Any, ctx: Context, *, previews: bool = True) -> Workflow:
    """The native jobs of ``workflow``; :class:`InvalidInput` naming every node that cannot
    run. ``previews``: whether ``PreviewImage`` outputs are made (they are not returned in
    worker-comfyui's answer, so there they are read but not made)."""
    nodes = graph.read(workflow)
    found = _classes(nodes)
    if found:
        raise graph.refuse(found)
    roots = sorted((n.id for n in nodes.values() if n.class_type in OUTPUT_NODES), key=id_order)
    if not roots:
        rule = "has no output node (SaveImage or PreviewImage): nothing would be made"
        raise InvalidInput.one("workflow", rule, has_value=False)
    ordered, found = graph.order(nodes, roots, lambda node: SPECS[node.class_type].sockets)
    if found:
        raise graph.refuse(found)
    reading = _Reading(nodes, ctx)
    for node_id in ordered:
        reading.read(nodes[node_id])
    result = reading.jobs(roots, previews)
    if reading.problems:
        raise graph.refuse(reading.problems)
    result.prompt = reading.coerced(workflow)
    return result


def _classes(nodes: Mapping[str, Node]) -> list[Problem]:
    """A node of a class sdworker does not read, wherever it is, with the input it feeds."""
    feeds: dict[str, NodeRef] = {}
    for node in nodes.values():
        for name, link in node.links.items():
            feeds.setdefault(link.source, node.ref.at(name))
    problems = []
    for node in nodes.values():
        if node.class_type in SPECS:
            continue
        why = PENDING.get(node.class_type) or (
            "is not a node sdworker runs (it reads ComfyUI's core nodes for what it can "
            "make; GET /object_info lists them): custom nodes are not supported"
        )
        reader = feeds.get(node.id)
        if reader is not None:
            problems.append(node.ref.problem(f"{why}; it feeds {reader}", has_value=False))
            continue
        # nothing reads it (an output node): named by the input it reads, if any
        here = node.ref.at(next(iter(node.links))) if node.links else node.ref
        problems.append(here.problem(f"{why}; nothing reads it (an output node)", has_value=False))
    return problems


class _Reading:
    """The nodes read so far: their outputs' values, their widgets, the problems found."""

    def __init__(self, nodes: Mapping[str, Node], ctx: Context) -> None:
        self.nodes = nodes
        self.ctx = ctx
        self.values: dict[str, tuple[Any, ...]] = {}
        self.widgets: dict[str, BaseModel] = {}
        self.saved: dict[str, Any] = {}
        self.failed: set[str] = set()
        self.problems: list[Problem] = []

    def read(self, node: Node) -> None:
        spec = SPECS[node.class_type]
        found = self._links(node, spec)
        if any(link.source in self.failed for link in node.links.values()):
            # what it reads was refused: its own links are judged, its meaning is not
            self.problems += found
            self.failed.add(node.id)
            return
        literals = {k: val for k, val in node.values.items() if k not in spec.sockets}
        widgets, more = validate(spec.widgets, literals)
        found += [node.ref.at(p.field).problem(p.message, p.value, has_value=p.has_value)
                  for p in more]  # fmt: skip
        if found or widgets is None:
            self.problems += found
            self.failed.add(node.id)
            return
        inputs = {name: self.values[link.source][link.output] for name, link in node.links.items()}
        try:
            self.values[node.id] = EVALUATORS[node.class_type](self.ctx, node.ref, widgets, inputs)
        except InvalidInput as exc:
            self.problems += exc.problems
            self.failed.add(node.id)
            return
        self.widgets[node.id] = widgets
        if spec.output_node:
            self.saved[node.id] = inputs["images"]

    def _links(self, node: Node, spec: NodeSpec) -> list[Problem]:
        """Each socket linked to an output of its type; no link where a value belongs."""
        problems = []
        for name, kind in spec.sockets.items():
            here = node.ref.at(name)
            link = node.links.get(name)
            if link is None:
                if name in node.values:
                    problems.append(
                        here.problem(f"must be a link to a {kind} output", node.values[name])
                    )
                elif name not in spec.optional:
                    problems.append(here.problem(f"is required (a link to a {kind} output)", has_value=False))  # fmt: skip
                continue
            source = self.nodes[link.source]
            outputs = SPECS[source.class_type].outputs
            if link.output >= len(outputs):
                rule = f"links to output {link.output} of {source.ref}, which has {len(outputs)}"
                problems.append(here.problem(rule, [link.source, link.output]))
            elif outputs[link.output] != kind:
                rule = (
                    f"links to output {link.output} of {source.ref}, a {outputs[link.output]}; "
                    f"it takes a {kind}"
                )
                problems.append(here.problem(rule, [link.source, link.output]))
        for name in node.links:
            if name not in spec.sockets:
                rule = (
                    "is a link, but it takes a value"
                    if name in spec.widgets.model_fields
                    else f"is not an input of {node.class_type}"
                )
                problems.append(node.ref.at(name).problem(rule, has_value=False))
        return problems

    def jobs(self, roots: list[str], previews: bool) -> Workflow:
        """One native job per sample the outputs save, and the outputs in order."""
        result = Workflow()
        by_sampler: dict[str, int] = {}
        for root in roots:
            if root in self.failed:
                continue
            node = self.nodes[root]
            saved = self.saved[root]
            temp = node.class_type == "PreviewImage"
            prefix = "ComfyUI_temp" if temp else str(self.widgets[root].filename_prefix)  # type: ignore[attr-defined]
            wrong = files.prefix_problem(prefix)
            if wrong is not None:
                self.problems.append(node.ref.at("filename_prefix").problem(wrong, prefix))
                continue
            if not isinstance(saved, v.Decoded):
                rule = (
                    "saves an image no sampler made: sdworker makes images, it does not copy them"
                )
                self.problems.append(node.ref.at("images").problem(rule, has_value=False))
                continue
            job = by_sampler.get(saved.plan.at.node_id)
            if job is None and (previews or not temp):
                job = self._job(node.ref, saved, result)
                if job is not None:
                    by_sampler[saved.plan.at.node_id] = job
            result.outputs.append(Output(node.ref, "temp" if temp else "output", prefix, job))
        return result

    def _job(self, at: NodeRef, saved: v.Decoded, result: Workflow) -> int | None:
        if len(result.jobs) >= MAX_JOBS:
            rule = f"needs a sampler past the {MAX_JOBS} one workflow may run"
            self.problems.append(at.at("images").problem(rule, has_value=False))
            return None
        try:
            job = build(saved, self.ctx.models.max_input_pixels)
        except InvalidInput as exc:
            self.problems += exc.problems
            return None
        result.jobs.append(job)
        return len(result.jobs) - 1

    def coerced(self, workflow: Mapping[Any, Any]) -> dict[str, Any]:
        """The workflow with each literal the nodes read as its type (``"20"`` is 20), as
        ComfyUI stores a prompt it validated."""
        copy: dict[str, Any] = {}
        for key, raw in workflow.items():
            node_id = str(key)
            widgets = self.widgets.get(node_id)
            if widgets is None or not isinstance(raw, Mapping):
                copy[node_id] = raw
                continue
            inputs = dict(raw.get("inputs") or {})
            for name in widgets.model_fields_set:
                if name in inputs:
                    inputs[name] = getattr(widgets, name)
            copy[node_id] = {**raw, "inputs": inputs}
        return copy
