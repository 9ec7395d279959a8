"""Packaging a user can trust: one version, extras named for what they add, entry points."""

from __future__ import annotations

import importlib.metadata
import sys
from pathlib import Path

import pytest
import tomllib

import sdworker
from sdworker import cli

ROOT = Path(__file__).resolve().parents[2]
PROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())


def test_version_is_written_in_one_place() -> None:
    assert "version" in PROJECT["project"]["dynamic"]
    assert "version" not in PROJECT["project"]
    dynamic = PROJECT["tool"]["setuptools"]["dynamic"]["version"]
    assert dynamic == {"attr": "sdworker.__version__"}
    # the installed metadata was read from there (make setup re-installs when it changes)
    assert importlib.metadata.version("sdworker") == sdworker.__version__


def test_version_flag(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["--version"]) == 0
    assert capsys.readouterr().out.strip() == sdworker.__version__


def test_extras_are_named_for_what_they_add() -> None:
    extras = PROJECT["project"]["optional-dependencies"]
    assert set(extras) == {"s3", "gpu", "test", "dev"}
    assert any(r.startswith("xformers") for r in extras["gpu"])
    assert any(r.startswith("boto3") for r in extras["s3"])
    assert any(r.startswith("pytest") for r in extras["test"])
    assert any(r.startswith("build") for r in extras["test"])
    assert any(r.startswith("ruff") for r in extras["dev"])
    # xformers is for the CUDA image only: no other install path asks for it
    for name, requirements in extras.items():
        assert name == "gpu" or not any(r.startswith("xformers") for r in requirements)
    setup = (ROOT / "scripts" / "setup.sh").read_text()
    assert '".[dev,test,s3]"' in setup


def test_builder_configs_are_package_data() -> None:
    data = PROJECT["tool"]["setuptools"]["package-data"]["sdworker"]
    assert "builder/configs/**/*" in data
    configs = ROOT / "src" / "sdworker" / "builder" / "configs"
    shipped = ["flux-schnell", "sd1", "sd2", "sd35-medium", "sdxl"]
    assert sorted(p.name for p in configs.iterdir()) == shipped


def test_worker_command_runs_the_packaged_worker(monkeypatch: pytest.MonkeyPatch) -> None:
    import sdworker.worker

    seen: list[list[str]] = []
    monkeypatch.setattr(sdworker.worker, "main", lambda: seen.append(list(sys.argv)))
    monkeypatch.setattr(sys, "argv", ["sdworker", "worker", "--rp_serve_api"])
    assert cli.main(["worker", "--rp_serve_api"]) == 0
    # the runpod SDK sees its own flags, not the sub-command
    assert seen == [["sdworker worker", "--rp_serve_api"]]


def test_root_handler_is_a_shim_to_the_packaged_worker() -> None:
    shim = (ROOT / "handler.py").read_text()
    assert "from sdworker.worker import main" in shim
    assert len(shim.splitlines()) <= 8
    entry = PROJECT["project"]["scripts"]["sdworker"]
    assert entry == "sdworker.cli:main"


def test_ci_runs_the_wheel_smoke_step() -> None:
    ci = (ROOT / ".ci" / "run").read_text()
    assert "make wheel-smoke" in ci
    assert "scripts/wheel_smoke.sh" in (ROOT / "Makefile").read_text()
