"""``serve_command`` refuses unsafe or impossible configurations before binding anything."""

from __future__ import annotations

from pathlib import Path

import pytest

from sdworker.server.cli import is_loopback, reachable_host, serve_command


@pytest.mark.parametrize(
    ("host", "loopback"),
    [
        ("127.0.0.1", True),
        ("localhost", True),
        ("::1", True),
        ("0.0.0.0", False),
        ("10.0.0.2", False),
    ],
)
def test_is_loopback(host: str, loopback: bool) -> None:
    assert is_loopback(host) is loopback


def test_refuses_public_bind_without_api_key(monkeypatch, capsys) -> None:
    monkeypatch.delenv("SDWORKER_API_KEY", raising=False)
    assert serve_command(["--host", "0.0.0.0", "--workers", "0"]) == 2
    assert "without an API key" in capsys.readouterr().err


def test_refuses_missing_handler(tmp_path: Path, capsys) -> None:
    code = serve_command(["--workers", "1", "--handler", str(tmp_path / "nope.py")])
    assert code == 2
    assert "nope.py not found" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("host", "reachable"),
    [
        ("0.0.0.0", "127.0.0.1"),
        ("::", "[::1]"),
        ("127.0.0.1", "127.0.0.1"),
        ("192.168.1.5", "192.168.1.5"),
        ("fd00::5", "[fd00::5]"),
    ],
)
def test_workers_reach_the_bound_address(host: str, reachable: str) -> None:
    assert reachable_host(host) == reachable
