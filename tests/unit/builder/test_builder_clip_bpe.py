"""The CLIP tokenizer files built from OpenAI's BPE table (shipped by a dependency)."""

from __future__ import annotations

import importlib.metadata
import json
from pathlib import Path

import pytest
import tomllib
from transformers import CLIPTokenizer

from sdworker.builder import clip_bpe
from sdworker.core.errors import BuildError

ROOT = Path(__file__).resolve().parents[3]


def test_bytes_to_unicode_is_a_bijection() -> None:
    table = clip_bpe.bytes_to_unicode()
    assert sorted(table) == list(range(256))
    assert len(set(table.values())) == 256
    assert table[ord("a")] == "a"
    # a space is not printable: it moves above 255, as in GPT-2/CLIP
    assert table[ord(" ")] == "Ġ"


def test_tokenizer_matches_clip(tmp_path: Path) -> None:
    folder = clip_bpe.write_tokenizer(tmp_path / "tok")
    vocab = json.loads((folder / "vocab.json").read_text())
    assert len(vocab) == clip_bpe.VOCAB_SIZE
    tok = CLIPTokenizer.from_pretrained(folder)
    assert tok("a photo of a cat").input_ids == [49406, 320, 1125, 539, 320, 2368, 49407]
    assert tok.pad_token == "<|endoftext|>"
    padded = tok("hi", padding="max_length", max_length=77).input_ids
    assert len(padded) == 77


def test_second_encoder_pads_with_bang(tmp_path: Path) -> None:
    tok = CLIPTokenizer.from_pretrained(clip_bpe.write_tokenizer(tmp_path, pad_token="!"))
    assert tok.pad_token_id == 0


def test_env_var_and_explicit_path(tmp_path: Path) -> None:
    real = clip_bpe.find_bpe()
    assert real.name == clip_bpe.BPE_FILE
    assert clip_bpe.find_bpe(environ={clip_bpe.BPE_ENV: str(real)}) == real
    assert clip_bpe.find_bpe(real, environ={}) == real


def test_missing_table_says_how_to_install(tmp_path: Path) -> None:
    with pytest.raises(BuildError, match="pip install openai-clip"):
        clip_bpe.find_bpe(environ={clip_bpe.BPE_ENV: str(tmp_path / "nope.txt.gz")})


def test_the_table_comes_with_a_dependency_that_brings_no_torch() -> None:
    # `pip install sdworker` must find the table with no hand step, and the package that ships
    # it must not pull torchvision (which pins its own, CUDA, torch) or any torch at all
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert "openai-clip==1.0.1" in project["dependencies"]
    assert clip_bpe.INSTALL_HINT.endswith("openai-clip==1.0.1")
    requires = importlib.metadata.requires("openai-clip") or []
    assert not [r for r in requires if r.split()[0].lower().startswith("torch")], requires
    found = clip_bpe.find_bpe(environ={})
    assert found.parent.name in clip_bpe.PACKAGES
