"""Benchmark: how fast a ComfyUI workflow is read into native jobs, and how fast the graph
bombs are refused (the format's decode alone: no queue, no model).

    PYTHONPATH=src:. python bench/comfyui_graphs.py [--repeat 20]

Cases: ComfyUI's default workflow (7 nodes), a FLUX.1 split-loader custom-sampling one
(12), a chain of 1,000 nodes (the node limit) read whole, a cycle through 900 nodes, links to
a node that is not there, 10,000 nodes (past the limit), and 1,000 nodes of an unknown class
(each refused). It prints the median milliseconds of each and appends a row to RESULTS.md.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import append_result, median

from sdworker.core.errors import InvalidInput
from sdworker.formats.comfyui.graph import MAX_NODES
from sdworker.formats.comfyui.worker import WORKER_COMFYUI
from tests.unit.formats.comfy import make_registry, models, workflow


def chain() -> dict[str, Any]:
    graph = workflow("sdxl_txt2img")
    previous = ["7", 0]
    for i in range(100, 100 + MAX_NODES - len(graph)):
        graph[str(i)] = {"class_type": "ConditioningZeroOut", "inputs": {"conditioning": previous}}
        previous = [str(i), 0]
    graph["3"]["inputs"]["negative"] = previous
    return graph


def cycle() -> dict[str, Any]:
    graph = workflow("sdxl_txt2img")
    for i in range(100, 1000):
        source = str(i + 1 if i < 999 else 100)
        graph[str(i)] = {
            "class_type": "ConditioningZeroOut",
            "inputs": {"conditioning": [source, 0]},
        }
    graph["3"]["inputs"]["negative"] = ["100", 0]
    return graph


def missing() -> dict[str, Any]:
    graph = workflow("sdxl_txt2img")
    del graph["4"]
    return graph


def bomb() -> dict[str, Any]:
    return {
        str(i): {"class_type": "KSampler", "inputs": {"model": [str(i + 1), 0]}}
        for i in range(10_000)
    }


def unknown() -> dict[str, Any]:
    graph = workflow("sdxl_txt2img")
    graph.update(
        {str(i): {"class_type": "Nope", "inputs": {}} for i in range(100, 1100 - len(graph))}
    )
    return graph


CASES: dict[str, Callable[[], dict[str, Any]]] = {
    "default (7 nodes)": lambda: workflow("sdxl_txt2img"),
    "FLUX split (12)": lambda: workflow("flux_schnell_split"),
    f"chain of {MAX_NODES}": chain,
    "cycle of 900": cycle,
    "missing link": missing,
    "10,000 nodes": bomb,
    "1,000 unknown": unknown,
}


def run(repeat: int) -> None:
    registry = make_registry(Path(tempfile.mkdtemp(prefix="comfy-bench-")))
    deployment = models(registry)
    found: list[str] = []
    for name, make in CASES.items():
        graph = make()
        times, outcome = [], ""
        for _ in range(repeat):
            started = time.perf_counter()
            try:
                decoded = WORKER_COMFYUI.decode_input({"workflow": graph}, deployment)
                outcome = f"{len(decoded.inputs)} job(s)"
            except InvalidInput as exc:
                outcome = f"refused: {exc.problems[0].field}"
            times.append((time.perf_counter() - started) * 1000)
        print(f"{name:>20}: {median(times):8.2f} ms  ({outcome})")
        found.append(f"{name} {median(times):.1f} ms")
    append_result("comfyui_graphs", f"median of {repeat}: " + "; ".join(found))


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=20)
    run(parser.parse_args().repeat)
