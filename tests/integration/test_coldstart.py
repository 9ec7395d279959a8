"""Cold start: the worker loop starts without torch; the model loads beside it."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_importing_the_handler_loads_no_model_code(worker_env: dict[str, str]) -> None:
    code = (
        "import sys, runpod, sdworker.runpod.adapter;"
        "print(sorted(m for m in ('torch', 'diffusers', 'transformers') if m in sys.modules))"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], env=worker_env, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"


def test_handler_py_preloads_and_answers_its_test_input(
    worker_env: dict[str, str], tmp_path: Path
) -> None:
    job = {
        "input": {
            "prompt": "a lighthouse",
            "seed": 3,
            "width": 64,
            "height": 64,
            "num_inference_steps": 2,
        }
    }
    env = {**worker_env, "SDWORKER_PRELOAD": "true", "SDWORKER_BATCH_MAX": "4"}
    done = subprocess.run(
        [sys.executable, str(ROOT / "handler.py"), "--test_input", json.dumps(job)],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=180,
    )
    log = done.stdout + done.stderr
    assert done.returncode == 0, log[-3000:]
    assert "completed successfully" in log
    # one load only: the job waited for the preload instead of loading the model again
    assert log.count("loaded model tiny") == 1
