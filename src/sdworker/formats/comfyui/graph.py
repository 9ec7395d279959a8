"""Reading a workflow in ComfyUI's API format, bounded: its nodes, their links, and the order
in which the nodes an output needs are read.

A workflow is ``{node_id: {"class_type", "inputs", "_meta"?}}``; an input is a literal or a
link ``[source_id, output_index]``. Everything here is bounded by the size of the workflow
and refuses what ComfyUI would refuse (a node with no ``class_type``, a link of the wrong
shape or to a node that is not there) before anything is interpreted, naming the node:

* at most :data:`MAX_NODES` nodes, checked before any node is read;
* the nodes an output needs are ordered by an explicit stack, never by recursion, so a chain
  of thousands of nodes is read in linear time, and a cycle is refused where it closes.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from sdworker.core.errors import InvalidInput, Problem
from sdworker.formats.comfyui.errors import NodeRef

#: the most nodes a workflow may have: exported workflows of what sdworker runs have tens
MAX_NODES = 1000
#: the longest node id (the editor's are numbers, or ``"54:73"`` inside subgraphs)
MAX_ID_CHARS = 64
#: the most inputs one node may have
MAX_INPUTS = 64
#: the most problems one refusal lists (a graph bomb would otherwise list thousands)
MAX_PROBLEMS = 20
_NODE_KEYS = ("class_type", "inputs", "_meta")


@dataclass(frozen=True)
class Link:
    """An input fed by another node's output: ``[source, output]`` in the workflow."""

    source: str
    output: int


@dataclass
class Node:
    """One node of the workflow: its class, its literal inputs and its linked ones."""

    id: str
    class_type: str
    values: dict[str, Any] = field(default_factory=dict)
    links: dict[str, Link] = field(default_factory=dict)

    @property
    def ref(self) -> NodeRef:
        return NodeRef(self.id, self.class_type)


def refuse(problems: list[Problem]) -> InvalidInput:
    """The refusal of a workflow: its problems, at most :data:`MAX_PROBLEMS` of them."""
    if len(problems) > MAX_PROBLEMS:
        more = len(problems) - MAX_PROBLEMS
        shown = problems[:MAX_PROBLEMS]
        last = shown[-1]
        rule = f"{last.message}; and {more} more problems like these"
        shown[-1] = Problem(last.field, rule, last.value, last.has_value)
        return InvalidInput(shown)
    return InvalidInput(problems)


def read(workflow: Any, where: str = "workflow") -> dict[str, Node]:
    """The nodes of ``workflow``; :class:`InvalidInput` naming every malformed one."""
    if not isinstance(workflow, Mapping):
        raise InvalidInput.one(where, "must be an object of nodes (ComfyUI's API format)", workflow)
    if "nodes" in workflow and "links" in workflow:
        rule = (
            "is in the editor's save format; export it with Workflow > Export (API), "
            "which writes the API format {node_id: {class_type, inputs}}"
        )
        raise InvalidInput.one(where, rule, has_value=False)
    if not workflow:
        raise InvalidInput.one(where, "has no nodes", has_value=False)
    if len(workflow) > MAX_NODES:
        past = str(list(workflow)[MAX_NODES])[:MAX_ID_CHARS]
        rule = f"is past the {MAX_NODES} nodes a workflow may have (this one has {len(workflow)})"
        raise InvalidInput.one(f"node {_shown_id(past)}", rule, has_value=False)
    nodes: dict[str, Node] = {}
    problems: list[Problem] = []
    for key, raw in workflow.items():
        node_id = str(key)
        node, found = _node(node_id, raw)
        problems += found
        if node is not None:
            nodes[node_id] = node
    if problems:
        raise refuse(problems)
    return nodes


def _shown_id(node_id: str) -> str:
    """An id as field names show it (parentheses would make a field ambiguous)."""
    cleaned = node_id.replace("(", "[").replace(")", "]").strip()
    return cleaned or repr(node_id)


