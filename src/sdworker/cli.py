"""``sdworker``: bake models, run one job, or serve the local endpoint.

sdworker bake tiny [--name NAME]
sdworker bake MODEL_REF [--name NAME]
sdworker generate INPUT.json [-o DIR]
sdworker serve [--host 127.0.0.1] [--port 8000] [--workers N] [--handler FILE]
sdworker worker [--rp_serve_api]   the RunPod worker loop (what the Docker image runs)
sdworker --version
"""

from __future__ import annotations

import argparse
import base64
import json
import logging
import sys
import time
from pathlib import Path
from typing import Any

from sdworker import __version__
from sdworker.cli_progress import JobProgress, image_count
from sdworker.core.errors import SdworkerError
from sdworker.core.media import EXTENSIONS
from sdworker.core.settings import Settings

USAGE = __doc__ or ""


def main(argv: list[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if not args or args[0] in {"-h", "--help"}:
        print(USAGE.strip())
        return 0 if args else 2
    if args[0] == "--version":
        print(__version__)
        return 0
    command, rest = args[0], args[1:]
    if command == "worker":  # sets up its own logging
        from sdworker.worker import main as worker_main

        # the runpod SDK reads its own flags (--rp_serve_api, --test_input...) from sys.argv
        sys.argv = [f"{sys.argv[0]} worker", *rest]
        worker_main()
        return 0
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    try:
        if command == "bake":
            from sdworker.builder.cli import bake_command

            return bake_command(rest)
        if command == "generate":
            return generate_command(rest)
        if command == "serve":
            from sdworker.server.cli import serve_command

            return serve_command(rest)
    except SdworkerError as exc:
        print(f"sdworker {command}: {exc}", file=sys.stderr)
        return 1
    print(f"sdworker: unknown command {command!r}\n\n{USAGE.strip()}", file=sys.stderr)
    return 2


def generate_command(argv: list[str]) -> int:
    """Run one job (``{"input": ...}``) through the handler and write its images to a folder."""
    parser = argparse.ArgumentParser(prog="sdworker generate", description=generate_command.__doc__)
    parser.add_argument("input", type=Path, help='a JSON file: {"input": {...}} as test_input.json')
    parser.add_argument("-o", "--output-dir", type=Path, default=Path("outputs"))
    parser.add_argument("--quiet", action="store_true", help="no progress output")
    args = parser.parse_args(argv)

    try:
        job = json.loads(args.input.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        print(f"sdworker generate: cannot read {args.input}: {exc}", file=sys.stderr)
        return 2
    if isinstance(job, dict) and "id" not in job:
        job = {"id": f"local-{int(time.time())}", **job}

    from sdworker.runpod.adapter import RunpodAdapter

    settings = Settings.from_env()
    progress = None
    if not args.quiet:
        body = job if isinstance(job, dict) else {}
        progress = JobProgress(
            str(body.get("id", "job")), image_count(body.get("input")), sys.stderr
        )
        if progress.tty:  # a bar on a terminal may move at every step
            settings = settings.with_(progress_interval_s=min(settings.progress_interval_s, 0.1))
    worker = RunpodAdapter(settings)
    started = time.perf_counter()
    try:
        result = worker.handle_sync(job, on_progress=progress)
    finally:
        if progress is not None:
            progress.close()
    if isinstance(result, dict) and "error" in result:
        print(f"sdworker generate: {result['error']}", file=sys.stderr)
        return 1
    if not _is_native_output(result):
        # another service's envelope: its answer, in its own shape
        print(json.dumps(result, indent=2))
        return 0
    args.output_dir.mkdir(parents=True, exist_ok=True)
    summary: list[dict[str, Any]] = []
    for index, item in enumerate(result):
        entry = {k: v for k, v in item.items() if k != "image"}
        if "image" in item:  # uploaded images carry a url instead
            fmt = item.get("format", "png")
            path = args.output_dir / f"{index}-{item['seed']}.{EXTENSIONS[fmt]}"
            path.write_bytes(base64.b64decode(item["image"]))
            entry["file"] = str(path)
            print(f"wrote {path}", file=sys.stderr)
        summary.append(entry)
    elapsed = time.perf_counter() - started
    print(json.dumps({"images": summary, "seconds": round(elapsed, 2)}, indent=2))
    return 0


def _is_native_output(result: Any) -> bool:
    return isinstance(result, list) and all(
        isinstance(item, dict) and "seed" in item and ("image" in item or "url" in item)
        for item in result
    )
