"""The native input under generated values: a request that passes validation can run, and a
refusal names fields the client used, in text any JSON encoder carries."""

from __future__ import annotations

import json
import re
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from sdworker.core.errors import InvalidInput
from sdworker.core.input import InputContext, ModelFacts, parse_input
from sdworker.core.jobs import Failure
from sdworker.core.schema import INPUT_FIELDS, SEED_LIMIT, Request
from sdworker.core.settings import MAX_SIDE, MIN_SIDE, SIDE_STEP
from sdworker.families import get as family
from tests.fuzz.conftest import fuzz_seed
from tests.fuzz.strategies import json_values, native_inputs

MODELS = {
    "tiny": ModelFacts("tiny", 64, 64, family("sd1")),
    "tiny-safe": ModelFacts("tiny-safe", 64, 64, family("sd1")),
}
MAX_PIXELS = 512 * 512


def parse(raw: Any) -> Request:
    context = InputContext.of(MODELS, default_model="tiny", max_pixels=MAX_PIXELS, loras=["ink"])
    return parse_input(raw, context)


def runnable(request: Request) -> None:
    """What the model needs of a request: nothing that would fail inside diffusers."""
    req = request.input
    if request.mode == "upscale":  # no generation: an image and a size
        assert req.image and req.upscale is not None and 1 <= req.upscale.scale <= 8
        return
    assert req.prompt.strip()
    req.prompt.encode("utf-8")
    req.negative_prompt.encode("utf-8")
    assert request.model in MODELS
    if request.width is not None and request.height is not None:
        for side in (request.width, request.height):
            assert MIN_SIDE <= side <= MAX_SIDE and side % SIDE_STEP == 0
        assert request.width * request.height <= MAX_PIXELS
    assert 1 <= req.num_inference_steps <= 500
    assert 0 <= req.guidance_scale <= 30
    assert 1 <= req.num_images <= 8
    assert request.seed >= 0 and request.seed + req.num_images - 1 < SEED_LIMIT
    if request.mode != "txt2img":
        assert 0 < req.strength <= 1
        assert int(req.num_inference_steps * req.strength) >= 1  # img2img runs that many
    if req.hires is not None:
        assert request.mode == "txt2img" and request.hires_size is not None
        width, height = request.hires_size
        assert min(width, height) >= MIN_SIDE and max(width, height) <= MAX_SIDE
        assert width % SIDE_STEP == 0 and height % SIDE_STEP == 0
        assert width * height <= MAX_PIXELS
        steps = req.hires.steps or req.num_inference_steps
        assert int(steps * req.hires.strength) >= 1


def refusal_is_clear(raw: Any, error: InvalidInput) -> None:
    """Every problem names a native field or a key the client sent, and the failure can be
    posted back as strict JSON."""
    assert error.problems
    sent = set(raw) if isinstance(raw, dict) else set()
    for problem in error.problems:
        if problem.field in sent or (problem.field == '""' and "" in sent):
            continue  # a key the client sent, as it sent it
        root = re.split(r"[.\[]", problem.field, maxsplit=1)[0]
        assert root in INPUT_FIELDS or root in sent or root == "input", problem
    output = Failure.of(error).to_output()
    json.dumps(output, allow_nan=False).encode("utf-8")


@fuzz_seed
@given(native_inputs)
def test_generated_inputs_run_or_are_refused_clearly(raw: dict[str, Any]) -> None:
    try:
        request = parse(raw)
    except InvalidInput as exc:
        refusal_is_clear(raw, exc)
    else:
        runnable(request)


@fuzz_seed
@given(json_values)
def test_any_json_value_as_the_input_is_refused_or_runs(raw: Any) -> None:
    try:
        request = parse(raw)
    except InvalidInput as exc:
        refusal_is_clear(raw, exc)
    else:
        runnable(request)


@fuzz_seed
@given(st.dictionaries(st.text(max_size=12), json_values, max_size=6))
def test_unknown_keys_are_named(raw: dict[str, Any]) -> None:
    raw = {**raw, "prompt": "x"}
    try:
        parse(raw)
    except InvalidInput as exc:
        refusal_is_clear(raw, exc)
        unknown = {key or '""' for key in set(raw) - set(INPUT_FIELDS)}
        assert unknown <= set(exc.fields)
