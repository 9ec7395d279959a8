"""The worker on the tiny model: modes, schedulers, seeds, safety checker, isolation, cancel."""

from __future__ import annotations

import asyncio
import base64
import io
import time
from typing import Any

import numpy as np
import pytest
from PIL import Image

from sdworker.core import schedulers
from sdworker.core.input import parse_input
from sdworker.families import get as family
from sdworker.runpod.adapter import RunpodAdapter
from tests.unit.test_schema import MALFORMED

SMALL = {"width": 64, "height": 64, "num_inference_steps": 2}


def job(**fields: Any) -> dict[str, Any]:
    return {"id": "t", "input": {"prompt": "a lighthouse", "seed": 7, **SMALL, **fields}}


def pixels(entry: dict[str, Any]) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(base64.b64decode(entry["image"]))).convert("RGB"))


def png_b64(size: tuple[int, int], color: tuple[int, int, int] | int, mode: str = "RGB") -> str:
    buf = io.BytesIO()
    Image.new(mode, size, color).save(buf, format="PNG")
    return base64.b64encode(buf.getvalue()).decode()


def test_txt2img_returns_seeded_pngs_with_parameters(worker: RunpodAdapter) -> None:
    out = worker.handle_sync(job(num_images=2))
    assert isinstance(out, list) and [e["seed"] for e in out] == [7, 8]
    image = Image.open(io.BytesIO(base64.b64decode(out[0]["image"])))
    assert image.format == "PNG" and image.size == (64, 64)
    params = image.info["parameters"]
    assert params.startswith("a lighthouse\n")
    assert "Steps: 2" in params and "Seed: 7" in params and "Size: 64x64" in params
    assert "Model: tiny" in params


def test_output_formats(worker: RunpodAdapter) -> None:
    for fmt, pil in (("jpeg", "JPEG"), ("webp", "WEBP")):
        out = worker.handle_sync(job(output_format=fmt))
        assert isinstance(out, list) and out[0]["format"] == fmt
        assert Image.open(io.BytesIO(base64.b64decode(out[0]["image"]))).format == pil


def test_img2img_uses_the_image_size_when_none_is_given(worker: RunpodAdapter) -> None:
    out = worker.handle_sync(
        {
            "id": "i",
            "input": {
                "prompt": "x",
                "image": png_b64((96, 72), (200, 30, 30)),
                "num_inference_steps": 4,
                "strength": 0.5,
                "seed": 1,
            },
        }
    )
    assert isinstance(out, list), out
    assert pixels(out[0]).shape == (72, 96, 3)


def test_img2img_strength_changes_the_image(worker: RunpodAdapter) -> None:
    init = png_b64((64, 64), (200, 30, 30))
    weak = worker.handle_sync(job(image=init, strength=0.25, num_inference_steps=4))
    strong = worker.handle_sync(job(image=init, strength=1.0, num_inference_steps=4))
    assert isinstance(weak, list) and isinstance(strong, list)
    assert not np.array_equal(pixels(weak[0]), pixels(strong[0]))


def test_inpaint_resizes_image_and_mask_to_the_request(worker: RunpodAdapter) -> None:
    out = worker.handle_sync(
        job(
            image=png_b64((128, 128), (10, 200, 10)),
            mask_image=png_b64((32, 32), 255, "L"),
            width=64,
            height=96,
            strength=1.0,
        )
    )
    assert isinstance(out, list), out
    assert pixels(out[0]).shape == (96, 64, 3)


def test_data_url_image_is_accepted(worker: RunpodAdapter) -> None:
    out = worker.handle_sync(job(image="data:image/png;base64," + png_b64((64, 64), (1, 2, 3))))
    assert isinstance(out, list), out


def _runs_sd1(name: str) -> bool:
    spec = schedulers.resolve(name)
    return spec is not None and family("sd1").takes_scheduler(spec.class_name)


@pytest.mark.parametrize("name", [n for n in schedulers.valid_names() if _runs_sd1(n)])
def test_every_scheduler_name_runs_two_steps(worker: RunpodAdapter, name: str) -> None:
    out = worker.handle_sync(job(scheduler=name, width=64, height=64))
    assert isinstance(out, list), out
    assert pixels(out[0]).shape == (64, 64, 3)


def test_seed_promise_is_bit_for_bit(worker: RunpodAdapter) -> None:
    batch = worker.handle_sync(job(seed=1000, num_images=3, scheduler="Euler a"))
    single = worker.handle_sync(job(seed=1002, num_images=1, scheduler="Euler a"))
    assert isinstance(batch, list) and isinstance(single, list)
    assert batch[2]["seed"] == single[0]["seed"] == 1002
    assert np.array_equal(pixels(batch[2]), pixels(single[0]))
    assert not np.array_equal(pixels(batch[0]), pixels(batch[1]))


def test_same_seed_same_image_across_runs(worker: RunpodAdapter) -> None:
    a, b = worker.handle_sync(job(seed=5)), worker.handle_sync(job(seed=5))
    assert isinstance(a, list) and isinstance(b, list)
    assert a[0]["image"] == b[0]["image"]


def test_nsfw_images_are_blacked_out_and_flagged_never_dropped(worker: RunpodAdapter) -> None:
    out = worker.handle_sync(job(model="tiny-safe", num_images=2))
    assert isinstance(out, list) and len(out) == 2
    for entry in out:
        assert entry["nsfw_content_detected"] is True
        assert pixels(entry).max() == 0


