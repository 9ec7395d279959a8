"""bench/soak.py at tiny bounds (10 jobs, one round of its mix): the real worker under mixed
jobs, webhooks and a killed worker loses, duplicates and leaves unended nothing, delivers each
webhook once, and answers no 5xx. The full run (1,000 jobs, 50 clients) is outside CI."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_soak_at_tiny_bounds(models_dir: Path, tmp_path: Path) -> None:
    results = tmp_path / "RESULTS.md"
    env = {k: v for k, v in os.environ.items() if not k.startswith("SDWORKER_")}
    env.update(PYTHONPATH=str(ROOT / "src"), HF_HUB_OFFLINE="1")
    run = subprocess.run(
        [
            *(sys.executable, str(ROOT / "bench" / "soak.py"), "--jobs", "10", "--clients", "4"),
            *("--duration", "60", "--drain", "90", "--models-dir", str(models_dir)),
            *("--results", str(results)),
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert run.returncode == 0, run.stdout + run.stderr
    line = next(x for x in run.stdout.splitlines() if x.startswith("10 jobs"))
    assert re.search(r"lost 0, duplicated 0, 5xx 0, not ended 0", line), line
    delivered = re.search(r"webhooks delivered exactly once (\d+)/(\d+)", line)
    assert delivered and delivered.group(1) == delivered.group(2) != "0", line
    assert re.search(r"queue delay p50 [\d.]+ s, p99 [\d.]+ s", line), line
    assert "killed worker pid" in run.stdout
    assert "soak (tiny, CPU)" in results.read_text()
