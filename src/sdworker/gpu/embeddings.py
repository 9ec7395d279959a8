"""Textual-inversion embeddings for the requests whose prompts use them, as A1111 has them.

An embedding applies where its trigger word (its file's name) appears in a prompt or a
negative prompt as whole tokens: the prompt's token ids are searched for the name's, longest
name first, as A1111 does, so ``badhand`` applies in ``a badhand, photo`` and
``(badhand:1.2)`` but not inside ``notbadhands``. Each match is replaced, in the request's
text only, by placeholder words, one per vector (``sdwemb0v0 sdwemb0v1``), which the
tokenizers of the model learn for as long as the request runs: each placeholder's token
embedding is one of the embedding's vectors (SDXL's files hold one set per encoder).

Loading appends rows to the text encoders' token embedding matrices and words to their
tokenizers; unloading puts back the very tensors and tokenizer state that were there, so
a request without embeddings runs on exactly the model it ran on before. The switch happens
inside the model's adapter gate (:mod:`.adapters`), so no other request sees it.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from sdworker.core.assets import EMBEDDING, Asset, AssetRegistry, read_header
from sdworker.core.embeddings import ENCODERS, Layout, fits, layout
from sdworker.core.schema import Request

log = logging.getLogger(__name__)

#: the embeddings a request uses, as the adapter gate's key (their asset keys, sorted)
EmbeddingSet = tuple[str, ...]


def placeholder(index: int, vector: int) -> str:
    """The word standing for vector ``vector`` of the ``index``-th embedding of a set."""
    return f"sdwemb{index}v{vector}"


@dataclass
class Triggers:
    """The embeddings that fit a model, and their trigger words as its tokenizer reads them."""

    #: (token ids of the trigger word, the embedding), longest first
    words: list[tuple[tuple[int, ...], Asset]] = field(default_factory=list)
    layouts: dict[str, Layout] = field(default_factory=dict)


def triggers(pipe: Any, assets: AssetRegistry, components: Sequence[str]) -> Triggers:
    """The usable embeddings whose vectors fit ``pipe``'s text encoders."""
    widths = encoder_widths(pipe, components)
    found = Triggers()
    tokenizer = getattr(pipe, "tokenizer", None)
    if widths is None or tokenizer is None:
        return found
    for asset in assets.all(EMBEDDING):
        if asset.refused is not None:
            continue
        try:
            shape = layout(read_header(asset.path).shapes)
        except (OSError, ValueError):
            continue  # gone or broken since the scan: it is no trigger now
        if shape is None or not fits(shape, widths):
            continue
        ids = tuple(tokenizer(asset.name, add_special_tokens=False)["input_ids"])
        if ids:
            found.words.append((ids, asset))
            found.layouts[asset.key] = shape
    found.words.sort(key=lambda pair: -len(pair[0]))
    return found


def encoder_widths(pipe: Any, components: Sequence[str]) -> tuple[int, ...] | None:
    """The token embedding width of each of ``pipe``'s text encoders (None: one is missing)."""
    widths = []
    for name in components:
        encoder = getattr(pipe, name, None)
        if encoder is None:
            return None
        widths.append(int(encoder.get_input_embeddings().weight.shape[-1]))
    return tuple(widths)


def _matches(text: str, tokenizer: Any, found: Triggers) -> list[tuple[int, int, Asset]]:
    """(start, end, embedding) of each whole-token trigger in ``text``, left to right."""
    if not text or not found.words:
        return []
    encoded = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
    ids, offsets = encoded["input_ids"], encoded["offset_mapping"]
    spans = []
    i = 0
    while i < len(ids):
        hit = next(
            (
                (words, asset)
                for words, asset in found.words
                if tuple(ids[i : i + len(words)]) == words
            ),
            None,
        )
        if hit is None:
            i += 1
            continue
        words, asset = hit
        spans.append((offsets[i][0], offsets[i + len(words) - 1][1], asset))
        i += len(words)
    return spans


def _texts(request: Request) -> list[str]:
    given = request.input
    texts = [given.prompt, given.negative_prompt]
    if given.hires is not None:
        texts += [given.hires.prompt or "", given.hires.negative_prompt or ""]
    return texts


def used(requests: Sequence[Request], tokenizer: Any, found: Triggers) -> EmbeddingSet:
    """The embeddings the prompts of ``requests`` use, as a set key."""
    keys = {
        asset.key
        for request in requests
        for text in _texts(request)
        for _, _, asset in _matches(text, tokenizer, found)
    }
    return tuple(sorted(keys))


