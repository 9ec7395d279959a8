"""The ``replicate`` package itself against ``sdworker serve``: ``run`` by model and by pinned
version, ``predictions.create``/``get``/``cancel``, ``wait``/``reload``, its errors, and
webhooks received on 127.0.0.1 with exactly the events their filter asks for."""

from __future__ import annotations

import io
import re
from typing import Any

import pytest
import replicate
import requests
from PIL import Image
from replicate.exceptions import ModelError, ReplicateError

from tests.integration.clients.conftest import VERSION, Receiver
from tests.integration.serving import Served
from tests.integration.waits import wait_until

FAST: dict[str, Any] = {"width": 64, "height": 64, "num_inference_steps": 2}
#: long enough that a cancel sent at once finds it queued or running
SLOW: dict[str, Any] = {"width": 64, "height": 64, "num_inference_steps": 500}
TERMINAL = ("succeeded", "failed", "canceled")


def client(served: Served, token: str | None = None) -> replicate.Client:
    made = replicate.Client(api_token=token or served.key, base_url=served.url)
    made.poll_interval = 0.05
    return made


def fetch(url: str) -> Image.Image:
    answer = requests.get(url, timeout=60)
    assert answer.status_code == 200, answer.text
    image = Image.open(io.BytesIO(answer.content))
    image.load()
    return image


def test_run_by_model_returns_the_image_urls(served: Served) -> None:
    output = client(served).run(
        "black-forest-labs/flux-schnell",
        input={
            "prompt": "a fox",
            "num_outputs": 2,
            "seed": 5,
            "output_format": "webp",
            "output_quality": 50,
            **FAST,
        },
    )
    assert isinstance(output, list) and len(output) == 2
    urls = [str(item) for item in output]  # http:// URLs come back as plain strings
    images = [fetch(url) for url in urls]
    assert [i.size for i in images] == [(64, 64), (64, 64)]
    assert {i.format for i in images} == {"WEBP"}
    assert images[0].tobytes() != images[1].tobytes()


def test_run_by_pinned_version_reads_the_version(served: Served) -> None:
    output = client(served).run(
        f"stability-ai/sdxl:{VERSION}",
        input={
            "prompt": "a fox",
            "aspect_ratio": "16:9",
            "megapixels": "0.25",
            "num_inference_steps": 2,
            "seed": 1,
        },
    )
    [url] = [str(item) for item in output]
    # cog-flux's 16:9 at a quarter megapixel (672x384), drawn at tiny's native side (512)
    assert fetch(url).size == (336, 192)


def test_run_raises_the_failure_naming_the_field(served: Served) -> None:
    with pytest.raises(ModelError) as caught:
        client(served).run("sdworker/tiny", input={"prompt": "x", "width": 500, "height": 64})
    assert "input.width" in str(caught.value)
    assert caught.value.prediction.status == "failed"
    with pytest.raises(ReplicateError) as refused:
        client(served).run("sdworker/tiny", input={"prompt": "x", "aspect_ratio": "7:5"})
    assert refused.value.status == 422 and "input.aspect_ratio" in str(refused.value.detail)
    with pytest.raises(ReplicateError) as denied:
        client(served, token="wrong").run("sdworker/tiny", input={"prompt": "x", **FAST})
    assert denied.value.status == 401


def test_create_get_wait_reload(served: Served) -> None:
    api = client(served)
    prediction = api.predictions.create(
        model="sdworker/tiny", input={"prompt": "x", "seed": 9, **FAST}
    )
    assert prediction.status in ("starting", "processing", "succeeded")
    assert prediction.model == "sdworker/tiny" and prediction.version
    prediction.wait()
    assert prediction.status == "succeeded"
    assert prediction.logs.startswith("Using seed: 9\n")
    assert prediction.metrics["predict_time"] > 0
    assert prediction.completed_at and prediction.started_at and prediction.created_at
    fetched = api.predictions.get(prediction.id)
    assert fetched.output == prediction.output and fetched.status == "succeeded"
    prediction.reload()
    assert prediction.output == fetched.output
    assert fetch(str(prediction.output[0])).size == (64, 64)


