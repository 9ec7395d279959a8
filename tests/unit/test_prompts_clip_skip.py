"""A1111's "Clip skip" setting (``CLIP_stop_at_last_layers``) becomes the native ``clip_skip``."""

from __future__ import annotations

import json
from typing import Any

import pytest

from sdworker.core.errors import InvalidInput
from sdworker.formats import a1111
from sdworker.formats.base import Models


def parse(body: dict[str, Any], options: a1111.Options | None = None) -> a1111.A1111Request:
    return a1111.parse(
        body,
        "txt2img",
        catalog=a1111.default_catalog(),
        models=Models(None, "tiny"),
        options=options,
    )


def test_override_setting_becomes_clip_skip() -> None:
    req = parse({"prompt": "x", "override_settings": {"CLIP_stop_at_last_layers": 2}})
    [job] = req.jobs()
    assert job["clip_skip"] == 2
    assert "Clip skip: 2" in a1111.infotext(req, req.seed, "tiny", "")
    info = json.loads(
        a1111.response(req, {}, [{"image": "", "seed": req.seed}], model_name="tiny")["info"]
    )
    assert info["clip_skip"] == 2


def test_the_default_of_one_adds_nothing() -> None:
    [job] = parse({"prompt": "x", "override_settings": {"CLIP_stop_at_last_layers": 1}}).jobs()
    assert "clip_skip" not in job


def test_options_set_clip_skip_for_later_requests() -> None:
    values, _ = a1111.set_options(a1111.Options(), {"CLIP_stop_at_last_layers": 3}, [])
    [job] = parse({"prompt": "x"}, a1111.Options(values)).jobs()
    assert job["clip_skip"] == 3
    assert a1111.get_options(a1111.Options(values), None)["CLIP_stop_at_last_layers"] == 3


@pytest.mark.parametrize("value", [0, 13, "two"])
def test_out_of_range_clip_skip_is_refused(value: Any) -> None:
    with pytest.raises(InvalidInput, match="CLIP_stop_at_last_layers"):
        parse({"prompt": "x", "override_settings": {"CLIP_stop_at_last_layers": value}})
    with pytest.raises(InvalidInput, match="CLIP_stop_at_last_layers"):
        a1111.set_options(a1111.Options(), {"CLIP_stop_at_last_layers": value}, [])
