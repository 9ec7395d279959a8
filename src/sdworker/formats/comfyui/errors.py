"""How a problem in a workflow is named: the node's id, its ``class_type`` and the input.

Every refusal of a workflow is an :class:`~sdworker.core.errors.Problem` whose field reads
``node 3 (KSampler) steps``: the id and class of the node and the name of its input (no input
when the node itself is the problem). :func:`parse_field` reads it back, so ComfyUI's own
``node_errors`` (``{id: {"errors", "class_type"}}``) can be built from a failure's problems.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from sdworker.core.errors import Problem

_FIELD = re.compile(r"^node (?P<id>[^()]+?) \((?P<cls>.*)\)(?: (?P<input>[\w.\[\]]+))?$")


@dataclass(frozen=True)
class NodeRef:
    """Where something in a workflow was said: a node (id and class) and one of its inputs."""

    node_id: str
    class_type: str
    input: str | None = None

    def at(self, name: str) -> NodeRef:
        """The same node's input ``name``."""
        return NodeRef(self.node_id, self.class_type, name)

    @property
    def field(self) -> str:
        """``node 3 (KSampler) steps``: the field name problems about it carry."""
        where = f"node {self.node_id} ({self.class_type})"
        return f"{where} {self.input}" if self.input else where

    def problem(self, rule: str, value: Any = None, *, has_value: bool = True) -> Problem:
        """A problem about this node (or its input)."""
        return Problem(self.field, rule, value, has_value)

    def __str__(self) -> str:
        return self.field


def parse_field(field: str) -> NodeRef | None:
    """The node a problem's field names (None: a field outside the graph, ``images``)."""
    match = _FIELD.match(field)
    if match is None:
        return None
    return NodeRef(match["id"], match["cls"], match["input"])
