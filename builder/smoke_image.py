"""The checks ``make image-smoke`` runs inside the built image, with the image's own Python.

    python builder/smoke_image.py worker LOG IMAGE     sdworker worker's output in local mode
    python builder/smoke_image.py serve JOB IMAGE      one /runsync job through sdworker serve
    python builder/smoke_image.py xformers             the torch and xformers pair

``IMAGE`` is the PNG ``sdworker generate`` made of the same job in the same image: the worker
and the endpoint must return exactly those bytes. Each check prints one line and exits 1 with
the reason when it fails. Standard library only, besides what the image has installed.
"""

from __future__ import annotations

import ast
import base64
import json
import os
import re
import struct
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

#: the lines a clean run prints: the SDK's banner, and INFO or DEBUG lines of the SDK's logger
#: and of sdworker's (``python -m logging`` format). Anything else is noise a user would see: a
#: WARNING or ERROR in any format, a library's notice, a traceback, a progress bar.
_CLEAN = re.compile(
    r"--- Starting Serverless Worker \|  Version [\w.]+ ---"
    r"|(INFO|DEBUG) +\| .*"
    r"|\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d+ (INFO|DEBUG) [\w.]+: .*"
    r"|"
)
#: where the SDK's logger cuts a long message: the note, then the message's last 2 KB
_CUT = re.compile(r"\n\.\.\.TRUNCATED \d+ CHARACTERS\.\.\.\n")


def noisy_lines(text: str) -> list[str]:
    """The lines of a worker's output that a clean run must not print (see ``_CLEAN``)."""
    whole = re.sub(_CUT.pattern + r"[^\n]*", "", text)  # a cut message is one line again
    return [line for line in whole.split("\n") if not _CLEAN.fullmatch(line)]


def fail(message: str) -> None:
    raise SystemExit(f"image smoke: {message}")


def report(line: str) -> None:
    """A passed check's line: printed, or appended to ``$SMOKE_REPORT`` where image-smoke
    reads it (a file, as the container's last output line is not always passed on)."""
    path = os.environ.get("SMOKE_REPORT")
    if not path:
        print(line)
        return
    with open(path, "a") as out:
        out.write(line + "\n")


def png_size(data: bytes) -> tuple[int, int]:
    """(width, height) from a PNG's IHDR chunk."""
    if not data.startswith(b"\x89PNG\r\n\x1a\n") or data[12:16] != b"IHDR":
        fail("not a PNG")
    width, height = struct.unpack(">II", data[16:24])
    return width, height


def check_worker(log_path: Path, png_path: Path) -> None:
    """The local test run of ``sdworker worker`` on test_input.json: it completed, printed no
    ERROR or WARNING line, and returned the image ``sdworker generate`` made of the same job.

    The SDK logs the result cut to its first and last 2 KB; both ends must be the expected
    image's (its size and infotext are in the first, the end of its pixels in the last)."""
    text = log_path.read_text(errors="replace")
    noisy = noisy_lines(text)
    if noisy:
        fail("the worker's clean run printed:\n" + "\n".join(line[:300] for line in noisy))
    if "Job local_test completed successfully." not in text:
        fail("the worker did not complete the job:\n" + text[-3000:])
    found = re.search(r"^INFO +\| Job result: (.*?)(?=\nINFO +\| |\Z)", text, re.M | re.S)
    if found is None:
        fail("the worker printed no job result")
    expected = base64.b64encode(png_path.read_bytes()).decode()
    parts = _CUT.split(found.group(1).strip())
    if len(parts) == 1:  # short enough to be printed whole
        parts = [ast.literal_eval(parts[0])["output"][0]["image"]] * 2
    start = parts[0].split("'image': '", 1)[-1]
    end = parts[-1].rsplit("', 'seed'", 1)[0]
    if not (len(start) > 100 and expected.startswith(start)):
        fail(f"the worker's image starts {start[:60]!r}, not as generate's")
    if not (len(end) > 100 and expected.endswith(end)):
        fail(f"the worker's image ends {end[-60:]!r}, not as generate's")
    width, height = png_size(base64.b64decode(start[: len(start) // 4 * 4]))
    seed = re.search(r"'seed': (\d+)", parts[-1])
    report(
        f"sdworker worker: test_input.json done in local mode, a {width}x{height} PNG with "
        f"seed {seed.group(1) if seed else '?'}, the same bytes as sdworker generate's; "
        "no ERROR or WARNING line"
    )


def _call(url: str, body: Any = None) -> Any:
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(url, data, {"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=300) as response:
        return json.load(response)


def check_serve(job_path: Path, png_path: Path) -> None:
    """``sdworker serve``: its health answers, and one /runsync job returns generate's image."""
    log = Path("/tmp/serve.log")
    with log.open("w") as out:
        server = subprocess.Popen(
            ["sdworker", "serve", "--port", "0", "--workers", "1"], stdout=out, stderr=out
        )
    try:
        deadline = time.monotonic() + 180
        url = None
        while url is None:
            found = re.search(r"on (http://127\.0\.0\.1:\d+)/v2/local", log.read_text())
            url = found.group(1) + "/v2/local" if found else None
            if server.poll() is not None or time.monotonic() > deadline:
                fail("sdworker serve did not start:\n" + log.read_text()[-3000:])
            time.sleep(0.2)
        while True:  # the port is bound before the print; it answers once uvicorn is up
            try:
                health = _call(url + "/health")
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.2)
        job = json.loads(job_path.read_text())
        done = _call(url + "/runsync?wait=240000", {"input": job["input"]})
        if done.get("status") != "COMPLETED":
            fail(f"/runsync answered {str(done)[:500]}")
        image = base64.b64decode(done["output"][0]["image"])
        if image != png_path.read_bytes():
            fail("the endpoint's image differs from sdworker generate's")
        width, height = png_size(image)
        report(
            f"sdworker serve: health {health['workers']}; /runsync {done['status']} in "
            f"{done['executionTime']} ms, a {width}x{height} PNG, generate's bytes"
        )
    finally:
        server.terminate()
        server.wait(timeout=60)


def check_xformers() -> None:
    """xformers' own build information names exactly the installed torch, its library loaded,
    and the worker's start check accepts the pair. (The CUDA kernels themselves need a GPU.)"""
    import torch
    import xformers
    from xformers import _cpp_lib

    from sdworker.gpu.xformers import built_for, problem

    wanted = built_for(_cpp_lib)
    if _cpp_lib._cpp_library_load_exception is not None:
        fail(f"xformers' library did not load: {_cpp_lib._cpp_library_load_exception}")
    if wanted != torch.__version__:
        fail(
            f"xformers {xformers.__version__} was built for torch {wanted}, not {torch.__version__}"
        )
    found = problem(torch.__version__)
    if found is not None:
        fail(found)
    report(
        f"xformers {xformers.__version__}: built for torch {wanted} (its cpp_lib.json), "
        f"installed torch {torch.__version__}; its C++/CUDA library loaded"
    )


def main(argv: list[str]) -> None:
    if argv[:1] == ["worker"] and len(argv) == 3:
        check_worker(Path(argv[1]), Path(argv[2]))
    elif argv[:1] == ["serve"] and len(argv) == 3:
        check_serve(Path(argv[1]), Path(argv[2]))
    elif argv == ["xformers"]:
        check_xformers()
    else:
        fail(f"usage: {(__doc__ or '').strip().splitlines()[2]}")


if __name__ == "__main__":
    main(sys.argv[1:])
