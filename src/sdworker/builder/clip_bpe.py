"""The real CLIP tokenizer files, built from OpenAI's CLIP BPE table.

No model download is needed: the ``openai-clip`` distribution (a dependency; it declares no torch
or torchvision) puts ``clip/bpe_simple_vocab_16e6.txt.gz`` on disk, ``open-clip-torch`` ships the
same file as ``open_clip/bpe_simple_vocab_16e6.txt.gz``, and the standard CLIP recipe turns it into
the ``vocab.json`` and ``merges.txt`` that transformers' ``CLIPTokenizer`` reads. We locate the file
without importing either package (importing them pulls in torchvision).
"""

from __future__ import annotations

import gzip
import importlib.util
import json
import os
from collections.abc import Mapping
from functools import lru_cache
from pathlib import Path

from sdworker.core.errors import BuildError

BPE_FILE = "bpe_simple_vocab_16e6.txt.gz"
BPE_ENV = "SDWORKER_CLIP_BPE"
#: what the CLIP tokenizer's vocabulary holds: 256 bytes, the same with "</w>", the merges, 2 specials
VOCAB_SIZE = 49408
BOS, EOS = "<|startoftext|>", "<|endoftext|>"
INSTALL_HINT = "pip install openai-clip==1.0.1"
#: packages that ship the table, by import name, the dependency first
PACKAGES = ("clip", "open_clip")


def find_bpe(explicit: Path | None = None, environ: Mapping[str, str] | None = None) -> Path:
    """Where the CLIP BPE table lies: ``explicit``, else ``$SDWORKER_CLIP_BPE``, else inside an
    installed ``clip`` or ``open_clip`` package (found without importing it)."""
    env = os.environ if environ is None else environ
    candidates: list[Path] = []
    if explicit is not None:
        candidates.append(Path(explicit))
    elif env.get(BPE_ENV):
        candidates.append(Path(env[BPE_ENV]))
    else:
        for package in PACKAGES:
            spec = importlib.util.find_spec(package)
            for location in (spec.submodule_search_locations or []) if spec else []:
                candidates.append(Path(location) / BPE_FILE)
    for candidate in candidates:
        if candidate.is_file():
            return candidate
    tried = ", ".join(str(c) for c in candidates) or "neither clip nor open_clip is installed"
    raise BuildError(
        f"CLIP BPE table {BPE_FILE} not found (tried: {tried}); "
        f"install it with `{INSTALL_HINT}` or point {BPE_ENV} at the file"
    )


def bytes_to_unicode() -> dict[int, str]:
    """GPT-2/CLIP's reversible map from bytes to printable unicode characters."""
    printable = (
        list(range(ord("!"), ord("~") + 1))
        + list(range(ord("¡"), ord("¬") + 1))
        + list(range(ord("®"), ord("ÿ") + 1))
    )
    chars = list(printable)
    extra = 0
    for byte in range(256):
        if byte not in printable:
            printable.append(byte)
            chars.append(256 + extra)
            extra += 1
    return dict(zip(printable, (chr(c) for c in chars), strict=True))


@lru_cache(maxsize=4)
def vocab_and_merges(bpe_path: Path) -> tuple[dict[str, int], list[str]]:
    """The CLIP vocabulary (token → id) and merge list built from the BPE table."""
    with gzip.open(bpe_path, "rt", encoding="utf-8") as fh:
        lines = fh.read().split("\n")
    # the first line is a version header; CLIP uses the first 49152 - 256 - 2 merges
    merges = lines[1 : 49152 - 256 - 2 + 1]
    byte_chars = list(bytes_to_unicode().values())
    tokens = byte_chars + [c + "</w>" for c in byte_chars]
    tokens += ["".join(m.split()) for m in merges]
    tokens += [BOS, EOS]
    if len(tokens) != VOCAB_SIZE:
        raise BuildError(f"{bpe_path}: expected {VOCAB_SIZE} tokens, built {len(tokens)}")
    return {tok: i for i, tok in enumerate(tokens)}, merges


def write_tokenizer(
    dest: Path, bpe_path: Path | None = None, *, pad_token: str = EOS, max_length: int = 77
) -> Path:
    """Write a ``CLIPTokenizer`` folder (vocab.json, merges.txt, configs) to ``dest``.

    ``pad_token`` is ``<|endoftext|>`` for SD 1.x and the first encoder of SDXL, ``"!"`` for
    the OpenCLIP encoders of SD 2.x and SDXL's second encoder.
    """
    vocab, merges = vocab_and_merges(find_bpe(bpe_path))
    dest.mkdir(parents=True, exist_ok=True)
    (dest / "vocab.json").write_text(json.dumps(vocab, ensure_ascii=False) + "\n")
    (dest / "merges.txt").write_text("#version: 0.2\n" + "\n".join(merges) + "\n")
    specials = {"bos_token": BOS, "eos_token": EOS, "unk_token": EOS, "pad_token": pad_token}
    config = {
        "tokenizer_class": "CLIPTokenizer",
        "model_max_length": max_length,
        "do_lower_case": True,
        "clean_up_tokenization_spaces": True,
        "errors": "replace",
        **specials,
    }
    (dest / "tokenizer_config.json").write_text(json.dumps(config, indent=2, sort_keys=True) + "\n")
    (dest / "special_tokens_map.json").write_text(
        json.dumps(specials, indent=2, sort_keys=True) + "\n"
    )
    return dest
