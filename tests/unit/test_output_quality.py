"""``output_quality``: the native field that sets JPEG and WebP quality (cog-flux's name)."""

from __future__ import annotations

import pytest
from PIL import Image

from sdworker.core.errors import InvalidInput
from sdworker.core.input import InputContext, ModelFacts, parse_input
from sdworker.families import get as family
from sdworker.output.imageio import encode_image

_FACTS = {"tiny": ModelFacts("tiny", 64, 64, family("sd1"))}


def _noise() -> Image.Image:
    return Image.effect_noise((64, 64), 80).convert("RGB")


@pytest.mark.parametrize("fmt", ["jpeg", "webp"])
def test_a_lower_quality_makes_a_smaller_file(fmt: str) -> None:
    image = _noise()
    sizes = [
        len(encode_image(image, fmt, seed=1, parameters=None, quality=q).data) for q in (10, 95)
    ]
    assert sizes[0] < sizes[1]
    default = encode_image(image, fmt, seed=1, parameters=None).data
    assert default == encode_image(image, fmt, seed=1, parameters=None, quality=92).data


def test_png_ignores_it() -> None:
    image = _noise()
    low = encode_image(image, "png", seed=1, parameters=None, quality=5).data
    assert low == encode_image(image, "png", seed=1, parameters=None).data


@pytest.mark.parametrize("value", [-1, 101, 50.5, "80"])
def test_out_of_range_or_not_an_integer_is_refused_by_name(value: object) -> None:
    context = InputContext.of(_FACTS, default_model="tiny", max_pixels=2048 * 2048)
    with pytest.raises(InvalidInput) as caught:
        parse_input({"prompt": "x", "output_quality": value}, context)
    assert caught.value.fields == ["output_quality"]
    assert parse_input({"prompt": "x", "output_quality": 80}, context).input.output_quality == 80
