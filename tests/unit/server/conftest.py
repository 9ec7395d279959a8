"""Fixtures for the endpoint's unit tests: a queue on a temporary SQLite file and a manual clock."""

from __future__ import annotations

from pathlib import Path

import pytest

from sdworker.core.settings import Settings
from sdworker.server.clock import ManualClock


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings(
        state_dir=tmp_path / "state",
        result_ttl_s=1800.0,
        runsync_ttl_s=60.0,
        webhook_retries=2,
        webhook_interval_s=0.01,
        worker_poll_s=0.05,
        runsync_wait_s=0.05,
        sweep_interval_s=3600.0,  # tests call sweep() themselves
        workers=0,
    )
