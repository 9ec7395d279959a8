"""Weighted and long prompts (``use_compel``) and ``clip_skip``, on tiny SD and SDXL."""

from __future__ import annotations

import logging
from typing import Any

import numpy as np
import pytest

from sdworker.gpu import prompts
from sdworker.runpod.adapter import RunpodAdapter
from tests.integration.test_generation import pixels

SMALL = {"width": 64, "height": 64, "num_inference_steps": 2}
MODELS = ["tiny", "tiny-sdxl"]
# 40 two-token phrases: about 200 tokens with the commas, well past CLIP's 77
LONG = ", ".join(f"red tower number {n}" for n in range(40))


def image(worker: RunpodAdapter, **fields: Any) -> np.ndarray:
    out = worker.handle_sync(
        {"id": "p", "input": {"prompt": "a lighthouse", "seed": 31, **SMALL, **fields}}
    )
    assert isinstance(out, list), out
    return pixels(out[0])


@pytest.mark.parametrize("model", MODELS)
def test_weights_change_the_image_and_the_neutral_weight_does_not(
    fworker: RunpodAdapter, model: str
) -> None:
    plain = image(fworker, model=model)
    neutral = image(fworker, model=model, use_compel=True, prompt="a (lighthouse:1.0)")
    assert np.array_equal(neutral, plain)  # same embeddings as the text path, bit for bit
    for weighted in ("a (lighthouse:1.5)", "a lighthouse++", "a lighthouse--", "a [lighthouse]"):
        assert not np.array_equal(
            image(fworker, model=model, use_compel=True, prompt=weighted), plain
        ), weighted


def test_weighted_negative_prompt(fworker: RunpodAdapter) -> None:
    plain = image(fworker, use_compel=True, negative_prompt="blurry")
    assert not np.array_equal(
        plain, image(fworker, use_compel=True, negative_prompt="(blurry:1.6)")
    )


@pytest.mark.parametrize("model", MODELS)
def test_a_200_token_prompt_is_used_whole(
    fworker: RunpodAdapter, model: str, caplog: pytest.LogCaptureFixture
) -> None:
    tokenizer = fworker.service.generator.cache.get(model).base.tokenizer
    assert len(tokenizer(LONG).input_ids) >= 200
    changed_tail = LONG + ", blue sea"
    whole = image(fworker, model=model, prompt=LONG, use_compel=True)
    whole_changed = image(fworker, model=model, prompt=changed_tail, use_compel=True)
    assert not np.array_equal(whole, whole_changed)  # the words after token 200 count

    with caplog.at_level(logging.WARNING, logger="sdworker.gpu.prompts"):
        cut = image(fworker, model=model, prompt=LONG)
        cut_changed = image(fworker, model=model, prompt=changed_tail)
    assert np.array_equal(cut, cut_changed)  # without compel the tail is dropped...
    dropped = len(tokenizer(LONG).input_ids) - 77
    assert f"prompt is {dropped} tokens too long" in caplog.text  # ...and the log says so


@pytest.mark.parametrize("model", MODELS)
def test_long_embeddings_are_chunked_and_padded_alike(fworker: RunpodAdapter, model: str) -> None:
    import torch

    loaded = fworker.service.generator.cache.get(model)
    pipe = loaded.base
    with torch.inference_mode():
        embeds = prompts.weighted_embeddings(
            pipe, LONG, "short (negative:1.2)", 1, loaded.family.prompts
        )
    tokens = len(pipe.tokenizer(LONG).input_ids) - 2
    length = embeds["prompt_embeds"].shape[1]
    # 77-token chunks (start, 75 tokens, end), as many as the whole prompt needs
    assert length % 77 == 0 and length >= 77 * -(-tokens // 75)
    assert embeds["negative_prompt_embeds"].shape == embeds["prompt_embeds"].shape
    if model == "tiny-sdxl":
        assert embeds["pooled_prompt_embeds"].shape == embeds["negative_pooled_prompt_embeds"].shape


@pytest.mark.parametrize("model", MODELS)
def test_clip_skip(fworker: RunpodAdapter, model: str) -> None:
    last = image(fworker, model=model, clip_skip=1)
    assert np.array_equal(last, image(fworker, model=model))
    skipped = image(fworker, model=model, clip_skip=2)
    assert not np.array_equal(last, skipped)
    # the weighted-prompt path reads the same layer as the text path
    assert np.array_equal(skipped, image(fworker, model=model, clip_skip=2, use_compel=True))


def test_clip_skip_beyond_the_text_encoder_is_an_input_error(fworker: RunpodAdapter) -> None:
    out = fworker.handle_sync({"id": "p", "input": {"prompt": "x", "clip_skip": 3, **SMALL}})
    assert isinstance(out, dict)
    assert out["error"] == (
        "invalid input: clip_skip: must be at most 2 for model 'tiny' "
        "(its text encoder has 2 layers) (got 3)"
    )
