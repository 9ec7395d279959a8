"""The hires pass, interrupts that keep the image, and the upscale-only job, on tiny models."""

from __future__ import annotations

import base64
import io
import itertools
from typing import Any

import numpy as np
import pytest
from PIL import Image

from sdworker.runpod.adapter import RunpodAdapter
from sdworker.service import Service
from tests.integration.test_generation import png_b64

SMALL = {"width": 64, "height": 64, "num_inference_steps": 3}


def job(**fields: Any) -> dict[str, Any]:
    return {"id": "h", "input": {"prompt": "a lighthouse", "seed": 21, **SMALL, **fields}}


def image(entry: dict[str, Any]) -> Image.Image:
    return Image.open(io.BytesIO(base64.b64decode(entry["image"])))


@pytest.mark.parametrize("model", ["tiny", "tiny-sdxl", "tiny-v"])
@pytest.mark.parametrize("upscaler", ["latent", "latent-bicubic-antialiased", "lanczos"])
def test_hires_returns_the_hires_size_in_every_family(
    fworker: RunpodAdapter, model: str, upscaler: str
) -> None:
    out = fworker.handle_sync(job(model=model, hires={"upscaler": upscaler, "steps": 2}))
    assert isinstance(out, list), out
    result = image(out[0])
    assert result.size == (128, 128)
    assert np.asarray(result.convert("RGB")).std() > 0
    assert "interrupted" not in out[0]


def test_hires_same_seed_same_image_and_the_second_pass_changes_it(
    fworker: RunpodAdapter,
) -> None:
    hires = {"width": 96, "upscaler": "nearest", "strength": 0.6}
    first = fworker.handle_sync(job(hires=hires))
    again = fworker.handle_sync(job(hires=hires))
    assert isinstance(first, list) and isinstance(again, list)
    assert image(first[0]).size == (96, 96)
    assert first[0]["image"] == again[0]["image"]
    # the plain nearest upscale of the first pass is not what came back: it was denoised
    plain = fworker.handle_sync(job())
    assert isinstance(plain, list)
    nearest = image(plain[0]).convert("RGB").resize((96, 96), Image.Resampling.NEAREST)
    assert np.asarray(nearest).tobytes() != np.asarray(image(first[0]).convert("RGB")).tobytes()


def test_hires_infotext_and_progress_over_both_passes(fworker: RunpodAdapter) -> None:
    seen: list[dict[str, Any]] = []
    body = job(
        num_inference_steps=4,
        scheduler="Euler",
        hires={"scale": 1.5, "steps": 6, "strength": 0.5, "scheduler": "DDIM"},
    )
    out = fworker.handle_sync(body, on_progress=seen.append)
    assert isinstance(out, list), out
    params = image(out[0]).info["parameters"]
    assert "Size: 64x64" in params  # the first pass's, as A1111 writes it
    assert (
        "Denoising strength: 0.5, Hires sampler: DDIM, Hires upscale: 1.5, Hires steps: 6, "
        "Hires upscaler: Latent"
    ) in params
    assert image(out[0]).size == (96, 96)
    # 4 first-pass steps, then 3 of the 6 hires steps (strength 0.5): one count over both
    assert [p["step"] for p in seen] == list(range(1, 8))
    assert {p["steps"] for p in seen} == {7}


def test_interrupt_after_step_k_keeps_the_image_as_it_stood(fworker: RunpodAdapter) -> None:
    done = [0]

    def record(progress: dict[str, Any]) -> None:
        done[0] = progress["step"]

    out = fworker.handle_sync(
        job(num_inference_steps=30, num_images=3, scheduler="Euler"),
        on_progress=record,
        interrupted=lambda: done[0] >= 2,
    )
    assert isinstance(out, list), out
    assert len(out) == 1 and out[0]["interrupted"] is True and out[0]["seed"] == 21
    assert image(out[0]).size == (64, 64)
    assert done[0] == 2  # it stopped at the step boundary after step 2
    # the image is the latents after two of 30 steps, not the finished one
    finished = fworker.handle_sync(job(num_inference_steps=30, scheduler="Euler"))
    assert isinstance(finished, list) and finished[0]["image"] != out[0]["image"]


def test_interrupt_keeps_finished_images_and_stops_in_the_hires_pass(
    fworker: RunpodAdapter,
) -> None:
    done = [0]

    def record(progress: dict[str, Any]) -> None:
        done[0] = progress["step"]

    # per image: 3 first-pass steps, then 7 of the 10 hires steps; stop in the second image's
    # hires pass
    out = fworker.handle_sync(
        job(num_images=3, scheduler="Euler", hires={"steps": 10}),
        on_progress=record,
        interrupted=lambda: done[0] >= 15,
    )
    assert isinstance(out, list), out
    assert [e.get("interrupted", False) for e in out] == [False, True]
    assert [image(e).size for e in out] == [(128, 128), (128, 128)]
    assert [e["seed"] for e in out] == [21, 22]


