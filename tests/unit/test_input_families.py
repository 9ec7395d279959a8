"""The input rules a model's family sets: the fields that apply, defaults from the model, the
size rule, schedulers, modes, true CFG, the T5 window and LoRA families."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pytest

from sdworker.core.errors import InvalidInput
from sdworker.core.input import RULES, InputContext, Limits, ModelFacts, parse_input
from sdworker.core.schema import Request
from sdworker.families import get as family

IMG = "aGVsbG8gd29ybGQgaGVsbG8="
MODELS = {
    "tiny": ModelFacts("tiny", 512, 512, family("sd1")),
    "xl": ModelFacts("xl", 1024, 1024, family("sdxl")),
    "sd3": ModelFacts("sd3", 1024, 1024, family("sd3")),
    "turbo": ModelFacts(
        "turbo",
        1024,
        1024,
        family("sd3"),
        defaults={"num_inference_steps": 4, "guidance_scale": 0.0},
    ),
    "schnell": ModelFacts(
        "schnell",
        1024,
        1024,
        family("flux"),
        defaults={"num_inference_steps": 4, "guidance_scale": 0.0, "max_sequence_length": 256},
    ),
    "dev": ModelFacts("dev", 1024, 1024, family("flux")),
    "kontext": ModelFacts("kontext", 1024, 1024, family("flux-kontext")),
    "fill": ModelFacts("fill", 1024, 1024, family("flux-fill")),
}


@dataclass(frozen=True)
class Loras:
    """Baked LoRAs with the families they were made for."""

    made_for: dict[str, str | None]

    def names(self) -> list[str]:
        return sorted(self.made_for)

    def knows(self, name: str) -> bool:
        return name in self.made_for

    def family(self, name: str) -> str | None:
        return self.made_for[name]

    def refusal(self, name: str) -> str | None:
        return None


CONTEXT = InputContext(
    MODELS,
    "schnell",
    Limits(max_pixels=1536 * 1536),
    Loras({"ink": "flux", "pixel": "sd1", "any": None}),
)


def parse(raw: dict[str, Any]) -> Request:
    return parse_input({"prompt": "x", **raw}, CONTEXT)


def problems(raw: dict[str, Any]) -> dict[str, str]:
    with pytest.raises(InvalidInput) as info:
        parse(raw)
    return {p.field: p.message for p in info.value.problems}


def test_defaults_come_from_the_model_then_its_family() -> None:
    schnell = parse({}).input
    assert (schnell.num_inference_steps, schnell.guidance_scale) == (4, 0.0)
    assert (schnell.max_sequence_length, schnell.true_cfg_scale) == (256, 1.0)
    dev = parse({"model": "dev"}).input
    assert (dev.num_inference_steps, dev.guidance_scale, dev.max_sequence_length) == (28, 3.5, 512)
    turbo = parse({"model": "turbo"}).input
    assert (turbo.num_inference_steps, turbo.guidance_scale) == (4, 0.0)
    fill = parse({"model": "fill", "image": IMG, "mask_image": IMG}).input
    assert (fill.num_inference_steps, fill.guidance_scale, fill.strength) == (50, 30.0, 1.0)
    # an SD model gets no T5 field at all, and what the client gave wins
    sd = parse({"model": "tiny", "num_inference_steps": 9}).input
    assert sd.num_inference_steps == 9 and sd.max_sequence_length is None
    # the defaults do not count as given (the refiner's strength rule reads what was given)
    assert "num_inference_steps" not in parse({}).input.model_fields_set


@pytest.mark.parametrize(
    ("model", "field", "value"),
    [
        ("schnell", "use_compel", True),
        ("schnell", "clip_skip", 2),
        ("schnell", "refiner_inference_steps", 10),
        ("sd3", "use_compel", True),
        ("sd3", "true_cfg_scale", 2.0),
        ("tiny", "max_sequence_length", 128),
        ("tiny", "true_cfg_scale", 2.0),
        ("fill", "true_cfg_scale", 2.0),
    ],
)
def test_a_field_that_does_not_apply_names_the_family(model: str, field: str, value: Any) -> None:
    raw = {"model": model, field: value}
    if model == "fill":
        raw |= {"image": IMG, "mask_image": IMG}
    label = MODELS[model].family.label
    assert problems(raw)[field] == f"does not apply to {label} models (model {model!r})"


def test_hires_does_not_apply_to_flux_and_false_asks_for_nothing() -> None:
    assert problems({"hires": {"scale": 2}}) == {
        "hires": "does not apply to FLUX.1 models (model 'schnell')"
    }
    assert parse({"use_compel": False}).input.use_compel is False


def test_sides_follow_the_family_size_rule() -> None:
    found = problems({"model": "sd3", "width": 520, "height": 1000})
    assert found == {
        "width": "must be a multiple of 16 for SD 3.x models (model 'sd3')",
        "height": "must be a multiple of 16 for SD 3.x models (model 'sd3')",
    }
    assert parse({"model": "tiny", "width": 520}).width == 520


def test_schedulers_that_do_not_run_the_family_are_refused_by_name() -> None:
    assert problems({"scheduler": "DPM++ 2M Karras"})["scheduler"] == (
        "DPMSolverMultistepScheduler does not run FLUX.1 models (model 'schnell'); they take "
        "FlowMatchEulerDiscreteScheduler"
    )
    message = problems({"model": "tiny", "scheduler": "FlowMatchEulerDiscreteScheduler"})
    assert (
        "does not run SD 1.x models (model 'tiny'); they take the samplers" in message["scheduler"]
    )
    spec = parse({"model": "sd3", "scheduler": "flowmatchheundiscretescheduler"}).scheduler
    assert spec is not None and spec.class_name == "FlowMatchHeunDiscreteScheduler"


def test_a_negative_prompt_on_flux_needs_true_cfg() -> None:
    assert "true_cfg_scale above 1" in problems({"negative_prompt": "fog"})["negative_prompt"]
    assert problems({"true_cfg_scale": 3.0}) == {
        "true_cfg_scale": "needs negative_prompt (true CFG guides away from it)"
    }
    request = parse({"negative_prompt": "fog", "true_cfg_scale": 3.0})
    assert request.input.true_cfg_scale == 3.0
    fill = {"model": "fill", "image": IMG, "mask_image": IMG, "negative_prompt": "fog"}
    assert problems(fill)["negative_prompt"] == (
        "does not apply to FLUX.1 Fill models (model 'fill')"
    )
    # SD 3.x guides with a negative prompt as SD does
    assert parse({"model": "sd3", "negative_prompt": "fog"}).input.negative_prompt == "fog"


def test_modes_a_family_does_not_offer() -> None:
    assert problems({"model": "fill"}) == {
        "image": "is required: FLUX.1 Fill models (model 'fill') make no image from a prompt alone"
    }
    assert "mask_image" in problems({"model": "fill", "image": IMG})
    assert parse({"model": "kontext", "image": IMG}).mode == "edit"
    assert problems({"model": "kontext", "image": IMG, "strength": 0.5}) == {
        "strength": "does not apply to an edit (FLUX.1 Kontext models (model 'kontext') read "
        "the image as a reference)"
    }
    assert parse({"model": "kontext", "image": IMG, "mask_image": IMG}).mode == "inpaint"


def test_the_t5_window() -> None:
    assert problems({"max_sequence_length": 513})["max_sequence_length"] == "must be at most 512"
    assert parse({"model": "sd3", "max_sequence_length": 77}).input.max_sequence_length == 77


def test_loras_of_another_family_are_refused_before_loading() -> None:
    assert problems({"lora": "pixel"}) == {
        "lora[0].name": "is made for SD 1.x models; model 'schnell' is FLUX.1"
    }
    assert parse({"model": "kontext", "lora": ["ink", "any"]}).input.lora is not None
    assert problems({"model": "tiny", "lora": "ink"})["lora[0].name"] == (
        "is made for FLUX.1 models; model 'tiny' is SD 1.x"
    )


def test_every_problem_at_once_across_the_rules() -> None:
    found = problems({"width": 72, "use_compel": True, "negative_prompt": "fog", "lora": "pixel"})
    assert list(found) == ["lora[0].name", "use_compel", "width", "negative_prompt"]


def test_rules_are_functions_of_a_draft() -> None:
    assert all(callable(rule) for rule in RULES)
