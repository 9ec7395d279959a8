"""The inputs of RunPod's own SD workers: every other spelling of a field, every scheduler
name they send, ``lora_scale``, and the refiner fields' rules (before any GPU work)."""

from __future__ import annotations

from typing import Any

import pytest

from sdworker.core import schedulers
from sdworker.core.errors import InvalidInput
from sdworker.core.input import InputContext, ModelFacts, parse_input
from sdworker.core.schema import Request
from sdworker.core.spellings import FIELD_SPELLINGS
from sdworker.families import get as family

MODELS = {
    "tiny": ModelFacts("tiny", 512, 512, family("sd1")),
    "xl": ModelFacts("xl", 1024, 1024, family("sdxl")),
    "xl-refined": ModelFacts("xl-refined", 1024, 1024, family("sdxl"), has_refiner=True),
}
IMG = "aGVsbG8gd29ybGQgaGVsbG8="
#: a valid value for each native field that has other spellings
VALUES: dict[str, Any] = {
    "num_images": 3,
    "image": IMG,
    "mask_image": IMG,
    "strength": 0.4,
    "safety_checker": False,
}
#: a value each native field refuses, and the rule's words
BAD: dict[str, tuple[Any, str]] = {
    "num_images": (9, "at most 8"),
    "image": (3, "must be a string"),
    "mask_image": (3, "must be a string"),
    "strength": (1.5, "at most 1"),
    "safety_checker": ("maybe", "true or false"),
}
ALIASES = [(native, alias) for native, aliases in FIELD_SPELLINGS.items() for alias in aliases]


def parse(raw: Any, **kw: Any) -> Request:
    options: dict[str, Any] = {
        "models": MODELS,
        "default_model": "tiny",
        "max_pixels": 1536 * 1536,
        "loras": ("pixel-art", "ink"),
    }
    options.update(kw)
    models = options.pop("models")
    return parse_input(raw, InputContext.of(models, **options))


def with_needs(native: str, fields: dict[str, Any]) -> dict[str, Any]:
    """``fields`` plus what the field needs to be valid (a mask and a strength need an image)."""
    needs = {"prompt": "x", **fields}
    if native in {"mask_image", "strength"}:
        needs["image"] = IMG
    return needs


def error(raw: Any, **kw: Any) -> InvalidInput:
    with pytest.raises(InvalidInput) as info:
        parse(raw, **kw)
    return info.value


@pytest.mark.parametrize(("native", "alias"), ALIASES)
def test_every_spelling_sets_its_native_field(native: str, alias: str) -> None:
    value = True if alias == "nsfw" else VALUES[native]
    request = parse(with_needs(native, {alias: value}))
    assert getattr(request.input, native) == VALUES[native]
    assert request.field_name(native) == alias


@pytest.mark.parametrize(("native", "alias"), ALIASES)
def test_an_error_names_the_field_as_the_client_spelled_it(native: str, alias: str) -> None:
    value, rule = BAD[native]
    exc = error(with_needs(native, {alias: value}))
    assert alias in exc.fields, exc
    assert native not in exc.fields
    assert rule in str(exc)


@pytest.mark.parametrize(("native", "alias"), ALIASES)
def test_two_spellings_of_one_field_are_an_error(native: str, alias: str) -> None:
    value = True if alias == "nsfw" else VALUES[native]
    exc = error(with_needs(native, {native: VALUES[native], alias: value}))
    assert exc.fields == [alias]
    assert f"give {native} or {alias}, not both" in str(exc)


def test_two_foreign_spellings_are_an_error_too() -> None:
    exc = error({"prompt": "x", "num_outputs": 2, "num_images_per_prompt": 2})
    assert "num_images_per_prompt: give num_outputs or num_images_per_prompt, not both" in str(exc)
    exc = error({"prompt": "x", "init_image": IMG, "image_url": IMG})
    assert exc.fields == ["image_url"]


@pytest.mark.parametrize(
    ("nsfw", "checker"), [(True, False), (False, None), ("true", False), ("false", None)]
)
def test_nsfw_true_turns_the_checker_off_and_false_keeps_the_default(
    nsfw: Any, checker: bool | None
) -> None:
    assert parse({"prompt": "x", "nsfw": nsfw}).input.safety_checker is checker


def test_the_sd_v1_image_fields_make_img2img_and_inpaint() -> None:
    request = parse({"prompt": "x", "init_image": IMG, "mask": IMG, "prompt_strength": 0.6})
    assert request.mode == "inpaint" and request.input.strength == 0.6
    assert parse({"prompt": "x", "image_url": "https://example.com/a.png"}).mode == "img2img"


def test_prompt_strength_without_an_image_is_ignored_as_sd_v1_did() -> None:
    assert parse({"prompt": "x", "prompt_strength": 0.8}).mode == "txt2img"
    assert "strength" in error({"prompt": "x", "strength": 0.8}).fields