def test_interrupt_in_the_first_pass_of_hires_decodes_its_latents(
    fworker: RunpodAdapter,
) -> None:
    out = fworker.handle_sync(
        job(model="tiny-sdxl", num_inference_steps=8, hires={}), interrupted=lambda: True
    )
    assert isinstance(out, list), out
    assert len(out) == 1 and out[0]["interrupted"] is True
    assert image(out[0]).size == (64, 64)  # the first pass's size: the hires pass never ran


def test_upscale_job_loads_no_pipeline(features_settings: Any) -> None:
    adapter = RunpodAdapter(features_settings, service=Service(features_settings))
    source = png_b64((40, 30), (10, 200, 30))
    out = adapter.handle_sync({"id": "u", "input": {"image": source, "upscale": {"scale": 2.5}}})
    assert isinstance(out, list), out
    assert out[0]["seed"] == 0 and out[0]["format"] == "png"
    result = image(out[0])
    assert result.size == (100, 75)
    assert result.convert("RGB").getpixel((50, 37)) == (10, 200, 30)
    out = adapter.handle_sync(
        {
            "id": "u",
            "input": {
                "image": source,
                "upscale": {"width": 80, "upscaler": "nearest"},
                "output_format": "webp",
                "seed": 9,
            },
        }
    )
    assert isinstance(out, list) and image(out[0]).size == (80, 60)
    assert out[0]["format"] == "webp" and out[0]["seed"] == 9
    assert not adapter.service.gpu_started


def test_upscale_past_the_pixel_budget_is_refused(fworker: RunpodAdapter) -> None:
    source = png_b64((1000, 1000), (0, 0, 0))
    out = fworker.handle_sync({"id": "u", "input": {"image": source, "upscale": {"scale": 8}}})
    assert isinstance(out, dict) and out["failure"]["code"] == "invalid_input", out
    [problem] = out["failure"]["problems"]
    assert problem["field"] == "upscale.scale"
    assert "8000x8000" in problem["rule"]


def test_hires_jobs_batch_together_and_an_interrupt_stops_the_call_once_all_ask(
    fworker: RunpodAdapter,
) -> None:
    service = fworker.service
    hires = {"scale": 1.5, "steps": 4}
    group = [
        service.prepare({"prompt": p, "seed": s, **SMALL, "hires": hires}, job_id=p)
        for p, s in (("a", 1), ("b", 2))
    ]
    assert group[0].batch_key == group[1].batch_key is not None
    outcomes = service.execute(group)
    for outcome, seed in zip(outcomes, (1, 2), strict=True):
        assert isinstance(outcome, list) and [e["seed"] for e in outcome] == [seed]
        assert image(outcome[0]).size == (96, 96) and "interrupted" not in outcome[0]
    # one job interrupted: the shared call runs on for the other, and both finish
    one = service.execute(group, interrupted=[lambda: True, lambda: False])
    assert [o[0].get("interrupted", False) for o in one if isinstance(o, list)] == [False, False]
    # both: the call stops at its first step boundary, each keeps its image as it stood
    both = service.execute(group, interrupted=[lambda: True, lambda: True])
    assert [o[0].get("interrupted") for o in both if isinstance(o, list)] == [True, True]
    assert [image(o[0]).size for o in both if isinstance(o, list)] == [(64, 64), (64, 64)]


def test_interrupt_stops_a_refined_job_in_the_base_or_the_refiner(fworker: RunpodAdapter) -> None:
    refined = job(model="tiny-sdxl", num_inference_steps=6, high_noise_frac=0.5)
    out = fworker.handle_sync(refined, interrupted=lambda: True)  # in the base: its latents
    assert isinstance(out, list), out
    assert out[0]["interrupted"] is True and image(out[0]).size == (64, 64)
    # asked between steps: the base (two steps here) asks twice, the refiner next
    asked = itertools.count()
    out = fworker.handle_sync(refined, interrupted=lambda: next(asked) >= 2)
    assert isinstance(out, list), out
    assert out[0]["interrupted"] is True and image(out[0]).size == (64, 64)
    assert next(asked) == 3  # asked at the base's two steps and the refiner's first: stopped
    full = fworker.handle_sync(refined)
    assert isinstance(full, list) and "interrupted" not in full[0]
    assert len({out[0]["image"], full[0]["image"]}) == 2


def test_hires_prompts_of_its_own_change_the_second_pass(fworker: RunpodAdapter) -> None:
    same = fworker.handle_sync(job(hires={"scale": 1.5}))
    own = fworker.handle_sync(
        job(hires={"scale": 1.5, "prompt": "a red barn", "negative_prompt": "fog"})
    )
    assert isinstance(same, list) and isinstance(own, list), own
    assert image(own[0]).size == (96, 96) and own[0]["image"] != same[0]["image"]
    params = image(own[0]).info["parameters"]
    assert "Hires prompt: a red barn, Hires negative prompt: fog" in params
    compel = fworker.handle_sync(
        job(use_compel=True, hires={"scale": 1.5, "prompt": "a (red:1.3) barn"})
    )
    assert isinstance(compel, list) and image(compel[0]).size == (96, 96), compel
