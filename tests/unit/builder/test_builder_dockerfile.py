"""The Dockerfile: every step refers to files that exist and to code the tests exercise; lint."""

from __future__ import annotations

import importlib.metadata
import json
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import tomllib

from sdworker.builder.buildargs import BUILD_ARGS

ROOT = Path(__file__).resolve().parents[3]
SRC = ROOT / "src" / "sdworker"


def instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) for each Dockerfile step, continuation lines joined."""
    text = (ROOT / "Dockerfile").read_text()
    joined = re.sub(r"\s*\\\n\s*", " ", text)
    steps = []
    for line in joined.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            word, _, rest = line.partition(" ")
            steps.append((word.upper(), rest.strip()))
    return steps


def test_every_copied_path_exists_and_is_not_ignored() -> None:
    ignore = (ROOT / ".dockerignore").read_text().splitlines()
    allowed = {p[1:].rstrip("/") for p in ignore if p.startswith("!")}
    copies = [args for word, args in instructions() if word == "COPY"]
    assert copies
    for args in copies:
        *sources, _dest = shlex.split(args)
        for src in sources:
            assert (ROOT / src).exists(), f"COPY {src}: missing in the repository"
            top = src.split("/")[0]
            assert top in allowed, f"COPY {src}: excluded by .dockerignore"


BAKE_STEP = "PYTHONPATH=src python -m sdworker.builder --from-env"
SECRET_MOUNT = "--mount=type=secret,id=HF_TOKEN,required=false"


def test_bake_step_runs_the_packaged_builder_from_the_source_tree() -> None:
    runs = [args for word, args in instructions() if word == "RUN"]
    # `python -m sdworker.builder` is `sdworker bake`, run before the package is installed;
    # a gated model's token comes from the optional build secret, a file no layer keeps
    bake = [run for run in runs if run.endswith(BAKE_STEP)]
    assert bake == [f"{SECRET_MOUNT} HF_TOKEN_PATH=/run/secrets/HF_TOKEN {BAKE_STEP}"]
    assert "bake_command(sys.argv[1:])" in (SRC / "builder" / "__main__.py").read_text()
    args = dict(a.split("=", 1) if "=" in a else (a, "") for w, a in instructions() if w == "ARG")
    # a real model by default; `--build-arg MODEL_ID=tiny` gives an offline test image
    assert args["MODEL_ID"] == "stable-diffusion-v1-5/stable-diffusion-v1-5"
    # every build argument the bake reads is declared, with an empty default
    for arg in BUILD_ARGS:
        assert args.get(arg.name) == "", arg.name


def test_bake_step_bakes_model_id(tmp_path: Path) -> None:
    env = {"MODEL_ID": "tiny", "MODEL_NAME": "baked", "SDWORKER_MODELS_DIR": str(tmp_path)}
    done = subprocess.run(
        ["/bin/sh", "-c", BAKE_STEP.replace("python", shlex.quote(sys.executable), 1)],
        cwd=ROOT,
        env={**env, "PATH": "/usr/bin:/bin", "HOME": str(tmp_path)},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert json.loads((tmp_path / "baked" / "sdworker.json").read_text())["family"] == "sd1"


def test_pinned_packages_match_the_tested_ones() -> None:
    runs = " ".join(args for word, args in instructions() if word == "RUN")
    # versions come from pyproject.toml; any pin the Dockerfile adds must be the tested one
    pins = dict(re.findall(r"([A-Za-z0-9_.-]+)==([0-9][\w.]*)", runs))
    for name, version in pins.items():
        assert importlib.metadata.version(name) == version, name
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    extras = re.findall(r"\.\[([a-z0-9_,]+)\]", runs)
    assert extras == ["gpu,s3"]
    for extra in ",".join(extras).split(","):
        assert extra in project["optional-dependencies"], extra


def test_runtime_is_offline_and_starts_the_packaged_worker() -> None:
    steps = instructions()
    env = " ".join(args for word, args in steps if word == "ENV")
    assert "HF_HUB_OFFLINE=1" in env
    assert "SDWORKER_MODELS_DIR=/models" in env
    cmd = json.loads(next(args for word, args in steps if word == "CMD"))
    # the console script pip installs from pyproject's [project.scripts] (the worker loop
    # test runs the same command)
    assert cmd == ["sdworker", "worker"]
    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    assert scripts["sdworker"] == "sdworker.cli:main"
    runs = [args for word, args in steps if word == "RUN"]
    assert any(args.startswith("pip install --no-cache-dir --no-deps . ") for args in runs)
    # with no RunPod variables the SDK runs the test input beside it once
    assert ("COPY", "test_input.json ./") in steps
    job = json.loads((ROOT / "test_input.json").read_text())
    assert job["input"]["prompt"]


def test_dependency_layer_sees_the_version() -> None:
    # pyproject reads the version from sdworker/__init__.py: the stub install needs that file
    steps = instructions()
    first_install = next(i for i, (w, a) in enumerate(steps) if w == "RUN" and "pip install" in a)
    copied = [args for word, args in steps[:first_install] if word == "COPY"]
    assert "src/sdworker/__init__.py src/sdworker/" in copied


def test_weights_are_baked_before_the_worker_code_is_copied() -> None:
    steps = instructions()
    bake = next(i for i, (word, args) in enumerate(steps) if args.endswith(BAKE_STEP))
    copied_before = [args for word, args in steps[:bake] if word == "COPY"]
    assert not any(args.startswith("src/ ") for args in copied_before)
    assert ("COPY", "src/ src/") in steps[bake:]


@pytest.mark.skipif(shutil.which("hadolint") is None, reason="hadolint not installed")
def test_hadolint_clean() -> None:
    done = subprocess.run(
        ["hadolint", "Dockerfile"], cwd=ROOT, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stdout + done.stderr
