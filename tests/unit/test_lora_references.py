"""The lora entry's forms and rules, the secrets an input carries (kept out of the store),
A1111's ``<lora:...>`` tags, and the guarded fetch's credentials on a redirect."""

from __future__ import annotations

import logging
from typing import Any

import pytest

from sdworker.core import secrets
from sdworker.core.errors import InvalidInput
from sdworker.core.input import InputContext, ModelFacts, parse_input
from sdworker.core.schema import GenerateInput
from sdworker.families import get as family_of
from sdworker.formats.a1111 import extra_networks

MODELS = {"tiny": ModelFacts("tiny", 512, 512, family_of("sd1"))}
CONTEXT = InputContext.of(MODELS, default_model="tiny", max_pixels=1 << 22, loras=["ink"])
TOKEN = "civitai-secret-token-123"


def problems(raw: dict[str, Any]) -> dict[str, str]:
    with pytest.raises(InvalidInput) as refused:
        parse_input({"prompt": "x", **raw}, CONTEXT)
    return {p.field: str(p) for p in refused.value.problems}


def test_an_entry_takes_a_name_a_url_or_a_hub_id() -> None:
    given = GenerateInput.model_validate(
        {
            "prompt": "x",
            "lora": [
                "ink",
                "https://civitai.com/api/download/models/1",
                {"hub": "org/lora", "file": "a.safetensors", "scale": 0.5},
                {"url": "https://x.org/l.safetensors", "sha256": "a" * 64, "token": TOKEN},
            ],
        }
    )
    assert given.lora is not None
    assert [(r.name, r.url, r.hub) for r in given.lora[:3]] == [
        ("ink", None, None),
        (None, "https://civitai.com/api/download/models/1", None),
        (None, None, "org/lora"),
    ]
    assert TOKEN not in repr(given)  # never in a log line that prints the input


@pytest.mark.parametrize(
    ("lora", "field", "rule"),
    [
        ({"scale": 1}, "lora[0]", "must give one of name, url or hub (has none)"),
        ({"name": "ink", "url": "https://x.org/a"}, "lora[0]", "has name and url"),
        ({"url": "ftp://x.org/a"}, "lora[0].url", "must be an http or https URL"),
        ({"url": "https://u:p@x.org/a"}, "lora[0].url", "must not carry a user name"),
        ({"hub": "not a repo"}, "lora[0].hub", "must be a hub id, ORG/NAME"),
        ({"hub": "org/x", "file": "../up.safetensors"}, "lora[0].file", "without '.' or '..'"),
        ({"url": "https://x.org/a", "file": "a"}, "lora[0].file", "only applies with hub"),
        ({"url": "https://x.org/a", "sha256": "abc"}, "lora[0].sha256", "64 hexadecimal digits"),
        ({"name": "ink", "sha256": "a" * 64}, "lora[0].sha256", "only applies with url or hub"),
        ({"name": "ink", "token": TOKEN}, "lora[0].token", "only applies with url or hub"),
        ({"name": "nope"}, "lora[0].name", "unknown LoRA"),
    ],
)
def test_each_refusal_names_the_part_of_the_entry(
    lora: dict[str, Any], field: str, rule: str
) -> None:
    found = problems({"lora": [lora]})
    assert rule in found[field], found
    assert TOKEN not in str(found)


def test_a_token_is_never_shown_in_an_error() -> None:
    found = problems(
        {
            "lora": [
                {"url": "https://x.org/a", "token": 5},
                {"url": "https://x.org/b", "tokn": TOKEN},
            ]
        }
    )
    assert set(found) == {"lora[0].token", "lora[1].tokn"}
    assert TOKEN not in str(found) and "(got" not in found["lora[1].tokn"]
    url = problems({"lora": [{"url": f"ftp://x.org/a?token={TOKEN}"}]})
    assert TOKEN not in str(url) and "ftp://x.org/a" in url["lora[0].url"]


def test_the_store_keeps_an_input_without_its_secrets() -> None:
    job = {
        "prompt": "x",
        "lora": [
            {"url": f"https://civitai.com/api/download/models/1?type=Model&token={TOKEN}"},
            {"hub": "org/x", "token": "hf_" + "a" * 34, "scale": 0.5},
            "ink",
            f"https://civitai.com/api/download/models/2?token={TOKEN}",
        ],
    }
    stored, kept = secrets.split(job)
    assert TOKEN not in str(stored) and "hf_" not in str(stored)
    assert stored["lora"][1] == {"hub": "org/x", "token": secrets.WITHHELD, "scale": 0.5}
    assert stored["lora"][0]["url"].startswith(
        "https://civitai.com/api/download/models/1?type=Model"
    )
    assert secrets.join(stored, kept) == {
        **job,
        "lora": [*job["lora"][:3], {"url": job["lora"][3]}],
    }
    assert secrets.split({"prompt": "x", "lora": "ink"}) == ({"prompt": "x", "lora": "ink"}, [])


def test_a_job_whose_secrets_were_lost_fails_naming_them() -> None:
    stored, _ = secrets.split(
        {"lora": [{"hub": "org/x", "token": TOKEN}, {"url": f"https://a.org/b?token={TOKEN}"}]}
    )
    found = problems(stored)
    assert "the endpoint restarted with this job queued" in found["lora[0].token"]
    assert "the endpoint restarted with this job queued" in found["lora[1].url"]


def test_log_lines_lose_anything_that_looks_like_a_credential(
    caplog: pytest.LogCaptureFixture,
) -> None:
    hf = "hf_" + "b" * 34
    line = f"GET https://h.org/f?x=1&token={TOKEN} with Authorization: Bearer abc.def and {hf}"
    assert (
        secrets.redact(line)
        == "GET https://h.org/f?x=1&token=*** with Authorization: Bearer *** and ***"
    )
    handler = logging.StreamHandler()
    handler.addFilter(secrets.RedactingFilter())
    record = logging.LogRecord("x", logging.INFO, __file__, 1, "fetching %s", (line,), None)
    handler.filter(record)
    assert TOKEN not in record.getMessage() and hf not in record.getMessage()


@pytest.mark.parametrize(
    ("prompt", "text", "loras"),
    [
        ("a cat <lora:ink:0.8>, watercolor", "a cat , watercolor", [{"name": "ink", "scale": 0.8}]),
        ("<lora:style/water> sea", " sea", [{"name": "style/water", "scale": 1.0}]),
        ("<LORA:ink:0.5> x <lyco:ink:0.25>", " x ", [{"name": "ink", "scale": 0.75}]),
        ("no tags <here>", "no tags <here>", []),
    ],
)
def test_a1111_lora_tags_become_lora_entries(
    prompt: str, text: str, loras: list[dict[str, Any]]
) -> None:
    tags = extra_networks.take(prompt)
    assert (tags.prompt, tags.loras, tags.problems) == (text, loras, [])


@pytest.mark.parametrize(
    "prompt", ["<lora:ink:strong>", "<lora:ink:te=1:unet=0.5>", "<lora:ink:3>", "<lora:ink:nan>"]
)
def test_a1111_lora_tags_that_cannot_be_applied_are_refused_on_the_prompt(prompt: str) -> None:
    tags = extra_networks.take(f"a cat {prompt}")
    assert [p.field for p in tags.problems] == ["prompt"]
