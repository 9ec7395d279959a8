"""The docs list every setting and link only to pages that exist; the README keeps its two
set-up commands on the first screen."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from sdworker.core.settings import Settings

ROOT = Path(__file__).resolve().parents[2]
README = (ROOT / "README.md").read_text()
SETTINGS_DOC = (ROOT / "docs" / "settings.md").read_text()


def test_every_setting_is_documented() -> None:
    missing = [env for env, _, _ in Settings.documented() if f"`{env}`" not in SETTINGS_DOC]
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


DOC_FILES = [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]


@pytest.mark.parametrize("page", DOC_FILES, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_relative_link_resolves(page: Path) -> None:
    text = page.read_text()
    broken = []
    for target in re.findall(r"\]\(([^)\s]+)\)", text):
        if "://" in target or target.startswith("#"):
            continue
        path = target.split("#", 1)[0]
        if not (page.parent / path).exists():
            broken.append(target)
    assert broken == []


def test_comments_cite_only_files_that_exist() -> None:
    """A docstring or comment naming a ``docs/...`` page or a top-level ``*.md`` names one
    that is in the repository."""
    cited: set[str] = set()
    for source in [*(ROOT / "src").rglob("*.py"), *(ROOT / "tests").rglob("*.py")]:
        cited.update(re.findall(r"((?:[\w-]+/)*[A-Z]+\.md|docs/[\w/-]+\.md)\b", source.read_text()))
    missing = sorted(
        c for c in cited if not (ROOT / c).exists() and not (ROOT / "bench" / c).exists()
    )
    assert missing == []
