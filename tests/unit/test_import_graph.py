"""No module of the package imports itself through others: every import counts, those under
``TYPE_CHECKING`` and those inside a function included (a reader follows them all).

``lint-imports``' acyclic contract compares siblings; this looks at the whole module graph,
so a package and one of its own modules importing each other is a circle too."""

from __future__ import annotations

import pytest

# a dev tool: absent inside the image, where the tests also run
grimp = pytest.importorskip("grimp")


def _reachable(graph: dict[str, set[str]], start: str) -> set[str]:
    """Every module ``start`` imports, directly or through others."""
    seen: set[str] = set()
    todo = [start]
    while todo:
        for child in graph[todo.pop()] - seen:
            seen.add(child)
            todo.append(child)
    return seen


def _circles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Each group of modules that import one another, through others or not."""
    reach = {module: _reachable(graph, module) for module in graph}
    found: list[list[str]] = []
    for module in sorted(graph):
        if module in reach[module] and not any(module in group for group in found):
            found.append(sorted(other for other in reach[module] if module in reach[other]))
    return found


def test_no_module_imports_itself_through_others() -> None:
    imports = grimp.build_graph("sdworker", exclude_type_checking_imports=False, cache_dir=None)
    modules = set(imports.modules)
    graph = {m: imports.find_modules_directly_imported_by(m) & modules for m in modules}
    assert _circles(graph) == []


def test_the_circle_finder_finds_a_package_and_its_module() -> None:
    graph = {"p": {"p.routes"}, "p.routes": {"p", "q"}, "q": set()}
    assert _circles(graph) == [["p", "p.routes"]]
