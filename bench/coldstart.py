"""Benchmark: cold start, from process start to the first image, against a bare diffusers script.

    PYTHONPATH=src python bench/coldstart.py [--runs 5] [--size 256] [--steps 4] [--model-dir DIR]

Ours is ``python handler.py --test_input JOB`` (the runpod SDK runs one job and exits), with the
model loading beside the worker loop. Bare is a script that imports diffusers, loads the same
model and makes the same image. Also timed: how soon our worker loop could answer (imports
done, ``start()`` reached), which is what RunPod's health checks see. Tiny model by default.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import ROOT, append_result, median

BARE = """
import sys, torch
from diffusers import AutoPipelineForText2Image
path, size, steps = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
device = "cuda" if torch.cuda.is_available() else "cpu"
dtype = torch.float16 if device == "cuda" else torch.float32
pipe = AutoPipelineForText2Image.from_pretrained(path, dtype=dtype).to(device)
image = pipe("a lighthouse", num_inference_steps=steps, width=size, height=size,
             generator=torch.Generator("cpu").manual_seed(7)).images[0]
print("IMAGE", image.size)
"""

READY = "import runpod, sdworker.runpod.adapter; sdworker.runpod.adapter.Settings.from_env()"


def timed(cmd: list[str], env: dict[str, str], cwd: Path, expect: str) -> float:
    started = time.perf_counter()
    done = subprocess.run(cmd, env=env, cwd=cwd, capture_output=True, text=True, timeout=900)
    elapsed = time.perf_counter() - started
    if done.returncode != 0 or expect not in done.stdout + done.stderr:
        raise SystemExit(
            f"{cmd[:3]} failed ({done.returncode}): {(done.stdout + done.stderr)[-2000:]}"
        )
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--steps", type=int, default=4)
    parser.add_argument("--model-dir", type=Path, help="a models folder (default: bake tiny)")
    parser.add_argument("--model", default="tiny", help="model name inside --model-dir")
    parser.add_argument("--no-record", action="store_true")
    args = parser.parse_args()

    models = args.model_dir
    if models is None:
        from sdworker.builder.tiny import bake_tiny

        models = Path(tempfile.mkdtemp(prefix="sdworker-bench-"))
        bake_tiny(models, args.model)
    env = {
        **os.environ,
        "SDWORKER_MODELS_DIR": str(models),
        "SDWORKER_DEFAULT_MODEL": args.model,
        "RUNPOD_SKIP_AUTO_SYSTEM_CHECKS": "true",
        "HF_HUB_OFFLINE": "1",
        "PYTHONPATH": os.pathsep.join([str(ROOT / "src"), os.environ.get("PYTHONPATH", "")]),
    }
    job = {
        "input": {
            "prompt": "a lighthouse",
            "seed": 7,
            "width": args.size,
            "height": args.size,
            "num_inference_steps": args.steps,
        }
    }
    work = Path(tempfile.mkdtemp(prefix="sdworker-cold-"))
    ours_cmd = [sys.executable, str(ROOT / "handler.py"), "--test_input", json.dumps(job)]
    bare_cmd = [
        *(sys.executable, "-c", BARE),
        *(str(models / args.model), str(args.size), str(args.steps)),
    ]
    ready_cmd = [sys.executable, "-c", READY]
    times: dict[str, list[float]] = {"ours": [], "bare": [], "ready": []}
    for i in range(args.runs):
        runs = [("ours", ours_cmd, "completed successfully"), ("bare", bare_cmd, "IMAGE")]
        for name, cmd, expect in runs if i % 2 == 0 else runs[::-1]:
            times[name].append(timed(cmd, env, work, expect))
        times["ready"].append(timed(ready_cmd, env, work, ""))
    ours_s, bare_s, ready_s = (median(times[k]) for k in ("ours", "bare", "ready"))
    print(f"{args.model}, {args.size}x{args.size}, {args.steps} steps, {args.runs} runs each")
    print(f"  ours: process start -> first image  median {ours_s:6.2f} s")
    print(f"  bare diffusers script              median {bare_s:6.2f} s")
    print(f"  ours: process start -> worker loop median {ready_s:6.2f} s (health answers)")
    print(f"  ratio first image ours/bare {ours_s / bare_s:.3f}")
    if not args.no_record:
        append_result(
            f"coldstart ({args.model})",
            f"{args.size}x{args.size}/{args.steps} steps, {args.runs} runs: first image ours "
            f"{ours_s:.2f} s, bare {bare_s:.2f} s, ratio {ours_s / bare_s:.3f}; "
            f"worker loop up {ready_s:.2f} s",
        )


if __name__ == "__main__":
    main()
