"""The input schema: defaults, aliases, and every rule of docs/api.md."""

from __future__ import annotations

from typing import Any

import pytest

from sdworker.core.errors import InvalidInput
from sdworker.core.input import InputContext, ModelFacts, parse_input
from sdworker.core.schema import Request
from sdworker.families import get as family

MODELS = {
    "tiny": ModelFacts("tiny", 512, 512, family("sd1")),
    "xl": ModelFacts("xl", 1024, 1024, family("sdxl")),
}


def parse(raw: Any, **kw: Any) -> Request:
    options: dict[str, Any] = {
        "models": MODELS,
        "default_model": "tiny",
        "max_pixels": 1536 * 1536,
        "loras": ("pixel-art",),
    }
    options.update(kw)
    models = options.pop("models")
    return parse_input(raw, InputContext.of(models, **options))


def test_defaults_follow_the_contract() -> None:
    req = parse({"prompt": "a cat"})
    assert req.model == "tiny" and req.mode == "txt2img"
    assert (req.width, req.height) == (512, 512)
    assert req.input.num_inference_steps == 25
    assert req.input.guidance_scale == 7.5
    assert req.input.num_images == 1
    assert req.input.negative_prompt == ""
    assert req.input.output_format == "png"
    assert req.input.strength == 0.8
    assert 0 <= req.seed < 2**32
    assert req.scheduler is None


def test_native_size_comes_from_the_model() -> None:
    assert (parse({"prompt": "x", "model": "xl"}).width) == 1024


def test_seeds_are_consecutive() -> None:
    assert parse({"prompt": "x", "seed": 40, "num_images": 3}).seeds == [40, 41, 42]


def test_alias_num_images_per_prompt() -> None:
    assert parse({"prompt": "x", "num_images_per_prompt": 4}).input.num_images == 4


def test_modes() -> None:
    assert parse({"prompt": "x", "image": "aGVsbG8gd29ybGQgaGVsbG8="}).mode == "img2img"
    both = {"prompt": "x", "image": "aGVsbG8gd29ybGQgaGVsbG8=", "mask_image": "aGVsbG8="}
    assert parse(both).mode == "inpaint"
    assert parse({"prompt": "x", "image": "aGVsbG8gd29ybGQgaGVsbG8="}).width is None


def test_strings_for_booleans_and_ints_for_numbers() -> None:
    req = parse({"prompt": "x", "safety_checker": "false", "guidance_scale": 7})
    assert req.input.safety_checker is False and req.input.guidance_scale == 7.0


def test_scheduler_names_resolve_case_insensitively() -> None:
    req = parse({"prompt": "x", "scheduler": "dpm++ 2m karras"})
    assert req.scheduler is not None
    assert req.scheduler.class_name == "DPMSolverMultistepScheduler"
    assert req.scheduler.overrides == {"use_karras_sigmas": True}


def test_lora_forms() -> None:
    assert parse({"prompt": "x", "lora": "pixel-art"}).input.lora[0].scale == 1.0  # type: ignore[index]
    req = parse({"prompt": "x", "lora": [{"name": "pixel-art", "scale": 0.5}]})
    assert req.input.lora is not None and req.input.lora[0].scale == 0.5


IMG = "aGVsbG8gd29ybGQgaGVsbG8="

