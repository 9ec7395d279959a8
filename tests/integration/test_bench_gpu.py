"""bench/gpu.py runs its whole benchmark on the CPU with the tiny model, as on a GPU."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "bench" / "gpu.py"
FLOAT = r"(\d+\.\d+)"


def bench_env(**extra: str) -> dict[str, str]:
    """The environment of a benchmark run: offline, our sources, no inherited SDWORKER_ knobs."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("SDWORKER_")}
    env.update(PYTHONPATH=str(ROOT / "src"), HF_HUB_OFFLINE="1", **extra)
    return env


def run_bench(args: list[str], cwd: Path, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(SCRIPT), *args],
        env=bench_env(**env),
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=300,
    )


def numbers(line: str, count: int) -> list[float]:
    found = [float(x) for x in re.findall(FLOAT, line)]
    assert len(found) == count, line
    return found


def test_cpu_smoke_run_prints_both_sides_batches_and_records_a_row(
    models_dir: Path, tmp_path: Path
) -> None:
    results = tmp_path / "results.md"
    repo_results = ROOT / "bench" / "RESULTS.md"
    before = repo_results.read_bytes() if repo_results.exists() else None
    args = ["--device", "cpu", "--model", "tiny", "--models-dir", str(models_dir)]
    args += ["--size", "64", "--steps", "2", "--requests", "4", "--clients", "2"]
    # a wide window: on a busy machine the second client's job still joins the first's batch
    done = run_bench([*args, "--results", str(results)], tmp_path, SDWORKER_BATCH_WINDOW_MS="200")
    out = done.stdout
    assert done.returncode == 0, (out + done.stderr)[-3000:]

    assert re.search(r"^tiny 64x64, 2 steps, 4 requests, cpu: CPU ", out, re.M), out
    plain = re.search(r"^  diffusers defaults \(fp32\) .*$", out, re.M)
    ours = re.search(r"^  sdworker \(float32, batch 8\) .*$", out, re.M)
    assert plain and ours, out
    for row in (plain.group(0), ours.group(0)):
        label_end = row.index(")") + 1
        assert all(x > 0 for x in numbers(row[label_end:], 4)), row
    assert "fp16" not in out  # half precision is no CPU measurement
    assert "WARNING" not in out  # the weights stayed in the dtype they were loaded in

    ratio = re.search(
        rf"^  ours / diffusers defaults \(fp32\): single {FLOAT}x, 2 clients {FLOAT}x$", out, re.M
    )
    assert ratio, out
    assert float(ratio.group(1)) > 0 and float(ratio.group(2)) > 0

    # the concurrent measurement went through cross-request batching
    batching = re.search(
        rf"^  sdworker, 2 clients: (\d+) batched calls, {FLOAT} images per call, "
        r"(\d+) of 4 jobs batched$",
        out,
        re.M,
    )
    assert batching, out
    assert int(batching.group(1)) >= 1
    assert float(batching.group(2)) >= 2.0
    assert 2 <= int(batching.group(3)) <= 4

    lines = results.read_text().splitlines()
    assert lines[:6] == [
        "# Benchmark results",
        "",
        "Rows are appended by the scripts in `bench/`.",
        "",
        "| date | benchmark | machine | numbers |",
        "|---|---|---|---|",
    ]
    assert len(lines) == 7, lines
    cells = lines[6].split(" | ")
    assert re.fullmatch(r"\| \d{4}-\d\d-\d\d \d\d:\d\d UTC", cells[0]), lines[6]
    assert cells[1] == "gpu (tiny 64x64/2, cpu)"
    assert "cores" in cells[2]
    assert cells[3].startswith("diffusers defaults (fp32): 1 client ")
    assert "; sdworker (float32, batch 8): 1 client " in cells[3]
    assert re.search(
        r"; ours \d+ batched calls, [\d.]+ images per call, \d of 4 jobs batched \|$", cells[3]
    )
    # the repository's own results file is left alone
    assert (repo_results.read_bytes() if repo_results.exists() else None) == before


def test_cuda_without_a_gpu_is_refused_with_a_pointer_to_cpu(tmp_path: Path) -> None:
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has a CUDA GPU")
    done = run_bench(["--model", "tiny", "--models-dir", str(tmp_path), "--no-record"], tmp_path)
    assert done.returncode == 1
    assert "--device cuda needs a CUDA GPU" in done.stderr
    assert "--device cpu" in done.stderr
    assert "Traceback" not in done.stderr


def test_a_model_not_baked_is_refused_with_the_bake_command(tmp_path: Path) -> None:
    done = run_bench(
        ["--device", "cpu", "--model", "nope", "--models-dir", str(tmp_path), "--no-record"],
        tmp_path,
    )
    assert done.returncode == 1
    assert f"no baked model at {tmp_path / 'nope'}" in done.stderr
    assert f"sdworker bake nope --models-dir {tmp_path}" in done.stderr
