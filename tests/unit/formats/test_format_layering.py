"""The request formats sit on ``core`` alone, and the worker reads them without a web stack."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import sdworker.formats

FORBIDDEN = ("server", "gpu", "output", "service", "runpod", "builder", "cli")


def _imports(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
    return names


def test_formats_import_only_core() -> None:
    package = Path(sdworker.formats.__file__).parent
    bad = {
        f"{path.relative_to(package)}: {name}"
        for path in package.rglob("*.py")
        for name in _imports(path)
        if name.startswith("sdworker.") and name.split(".")[1] in FORBIDDEN
    }
    assert bad == set()


def test_the_worker_reads_envelopes_without_the_web_framework() -> None:
    code = (
        "import sys, sdworker.runpod.envelopes; "
        "print(sorted(m for m in ('fastapi', 'starlette') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
