"""FLUX.1 on the tiny models, in-process: its modes, its defaults from the model, distilled
guidance and true CFG, Kontext edits, Fill, LoRAs, the seed promise, progress and stopping."""

from __future__ import annotations

import io
from typing import Any

import numpy as np
from PIL import Image

from sdworker.runpod.adapter import RunpodAdapter
from tests.integration.test_generation import pixels, png_b64

SMALL = {"width": 64, "height": 64, "num_inference_steps": 2}


def job(**fields: Any) -> dict[str, Any]:
    return {"id": "f", "input": {"prompt": "a lighthouse", "seed": 3, **SMALL, **fields}}


def run(worker: RunpodAdapter, **fields: Any) -> list[dict[str, Any]]:
    out = worker.handle_sync(job(**fields))
    assert isinstance(out, list), out
    return out


def infotext(entry: dict[str, Any]) -> str:
    import base64

    return str(Image.open(io.BytesIO(base64.b64decode(entry["image"]))).info["parameters"])


def test_schnell_defaults_come_from_the_model(family_worker: RunpodAdapter) -> None:
    out = family_worker.handle_sync({"id": "d", "input": {"prompt": "x", "seed": 1}})
    assert isinstance(out, list), out
    params = infotext(out[0])
    # tiny-flux has no guidance embedding: a schnell, baked with schnell's 4 steps, no guidance
    assert "Steps: 4," in params and "Size: 256x256" in params
    assert "Sampler: Euler, Schedule type: Simple, CFG scale: 1, Distilled CFG Scale: 0," in params


def test_img2img_and_inpaint_keep_the_image_size(family_worker: RunpodAdapter) -> None:
    image, mask = png_b64((96, 80), (200, 30, 30)), png_b64((96, 80), 255, "L")
    for fields in ({"image": image, "strength": 0.6}, {"image": image, "mask_image": mask}):
        out = run(family_worker, **{**fields, "width": None, "height": None})
        assert pixels(out[0]).shape == (80, 96, 3)


def test_the_seed_promise(family_worker: RunpodAdapter) -> None:
    several = run(family_worker, seed=40, num_images=3)
    alone = run(family_worker, seed=42)
    assert np.array_equal(pixels(several[2]), pixels(alone[0]))
    assert not np.array_equal(pixels(several[0]), pixels(several[1]))


def test_a_negative_prompt_works_through_true_cfg(family_worker: RunpodAdapter) -> None:
    plain = run(family_worker)
    guided = run(family_worker, negative_prompt="fog", true_cfg_scale=4.0)
    assert not np.array_equal(pixels(plain[0]), pixels(guided[0]))
    refused = family_worker.handle_sync(job(negative_prompt="fog"))
    assert refused["failure"]["problems"][0]["field"] == "negative_prompt"
    assert "true_cfg_scale above 1" in refused["error"]


def test_kontext_edits_an_image_at_its_size(family_worker: RunpodAdapter) -> None:
    image = png_b64((96, 80), (20, 90, 200))
    out = run(
        family_worker,
        model="tiny-flux-kontext",
        prompt="make it red",
        image=image,
        width=None,
        height=None,
    )
    assert pixels(out[0]).shape == (80, 96, 3)
    assert "Denoising strength" not in infotext(out[0])
    made = run(family_worker, model="tiny-flux-kontext", prompt="make it red")
    assert pixels(made[0]).shape == (64, 64, 3)


def test_fill_repaints_the_masked_part(family_worker: RunpodAdapter) -> None:
    image, mask = png_b64((64, 64), (200, 30, 30)), png_b64((64, 64), 255, "L")
    out = run(family_worker, model="tiny-flux-fill", image=image, mask_image=mask)
    assert pixels(out[0]).shape == (64, 64, 3)
    alone = family_worker.handle_sync(job(model="tiny-flux-fill"))
    assert "image: is required: FLUX.1 Fill models" in alone["error"]


def test_a_flux_lora_changes_the_image_and_leaves_no_trace(family_worker: RunpodAdapter) -> None:
    before = run(family_worker)
    with_lora = run(family_worker, lora=[{"name": "flux-ink", "scale": 1.0}])
    after = run(family_worker)
    assert not np.array_equal(pixels(before[0]), pixels(with_lora[0]))
    assert np.array_equal(pixels(before[0]), pixels(after[0]))


def test_a_lora_of_another_family_is_refused(family_worker: RunpodAdapter) -> None:
    out = family_worker.handle_sync(job(lora="sd-ink"))
    assert out["error"] == (
        "invalid input: lora[0].name: is made for SD 1.x models; model 'tiny-flux' is FLUX.1 "
        "(got 'sd-ink')"
    )


def test_requests_batch_by_the_family_key(family_worker: RunpodAdapter) -> None:
    service = family_worker.service
    one, two = (service.prepare(job(seed=s)["input"]) for s in (50, 51))
    other = service.prepare(job(negative_prompt="fog", true_cfg_scale=3.0)["input"])
    assert one.batch_key == two.batch_key != other.batch_key
    both = service.execute([one, two])
    alone = service.execute([two])
    assert all(isinstance(out, list) for out in (*both, *alone))
    assert [out[0]["seed"] for out in both] == [50, 51]  # type: ignore[index]


def test_progress_interrupt_and_cancel(family_worker: RunpodAdapter) -> None:
    steps: list[dict[str, Any]] = []
    out = family_worker.handle_sync(job(num_inference_steps=3), on_progress=steps.append)
    assert isinstance(out, list) and steps[-1]["step"] == steps[-1]["steps"] == 3
    stopped = family_worker.handle_sync(job(num_inference_steps=3), interrupted=lambda: True)
    assert isinstance(stopped, list) and stopped[0]["interrupted"] is True
    cancelled = family_worker.handle_sync(job(), cancelled=lambda: True)
    assert cancelled["failure"]["code"] == "cancelled"
