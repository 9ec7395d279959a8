"""A canary server on loopback that no image field of any request format may reach: every
spelling of its address, and redirects to it from a server the test lets count as public.
(tests/fuzz/test_fuzz_surfaces.py sends the same canaries through every route's URL fields.)"""

from __future__ import annotations

import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from sdworker.core import netguard
from sdworker.runpod.adapter import RunpodAdapter
from tests.fuzz.conftest import Canary
from tests.fuzz.strategies import LOOPBACK_SPELLINGS, SMALL_PNG


def inputs(url: str) -> list[tuple[str, dict[str, Any]]]:
    """The same URL in every image field of every format a job's input can take."""
    a1111 = {"prompt": "x", "init_images": [url], "steps": 2, "width": 64, "height": 64}
    return [
        ("image", {"prompt": "x", "image": url}),
        ("mask_image", {"prompt": "x", "image": SMALL_PNG, "mask_image": url}),
        (
            "init_images",
            {"api": {"method": "POST", "endpoint": "/sdapi/v1/img2img"}, "payload": a1111},
        ),
        (
            "modelInputs.image",
            {
                "modelInputs": {"prompt": "x", "image": url},
                "callInputs": {"PIPELINE": "StableDiffusionImg2ImgPipeline"},
            },
        ),
    ]


@pytest.mark.parametrize("host", LOOPBACK_SPELLINGS)
def test_no_spelling_of_loopback_reaches_the_canary(
    worker: RunpodAdapter, canary: Canary, host: str
) -> None:
    canary.hits.clear()
    for field, raw in inputs(f"http://{host}:{canary.port}/a.png"):
        out = worker.handle_sync({"id": "ssrf", "input": raw})
        assert isinstance(out, dict) and "error" in out, (field, out)
        # the refusal names the field (in the format's own name) and says nothing of the port
        assert field.split(".")[-1] in out["error"] and "refused" not in out["error"], out
    assert canary.hits == []


class _Outside(BaseHTTPRequestHandler):
    """A server the test lets count as public; it redirects to wherever ``to`` says."""

    to = ""

    def do_GET(self) -> None:
        self.send_response(302)
        self.send_header("Location", self.to)
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


def test_a_redirect_to_the_canary_is_refused(
    worker: RunpodAdapter, canary: Canary, monkeypatch: pytest.MonkeyPatch
) -> None:
    outside = ThreadingHTTPServer(("127.0.0.2", 0), _Outside)
    thread = threading.Thread(target=outside.serve_forever, daemon=True)
    thread.start()
    real = netguard.address_refusal
    monkeypatch.setattr(
        netguard, "address_refusal", lambda ip: None if str(ip) == "127.0.0.2" else real(ip)
    )
    canary.hits.clear()
    try:
        for host in LOOPBACK_SPELLINGS:
            _Outside.to = f"http://{host}:{canary.port}/a.png"
            start = f"http://127.0.0.2:{outside.server_address[1]}/x.png"
            out = worker.handle_sync({"id": "r", "input": {"prompt": "x", "image": start}})
            assert isinstance(out, dict), out
            assert "image: could not be fetched: points to a loopback address" in out["error"]
    finally:
        outside.shutdown()
        outside.server_close()
    assert canary.hits == []