def test_safety_checker_can_be_switched_off_per_request(worker: RunpodAdapter) -> None:
    out = worker.handle_sync(job(model="tiny-safe", safety_checker="false"))
    assert isinstance(out, list)
    assert "nsfw_content_detected" not in out[0] and pixels(out[0]).max() > 0


def test_asking_for_a_checker_the_model_lacks_is_an_error(worker: RunpodAdapter) -> None:
    out = worker.handle_sync(job(safety_checker=True))
    assert isinstance(out, dict) and "safety_checker" in out["error"]


def test_three_pipelines_share_one_set_of_modules(worker: RunpodAdapter) -> None:
    worker.handle_sync(job())
    loaded = worker.service.generator.cache.get("tiny")
    base, i2i, inp = (loaded.pipeline(m) for m in ("txt2img", "img2img", "inpaint"))
    assert type(i2i).__name__ == "StableDiffusionImg2ImgPipeline"
    assert type(inp).__name__ == "StableDiffusionInpaintPipeline"
    for name in ("unet", "vae", "text_encoder", "tokenizer"):
        assert getattr(base, name) is getattr(i2i, name) is getattr(inp, name)


def test_a_request_scheduler_does_not_leak_into_the_next(worker: RunpodAdapter) -> None:
    before = worker.handle_sync(job(seed=11))
    loaded = worker.service.generator.cache.get("tiny")
    default_class = type(loaded.base.scheduler)
    worker.handle_sync(job(seed=11, scheduler="DPM++ 2M SDE Karras"))
    after = worker.handle_sync(job(seed=11))
    assert isinstance(before, list) and isinstance(after, list)
    assert type(loaded.base.scheduler) is default_class
    assert not getattr(loaded.base.scheduler.config, "use_karras_sigmas", False)
    assert before[0]["image"] == after[0]["image"]


def test_malformed_inputs_fail_alone_and_the_worker_serves_the_next(settings: Any) -> None:
    fresh = RunpodAdapter(settings)
    for raw, field, _rule in MALFORMED:
        if field == "model" or "lora" in field:
            continue  # those name the unit test's model and LoRA lists
        out = fresh.handle_sync({"id": "bad", "input": raw})
        assert isinstance(out, dict) and field in out["error"], (raw, out)
    assert not fresh.service.gpu_started, "invalid input must not load anything"
    good = fresh.handle_sync(job())
    assert isinstance(good, list) and len(good) == 1


def test_unknown_model_lists_the_baked_ones(worker: RunpodAdapter) -> None:
    out = worker.handle_sync(job(model="sd-nope"))
    assert isinstance(out, dict)
    assert "model: unknown model; baked models: tiny, tiny-safe;" in out["error"]
    assert "SDWORKER_MODEL_ALIASES='sd-nope=tiny' or bake it with --alias sd-nope" in out["error"]
    assert "(got 'sd-nope')" in out["error"]


def test_undecodable_image_names_the_field(worker: RunpodAdapter) -> None:
    out = worker.handle_sync(job(image="bm90IGFuIGltYWdlIGF0IGFsbA=="))
    assert isinstance(out, dict) and out["error"].startswith("invalid input: image:")


def test_progress_reports_every_step_count(worker: RunpodAdapter) -> None:
    updates: list[dict[str, Any]] = []
    worker.handle_sync(
        job(num_inference_steps=3, num_images=2, scheduler="Euler"), on_progress=updates.append
    )
    assert updates[-1] == {"step": 6, "steps": 6, "progress": 1.0}
    assert [u["step"] for u in updates] == list(range(1, 7))


def test_cancel_stops_between_steps(worker: RunpodAdapter) -> None:
    seen: list[int] = []
    out = worker.handle_sync(
        job(num_inference_steps=10),
        on_progress=lambda u: seen.append(u["step"]),
        cancelled=lambda: len(seen) >= 2,
    )
    assert isinstance(out, dict) and "cancelled" in out["error"]
    assert seen == [1, 2]


def test_async_handler_cancellation_stops_the_generation(
    worker: RunpodAdapter, monkeypatch: pytest.MonkeyPatch
) -> None:
    import runpod.serverless

    steps: list[int] = []

    def record(job: dict[str, Any], progress: dict[str, Any]) -> None:
        steps.append(progress["step"])
        time.sleep(0.05)  # slow steps, so the cancel lands mid-generation

    monkeypatch.setattr(runpod.serverless, "progress_update", record)

    async def scenario() -> None:
        task = asyncio.create_task(worker.handle(job(num_inference_steps=60)))
        while len(steps) < 2:
            await asyncio.sleep(0.01)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(scenario())
    # the device runs one generation at a time: this one starts only once the cancelled one
    # has stopped (its steps go to no progress hook of the runpod SDK)
    after = worker.handle_sync(job(num_inference_steps=1))
    assert isinstance(after, list), after
    assert 2 <= len(steps) < 60, "the generation must stop within a step of the cancel"


def test_parse_rejects_before_the_cache_exists(settings: Any) -> None:
    fresh = RunpodAdapter(settings)
    with pytest.raises(Exception):  # noqa: B017 - any InvalidInput subclass
        fresh.service.prepare({"prompt": "x", "width": 7})
    assert not fresh.service.gpu_started
    assert parse_input  # the same function the worker uses
