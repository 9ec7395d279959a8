"""Prompt weights: A1111's attention syntax and compel's, parsed into weighted fragments."""

from __future__ import annotations

import pytest

pytestmark = pytest.mark.torch  # the parser lives in the module that encodes prompts


@pytest.mark.parametrize(
    ("prompt", "fragments"),
    [
        ("a lighthouse", [("a lighthouse", 1.0)]),
        # the neutral weight is no weight: the prompt reads exactly as the plain one
        ("a (lighthouse:1.0)", [("a lighthouse", 1.0)]),
        ("a (lighthouse:1.3) at night", [("a", 1.0), ("lighthouse", 1.3), ("at night", 1.0)]),
        ("a (lighthouse: 0.5 )", [("a", 1.0), ("lighthouse", 0.5)]),
        ("((x)) [y]", [("x", 1.21), ("y", 0.909091)]),
        ("((x:1.5))", [("x", 1.65)]),
        ("a lighthouse++", [("a", 1.0), ("lighthouse", 1.21)]),
        ("a lighthouse--", [("a", 1.0), ("lighthouse", 0.81)]),
        ("(a b)1.3 c", [("a b", 1.3), ("c", 1.0)]),
        ("(a b)- c", [("a b", 0.9), ("c", 1.0)]),
        (r"\(literal\) brackets", [("(literal) brackets", 1.0)]),
        ("(style: watercolor)", [("style: watercolor", 1.1)]),
        ("well-known x:y", [("well-known x:y", 1.0)]),
        ("(unclosed", [("unclosed", 1.1)]),
        ("stray ) and ]", [("stray ) and ]", 1.0)]),
        ("", [("", 1.0)]),
    ],
)
def test_parse_weights(prompt: str, fragments: list[tuple[str, float]]) -> None:
    from sdworker.gpu.prompts import parse_weights

    assert parse_weights(prompt) == fragments


def test_weights_cancel_out_exactly() -> None:
    from sdworker.gpu.prompts import parse_weights

    assert parse_weights("[(x)]") == [("x", 1.0)]
