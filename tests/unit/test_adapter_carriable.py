"""A handler answer JSON cannot carry becomes a failure the SDK can post, so the job ends."""

from __future__ import annotations

import json

from sdworker.runpod.adapter import carriable


def test_an_answer_json_can_carry_is_kept() -> None:
    answer = [{"image": "aGk=", "seed": 3}]
    assert carriable(answer, {"id": "j"}) is answer


def test_nan_or_a_lone_surrogate_becomes_a_failure() -> None:
    for answer in ([{"image": "x", "seed": float("nan")}], {"error": "bad \ud800 prompt"}):
        out = carriable(answer, {"id": "j"})
        assert out["failure"]["code"] == "unserialisable_output"
        assert "cannot be sent as JSON" in out["error"]
        json.dumps(out, allow_nan=False).encode("utf-8")  # what the SDK does with it
