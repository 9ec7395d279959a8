"""``/docs`` and ``/redoc`` render with every request outside 127.0.0.1 aborted."""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
from server_harness import ServerProcess

TITLE = "sdworker local endpoint"


def test_swagger_ui_renders_offline_with_authorize(
    open_page: Callable[..., Any], server: ServerProcess, screenshot: Callable[..., Path]
) -> None:
    html = httpx.get(server.root + "/docs", timeout=10).text
    assets = re.findall(r'(?:src|href)=["\']([^"\']+)', html)
    assert assets and all(a.startswith("/static/docs/") for a in assets), assets

    page = open_page()
    page.goto(server.root + "/docs")
    page.wait_for_selector(".swagger-ui .info .title")
    assert TITLE in page.inner_text(".swagger-ui .info .title")
    page.wait_for_selector("button.authorize")
    assert page.locator(".opblock-summary-path", has_text="/v2/{endpoint_id}/run").count() >= 1
    assert page.locator(".opblock-summary-path", has_text="/sdapi/v1/txt2img").count() == 1
    page.click("button.authorize")
    page.wait_for_selector(".auth-container")
    schemes = page.inner_text(".modal-ux-content")
    assert "bearer" in schemes and "basic" in schemes and "saladApiKey" in schemes
    screenshot(page, "docs-authorize.png", full_page=False)


def test_redoc_renders_offline(
    open_page: Callable[..., Any], server: ServerProcess, screenshot: Callable[..., Path]
) -> None:
    page = open_page()
    page.goto(server.root + "/redoc")
    page.wait_for_selector("h1:has-text('sdworker local endpoint')")
    page.locator("h2", has_text="Img2Img").first.wait_for()
    assert page.evaluate(
        "[...document.images].every(i => !i.src.startsWith('http') || i.src.startsWith(location.origin))"
    )
    screenshot(page, "redoc.png", full_page=False)


def test_docs_behind_a_key_open_with_basic_auth_in_a_browser(
    open_page: Callable[..., Any], keyed_server: ServerProcess
) -> None:
    key = keyed_server.env["SDWORKER_API_KEY"]
    refused = httpx.get(keyed_server.root + "/docs", timeout=10)
    assert refused.status_code == 401 and refused.headers["www-authenticate"].startswith("Basic")
    assert (
        httpx.get(keyed_server.root + "/static/docs/swagger-ui.css", timeout=10).status_code == 200
    )

    page = open_page(http_credentials={"username": "me", "password": key})
    page.goto(keyed_server.root + "/docs")
    page.wait_for_selector(".swagger-ui .info .title")
    assert TITLE in page.inner_text(".swagger-ui .info .title")
