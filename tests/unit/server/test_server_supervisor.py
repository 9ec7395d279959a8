"""The worker command line: the packaged worker by default, a handler script when one is named."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace
from typing import Any

from sdworker.server.supervisor import WorkerSupervisor


def supervisor(handler_path: Path | None) -> WorkerSupervisor:
    queue: Any = SimpleNamespace()
    return WorkerSupervisor(
        queue, handler_path=handler_path, count=1, base_url="http://127.0.0.1:1", token="t"
    )


def test_default_worker_is_the_packaged_module() -> None:
    # runs from any folder: nothing but the installed package is needed
    assert supervisor(None).command()[1:] == ["-m", "sdworker.worker"]


def test_a_named_handler_script_runs_instead(tmp_path: Path) -> None:
    script = tmp_path / "mine.py"
    assert supervisor(script).command()[1:] == [str(script.resolve())]
