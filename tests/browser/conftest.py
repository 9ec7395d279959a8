"""Browser tests: Debian's chromium, driven by Playwright, against real ``sdworker serve``
processes on 127.0.0.1. Playwright never downloads a browser here: it launches
``/usr/bin/chromium`` (``scripts/setup.sh`` installs it), and every request that is not for
127.0.0.1 is aborted and reported, so a page that reaches for a CDN fails its test.

Screenshots are kept under ``tests/browser/artifacts/`` (ignored by git).
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "integration" / "server"))
from server_harness import FAST, ServerProcess

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
ARTIFACTS = Path(__file__).resolve().parent / "artifacts"
HANDLER = Path(__file__).resolve().parents[2] / "handler.py"
API_KEY = "playground-test-key"


@pytest.fixture(scope="package")
def browser() -> Iterator[Any]:
    """One chromium for this folder only: Playwright's sync API keeps an event loop running in
    the main thread while it is open, which would break every later ``asyncio.run``."""
    if not CHROMIUM.exists():
        pytest.skip("no /usr/bin/chromium: run scripts/setup.sh as root (apt-get install chromium)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield launched
        launched.close()


class _PageServer(ServerProcess):
    """A server without workers: ready when its page answers (``/health`` may want a key)."""

    def wait_for_workers(self, count: int, timeout_s: float = 30.0) -> None:
        import httpx

        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            try:
                if httpx.get(self.root + "/", timeout=5).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        raise AssertionError(f"the server did not answer in {timeout_s} s")


def _server(
    tmp_path_factory: pytest.TempPathFactory, workers: int, env: dict[str, str]
) -> Iterator[ServerProcess]:
    state = tmp_path_factory.mktemp("browser-endpoint")
    kind = ServerProcess if workers else _PageServer
    server = kind(str(HANDLER), workers, state, {**FAST, **env})
    try:
        yield server.start(timeout_s=90)
    finally:
        server.stop()


@pytest.fixture(scope="package")
def server(tmp_path_factory: pytest.TempPathFactory, models_dir: Path) -> Iterator[ServerProcess]:
    """The endpoint with one real worker (the project's handler, the tiny models), no key."""
    yield from _server(
        tmp_path_factory,
        1,
        {
            "SDWORKER_MODELS_DIR": str(models_dir),
            "SDWORKER_DEFAULT_MODEL": "tiny",
            "SDWORKER_PROGRESS_INTERVAL_S": "0",
            "HF_HUB_OFFLINE": "1",
            "RUNPOD_SKIP_AUTO_SYSTEM_CHECKS": "true",
        },
    )


@pytest.fixture(scope="package")
def family_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """The endpoint with one real worker over an SD 1.x and a FLUX.1 model (both tiny)."""
    from sdworker.builder.tiny import bake_tiny
    from sdworker.builder.tiny_flux import bake_tiny_flux

    models = tmp_path_factory.mktemp("browser-family-models")
    bake_tiny(models, "tiny")
    bake_tiny_flux(models)
    yield from _server(
        tmp_path_factory,
        1,
        {
            "SDWORKER_MODELS_DIR": str(models),
            "SDWORKER_DEFAULT_MODEL": "tiny",
            "SDWORKER_PROGRESS_INTERVAL_S": "0",
            "HF_HUB_OFFLINE": "1",
            "RUNPOD_SKIP_AUTO_SYSTEM_CHECKS": "true",
        },
    )


@pytest.fixture(scope="package")
def keyed_server(
    tmp_path_factory: pytest.TempPathFactory, models_dir: Path
) -> Iterator[ServerProcess]:
    """The endpoint behind an API key, without workers (nothing here generates)."""
    yield from _server(
        tmp_path_factory,
        0,
        {"SDWORKER_MODELS_DIR": str(models_dir), "SDWORKER_API_KEY": API_KEY},
    )


class Offline:
    """Aborts every request that leaves 127.0.0.1, and remembers it."""

    def __init__(self) -> None:
        self.blocked: list[str] = []

    def __call__(self, route: Any) -> None:
        url = route.request.url
        if urlsplit(url).hostname == "127.0.0.1":
            route.continue_()
        else:
            self.blocked.append(url)
            route.abort()


@pytest.fixture
def open_page(browser: Any) -> Iterator[Callable[..., Any]]:
    """``open_page(viewport=(w, h), **context_options)``: a page in a fresh context, offline
    but for 127.0.0.1; after the test, no request may have tried to leave, and the page may
    not have thrown."""
    contexts: list[tuple[Any, Offline, list[str]]] = []

    def open_(viewport: tuple[int, int] = (1280, 900), **options: Any) -> Any:
        context = browser.new_context(
            viewport={"width": viewport[0], "height": viewport[1]}, **options
        )
        guard = Offline()
        context.route("**/*", guard)
        page = context.new_page()
        errors: list[str] = []
        page.on("pageerror", lambda exc: errors.append(str(exc)))
        page.set_default_timeout(30_000)
        contexts.append((context, guard, errors))
        return page

    yield open_
    for context, guard, errors in contexts:
        context.close()
        assert guard.blocked == [], f"requests that tried to leave 127.0.0.1: {guard.blocked}"
        assert errors == [], f"uncaught errors in the page: {errors}"


@pytest.fixture
def screenshot() -> Callable[..., Path]:
    """``screenshot(page, name)``: save a full-page screenshot as a test artifact."""

    def save(page: Any, name: str, *, full_page: bool = True) -> Path:
        ARTIFACTS.mkdir(exist_ok=True)
        path = ARTIFACTS / name
        page.screenshot(path=str(path), full_page=full_page)
        return path

    return save