# (input, the field the error must name, a piece of the rule that must be in the message)
MALFORMED: list[tuple[Any, str, str]] = [
    ({}, "prompt", "is required"),
    ({"prompt": ""}, "prompt", "must not be empty"),
    ({"prompt": "   "}, "prompt", "must not be empty"),
    ({"prompt": 5}, "prompt", "must be a string"),
    ({"prompt": None}, "prompt", "must be a string"),
    ({"prompt": "x", "negative_prompt": ["a"]}, "negative_prompt", "must be a string"),
    ({"prompt": "x", "widht": 512}, "widht", "is not a known field"),
    ({"prompt": "x", "width": 500}, "width", "multiple of 8"),
    ({"prompt": "x", "height": 501}, "height", "multiple of 8"),
    ({"prompt": "x", "width": 32}, "width", "at least 64"),
    ({"prompt": "x", "height": 4096}, "height", "at most 2048"),
    ({"prompt": "x", "width": "512"}, "width", "must be an integer"),
    ({"prompt": "x", "width": 512.5}, "width", "must be an integer"),
    ({"prompt": "x", "width": 2048, "height": 2048}, "width", "pixels"),
    ({"prompt": "x", "num_inference_steps": 0}, "num_inference_steps", "at least 1"),
    ({"prompt": "x", "num_inference_steps": 501}, "num_inference_steps", "at most 500"),
    ({"prompt": "x", "num_inference_steps": True}, "num_inference_steps", "integer"),
    ({"prompt": "x", "guidance_scale": -1}, "guidance_scale", "at least 0"),
    ({"prompt": "x", "guidance_scale": 31}, "guidance_scale", "at most 30"),
    ({"prompt": "x", "guidance_scale": "high"}, "guidance_scale", "must be a number"),
    ({"prompt": "x", "num_images": 0}, "num_images", "at least 1"),
    ({"prompt": "x", "num_images": 12}, "num_images", "at most 8"),
    ({"prompt": "x", "num_images_per_prompt": 9}, "num_images_per_prompt", "at most 8"),
    (
        {"prompt": "x", "num_images": 2, "num_images_per_prompt": 2},
        "num_images_per_prompt",
        "not both",
    ),
    ({"prompt": "x", "seed": -1}, "seed", "at least 0"),
    ({"prompt": "x", "seed": 2**32}, "seed", "less than"),
    ({"prompt": "x", "seed": "42"}, "seed", "integer"),
    ({"prompt": "x", "scheduler": "Euler b"}, "scheduler", "closest: 'Euler a'"),
    ({"prompt": "x", "scheduler": 3}, "scheduler", "must be a string"),
    ({"prompt": "x", "model": "nope"}, "model", "baked models: tiny, xl"),
    ({"prompt": "x", "output_format": "gif"}, "output_format", "must be one of"),
    ({"prompt": "x", "safety_checker": "maybe"}, "safety_checker", "true or false"),
    ({"prompt": "x", "mask_image": IMG}, "mask_image", "needs image"),
    ({"prompt": "x", "strength": 0.5}, "strength", "only applies with image"),
    ({"prompt": "x", "image": IMG, "strength": 0}, "strength", "greater than 0"),
    ({"prompt": "x", "image": IMG, "strength": 1.5}, "strength", "at most 1"),
    ({"prompt": "x", "image": 12}, "image", "must be a string"),
    ({"prompt": "x", "image": ""}, "image", "must not be empty"),
    ({"prompt": "x", "seed": 2**32 - 1, "num_images": 2}, "seed", "seed + num_images - 1"),
    ({"prompt": "x", "lora": ["pixel-art", "pixel-art"]}, "lora[1].name", "listed twice"),
    ({"prompt": "x", "lora": "missing"}, "lora[0].name", "unknown LoRA (give a baked or volume"),
    ({"prompt": "x", "lora": [{"name": "pixel-art", "scale": 3}]}, "lora[0].scale", "at most 2"),
    (
        {"prompt": "x", "lora": [{"name": "pixel-art", "weight": 1}]},
        "lora[0].weight",
        "not a known",
    ),
    ({"prompt": "x", "use_compel": "yes"}, "use_compel", "true or false"),
    ({"prompt": "x", "upload": 1}, "upload", "true or false"),
    ({"prompt": "x", "clip_skip": 0}, "clip_skip", "at least 1"),
    ("a cat", "input", "JSON object"),
    ([{"prompt": "x"}], "input", "JSON object"),
]


@pytest.mark.parametrize(
    ("raw", "field", "rule"), MALFORMED, ids=[m[1] + ":" + m[2] for m in MALFORMED]
)
def test_malformed_input_names_the_field(raw: Any, field: str, rule: str) -> None:
    with pytest.raises(InvalidInput) as info:
        parse(raw)
    assert field in info.value.fields
    message = str(info.value)
    assert message.startswith("invalid input: ")
    assert rule in message


def test_battery_is_large_enough() -> None:
    assert len(MALFORMED) >= 30


def test_every_problem_is_reported_at_once_with_the_value() -> None:
    with pytest.raises(InvalidInput) as info:
        parse({"prompt": "x", "width": 500, "num_images": 12, "scheduler": "nope"})
    message = str(info.value)
    assert "width: must be a multiple of 8 (got 500)" in message
    assert "num_images: must be at most 8 (got 12)" in message
    assert info.value.fields == ["width", "num_images", "scheduler"]


def test_no_default_model_is_an_error_naming_model() -> None:
    with pytest.raises(InvalidInput) as info:
        parse({"prompt": "x"}, models={}, default_model=None)
    assert info.value.fields == ["model"]


def problems_of(raw: Any, **kw: Any) -> dict[str, str]:
    with pytest.raises(InvalidInput) as info:
        parse(raw, **kw)
    return {p.field: p.message for p in info.value.problems}


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("guidance_scale", float("nan")),
        ("guidance_scale", float("inf")),
        ("strength", float("-inf")),
    ],
)
def test_values_json_cannot_carry_are_refused_naming_the_field(field: str, value: float) -> None:
    raw = {"prompt": "x", field: value}
    if field == "strength":
        raw["image"] = "aGVsbG8="
    assert problems_of(raw)[field] == "must be a finite number"


