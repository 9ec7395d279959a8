"""The common battery on every surface of tests/fuzz/strategies.py (every route, and the RunPod
envelopes through ``/run``), against the endpoint with a dry worker (tests/fuzz/dryrun.py):

- no answer is a 5xx, and no job fails with an internal error;
- every refusal names the field it is about, as the client wrote it;
- every accepted job ends;
- NaN, the infinities and lone surrogates in every field and every inert key are refused;
- integers past float range in every numeric field are refused on their field, or harmless;
- no URL field reaches a canary on loopback, and no name that would leave its folder is used.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient
from hypothesis import given
from hypothesis import strategies as st

from tests.fuzz.conftest import Canary, fuzz_seed
from tests.fuzz.dryrun import dry_client
from tests.fuzz.strategies import (
    LOOPBACK_SPELLINGS,
    PAST_FLOAT,
    TRAVERSALS,
    UNJSONABLE,
    Surface,
    json_values,
    surfaces,
)

SURFACES = surfaces()
#: how a status body or a format's answer says its job has not ended
_UNENDED = re.compile(
    r'"(IN_QUEUE|IN_PROGRESS|pending|in_queue|in_progress)"|"status": ?"(starting|processing)"'
)
_FAILED = re.compile(r'"(FAILED|failed)"|"success":\s*false')


@pytest.fixture(scope="module")
def client(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestClient]:
    yield from dry_client(tmp_path_factory.mktemp("surfaces"))


def send(client: TestClient, surface: Surface, body: Any) -> list[httpx.Response]:
    """Post ``body`` (NaN and the infinities as the tokens clients write), and poll the result
    of an accepted asynchronous request once: the dry worker has finished it by then."""
    text = json.dumps(body, allow_nan=True)
    answer = client.post(surface.route, content=text, headers={"Content-Type": "application/json"})
    answers = [answer]
    if surface.result is not None and answer.status_code < 400:
        answers.append(client.get(surface.result(answer.json())))
    return answers


def leaf(path: str) -> str:
    """The part of a field path every answer names (``init_images[0]`` -> ``init_images``)."""
    return re.sub(r"\[\d+\]", "", path.rsplit(".", 1)[-1])


def check(answers: list[httpx.Response], path: str, *, must_refuse: bool) -> None:
    """No 5xx, no internal error, the job ended; a refusal names ``path``'s field."""
    shown = [(a.request.url.path, a.status_code, a.text[:400]) for a in answers]
    for answer in answers:
        assert answer.status_code < 500, shown
        assert "internal error" not in answer.text and "internal_error" not in answer.text, shown
    last = answers[-1]
    assert not _UNENDED.search(last.text), shown
    refused = last.status_code >= 400 or bool(_FAILED.search(last.text))
    if must_refuse:
        assert refused, shown
    if refused:
        assert re.search(rf"(?<![\w]){re.escape(leaf(path))}(?![\w])", last.text), shown


def _sweep(kind: str) -> list[tuple[Surface, str]]:
    return [(s, path) for s in SURFACES for path in (s.inert() if kind == "inert" else s.numeric())]


@pytest.mark.parametrize("surface", SURFACES, ids=[s.name for s in SURFACES])
def test_the_plain_body_of_each_surface_is_served(client: TestClient, surface: Surface) -> None:
    answers = send(client, surface, surface.body)
    assert all(a.status_code < 400 for a in answers), [a.text[:400] for a in answers]
    check(answers, "body", must_refuse=False)


def test_every_inert_key_refuses_values_json_cannot_carry(client: TestClient) -> None:
    """Regression: ``eta: NaN`` on A1111's txt2img was a 500 (inert keys were dropped, then
    echoed into an answer JSON cannot write)."""
    pairs = _sweep("inert")
    assert len(pairs) > 100  # A1111's fields and options, Salad's, OpenAI's, the extras'
    nan, infinity, *others = UNJSONABLE
    for index, (surface, path) in enumerate(pairs):
        # NaN and Infinity in every one, and the others in turn
        for value in (nan, infinity, others[index % len(others)]):
            check(send(client, surface, surface.with_value(path, value)), path, must_refuse=True)


def test_every_numeric_field_takes_integers_past_float_range_cleanly(client: TestClient) -> None:
    """Regression: ``width: 10**400`` and ``guidance_scale: 10**300`` ended native jobs with
    ``internal error: OverflowError`` and no field named."""
    pairs = _sweep("numeric")
    assert len(pairs) > 50
    for index, (surface, path) in enumerate(pairs):
        value = PAST_FLOAT[index % len(PAST_FLOAT)]
        body = surface.with_value(path, value)
        check(send(client, surface, body), path, must_refuse=False)
        if surface.name == "native":  # with compel on, as the outside fuzzer found it
            body["input"]["use_compel"] = True
            check(send(client, surface, body), path, must_refuse=False)


_FIELDS = [(s, path) for s in SURFACES for path in s.fields()]
awkward = st.one_of(st.sampled_from([*UNJSONABLE, *PAST_FLOAT]), json_values)


@fuzz_seed
@given(pair=st.sampled_from(_FIELDS), value=awkward)
def test_any_value_in_any_field_is_answered_cleanly(
    client: TestClient, pair: tuple[Surface, str], value: Any
) -> None:
    surface, path = pair
    unjsonable = any(_holds(value, bad) for bad in UNJSONABLE)
    check(send(client, surface, surface.with_value(path, value)), path, must_refuse=unjsonable)


def _holds(value: Any, bad: Any) -> bool:
    """Whether ``value`` is or contains ``bad`` (NaN compared by kind, not by ``==``)."""
    if isinstance(value, dict):
        return any(_holds(k, bad) or _holds(v, bad) for k, v in value.items())
    if isinstance(value, list):
        return any(_holds(v, bad) for v in value)
    if isinstance(value, float) and isinstance(bad, float):
        return repr(value) == repr(bad)
    if isinstance(value, str) and isinstance(bad, str):
        return any(0xD800 <= ord(c) <= 0xDFFF for c in value)
    return False


_URLS = [(s, path) for s in SURFACES for path in (*s.urls, *s.callbacks)]
_NAMES = [(s, path) for s in SURFACES for path in s.names]


@pytest.mark.parametrize("pair", _URLS, ids=[f"{s.name}:{p}" for s, p in _URLS])
def test_no_url_field_reaches_a_canary_on_loopback(
    client: TestClient, canary: Canary, pair: tuple[Surface, str]
) -> None:
    surface, path = pair
    canary.hits.clear()
    fetched = path in surface.urls  # a callback is checked when it is posted to, later
    for host in LOOPBACK_SPELLINGS:
        url = f"http://{host}:{canary.port}/canary.png"
        check(send(client, surface, surface.with_value(path, url)), path, must_refuse=fetched)
    webhooks = client.app.state.gateway.webhooks  # type: ignore[attr-defined]
    deadline = time.monotonic() + 60
    while webhooks.in_flight and time.monotonic() < deadline:
        time.sleep(0.02)
    assert not webhooks.in_flight
    assert canary.hits == []


@pytest.mark.parametrize("pair", _NAMES, ids=[f"{s.name}:{p}" for s, p in _NAMES])
def test_no_name_leaves_its_folder(client: TestClient, pair: tuple[Surface, str]) -> None:
    """``outside`` is a model beside the models folder: a name that escaped would find it,
    and the request would run instead of being refused."""
    surface, path = pair
    for name in TRAVERSALS:
        check(send(client, surface, surface.with_value(path, name)), path, must_refuse=True)
