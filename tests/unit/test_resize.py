"""The ``hires`` and ``upscale`` objects of the native input: sizes, refusals, batch keys and
the infotext A1111 writes for a hires pass."""

from __future__ import annotations

from typing import Any

import pytest

from sdworker.core.batching import batch_key
from sdworker.core.errors import InvalidInput
from sdworker.core.input import InputContext, ModelFacts, parse_input
from sdworker.core.resize import hires_infotext, hires_size, upscale_size
from sdworker.core.schema import Request
from sdworker.families import get as family

MODELS = {
    "tiny": ModelFacts("tiny", 512, 512, family("sd1")),
    "xl": ModelFacts("xl", 1024, 1024, family("sdxl")),
}


def parse(raw: Any, max_pixels: int = 1536 * 1536) -> Request:
    return parse_input(raw, InputContext.of(MODELS, default_model="tiny", max_pixels=max_pixels))


def problems(raw: Any, max_pixels: int = 1536 * 1536) -> dict[str, str]:
    with pytest.raises(InvalidInput) as caught:
        parse(raw, max_pixels)
    return {p.field: p.message for p in caught.value.problems}


def test_hires_defaults_to_twice_the_first_pass_with_the_latent_upscaler() -> None:
    req = parse({"prompt": "x", "width": 256, "height": 192, "hires": {}})
    assert (req.width, req.height) == (256, 192)
    assert req.hires_size == (512, 384)
    assert req.input.hires is not None
    assert req.input.hires.upscaler == "latent" and req.input.hires.strength == 0.7
    assert req.input.hires.steps is None and req.hires_scheduler is None


@pytest.mark.parametrize(
    ("hires", "size"),
    [
        ({"scale": 1.5}, (384, 288)),
        ({"width": 640, "height": 320}, (640, 320)),
        ({"width": 512}, (512, 384)),  # the first pass's 4:3
        ({"height": 200}, (264, 200)),  # 266.7 rounds to a multiple of 8
        ({"width": 512, "scale": 4.0}, (512, 384)),  # a size wins over the scale
    ],
)
def test_hires_size(hires: dict[str, Any], size: tuple[int, int]) -> None:
    assert parse({"prompt": "x", "width": 256, "height": 192, "hires": hires}).hires_size == size


def test_hires_size_helpers_round_to_multiples_of_8() -> None:
    assert hires_size((512, 512), None, None, 1.3) == (664, 664)
    assert upscale_size((100, 50), None, None, 2.5) == (250, 125)
    assert upscale_size((100, 50), 30, None, 9.0) == (30, 15)  # any whole number of pixels


def test_hires_rules_name_the_nested_field() -> None:
    found = problems(
        {
            "prompt": "x",
            "hires": {"scale": 4.5, "upscaler": "bicubic", "strength": 0, "width": 100},
        }
    )
    assert found["hires.scale"] == "must be at most 4.0"
    assert found["hires.upscaler"].startswith("must be one of 'latent'")
    assert found["hires.strength"] == "must be greater than 0.0"
    assert found["hires.width"] == "must be a multiple of 8"
    assert (
        "is not a known field"
        in problems({"prompt": "x", "hires": {"hr_scale": 2}})["hires.hr_scale"]
    )


def test_hires_past_the_pixel_budget_names_what_set_the_size() -> None:
    budget = 768 * 768
    by_scale = problems({"prompt": "x", "hires": {"scale": 2}}, budget)
    assert "SDWORKER_MAX_PIXELS" in by_scale["hires.scale"]
    assert "1024x1024" in by_scale["hires.scale"]
    by_size = problems({"prompt": "x", "hires": {"width": 1024}}, budget)
    assert "hires.width" in by_size and "hires.scale" not in by_size
    assert "hires.height" in problems({"prompt": "x", "hires": {"height": 1024}}, budget)


def test_hires_outside_the_side_limits_is_refused() -> None:
    # the first pass is 2048x64: half its height keeps the aspect at 16x32
    found = problems({"prompt": "x", "width": 2048, "height": 64, "hires": {"height": 32}})
    assert "hires.height" in found  # below the 64-pixel side (its own rule)
    found = problems({"prompt": "x", "width": 1024, "height": 64, "hires": {"scale": 4}})
    assert "must be 64 to 2048 a side" in found["hires.scale"]


