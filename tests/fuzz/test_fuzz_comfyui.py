"""ComfyUI graphs, generated and hostile, through every ComfyUI surface of the endpoint (its
``/prompt``, worker-comfyui's ``/comfyui/runsync`` and the RunPod job envelope) against the
dry worker: never a 5xx, every refusal names a node (or the workflow), every job ends, and the
graph bombs (cycles, 10,000 nodes, links to nodes that are not there, chains near the node
limit) are refused naming the node, at once. Each bomb's time is printed (``-s``), never
asserted."""

from __future__ import annotations

import json
import re
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient
from hypothesis import given
from hypothesis import strategies as st

from sdworker.formats.comfyui.graph import MAX_NODES
from sdworker.formats.comfyui.nodes import PENDING, SPECS
from tests.fuzz.conftest import fuzz_seed
from tests.fuzz.dryrun import dry_client
from tests.fuzz.strategies import SMALL_PNG, comfy_workflow, json_values

TERMINAL = re.compile(r'"status":"(COMPLETED|FAILED|CANCELLED|TIMED_OUT)"')
#: what a refusal of a graph names: a node, or the workflow (its body's field) itself
NAMED = re.compile(r"node |workflow|prompt|images|input")
CLASSES = [*SPECS, *PENDING, "Nope", "KSampler (Efficient)"]
ROUTES = ("envelope", "runsync", "prompt")


@pytest.fixture(scope="module")
def client(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestClient]:
    # room for a 10,000-node graph in one body: the node limit, not the body limit, refuses it
    yield from dry_client(
        tmp_path_factory.mktemp("comfy"),
        run_body_limit_bytes=4 * 1024 * 1024,
        runsync_body_limit_bytes=4 * 1024 * 1024,
    )


def send(client: TestClient, route: str, graph: Any) -> list[httpx.Response]:
    """The graph through one surface; an accepted one's result, once (the dry worker has
    finished it by then)."""
    images = [{"name": "in.png", "image": SMALL_PNG}]
    if route == "prompt":
        answer = client.post("/prompt", content=json.dumps({"prompt": graph}, allow_nan=True))
        if answer.status_code >= 400:
            return [answer]
        return [answer, client.get(f"/history/{answer.json()['prompt_id']}")]
    job = {"input": {"workflow": graph, "images": images}}
    if route == "runsync":
        return [client.post("/comfyui/runsync", content=json.dumps(job, allow_nan=True))]
    answer = client.post("/v2/local/run", content=json.dumps(job, allow_nan=True))
    if answer.status_code >= 400:
        return [answer]
    return [answer, client.get(f"/v2/local/status/{answer.json()['id']}")]


def check(answers: list[httpx.Response]) -> bool:
    """No 5xx, no internal error, the job ended, a refusal named; whether it was refused."""
    shown = [(a.request.url.path, a.status_code, a.text[:300]) for a in answers]
    for answer in answers:
        assert answer.status_code < 500, shown
        assert "internal error" not in answer.text and "internal_error" not in answer.text, shown
    last = answers[-1]
    if last.request.url.path.startswith("/v2/local/status"):
        assert TERMINAL.search(last.text), shown  # the job ended
    if last.request.url.path.startswith("/history"):
        assert last.json(), shown  # its history is written: its jobs ended
    refused = last.status_code >= 400 or '"FAILED"' in last.text or '"error"' in last.text
    if refused:
        assert NAMED.search(last.text), shown
    return refused


def _inputs(draw: Any, class_type: str, ids: list[str]) -> dict[str, Any]:
    spec = SPECS.get(class_type)
    names = [*spec.sockets, *spec.widgets.model_fields] if spec else ["x", "images"]
    inputs: dict[str, Any] = {}
    for name in names:
        kind = draw(st.sampled_from(["link", "link", "value", "absent"]))
        if kind == "link":
            source = draw(st.sampled_from([*ids, "missing"]))
            inputs[name] = [source, draw(st.integers(0, 3))]
        elif kind == "value":
            inputs[name] = draw(
                st.one_of(json_values, st.sampled_from([1, 0.5, "euler", "normal"]))
            )
    return inputs


@st.composite
def graphs(draw: Any) -> dict[str, Any]:
    """A graph of the node classes sdworker reads (and some it does not), wired at random:
    cycles, missing nodes, wrong types and values all come up."""
    count = draw(st.integers(1, 14))
    ids = [str(draw(st.integers(1, 60))) for _ in range(count)]
    graph = comfy_workflow() if draw(st.booleans()) else {}
    for node_id in ids:
        class_type = draw(st.sampled_from(CLASSES))
        graph[node_id] = {"class_type": class_type, "inputs": _inputs(draw, class_type, ids)}
    return graph


@fuzz_seed
@given(graph=graphs(), route=st.sampled_from(ROUTES))
def test_any_graph_is_answered_cleanly(
    client: TestClient, graph: dict[str, Any], route: str
) -> None:
    check(send(client, route, graph))


def _timed(client: TestClient, name: str, graph: Any) -> list[httpx.Response]:
    found = []
    for route in ROUTES:
        started = time.perf_counter()
        answers = send(client, route, graph)
        print(f"graph bomb {name} via {route}: {time.perf_counter() - started:.3f} s")
        assert check(answers), [a.text[:300] for a in answers]
        found.append(answers[-1])
    return found


def test_a_cycle_is_refused_naming_its_node(client: TestClient) -> None:
    graph = comfy_workflow()
    graph["3"]["inputs"]["latent_image"] = ["10", 0]
    graph["10"] = {
        "class_type": "LatentUpscale",
        "inputs": {"samples": ["3", 0], "upscale_method": "nearest-exact", "width": 0,
                   "height": 0, "crop": "disabled"},
    }  # fmt: skip
    for answer in _timed(client, "cycle", graph):
        assert "node 10 (LatentUpscale) samples: closes a cycle" in answer.text


def test_ten_thousand_nodes_are_refused_naming_the_first_past_the_limit(client: TestClient) -> None:
    graph = {
        str(i): {"class_type": "KSampler", "inputs": {"model": [str(i + 1), 0]}}
        for i in range(10_000)
    }
    for answer in _timed(client, "10,000 nodes", graph):
        assert f"node {MAX_NODES}: is past the {MAX_NODES} nodes" in answer.text


def test_links_to_missing_nodes_are_refused_naming_the_input(client: TestClient) -> None:
    graph = comfy_workflow()
    del graph["4"]
    for answer in _timed(client, "missing nodes", graph):
        assert (
            "node 3 (KSampler) model: links to node '4', which is not in the workflow"
            in answer.text
        )


def test_a_chain_at_the_node_limit_is_read_whole(client: TestClient) -> None:
    graph = comfy_workflow()
    previous = ["7", 0]
    for i in range(100, 100 + MAX_NODES - len(graph)):
        graph[str(i)] = {"class_type": "ConditioningZeroOut", "inputs": {"conditioning": previous}}
        previous = [str(i), 0]
    graph["3"]["inputs"]["negative"] = previous
    graph[str(100 + MAX_NODES)] = {"class_type": "Nope", "inputs": {}}  # one past the limit
    for answer in _timed(client, "a chain past the limit", graph):
        assert "is past the" in answer.text
    del graph[str(100 + MAX_NODES)]
    graph["3"]["inputs"]["sampler_name"] = "no such sampler"  # refused, all of it read
    for answer in _timed(client, f"a chain of {MAX_NODES} nodes", graph):
        assert "node 3 (KSampler) sampler_name: unknown sampler" in answer.text
