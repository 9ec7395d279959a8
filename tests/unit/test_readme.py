"""The README lists every setting and keeps its two set-up commands on the first screen."""

from __future__ import annotations

import re
from pathlib import Path

from sdworker.core.settings import Settings

README = (Path(__file__).resolve().parents[2] / "README.md").read_text()


def test_every_setting_is_documented() -> None:
    missing = [env for env, _, _ in Settings.documented() if f"`{env}`" not in README]
    assert missing == []


def test_first_screen_has_exactly_the_two_setup_commands() -> None:
    first_screen = "\n".join(README.splitlines()[:25])
    blocks = re.findall(r"```bash\n(.*?)```", first_screen, re.S)
    assert len(blocks) == 1
    commands = [line.split("#")[0].strip() for line in blocks[0].splitlines() if line.strip()]
    assert commands == ["make run", "make test"]


def test_ci_runs_the_readme_test_command() -> None:
    ci = (Path(__file__).resolve().parents[2] / ".ci" / "run").read_text()
    assert "make test" in ci and "make lint" in ci
