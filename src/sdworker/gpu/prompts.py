"""Prompts: weighted and long prompts with compel, and a clear word when a prompt is cut.

CLIP reads 77 tokens. With ``use_compel`` a prompt is parsed for weights by
:func:`parse_weights` (AUTOMATIC1111's ``(word:1.3)``, ``(word)``, ``[word]`` and compel's
``word++``, ``word--``, ``(words)1.3``) and compel's embeddings provider encodes the weighted
fragments in as many 77-token chunks as they need, so a long prompt is read whole; the
pipeline then gets embeddings instead of text. Without it, diffusers cuts the prompt at 77
tokens, and :func:`warn_if_truncated` says so in the job's log.

``clip_skip`` follows AUTOMATIC1111: 1 reads the text encoder's last layer, 2 the one before,
and so on (SDXL, like A1111, always starts from the penultimate layer, so 1 there is the
penultimate layer, as diffusers does).
"""

from __future__ import annotations

import logging
import re
from typing import Any

import torch

from sdworker.families.base import PromptEncoding

log = logging.getLogger(__name__)


def truncated_tokens(tokenizer: Any, text: str, window: int | None = None) -> int:
    """How many of ``text``'s tokens fall beyond the window (the tokenizer's own by default;
    0 if it fits)."""
    if not text:
        return 0
    ids = tokenizer(text, truncation=False, add_special_tokens=True, verbose=False).input_ids
    return max(0, len(ids) - int(window or tokenizer.model_max_length))


def warn_if_truncated(
    pipe: Any,
    prompt: str,
    negative_prompt: str,
    encoding: PromptEncoding,
    window: int | None = None,
) -> None:
    """Log a warning naming how many tokens of each prompt the text encoder will not read:
    the family's main encoder (a T5's ``window`` is ``max_sequence_length``), or the first
    CLIP when that one is left out."""
    tokenizer = getattr(pipe, encoding.tokenizer, None)
    if tokenizer is None:
        tokenizer, window = getattr(pipe, "tokenizer", None), None
    if tokenizer is None:
        return
    limit = int(window or tokenizer.model_max_length)
    hint = "use_compel: true reads long prompts whole" if encoding.compel else "shorten it"
    for field, text in (("prompt", prompt), ("negative_prompt", negative_prompt)):
        dropped = truncated_tokens(tokenizer, text, limit)
        if dropped:
            log.warning(
                "%s is %d tokens too long for the text encoder's %d: the last %d were dropped (%s)",
                field,
                dropped,
                limit,
                dropped,
                hint,
            )


def text_layers(pipe: Any) -> int | None:
    """Layers of the (first) text encoder: the largest ``clip_skip`` the model allows."""
    encoder = getattr(pipe, "text_encoder", None) or getattr(pipe, "text_encoder_2", None)
    if encoder is None:
        return None
    return int(encoder.config.num_hidden_layers)


#: A1111: ``(x)`` is x1.1 and ``[x]`` is /1.1; compel: each ``+`` x1.1, each ``-`` x0.9
_UP = 1.1
_DOWN = 0.9
_WEIGHT_AFTER_COLON = re.compile(r":\s*([+-]?(?:\d+(?:\.\d*)?|\.\d+))\s*\)")
_AFTER_GROUP = re.compile(r"(\d+(?:\.\d*)?|\.\d+)(?!\w)|(\++|-+)")
_WORD_SUFFIX = re.compile(r"(\w+)(\++|-+)(?=[\s,.;:!?()\[\]]|$)")
_PLAIN = re.compile(r"[^\\()\[\]:]+|:")

#: a prompt as weighted pieces of text, in order
Fragments = list[tuple[str, float]]


# a tokenizer: one branch per kind of token, each a few lines; split up, it would not read
def parse_weights(text: str) -> Fragments:  # noqa: C901
    """Split a prompt into ``(text, weight)`` fragments; neighbours of equal weight merged.

    Understands AUTOMATIC1111's attention syntax (``(a:1.3)``, ``(a)``, ``[a]``, nesting
    multiplies, ``\\(`` for a literal bracket, an unclosed bracket weighs to the end as A1111
    does) and compel's (``word++``, ``word--``, ``(a b)+``, ``(a b)1.3``).
    """
    pieces: list[list[Any]] = []
    opened: list[tuple[str, int]] = []  # bracket, index of its first piece

    def scale(start: int, factor: float) -> None:
        for piece in pieces[start:]:
            piece[1] *= factor

    i = 0
    while i < len(text):
        char = text[i]
        if char == "\\" and i + 1 < len(text):
            pieces.append([text[i + 1], 1.0])
            i += 2
        elif char in "([":
            opened.append((char, len(pieces)))
            i += 1
        elif (
            char == ":"
            and opened
            and opened[-1][0] == "("
            and (m := _WEIGHT_AFTER_COLON.match(text, i))
        ):
            scale(opened.pop()[1], float(m.group(1)))
            i = m.end()
        elif char == ")" and opened and opened[-1][0] == "(":
            start = opened.pop()[1]
            i += 1
            m = _AFTER_GROUP.match(text, i)
            if m is None:
                scale(start, _UP)
            elif m.group(1):
                scale(start, float(m.group(1)))
            else:
                signs = m.group(2)
                scale(start, (_UP if signs[0] == "+" else _DOWN) ** len(signs))
            i = m.end() if m else i
        elif char == "]" and opened and opened[-1][0] == "[":
            scale(opened.pop()[1], 1 / _UP)
            i += 1
        else:
            m = _PLAIN.match(text, i)
            chunk = m.group(0) if m else char
            pieces.extend(_word_suffixes(chunk))
            i += len(chunk)
    for bracket, start in reversed(opened):
        scale(start, _UP if bracket == "(" else 1 / _UP)
    return _merge(pieces)


