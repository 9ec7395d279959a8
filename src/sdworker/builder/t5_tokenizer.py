"""A T5 tokenizer built offline, in memory, from the CLIP BPE words the tiny bakes already have.

transformers builds a T5 (Unigram) tokenizer from a vocabulary list, with no SentencePiece file
and no download: the CLIP table's words become its pieces (a word-final CLIP token, ``cat</w>``,
is the word-initial piece ``▁cat``; the others continue a word), scored by their place in the
merge list, so that frequent words tokenize whole. Saved with the model, it loads through
``AutoTokenizer`` as a real T5's does.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from sdworker.builder.clip_bpe import BOS, EOS, bytes_to_unicode, find_bpe, vocab_and_merges

#: T5's layout: pad, end of sequence and unknown first, then the pieces, then the sentinels
SPECIALS = ("<pad>", "</s>", "<unk>")
#: the word-boundary mark of SentencePiece
SPACE = "\u2581"
#: pieces kept from the CLIP vocabulary (T5's own has 32000)
PIECES = 32000
#: the sentinels T5 tokenizers carry (``<extra_id_0>``...)
EXTRA_IDS = 100
#: the T5 window FLUX.1 and SD 3.x read
MAX_LENGTH = 512


def _text(token: str, decoder: dict[str, int]) -> str | None:
    """A CLIP token as the text it stands for (None when its bytes are not whole UTF-8)."""
    try:
        return bytes(decoder[c] for c in token).decode("utf-8")
    except (KeyError, UnicodeDecodeError):
        return None


def _pieces(tokens: list[str], decoder: dict[str, int]) -> list[str]:
    """CLIP tokens as SentencePiece pieces, each once, in order."""
    pieces: dict[str, None] = {}
    for token in tokens:
        final = token.endswith("</w>")
        text = _text(token.removesuffix("</w>"), decoder)
        if text and not text.isspace():
            pieces.setdefault(SPACE + text if final else text)
    return list(pieces)


def t5_vocabulary(bpe_path: Path | None = None, size: int = PIECES) -> list[tuple[str, float]]:
    """``(piece, score)`` pairs: T5's specials, then up to ``size`` pieces from CLIP's words."""
    vocab, _ = vocab_and_merges(find_bpe(bpe_path))
    decoder = {c: b for b, c in bytes_to_unicode().items()}
    tokens = [t for t in vocab if t not in (BOS, EOS)]
    # the merges in order of frequency, then the single bytes and the bare space: the rarest
    # pieces score lowest, so a known word tokenizes whole and letters are the fallback
    singles = 2 * len(decoder)
    fallback = _pieces(tokens[:singles], decoder)
    words = [p for p in _pieces(tokens[singles:], decoder) if p not in set(fallback)]
    kept = words[: size - len(SPECIALS) - len(fallback) - 1] + fallback + [SPACE]
    scored = [(piece, -math.log(rank + 2)) for rank, piece in enumerate(kept)]
    return [(special, 0.0) for special in SPECIALS] + scored


def build_t5_tokenizer(bpe_path: Path | None = None, size: int = PIECES) -> Any:
    """The T5 tokenizer, in memory."""
    from transformers import T5Tokenizer

    return T5Tokenizer(
        vocab=t5_vocabulary(bpe_path, size), extra_ids=EXTRA_IDS, model_max_length=MAX_LENGTH
    )


def write_t5_tokenizer(dest: Path, bpe_path: Path | None = None, size: int = PIECES) -> Path:
    """Write the T5 tokenizer's folder (``tokenizer.json`` and its config) to ``dest``."""
    build_t5_tokenizer(bpe_path, size).save_pretrained(dest)
    return dest
