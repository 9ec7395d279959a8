"""Every route under generated bodies: JSON of any shape (NaN and the infinities written out as
JSON's non-standard tokens, lone surrogates escaped), raw bytes, odd ids and query strings.
A client's request is never answered 5xx, and the endpoint stays up for the next client.

The app runs without worker processes, so a synchronous route that accepted a request answers
504 when its wait ends: that is the only 5xx allowed, and only for an accepted request."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any
from urllib.parse import quote

import pytest
from fastapi.testclient import TestClient
from hypothesis import given, settings
from hypothesis import strategies as st

from sdworker.core.manifest import Manifest
from sdworker.core.models import ModelRegistry
from sdworker.core.settings import Settings
from sdworker.formats.registry import routers
from sdworker.server.app import create_app
from tests.fuzz.conftest import EXAMPLES, fuzz_seed
from tests.fuzz.strategies import json_values, native_inputs

JSON_ROUTES = [
    "/v2/local/run",
    "/v2/local/runsync",
    "/run",
    "/runsync",
    "/sdapi/v1/txt2img",
    "/sdapi/v1/img2img",
    "/sdapi/v1/options",
    "/sdapi/v1/png-info",
    "/sdapi/v1/extra-single-image",
    "/api/beta/organizations/o/inference-endpoints/tiny",
    "/v1/modelApi/submit/tiny",
    "/v1/inference/tiny",
    "/v1/images/generations",
    "/v1/images/edits",
    "/v1/openai/images/variations",
]
ID_ROUTES = [
    ("GET", "/v2/local/status/{}"),
    ("POST", "/v2/local/cancel/{}"),
    ("POST", "/v2/local/retry/{}"),
    ("GET", "/v2/local/stream/{}"),
    ("GET", "/api/beta/organizations/o/inference-endpoints/tiny/{}"),
    ("GET", "/v1/modelApi/inference/{}"),
]


@pytest.fixture(scope="module")
def client(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestClient]:
    root = tmp_path_factory.mktemp("fuzz-routes")
    models = root / "models"
    (models / "tiny").mkdir(parents=True)
    Manifest("tiny", "sd1", 64, 64, "PNDMScheduler", False).write(models / "tiny")
    settings = Settings(
        models_dir=models,
        default_model="tiny",
        state_dir=root / "state",
        runsync_wait_s=0.01,
        dialect_wait_s=0.01,
        workers=0,
        run_body_limit_bytes=64 * 1024,
        runsync_body_limit_bytes=64 * 1024,
    )
    app = create_app(settings, workers=0, extra_routers=routers(ModelRegistry(settings), settings))
    with TestClient(app, raise_server_exceptions=False) as c:
        yield c


def body_text(value: Any) -> str:
    # allow_nan: NaN and Infinity go out as the tokens clients (and Python's json) write
    return json.dumps(value, allow_nan=True)


def acceptable(status: int, text: str) -> bool:
    if status < 500:
        return True
    return status == 504 and "did not finish" in text  # accepted; no worker to finish it


def still_up(client: TestClient) -> None:
    assert client.get("/v2/local/health").status_code == 200


@fuzz_seed
@given(route=st.sampled_from(JSON_ROUTES), value=json_values)
def test_any_json_body_is_answered_below_500(client: TestClient, route: str, value: Any) -> None:
    r = client.post(route, content=body_text(value), headers={"Content-Type": "application/json"})
    assert acceptable(r.status_code, r.text), (route, r.status_code, r.text[:300])


@fuzz_seed
@given(route=st.sampled_from(JSON_ROUTES[:4]), job=native_inputs, policy=json_values)
def test_jobs_with_odd_policies_are_answered_below_500(
    client: TestClient, route: str, job: dict[str, Any], policy: Any
) -> None:
    body = {"input": job, "policy": policy}
    r = client.post(route, content=body_text(body), headers={"Content-Type": "application/json"})
    assert acceptable(r.status_code, r.text), (route, r.status_code, r.text[:300])


@fuzz_seed
@given(route=st.sampled_from(JSON_ROUTES), raw=st.binary(max_size=256))
def test_raw_bytes_are_answered_below_500(client: TestClient, route: str, raw: bytes) -> None:
    for content_type in ("application/json", "multipart/form-data; boundary=x", "text/plain"):
        r = client.post(route, content=raw, headers={"Content-Type": content_type})
        assert acceptable(r.status_code, r.text), (route, content_type, r.status_code)


@fuzz_seed
@given(
    route=st.sampled_from(ID_ROUTES),
    job_id=st.text(min_size=1, max_size=80),
    wait=st.one_of(st.none(), st.text(max_size=8), st.integers()),
)
def test_odd_ids_and_queries_are_answered_below_500(
    client: TestClient, route: tuple[str, str], job_id: str, wait: Any
) -> None:
    method, path = route
    params = {} if wait is None else {"wait": str(wait)}
    r = client.request(method, path.format(quote(job_id, safe="")), params=params)
    assert acceptable(r.status_code, r.text), (path, job_id, r.status_code)


@fuzz_seed
@given(fields=st.dictionaries(st.text(min_size=1, max_size=10), st.text(max_size=20), max_size=5))
def test_deepinfra_forms_are_answered_below_500(client: TestClient, fields: dict[str, str]) -> None:
    r = client.post("/v1/inference/tiny", data=fields)
    assert acceptable(r.status_code, r.text), (fields, r.status_code, r.text[:300])


@fuzz_seed
@given(
    image=st.binary(max_size=300),
    mask=st.one_of(st.none(), st.binary(max_size=300)),
    png_header=st.booleans(),
)
def test_openai_edit_uploads_are_answered_below_500(
    client: TestClient, image: bytes, mask: bytes | None, png_header: bool
) -> None:
    if png_header:  # past the signature check, into the decoder
        image = b"\x89PNG\r\n\x1a\n" + image
    files = {"image": ("i.png", image, "image/png")}
    if mask is not None:
        files["mask"] = ("m.png", mask, "image/png")
    r = client.post("/v1/images/edits", data={"prompt": "x"}, files=files)
    assert acceptable(r.status_code, r.text), (r.status_code, r.text[:300])


def test_deep_nesting_and_oversize_bodies(client: TestClient) -> None:
    deep = "[" * 100_000 + "]" * 100_000
    for route in JSON_ROUTES:
        r = client.post(route, content=deep, headers={"Content-Type": "application/json"})
        assert r.status_code < 500, (route, r.status_code)
        big = json.dumps({"input": {"prompt": "x" * (200 * 1024)}})
        r = client.post(route, content=big, headers={"Content-Type": "application/json"})
        assert r.status_code == 413, (route, r.status_code)
    still_up(client)


@fuzz_seed
@settings(max_examples=max(1, EXAMPLES // 4))  # each example posts to every route, twice
@given(value=json_values, raw=st.binary(max_size=256))
def test_fuzzed_bodies_leave_the_endpoint_up(client: TestClient, value: Any, raw: bytes) -> None:
    """After a generated body on every route, the endpoint still serves the next client: it
    answers its health check, and a good job is queued and read back."""
    for route in JSON_ROUTES:
        client.post(route, content=body_text(value), headers={"Content-Type": "application/json"})
        client.post(route, content=raw, headers={"Content-Type": "multipart/form-data; boundary=x"})
    still_up(client)
    job = client.post("/v2/local/run", json={"input": {"prompt": "the next client"}})
    assert job.status_code == 200, job.text
    status = client.get(f"/v2/local/status/{job.json()['id']}")
    assert status.status_code == 200 and status.json()["status"] == "IN_QUEUE", status.text