def _word_suffixes(chunk: str) -> list[list[Any]]:
    """``chunk`` with compel's ``word++``/``word--`` turned into weighted words."""
    out: list[list[Any]] = []
    last = 0
    for m in _WORD_SUFFIX.finditer(chunk):
        out.append([chunk[last : m.start()], 1.0])
        signs = m.group(2)
        out.append([m.group(1), (_UP if signs[0] == "+" else _DOWN) ** len(signs)])
        last = m.end()
    out.append([chunk[last:], 1.0])
    return out


def _merge(pieces: list[list[Any]]) -> Fragments:
    merged: Fragments = []
    for text, weight in pieces:
        if not text:
            continue
        weight = round(weight, 6)  # 1.1 * (1/1.1) is weight 1, not 0.9999999999999999
        if merged and merged[-1][1] == weight:
            merged[-1] = (merged[-1][0] + text, weight)
        else:
            merged.append((text, weight))
    # the pieces of text keep the spaces between them: compel tokenizes each on its own
    return [(t.strip(), w) for t, w in merged if t.strip()] or [("", 1.0)]


class _SkipLayers:
    """A text encoder whose hidden states end ``drop`` layers early (compel reads [-2]).

    compel offers the last or the penultimate layer; dropping the top of the hidden-state
    list makes its "penultimate" any earlier layer, which is what ``clip_skip`` asks for.
    """

    def __init__(self, encoder: Any, drop: int) -> None:
        self.encoder = encoder
        self.drop = drop

    @property
    def device(self) -> torch.device:
        return torch.device(self.encoder.device)

    @property
    def dtype(self) -> torch.dtype:
        return self.encoder.dtype  # type: ignore[no-any-return]

    @property
    def text_model(self) -> Any:
        # transformers 5 flattened CLIPTextModel (final_layer_norm on the model itself)
        return getattr(self.encoder, "text_model", self.encoder)

    def get_input_embeddings(self) -> Any:
        return self.encoder.get_input_embeddings()

    def __call__(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        output_hidden_states: bool = False,
        return_dict: bool = True,
    ) -> Any:
        out = self.encoder(
            input_ids=input_ids,
            attention_mask=attention_mask,
            output_hidden_states=output_hidden_states or self.drop > 0,
            return_dict=True,
        )
        if self.drop and out.hidden_states is not None:
            out.hidden_states = out.hidden_states[: -self.drop]
        return out


class _Encoder:
    """One text encoder behind compel's embeddings provider, long prompts chunked."""

    def __init__(self, tokenizer: Any, encoder: Any, kind: Any, drop: int) -> None:
        from compel import EmbeddingsProvider, SplitLongTextMode

        dtype = encoder.dtype
        self.provider = EmbeddingsProvider(
            tokenizer=tokenizer,
            text_encoder=_SkipLayers(encoder, drop),
            truncate=False,
            returned_embeddings_type=kind,
            dtype_for_device_getter=lambda _device: dtype,
            device=str(encoder.device),
            split_long_text_mode=SplitLongTextMode.SENTENCES,
        )
        self.device = str(encoder.device)

    def embed(self, fragments: Fragments) -> torch.Tensor:
        out = self.provider.get_embeddings_for_weighted_prompt_fragments(
            text_batch=[[t for t, _ in fragments]],
            fragment_weights_batch=[[w for _, w in fragments]],
            device=self.device,
        )
        return out  # type: ignore[no-any-return]

    def pooled(self, fragments: Fragments) -> torch.Tensor:
        # the pooled embedding reads one window of the text, weights aside (as compel does)
        text = " ".join(t for t, _ in fragments)
        return self.provider.get_pooled_embeddings([text], device=self.device)  # type: ignore[no-any-return]

    @property
    def empty(self) -> torch.Tensor:
        return self.provider.empty_z  # type: ignore[no-any-return]