#: every numeric field of the native input, with what else it needs to be judged
_NUMERIC: list[tuple[str, dict[str, Any]]] = [
    ("width", {}),
    ("height", {}),
    ("num_inference_steps", {}),
    ("num_inference_steps", {"image": "aGVsbG8="}),  # times strength: img2img's steps
    ("guidance_scale", {}),
    ("guidance_scale", {"use_compel": True}),
    ("num_images", {}),
    ("seed", {}),
    ("strength", {"image": "aGVsbG8="}),
    ("clip_skip", {}),
    ("lora_scale", {"lora": "pixel-art"}),
    ("refiner_inference_steps", {"model": "xl"}),
    ("high_noise_frac", {"model": "xl"}),
    ("hires.scale", {}),
    ("hires.width", {}),
    ("hires.height", {}),
    ("hires.steps", {}),
    ("hires.strength", {}),
    ("upscale.scale", {"image": "aGVsbG8="}),
    ("upscale.width", {"image": "aGVsbG8="}),
    ("lora[0].scale", {}),
]


@pytest.mark.parametrize("huge", [10**309, 10**400, -(10**400)], ids=["1e309", "1e400", "-1e400"])
@pytest.mark.parametrize(
    ("field", "extra"), _NUMERIC, ids=[f"{f}-{sorted(e)}" for f, e in _NUMERIC]
)
def test_integers_past_float_range_are_refused_naming_the_field(
    field: str, extra: dict[str, Any], huge: int
) -> None:
    """Regression: ``width: 10**400`` and ``guidance_scale: 10**300`` (with ``use_compel``)
    ended the job with ``internal error: OverflowError`` and no field named."""
    raw: dict[str, Any] = {"prompt": "x", **extra}
    if field.startswith("lora["):
        raw["lora"] = [{"name": "pixel-art", "scale": huge}]
    elif "." in field:
        outer, inner = field.split(".")
        raw[outer] = {inner: huge}
        if outer == "upscale":
            del raw["prompt"]
    else:
        raw[field] = huge
    problems = problems_of(raw)
    assert field in problems, problems
    assert any(word in problems[field] for word in ("at most", "at least", "finite", "less than"))


@pytest.mark.parametrize("field", ["prompt", "negative_prompt", "scheduler", "model"])
def test_lone_surrogates_are_refused_naming_the_field(field: str) -> None:
    raw = {"prompt": "x", field: "x\ud800"}
    assert problems_of(raw)[field] == "must be valid Unicode text (it holds a lone surrogate)"
    # and the error itself is text any JSON encoder can carry
    str(InvalidInput([])).encode("utf-8")


def test_a_long_prompt_is_refused_at_validation() -> None:
    assert parse({"prompt": "x" * 100}, max_prompt_chars=100).input.prompt == "x" * 100
    found = problems_of({"prompt": "x" * 101, "negative_prompt": "y" * 500}, max_prompt_chars=100)
    assert found["prompt"].startswith("must be at most 100 characters")
    assert "this one has 500" in found["negative_prompt"]


def test_img2img_with_no_step_to_run_is_refused() -> None:
    raw = {"prompt": "x", "image": "aGVsbG8=", "strength": 0.05, "num_inference_steps": 10}
    assert "strength x num_inference_steps must be at least 1" in problems_of(raw)["strength"]
    assert parse({**raw, "strength": 0.1}).input.strength == 0.1  # 1 step: runs


def test_unknown_scheduler_suggests_the_closest_names_once() -> None:
    with pytest.raises(InvalidInput) as info:
        parse({"prompt": "x", "scheduler": "DPM++ 2M Karas"})
    assert info.value.fields == ["scheduler"]
    [problem] = info.value.problems
    assert problem.message.startswith("unknown scheduler; closest: 'DPM++ 2M Karras'")
    assert problem.message.endswith("(GET /sdapi/v1/samplers lists them all)")
    # a few suggestions, not the ~80 valid names
    assert problem.message.count("'") <= 6


def test_an_unknown_field_gets_the_closest_known_name() -> None:
    assert problems_of({"prompt": "x", "widht": 512})["widht"] == (
        "is not a known field (did you mean 'width'?)"
    )
    assert problems_of({"prompt": "x", "num_output": 2})["num_output"] == (
        "is not a known field (did you mean 'num_outputs'?)"
    )
