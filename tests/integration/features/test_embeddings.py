"""Textual-inversion embeddings on the tiny SD and SDXL models: a trigger word changes the
image only as a whole token, in the prompt or the negative prompt; the next plain request is
bit-identical, and the text encoders are left exactly as they were."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from sdworker.core.settings import Settings
from sdworker.runpod.adapter import RunpodAdapter
from tests.integration.test_generation import pixels

SMALL = {"width": 64, "height": 64, "num_inference_steps": 2, "seed": 5}


def write_embedding(path: Path, tensors: dict[str, tuple[int, int]], seed: int) -> Path:
    """An embedding of random vectors (large enough to move the image from the first step)."""
    import torch
    from safetensors.torch import save_file

    generator = torch.Generator().manual_seed(seed)
    path.parent.mkdir(parents=True, exist_ok=True)
    save_file({k: torch.randn(*s, generator=generator) * 3 for k, s in tensors.items()}, str(path))
    return path


@pytest.fixture(scope="module")
def embedding_models(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A models folder (``tiny``, ``tiny-sdxl``, the baked embedding ``rustic``) and a volume
    with ``badhand`` (SD 1.x) and ``xl/glowxl`` (SDXL's pair)."""
    from sdworker.builder.loras import bake_embeddings
    from sdworker.builder.tiny import bake_tiny, bake_tiny_sdxl

    root = tmp_path_factory.mktemp("ti-models")
    bake_tiny(root, "tiny")
    bake_tiny_sdxl(root, "tiny-sdxl")
    made = tmp_path_factory.mktemp("ti-files")
    bake_embeddings(
        root, [write_embedding(made / "rustic.safetensors", {"emb_params": (1, 32)}, 1)]
    )
    volume = tmp_path_factory.mktemp("ti-volume")
    folder = volume / "models" / "embeddings"
    write_embedding(folder / "badhand.safetensors", {"emb_params": (2, 32)}, 2)
    write_embedding(folder / "xl" / "glowxl.safetensors", {"clip_l": (2, 32), "clip_g": (2, 32)}, 3)
    return root, volume


def _worker(root: Path, volume: Path, state: Path) -> RunpodAdapter:
    settings = Settings(
        models_dir=root,
        default_model="tiny",
        state_dir=state,
        volume_dir=volume,
        progress_interval_s=0.0,
    )
    return RunpodAdapter(settings)


@pytest.fixture(scope="module")
def workers(
    embedding_models: tuple[Path, Path], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[RunpodAdapter, RunpodAdapter]]:
    """A worker that has the volume's embeddings, and one without (the baseline)."""
    root, volume = embedding_models
    empty = tmp_path_factory.mktemp("ti-empty-volume")
    yield (
        _worker(root, volume, tmp_path_factory.mktemp("ti-state")),
        _worker(root, empty, tmp_path_factory.mktemp("ti-state-plain")),
    )


def image(worker: RunpodAdapter, prompt: str, **fields: Any) -> np.ndarray:
    out = worker.handle_sync({"id": "e", "input": {"prompt": prompt, **SMALL, **fields}})
    assert isinstance(out, list), out
    return pixels(out[0])


def test_a_trigger_word_changes_the_image_and_leaves_nothing_behind(
    workers: Any, caplog: pytest.LogCaptureFixture
) -> None:
    worker, _ = workers
    before = image(worker, "a lighthouse")
    tiny = worker.service.generator.cache.get("tiny").base
    tokens, weight = len(tiny.tokenizer), tiny.text_encoder.get_input_embeddings().weight
    with_it = image(worker, "a lighthouse, badhand")
    negative = image(worker, "a lighthouse", negative_prompt="badhand")
    with caplog.at_level(logging.INFO, logger="sdworker.gpu.embeddings"):
        image(worker, "a rustic lighthouse, badhand")  # the baked one and the volume's
    assert "embeddings rustic, badhand loaded" in caplog.text
    after = image(worker, "a lighthouse")
    assert not np.array_equal(before, with_it) and not np.array_equal(before, negative)
    assert np.array_equal(before, after)  # bit for bit
    assert len(tiny.tokenizer) == tokens
    assert tiny.text_encoder.get_input_embeddings().weight is weight  # the very tensor


def test_a_trigger_matches_whole_tokens_only_as_a1111_does(workers: Any) -> None:
    worker, plain = workers
    for prompt in ("notbadhands at sea", "a lighthouse"):
        assert np.array_equal(image(worker, prompt), image(plain, prompt)), prompt
    # weighted and bracketed, it is still the word
    assert not np.array_equal(
        image(worker, "(badhand:1.2) sea", use_compel=True),
        image(plain, "(badhand:1.2) sea", use_compel=True),
    )


def test_sdxl_takes_its_pair_and_not_sd1_embeddings(workers: Any) -> None:
    worker, plain = workers
    assert not np.array_equal(
        image(worker, "glowxl lighthouse", model="tiny-sdxl"),
        image(plain, "glowxl lighthouse", model="tiny-sdxl"),
    )
    # an SD 1.x embedding does not fit SDXL's encoders: A1111 skips it, and so does this
    assert np.array_equal(
        image(worker, "badhand lighthouse", model="tiny-sdxl"),
        image(plain, "badhand lighthouse", model="tiny-sdxl"),
    )
    assert np.array_equal(image(worker, "glowxl"), image(plain, "glowxl"))  # nor SDXL's on SD 1.x