def test_hires_only_applies_to_txt2img_and_not_with_the_refiner() -> None:
    found = problems({"prompt": "x", "image": "aGk=", "hires": {}})
    assert found["hires"] == "only applies to txt2img (leave out image)"
    found = problems({"prompt": "x", "high_noise_frac": 0.8, "hires": {}})
    assert found["hires"] == "does not combine with the refiner"


def test_hires_second_pass_needs_a_step_and_a_known_scheduler() -> None:
    found = problems({"prompt": "x", "num_inference_steps": 1, "hires": {"scheduler": "Eulr"}})
    assert "hires.strength x hires.steps must be at least 1" in found["hires.strength"]
    assert found["hires.scheduler"].startswith("unknown scheduler; closest:")
    req = parse({"prompt": "x", "num_inference_steps": 1, "hires": {"steps": 2, "strength": 0.5}})
    assert req.input.hires is not None and req.input.hires.steps == 2
    spec = parse({"prompt": "x", "hires": {"scheduler": "DPM++ 2M Karras"}}).hires_scheduler
    assert spec is not None and spec.label == "DPM++ 2M Karras"


def test_upscale_needs_no_prompt_and_takes_no_generation_field() -> None:
    req = parse({"image": "aGk=", "upscale": {"scale": 3}})
    assert req.mode == "upscale" and req.seed == 0 and req.input.prompt == ""
    assert parse({"image": "aGk=", "upscale": {}, "seed": 5}).seed == 5
    found = problems(
        {"image": "aGk=", "upscale": {}, "mask_image": "aGk=", "hires": {}, "num_outputs": 2}
    )
    rule = "does not apply to an upscale job (leave it out with upscale)"
    assert found["mask_image"] == rule and found["hires"] == rule
    assert found["num_outputs"] == rule  # in the client's own spelling
    assert problems({"upscale": {}})["image"] == "is required with upscale (the image to upscale)"
    assert problems({})["prompt"] == "is required"


def test_upscale_rules() -> None:
    found = problems({"image": "aGk=", "upscale": {"scale": 9, "upscaler": "latent"}})
    assert found["upscale.scale"] == "must be at most 8.0"
    assert found["upscale.upscaler"] == "must be one of 'lanczos' or 'nearest'"


def test_hires_jobs_batch_only_with_the_same_hires_pass() -> None:
    def key(**hires: Any) -> Any:
        return batch_key(parse({"prompt": "x", "width": 256, "height": 256, "hires": hires}))

    assert key() == key() and key() is not None
    assert key() != batch_key(parse({"prompt": "x", "width": 256, "height": 256}))
    assert key(scale=1.5) != key()
    assert key(upscaler="lanczos") != key()
    assert key(strength=0.5) != key()
    assert key(steps=7) != key()
    assert key(scheduler="DDIM") != key()
    # prompts of its own are encoded per request: it runs alone
    assert key(prompt="y") is None and key(negative_prompt="z") is None
    assert batch_key(parse({"image": "aGk=", "upscale": {}})) is None


def test_hires_infotext_writes_what_a1111_writes() -> None:
    req = parse({"prompt": "x", "width": 256, "height": 256, "hires": {"steps": 10}})
    assert req.input.hires is not None and req.hires_size is not None
    fields = hires_infotext(
        req.input.hires, sampler="Euler", hires_sampler="Euler", prompt="x", negative_prompt=""
    )
    assert {k: v for k, v in fields.items() if v is not None} == {
        "Hires upscale": 2.0,
        "Hires steps": 10,
        "Hires upscaler": "Latent",
    }
    req = parse(
        {
            "prompt": "x",
            "hires": {
                "width": 768,
                "upscaler": "latent-bicubic-antialiased",
                "scheduler": "DDIM",
                "prompt": "y",
                "negative_prompt": "",
            },
        }
    )
    assert req.input.hires is not None and req.hires_size is not None
    fields = hires_infotext(
        req.input.hires, sampler="Euler", hires_sampler="DDIM", prompt="x", negative_prompt=""
    )
    # A1111's order; the size as asked (only the width here), as A1111 writes hr_resize_x/y
    assert [(k, v) for k, v in fields.items() if v is not None] == [
        ("Hires sampler", "DDIM"),
        ("Hires prompt", "y"),
        ("Hires resize", "768x0"),
        ("Hires upscaler", "Latent (bicubic antialiased)"),
    ]