def test_cancel_with_a_start_and_completed_webhook(served: Served, receiver: Receiver) -> None:
    api = client(served)
    prediction = api.predictions.create(
        model="sdworker/tiny",
        input={"prompt": "x", **SLOW},
        webhook=f"{receiver.url}/cancel",
        webhook_events_filter=["start", "completed"],
    )
    canceled = api.predictions.cancel(prediction.id)
    assert canceled.id == prediction.id
    prediction.wait()
    assert prediction.status == "canceled" and prediction.output is None
    bodies = wait_until(
        lambda: (found := receiver.bodies("/cancel")) and found[-1]["status"] in TERMINAL and found,
        "the completed webhook",
    )
    assert [b["status"] for b in bodies][-1] == "canceled"
    assert len(bodies) == 2 and bodies[0]["status"] in ("starting", "processing")
    assert {b["id"] for b in bodies} == {prediction.id}


def test_only_completed_is_sent_when_only_it_is_asked(served: Served, receiver: Receiver) -> None:
    prediction = client(served).predictions.create(
        model="sdworker/tiny",
        input={"prompt": "x", "width": 500},
        webhook=f"{receiver.url}/done",
        webhook_events_filter=["completed"],
    )
    prediction.wait()
    assert prediction.status == "failed" and "input.width" in prediction.error
    bodies = wait_until(lambda: receiver.bodies("/done"), "the completed webhook")
    assert len(bodies) == 1
    assert bodies[0]["status"] == "failed" and "input.width" in bodies[0]["error"]


def test_every_event_by_default_logs_show_progress(served: Served, receiver: Receiver) -> None:
    prediction = client(served).predictions.create(
        model="sdworker/tiny",
        input={"prompt": "x", "seed": 2, "width": 64, "height": 64, "num_inference_steps": 60},
        webhook=f"{receiver.url}/all",
    )
    prediction.wait()
    assert prediction.status == "succeeded"
    bodies = wait_until(
        lambda: (found := receiver.bodies("/all")) and found[-1]["status"] in TERMINAL and found,
        "the completed webhook",
    )
    statuses = [b["status"] for b in bodies]
    assert statuses[0] in ("starting", "processing") and statuses[-1] == "succeeded"
    assert all(s in ("starting", "processing") for s in statuses[:-1])  # start, then logs
    assert statuses.count("succeeded") == 1
    assert bodies[-1]["output"] == prediction.output
    logs = bodies[-1]["logs"]
    # the worker counts the scheduler's steps (PNDM's are one more than asked)
    assert logs.startswith("Using seed: 2\n")
    last = re.search(r"100%\|#+\| (\d+)/(\d+)\n$", logs)
    assert last is not None and last[1] == last[2] and int(last[2]) >= 60
    assert len(logs.splitlines()) > 3  # progress lines between them
    assert prediction.progress is not None and prediction.progress.total == int(last[2])
    # each logs event carried more log than the one before it
    lengths = [len(b["logs"]) for b in bodies[1:-1]]
    assert lengths == sorted(set(lengths))


def test_cog_routes(served: Served) -> None:
    headers = {"Authorization": f"Bearer {served.key}"}
    sync = requests.post(
        f"{served.url}/predictions",
        json={"input": {"prompt": "x", "seed": 4, **FAST}},
        headers=headers,
        timeout=300,
    ).json()
    assert sync["status"] == "succeeded" and len(sync["output"]) == 1
    queued = requests.post(
        f"{served.url}/predictions",
        json={"id": "cog-slow", "input": {"prompt": "x", **SLOW}},
        headers={**headers, "Prefer": "respond-async"},
        timeout=60,
    )
    assert queued.status_code == 202 and queued.json()["id"] == "cog-slow"
    cancel = requests.post(f"{served.url}/predictions/cog-slow/cancel", headers=headers, timeout=60)
    assert cancel.status_code == 200 and cancel.json() == {}
    shown = requests.get(f"{served.url}/predictions/cog-slow", headers=headers, timeout=60).json()
    assert shown["status"] == "canceled"
