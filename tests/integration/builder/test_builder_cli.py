"""``sdworker bake`` on the command line."""

from __future__ import annotations

from pathlib import Path

import pytest

from sdworker.builder.cli import bake_command
from sdworker.core.manifest import Manifest
from sdworker.core.settings import Settings


def test_bake_tiny_bakes_plain_and_checked(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert bake_command(["tiny"], Settings(models_dir=tmp_path)) == 0
    assert Manifest.read(tmp_path / "tiny").has_safety_checker is False
    assert Manifest.read(tmp_path / "tiny-safe").has_safety_checker is True
    assert "baked tiny-safe (sd1, 512x512" in capsys.readouterr().out


def test_bake_tiny_with_name_bakes_one(tmp_path: Path) -> None:
    assert bake_command(["tiny", "--name", "mini", "--models-dir", str(tmp_path)]) == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["mini"]


def test_bad_name_is_a_clear_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert bake_command(["tiny", "--name", "../evil"], Settings(models_dir=tmp_path)) == 1
    assert "model name '../evil'" in capsys.readouterr().err
    assert not any(tmp_path.iterdir())
