"""Strict JSON: what the endpoint refuses at the door and the worker refuses to return."""

from __future__ import annotations

import pytest

from sdworker.core.strictjson import MAX_DEPTH, NotJson, find, loads, problem


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        (b'{"input": {"guidance_scale": NaN}}', "input.guidance_scale: NaN is not JSON"),
        (b'{"input": {"a": [1, Infinity]}}', "input.a[1]: Infinity is not JSON"),
        (b'{"input": {"a": -Infinity}}', "input.a: -Infinity is not JSON"),
        (b'{"policy": {"ttl": 1e309}}', "policy.ttl: 1e309 is not JSON"),
        (b'{"input": {"p": "\\ud800"}}', "input.p: a lone surrogate"),
        (b'{"input": {"\\udfff": 1}}', "input: a key holds a lone surrogate"),
        (b"[" * 100_000 + b"]" * 100_000, "nested deeper than"),
        (b"[" * (MAX_DEPTH + 2) + b"]" * (MAX_DEPTH + 2), "nested deeper than 64 levels"),
        (b"{not json", "the body is not valid JSON"),
        (b"\xff\xfe", "the body is not valid JSON"),
        (b"1" * 5000, "the body is not valid JSON"),
    ],
)
def test_loads_refuses_what_json_cannot_carry_naming_the_path(raw: bytes, message: str) -> None:
    with pytest.raises(NotJson, match=message.replace("[", r"\[").replace("\\u", r"\\u")):
        loads(raw)


def test_loads_keeps_everything_strict_json_allows() -> None:
    body = {"input": {"a": 1.5, "b": [True, None, "é😀"], "c": 10**30}}
    assert (
        loads(
            b'{"input": {"a": 1.5, "b": [true, null, "\\u00e9\\ud83d\\ude00"], "c": '
            + str(10**30).encode()
            + b"}}"
        )
        == body
    )


def test_problem_walks_results_iteratively() -> None:
    assert problem([{"image": "x", "seed": float("nan")}]) == "output[0].seed: NaN is not JSON"
    assert problem({"error": "bad \udc80 text"}) == (
        "output.error: a lone surrogate (unpaired \\ud800-\\udfff) is not JSON text"
    )
    assert find({"x": object()}, "output") == ("output.x", "a object is not JSON")
    deep: list = []
    node = deep
    for _ in range(10_000):  # far past the recursion limit: the walk must not recurse
        node.append([])
        node = node[0]
    assert "nested deeper" in (problem(deep) or "")
    assert problem({"ok": [1, 2.5, "a", None, True]}) is None