def test_mask_without_image_is_named_mask() -> None:
    exc = error({"prompt": "x", "mask": IMG})
    assert exc.fields == ["mask"]


def test_lora_name_and_lora_scale() -> None:
    [ref] = parse({"prompt": "x", "lora": "ink", "lora_scale": 0.6}).input.lora or []
    assert (ref.name, ref.scale) == ("ink", 0.6)
    refs = (
        parse(
            {
                "prompt": "x",
                "lora": [{"name": "ink"}, {"name": "pixel-art", "scale": 1.5}],
                "lora_scale": 0.3,
            }
        ).input.lora
        or []
    )
    assert [(r.name, r.scale) for r in refs] == [("ink", 0.3), ("pixel-art", 1.5)]
    assert (parse({"prompt": "x", "lora": "ink"}).input.lora or [])[0].scale == 1.0


@pytest.mark.parametrize(
    ("raw", "field", "words"),
    [
        ({"lora_scale": 0.5}, "lora_scale", "needs lora"),
        ({"lora": "ink", "lora_scale": 3}, "lora_scale", "at most 2"),
        ({"lora": "nope", "lora_scale": 1}, "lora[0].name", "unknown LoRA"),
    ],
)
def test_lora_scale_rules(raw: dict[str, Any], field: str, words: str) -> None:
    exc = error({"prompt": "x", **raw})
    assert field in exc.fields and words in str(exc)


@pytest.mark.parametrize(("name", "cls"), sorted(schedulers.RUNPOD_SCHEDULERS.items()))
def test_every_runpod_worker_scheduler_name(name: str, cls: str) -> None:
    for spelling in (name, name.lower()):
        spec = parse({"prompt": "x", "scheduler": spelling}).scheduler
        assert spec is not None and spec.class_name == cls
    assert name in schedulers.valid_names() or name.casefold() in {
        n.casefold() for n in schedulers.valid_names()
    }


def test_ipndm_runs_as_pndm() -> None:
    spec = schedulers.resolve("IPNDM")
    assert spec is not None and spec.class_name == "PNDMScheduler"


@pytest.mark.parametrize("field", ["refiner_inference_steps", "high_noise_frac"])
def test_a_model_without_a_refiner_fails_naming_the_field(field: str) -> None:
    value = 30 if field == "refiner_inference_steps" else 0.8
    exc = error({"prompt": "x", "model": "xl", field: value})
    assert str(exc) == (
        f"invalid input: {field}: model 'xl' has no refiner (bake it with --refiner) "
        f"(got {value!r})"
    )


@pytest.mark.parametrize("field", ["refiner_inference_steps", "high_noise_frac"])
def test_the_refiner_fields_do_not_apply_beside_sdxl(field: str) -> None:
    value = 30 if field == "refiner_inference_steps" else 0.8
    exc = error({"prompt": "x", "model": "tiny", field: value})
    assert str(exc) == (
        f"invalid input: {field}: does not apply to SD 1.x models (model 'tiny') (got {value!r})"
    )


def test_the_refiner_fields_on_a_model_with_a_refiner() -> None:
    request = parse(
        {
            "prompt": "x",
            "model": "xl-refined",
            "refiner_inference_steps": 50,
            "high_noise_frac": 0.8,
            "strength": 0.3,
        }
    )
    assert request.input.refined and request.input.high_noise_frac == 0.8
    assert not parse({"prompt": "x", "model": "xl-refined"}).input.refined


@pytest.mark.parametrize(
    ("raw", "field", "words"),
    [
        ({"high_noise_frac": 1.0}, "high_noise_frac", "less than 1"),
        ({"high_noise_frac": 0}, "high_noise_frac", "greater than 0"),
        ({"refiner_inference_steps": 0}, "refiner_inference_steps", "at least 1"),
        (
            {"refiner_inference_steps": 5, "init_image": IMG, "mask": IMG},
            "refiner_inference_steps",
            "does not inpaint (leave out mask)",
        ),
    ],
)
def test_refiner_field_rules(raw: dict[str, Any], field: str, words: str) -> None:
    exc = error({"prompt": "x", "model": "xl-refined", **raw})
    assert field in exc.fields and words in str(exc)


def test_the_issue_payloads_validate() -> None:
    sd_v1 = parse({"prompt": "a dog", "num_outputs": 2, "scheduler": "K-LMS", "nsfw": True})
    assert sd_v1.input.num_images == 2 and sd_v1.input.safety_checker is False
    assert sd_v1.scheduler is not None
    assert sd_v1.scheduler.class_name == "LMSDiscreteScheduler"
    sdxl = parse(
        {
            "prompt": "a dog",
            "model": "xl-refined",
            "refiner_inference_steps": 50,
            "high_noise_frac": 0.8,
            "scheduler": "K_EULER",
            "image_url": "https://example.com/a.png",
        }
    )
    assert sdxl.mode == "img2img" and sdxl.field_name("image") == "image_url"