def _node(node_id: str, raw: Any) -> tuple[Node | None, list[Problem]]:
    where = NodeRef(_shown_id(node_id), "?")
    if not 0 < len(node_id) <= MAX_ID_CHARS or node_id != _shown_id(node_id):
        rule = f"must be 1 to {MAX_ID_CHARS} characters without parentheses or edge spaces"
        return None, [Problem(f"node {where.node_id}", f"id {rule}", node_id)]
    if not isinstance(raw, Mapping):
        rule = "must be an object with class_type and inputs (a workflow node)"
        return None, [Problem(f"node {node_id}", rule, raw)]
    class_type = raw.get("class_type")
    if not isinstance(class_type, str) or not class_type.strip() or "\n" in class_type:
        rule = "is missing its class_type (every workflow node has one)"
        return None, [Problem(f"node {node_id}", rule, class_type, has_value="class_type" in raw)]
    ref = NodeRef(node_id, _safe_text(class_type))
    node = Node(node_id, ref.class_type)
    problems = [
        ref.problem(f"has an unknown key {key!r} (a node has {', '.join(_NODE_KEYS)})", raw[key])
        for key in raw
        if key not in _NODE_KEYS
    ]
    inputs = raw.get("inputs", {})
    if not isinstance(inputs, Mapping):
        return None, [*problems, ref.at("inputs").problem("must be an object", inputs)]
    if len(inputs) > MAX_INPUTS:
        return None, [ref.problem(f"has {len(inputs)} inputs; at most {MAX_INPUTS} are read")]
    for name, value in inputs.items():
        if isinstance(value, list):
            link = _link(value)
            if link is None:
                rule = "is a link of the wrong shape: ComfyUI's links are [node_id, output_index]"
                problems.append(ref.at(_safe_text(name)).problem(rule, value))
            else:
                node.links[str(name)] = link
        else:
            node.values[str(name)] = value
    return node, problems


def _safe_text(text: str) -> str:
    """A name from the workflow, as messages show it (no lone surrogates, one line)."""
    return text.encode("utf-8", "backslashreplace").decode("utf-8").replace("\n", " ")[:100]


def _link(value: list[Any]) -> Link | None:
    if len(value) != 2:
        return None
    source, output = value
    if isinstance(source, bool) or not isinstance(source, str | int):
        return None
    if isinstance(output, bool) or not isinstance(output, int) or not 0 <= output < MAX_INPUTS:
        return None
    return Link(str(source), output)


def order(
    nodes: Mapping[str, Node], roots: Iterable[str], followed: Callable[[Node], Iterable[str]]
) -> tuple[list[str], list[Problem]]:
    """Every node the ``roots`` need, each after the nodes it reads (``followed(node)`` names
    the inputs whose links are followed), and the problems on the way: links to nodes that
    are not there, and cycles, named where they close.

    Depth-first with an explicit stack: each node is entered once and each link looked at
    once, whatever the depth."""
    done: list[str] = []
    state: dict[str, int] = {}  # 1: on the stack, 2: done
    problems: list[Problem] = []
    for root in roots:
        if state.get(root):
            continue
        state[root] = 1
        stack: list[tuple[str, list[tuple[str, Link]]]] = [(root, _edges(nodes[root], followed))]
        while stack:
            node_id, edges = stack[-1]
            if not edges:
                stack.pop()
                state[node_id] = 2
                done.append(node_id)
                continue
            name, link = edges.pop()
            here = nodes[node_id].ref.at(name)
            if link.source not in nodes:
                rule = f"links to node {link.source!r}, which is not in the workflow"
                problems.append(here.problem(rule, [link.source, link.output]))
            elif state.get(link.source) == 1:
                problems.append(here.problem(_cycle(stack, link.source), has_value=False))
            elif not state.get(link.source):
                state[link.source] = 1
                stack.append((link.source, _edges(nodes[link.source], followed)))
    return done, problems


def _edges(node: Node, followed: Callable[[Node], Iterable[str]]) -> list[tuple[str, Link]]:
    names = set(followed(node))
    # reversed: popped from the end, the inputs are followed in the node's own order
    return [(n, link) for n, link in reversed(node.links.items()) if n in names]


def _cycle(stack: list[tuple[str, list[tuple[str, Link]]]], back_to: str) -> str:
    ids = [node_id for node_id, _ in stack]
    loop = [*ids[ids.index(back_to) :], back_to]
    shown = " -> ".join(reversed(loop[-8:])) if len(loop) <= 8 else f"{len(loop) - 1} nodes"
    return f"closes a cycle ({shown}): a workflow must not feed a node its own output"