def _pad(tensor: torch.Tensor, empty: torch.Tensor, length: int) -> torch.Tensor:
    """``tensor`` made ``length`` tokens long with chunks of the empty prompt's embedding."""
    while tensor.shape[1] < length:
        tensor = torch.cat([tensor, empty.to(tensor.dtype)], dim=1)
    return tensor


def weighted_embeddings(
    pipe: Any,
    prompt: str,
    negative_prompt: str,
    clip_skip: int | None,
    encoding: PromptEncoding,
) -> dict[str, torch.Tensor]:
    """Pipeline keyword arguments holding the prompts' embeddings, weights and length honoured.

    Positive and negative embeddings come out the same length (the pipeline concatenates them
    for classifier-free guidance), padded with the empty prompt's embedding as compel does.
    """
    from compel import ReturnedEmbeddingsType

    skip = clip_skip or 1
    positive_parts, negative_parts = parse_weights(prompt), parse_weights(negative_prompt)
    if encoding.compel == "single":
        # one CLIP (SD 1.x/2.x): the final-layer-normed last layer, or an earlier one
        kind = (
            ReturnedEmbeddingsType.LAST_HIDDEN_STATES_NORMALIZED
            if skip == 1
            else ReturnedEmbeddingsType.PENULTIMATE_HIDDEN_STATES_NORMALIZED
        )
        encoder = _Encoder(pipe.tokenizer, pipe.text_encoder, kind, max(0, skip - 2))
        positive, negative = encoder.embed(positive_parts), encoder.embed(negative_parts)
        length = max(positive.shape[1], negative.shape[1])
        return {
            "prompt_embeds": _pad(positive, encoder.empty, length),
            "negative_prompt_embeds": _pad(negative, encoder.empty, length),
        }
    return _sdxl_embeddings(pipe, positive_parts, negative_parts, skip, bool(negative_prompt))


def _sdxl_embeddings(
    pipe: Any, positive_parts: Fragments, negative_parts: Fragments, skip: int, has_negative: bool
) -> dict[str, torch.Tensor]:
    from compel import ReturnedEmbeddingsType

    # SDXL reads both encoders' penultimate layer, un-normed; clip_skip goes further back
    kind = ReturnedEmbeddingsType.PENULTIMATE_HIDDEN_STATES_NON_NORMALIZED
    first = _Encoder(pipe.tokenizer, pipe.text_encoder, kind, skip - 1)
    second = _Encoder(pipe.tokenizer_2, pipe.text_encoder_2, kind, skip - 1)
    empty = torch.cat([first.empty, second.empty], dim=-1)

    def encode(parts: Fragments) -> tuple[torch.Tensor, torch.Tensor]:
        left, right = first.embed(parts), second.embed(parts)
        length = max(left.shape[1], right.shape[1])
        left, right = _pad(left, first.empty, length), _pad(right, second.empty, length)
        return torch.cat([left, right], dim=-1), second.pooled(parts)

    positive, pooled = encode(positive_parts)
    if not has_negative and pipe.config.get("force_zeros_for_empty_prompt", False):
        # what diffusers does for SDXL without a negative prompt: zero conditioning
        negative, negative_pooled = torch.zeros_like(positive), torch.zeros_like(pooled)
    else:
        negative, negative_pooled = encode(negative_parts)
    length = max(positive.shape[1], negative.shape[1])
    return {
        "prompt_embeds": _pad(positive, empty, length),
        # zero conditioning is already as long as the positive one: only text gets padded
        "negative_prompt_embeds": _pad(negative, empty, length),
        "pooled_prompt_embeds": pooled,
        "negative_pooled_prompt_embeds": negative_pooled,
    }


def plain_embeddings(
    pipe: Any, prompt: str, negative_prompt: str, clip_skip: int
) -> dict[str, torch.Tensor]:
    """SD 1.x/2.x embeddings of the prompts as text (cut at 77 tokens) with ``clip_skip``.

    diffusers' own ``clip_skip`` path reads ``text_encoder.text_model``, which transformers 5
    no longer has; it also leaves the negative prompt unskipped, where A1111 skips both.
    """
    tokenizer, encoder = pipe.tokenizer, pipe.text_encoder
    norm = getattr(encoder, "text_model", encoder).final_layer_norm

    def embed(text: str) -> torch.Tensor:
        ids = tokenizer(
            text,
            padding="max_length",
            max_length=tokenizer.model_max_length,
            truncation=True,
            return_tensors="pt",
        ).input_ids.to(encoder.device)
        hidden = encoder(ids, output_hidden_states=True).hidden_states[-clip_skip]
        return norm(hidden)  # type: ignore[no-any-return]

    return {"prompt_embeds": embed(prompt), "negative_prompt_embeds": embed(negative_prompt)}