def rewrite(request: Request, tokenizer: Any, found: Triggers, loaded: EmbeddingSet) -> Request:
    """``request`` with each trigger in its prompts replaced by its placeholder words."""
    if not loaded:
        return request

    def rewritten(text: str) -> str:
        out, at = [], 0
        for start, end, asset in _matches(text, tokenizer, found):
            index = loaded.index(asset.key)
            words = [placeholder(index, v) for v in range(found.layouts[asset.key].vectors)]
            out += [text[at:start], " ".join(words)]
            at = end
        return "".join([*out, text[at:]])

    given = request.input
    update: dict[str, Any] = {
        "prompt": rewritten(given.prompt),
        "negative_prompt": rewritten(given.negative_prompt),
    }
    if given.hires is not None:
        hires = given.hires.model_copy(
            update={
                name: rewritten(value)
                for name in ("prompt", "negative_prompt")
                if isinstance(value := getattr(given.hires, name), str)
            }
        )
        update["hires"] = hires
    return replace(request, input=given.model_copy(update=update))


class LoadedEmbeddings:
    """The embeddings loaded on one model's tokenizers and text encoders right now."""

    def __init__(self) -> None:
        self.active: EmbeddingSet = ()
        self._saved: list[tuple[Any, Any, str, Any, int]] = []
        self._known: tuple[tuple[str, ...], Triggers] | None = None

    def triggers(self, pipe: Any, assets: AssetRegistry, components: Sequence[str]) -> Triggers:
        """:func:`triggers` of the model, read again only when the embedding files change."""
        files = tuple(a.key for a in assets.all(EMBEDDING))
        if self._known is None or self._known[0] != files:
            self._known = (files, triggers(pipe, assets, components))
        return self._known[1]

    def switch(
        self,
        pipe: Any,
        target: EmbeddingSet,
        found: Triggers,
        assets: AssetRegistry,
        components: Sequence[str],
    ) -> None:
        """Unload what is loaded, then load ``target`` (called inside the adapter gate)."""
        if target == self.active:
            return
        self.unload()
        if not target:
            return
        by_key = {asset.key: asset for _, asset in found.words}
        for slot, component in enumerate(components):
            tokenizer = getattr(pipe, "tokenizer" if slot == 0 else f"tokenizer_{slot + 1}")
            encoder = getattr(pipe, component)
            words, vectors = [], []
            for index, key in enumerate(target):
                tensors = assets.tensors(by_key[key])
                shape = found.layouts[key]
                matrix = tensors[shape.keys[slot]].reshape(shape.vectors, -1)
                words += [placeholder(index, v) for v in range(shape.vectors)]
                vectors.append(matrix)
            self._load(tokenizer, encoder, words, vectors)
        self.active = target
        log.info("embeddings %s loaded", ", ".join(by_key[k].name for k in target))

    def _load(self, tokenizer: Any, encoder: Any, words: list[str], vectors: list[Any]) -> None:
        import torch

        backend = getattr(tokenizer, "_tokenizer", None)
        if backend is None:
            raise RuntimeError("textual-inversion embeddings need a fast (tokenizers) tokenizer")
        module = encoder.get_input_embeddings()
        weight = module.weight.data
        # kept to be put back as they are: the same tensor, the same tokenizer state
        self._saved.append((tokenizer, module, backend.to_str(), weight, module.num_embeddings))
        first = len(tokenizer)
        tokenizer.add_tokens(words)
        if tokenizer.convert_tokens_to_ids(words) != list(range(first, first + len(words))):
            raise RuntimeError("the tokenizer did not take the embeddings' placeholder words")
        if first > weight.shape[0]:
            raise RuntimeError("the tokenizer holds more words than its encoder has embeddings")
        rows = torch.cat([v.to(dtype=weight.dtype, device=weight.device) for v in vectors])
        # a matrix with spare rows beyond the tokenizer's words keeps them after the new ones
        grown = torch.cat([weight[:first], rows, weight[first:]])
        module.weight.data = grown
        module.num_embeddings = grown.shape[0]

    def unload(self) -> None:
        """Put every tokenizer and token embedding matrix back as it was before loading."""
        from tokenizers import Tokenizer

        while self._saved:
            tokenizer, module, state, weight, count = self._saved.pop()
            tokenizer._tokenizer = Tokenizer.from_str(state)
            module.weight.data = weight
            module.num_embeddings = count
        self.active = ()


def components_of(pipe: Any, encoders: int) -> tuple[str, ...]:
    """The text encoder components an embedding's tensors go to (as many as the family has)."""
    return tuple(c for c in ENCODERS[:encoders] if getattr(pipe, c, None) is not None)
