"""The playground at ``/``, in chromium, against the real endpoint and handler (tiny model)."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
from server_harness import ServerProcess

DONE_S = 90_000  # ms: the first job also loads the model

#: records every value the progress bar takes, as the page sets it
RECORD_PROGRESS = """() => {
  window.__progress = [];
  const bar = document.getElementById("progress");
  new MutationObserver(() => window.__progress.push(Number(bar.getAttribute("value"))))
    .observe(bar, {attributes: true, attributeFilter: ["value"]});
}"""


def until(page: Any, expression: str, timeout_s: float = DONE_S / 1000) -> None:
    """Poll a JavaScript expression until it is true (``wait_for_function`` evaluates with
    ``eval``, which the page's Content-Security-Policy rightly forbids)."""
    deadline = time.monotonic() + timeout_s
    while not page.evaluate(expression):
        assert time.monotonic() < deadline, f"never true: {expression}"
        time.sleep(0.02)


def ready(page: Any, server: ServerProcess) -> Any:
    page.goto(server.root + "/")
    page.wait_for_selector("body[data-state=idle]")
    return page


def fill(page: Any, **fields: Any) -> None:
    for name, value in fields.items():
        page.fill(f"#{name}", str(value))


def fixed_seed(page: Any, seed: int) -> None:
    page.uncheck("#random-seed")
    page.fill("#seed", str(seed))


def test_the_page_lists_the_baked_models_and_samplers(
    open_page: Callable[..., Any], server: ServerProcess, screenshot: Callable[..., Path]
) -> None:
    page = ready(open_page(), server)
    models = page.eval_on_selector_all("#model option", "els => els.map(e => e.value)")
    assert models == ["tiny", "tiny-safe"]
    assert page.input_value("#model") == "tiny"
    samplers = page.eval_on_selector_all("#sampler option", "els => els.map(e => e.value)")
    assert {"", "Euler a", "DPM++ 2M"} <= set(samplers)
    page.select_option("#sampler", "DPM++ 2M")
    assert "Karras" in page.eval_on_selector_all("#schedule option", "e => e.map(o => o.value)")
    assert page.inner_text(".endpoint-id") == "local"
    screenshot(page, "playground-start.png")


def test_generate_shows_progress_then_the_images_with_their_seeds(
    open_page: Callable[..., Any], server: ServerProcess, screenshot: Callable[..., Path]
) -> None:
    page = ready(open_page(), server)
    page.fill("#prompt", "a lighthouse at dusk")
    fill(page, width=64, height=64, steps=40, num_images=2)
    fixed_seed(page, 1234)
    page.evaluate(RECORD_PROGRESS)
    page.click("#generate")
    page.wait_for_selector("body[data-state=running]", timeout=DONE_S)
    page.wait_for_selector("body[data-state=done]", timeout=DONE_S)

    seen = page.evaluate("window.__progress")
    moving = [v for v in seen if 0 < v < 1]
    assert len(set(moving)) >= 2, f"the bar never moved between 0 and 1: {seen}"
    assert moving == sorted(moving), seen
    assert seen[-1] == 1

    seeds = page.eval_on_selector_all("#gallery .result", "els => els.map(e => e.dataset.seed)")
    assert seeds == ["1234", "1235"]
    first = page.locator("#gallery .result").first
    assert first.locator(".seed").inner_text() == "seed 1234"
    assert "64\u00d764" in first.locator(".settings").inner_text()
    assert first.locator(".prompt").inner_text() == "a lighthouse at dusk"
    assert page.evaluate("document.querySelector('#gallery img').naturalWidth") == 64
    download = first.locator("a.download")
    assert download.get_attribute("download") == "sdworker-1234.png"
    assert (download.get_attribute("href") or "").startswith("data:image/png;base64,")
    screenshot(page, "playground-result.png")

    # reuse the second image's seed: one image with that seed is the same image
    page.locator("#gallery .result").nth(1).locator("button.reuse").click()
    assert page.input_value("#seed") == "1235"
    assert not page.is_checked("#random-seed")
    assert page.input_value("#num_images") == "1"


def test_cancel_stops_a_long_job(open_page: Callable[..., Any], server: ServerProcess) -> None:
    page = ready(open_page(), server)
    page.fill("#prompt", "a very long job")
    fill(page, width=64, height=64, steps=500, num_images=8)
    submitted: list[str] = []
    page.on(
        "response",
        lambda r: submitted.append(r.json()["id"]) if r.url.endswith("/v2/local/run") else None,
    )
    page.click("#generate")
    try:
        until(page, "Number(document.getElementById('progress').getAttribute('value')) > 0")
        page.click("#cancel")
        page.wait_for_selector("body[data-state=cancelled]")
        assert "Cancelled" in page.inner_text("#status")
        [job_id] = submitted
        status = httpx.get(f"{server.url}/status/{job_id}", timeout=10).json()
        assert status["status"] == "CANCELLED"
        assert page.is_enabled("#generate") and page.is_disabled("#cancel")
    finally:  # never leave the one worker busy for the next test
        for job_id in submitted:
            httpx.post(f"{server.url}/cancel/{job_id}", timeout=10)


def test_a_bad_field_is_shown_beside_it(
    open_page: Callable[..., Any], server: ServerProcess, screenshot: Callable[..., Path]
) -> None:
    page = ready(open_page(), server)
    page.fill("#prompt", "a barn")
    fill(page, width=500, height=64, steps=2)
    page.click("#generate")
    page.wait_for_selector("body[data-state=failed]", timeout=DONE_S)
    assert page.inner_text("#error-width") == "must be a multiple of 8 (got 500)"
    assert "invalid" in (page.get_attribute(".field[data-field=width]", "class") or "")
    assert page.get_attribute("#width", "aria-invalid") == "true"
    assert page.inner_text("#error-height") == ""
    assert page.inner_text("#error-general") == ""
    screenshot(page, "playground-field-error.png", full_page=False)

    # fixing it clears the error on the next try
    fill(page, width=64)
    page.click("#generate")
    page.wait_for_selector("body[data-state=done]", timeout=DONE_S)
    assert not page.is_visible("#error-width")


def test_structured_problems_are_preferred_to_the_message(
    open_page: Callable[..., Any], server: ServerProcess
) -> None:
    """A failed status body with ``output.failure.problems`` places each problem by its
    field; the one-string ``error`` is the fallback. (Here the API is faked.)"""
    page = ready(open_page(), server)
    failed = {
        "id": "fake",
        "status": "FAILED",
        "error": "invalid input: width: must be a multiple of 8 (got 500)",
        "output": {
            "failure": {
                "problems": [
                    {"field": "height", "message": "must be at most 2048", "value": 4096},
                    {"field": "lora[0].scale", "message": "must be at most 2"},
                    {"field": "upload", "message": "needs a bucket"},
                ]
            }
        },
    }
    page.route("**/v2/local/run", lambda r: r.fulfill(json={"id": "fake", "status": "IN_QUEUE"}))
    page.route("**/v2/local/status/fake", lambda r: r.fulfill(body=json.dumps(failed)))
    page.fill("#prompt", "a barn")
    page.click("#generate")
    page.wait_for_selector("body[data-state=failed]")
    assert page.inner_text("#error-height") == "must be at most 2048 (got 4096)"
    assert page.inner_text("#error-lora") == "must be at most 2"
    assert page.inner_text("#error-width") == ""
    assert page.inner_text("#error-general") == "upload: needs a bucket"


def test_the_page_fits_a_phone(
    open_page: Callable[..., Any], server: ServerProcess, screenshot: Callable[..., Path]
) -> None:
    page = ready(open_page(viewport=(390, 844), is_mobile=True, has_touch=True), server)
    page.fill("#prompt", "a lighthouse, on a phone")
    fill(page, width=64, height=64, steps=3)
    page.click("#generate")
    page.wait_for_selector("body[data-state=done]", timeout=DONE_S)
    page.click("#image-panel summary")
    widths = page.evaluate(
        "[document.documentElement.scrollWidth, document.body.scrollWidth, window.innerWidth]"
    )
    assert max(widths[:2]) <= 390, widths
    wide = page.evaluate(
        """() => [...document.querySelectorAll('body *')]
              .filter(e => e.getBoundingClientRect().right > window.innerWidth + 0.5)
              .map(e => e.id || e.className || e.tagName)"""
    )
    assert wide == [], wide
    screenshot(page, "playground-phone.png")


def test_the_key_is_asked_once_and_kept_for_the_session_only(
    open_page: Callable[..., Any], keyed_server: ServerProcess
) -> None:
    key = keyed_server.env["SDWORKER_API_KEY"]
    page = open_page()
    page.goto(keyed_server.root + "/")
    page.wait_for_selector("#key-dialog[open]")
    page.fill("#key-input", "wrong")
    page.click("#key-form button")
    until(page, "document.getElementById('key-error').textContent.includes('refused')", 30)
    page.fill("#key-input", key)
    page.click("#key-form button")
    page.wait_for_selector("body[data-state=idle]")
    assert page.eval_on_selector_all("#model option", "e => e.length") == 2
    assert page.evaluate("sessionStorage.getItem('sdworker.apiKey')") == key
    assert page.evaluate("localStorage.length") == 0
    page.reload()
    page.wait_for_selector("body[data-state=idle]")
    assert not page.is_visible("#key-dialog")
    page.click("#forget-key")
    assert page.evaluate("sessionStorage.getItem('sdworker.apiKey')") is None


def test_an_uploaded_image_goes_as_base64_for_img2img(
    open_page: Callable[..., Any], server: ServerProcess
) -> None:
    import io

    from PIL import Image

    png = io.BytesIO()
    Image.new("RGB", (64, 64), (200, 40, 40)).save(png, format="PNG")
    page = ready(open_page(), server)
    sent: list[dict[str, Any]] = []
    page.on(
        "request",
        lambda r: sent.append(r.post_data_json) if r.url.endswith("/v2/local/run") else None,
    )
    page.fill("#prompt", "the same, in blue")
    fill(page, steps=2)
    page.click("#image-panel summary")
    page.set_input_files(
        "#image", {"name": "red.png", "mimeType": "image/png", "buffer": png.getvalue()}
    )
    until(page, "!document.getElementById('strength').disabled", 10)
    fill(page, strength=0.5)
    page.click("#generate")
    page.wait_for_selector("body[data-state=done]", timeout=DONE_S)
    [body] = sent
    assert body["input"]["image"].startswith("data:image/png;base64,")
    assert body["input"]["strength"] == 0.5
    assert "width" not in body["input"]  # the image's own size
    assert page.evaluate("document.querySelector('#gallery img').naturalWidth") == 64
    assert "img2img 0.5" in page.locator("#gallery .result .settings").first.inner_text()


def visible(page: Any, *ids: str) -> list[bool]:
    return [page.is_visible(f"#{i}") for i in ids]


SD_ONLY = ("use_compel", "clip_skip", "hires")
FLUX_ONLY = ("true_cfg_scale", "max_sequence_length")


def test_a_flux_model_shows_its_own_fields_and_is_sent_only_those(
    open_page: Callable[..., Any], family_server: ServerProcess, screenshot: Callable[..., Path]
) -> None:
    page = ready(open_page(), family_server)
    assert page.input_value("#model") == "tiny"
    assert visible(page, *SD_ONLY) == [True] * 3
    assert visible(page, *FLUX_ONLY) == [False] * 2
    # settings for the SD model that FLUX.1 does not take
    page.check("#use_compel")
    page.fill("#clip_skip", "2")

    page.select_option("#model", "tiny-flux")
    assert visible(page, *SD_ONLY) == [False] * 3
    assert visible(page, *FLUX_ONLY) == [True] * 2
    # the model's own defaults (schnell's), sampler and size rule
    assert (page.input_value("#steps"), page.input_value("#guidance")) == ("4", "0")
    assert page.inner_text("#guidance-label") == "Guidance (distilled)"
    samplers = page.eval_on_selector_all("#sampler option", "els => els.map(e => e.value)")
    assert samplers == ["", "FlowMatchEulerDiscreteScheduler"]
    assert page.get_attribute("#width", "step") == "16"
    assert page.get_attribute("#max_sequence_length", "max") == "512"
    screenshot(page, "playground-flux.png")

    sent: list[Any] = []
    page.on(
        "request",
        lambda r: sent.append(r.post_data_json) if r.url.endswith("/v2/local/run") else None,
    )
    page.fill("#prompt", "a lighthouse")
    page.fill("#negative_prompt", "fog")
    page.fill("#true_cfg_scale", "2")
    page.select_option("#sampler", "FlowMatchEulerDiscreteScheduler")
    fill(page, width=64, height=64, steps=2)
    fixed_seed(page, 7)
    page.click("#generate")
    page.wait_for_selector("body[data-state=done]", timeout=DONE_S)
    [body] = sent
    job = body["input"]
    assert job["model"] == "tiny-flux" and job["true_cfg_scale"] == 2
    assert job["negative_prompt"] == "fog"
    assert job["scheduler"] == "FlowMatchEulerDiscreteScheduler"
    assert not {"use_compel", "clip_skip", "hires"} & set(job), job
    assert page.evaluate("document.querySelector('#gallery img').naturalWidth") == 64
    assert "guidance 0" in page.locator("#gallery .result .settings").first.inner_text()

    # back on the SD model, its fields and defaults return
    page.select_option("#model", "tiny")
    assert visible(page, *SD_ONLY) == [True] * 3
    assert (page.input_value("#steps"), page.input_value("#guidance")) == ("25", "7.5")
