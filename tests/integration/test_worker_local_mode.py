"""RunPod's local test mode (no RunPod variables: the SDK runs test_input.json once and exits)
is the first thing a user of the image sees, so a clean run prints no ERROR or WARNING line
that the user did not cause, and no progress bar. The real worker, in a subprocess."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path
from types import ModuleType

ROOT = Path(__file__).resolve().parents[2]


def smoke_checks() -> ModuleType:
    """builder/smoke_image.py, whose rule for a clean run image-smoke applies inside the image."""
    spec = importlib.util.spec_from_file_location(
        "smoke_image", ROOT / "builder" / "smoke_image.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_a_clean_local_run_prints_no_error_or_warning_line(
    tmp_path: Path, worker_env: dict[str, str]
) -> None:
    job = {"input": {"prompt": "a lighthouse", "num_inference_steps": 3, "seed": 5}}
    (tmp_path / "test_input.json").write_text(json.dumps(job))
    env = {
        k: v
        for k, v in worker_env.items()
        if not k.startswith("RUNPOD_") or k == "RUNPOD_SKIP_AUTO_SYSTEM_CHECKS"
    }
    # progress after every step: in local mode each update used to log an ERROR (its post to
    # the platform failed, as there is none)
    env["SDWORKER_PROGRESS_INTERVAL_S"] = "0"
    sdworker = Path(sys.executable).parent / "sdworker"
    done = subprocess.run(
        [str(sdworker), "worker"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
    )
    output = done.stdout + done.stderr
    assert done.returncode == 0, output[-3000:]
    assert "Job local_test completed successfully." in output
    assert "'seed': 5" in output
    assert smoke_checks().noisy_lines(output) == []


def test_the_clean_run_rule_flags_what_a_user_would_see() -> None:
    noisy = smoke_checks().noisy_lines(
        "--- Starting Serverless Worker |  Version 1.12.0 ---\n"
        "INFO   | local_test | Started.\n"
        "2026-01-01 10:00:00,123 INFO sdworker.gpu.pipelines: loaded model tiny in 0.6s\n"
        "INFO   | Job result: {'output': [{'image': 'iVBOR\n...TRUNCATED 99 CHARACTERS...\nxyz'}]}\n"
        "ERROR  | local_test | Failed to return job results. | JOB_DONE_URL&isStream=false\n"
        "2026-01-01 10:00:01,000 WARNING sdworker.gpu.optimize: something\n"
        "[transformers] `CLIPImageProcessor` requires torchvision (not installed)\n"
        "Loading weights: 100%|██████████| 36/36 [00:00<00:00, 25984.33it/s]\n"
    )
    assert [line.split()[0] for line in noisy] == [
        "ERROR",
        "2026-01-01",
        "[transformers]",
        "Loading",
    ]
