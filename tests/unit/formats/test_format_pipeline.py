"""The route pipeline every format's routes call: a format is one object and a few route
declarations. A made-up format here (``Echo``) goes through each step; the real formats' own
tests check their shapes."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest
from fastapi import APIRouter, FastAPI, Request, Response
from fastapi.testclient import TestClient

from sdworker.core.errors import InvalidInput
from sdworker.core.jobs import Failure, Status
from sdworker.core.models import ModelRegistry
from sdworker.core.settings import Settings
from sdworker.formats.base import (
    Decoded,
    Format,
    FormatContext,
    Models,
    Queued,
    Raw,
    http_status,
)
from sdworker.formats.pipeline import CLIENT_LEFT, Pipeline
from sdworker.formats.web import FormatRoute
from tests.unit.formats.conftest import FakeGateway, make_client


class Echo(Format[dict[str, Any]]):
    """``{"words": ..., "times": n}`` → ``n`` native jobs; answers ``{"seeds": [...]}``."""

    name = "echo"
    names = {"prompt": "words", "width": "size"}

    def decode(self, body: Any, models: Models, **where: str) -> Decoded[dict[str, Any]]:
        if not isinstance(body, dict) or not isinstance(body.get("words"), str):
            raise InvalidInput.one("words", "is required", has_value=False)
        jobs = [{"prompt": body["words"], "seed": k} for k in range(2)]
        jobs[1].update(body.get("second", {}))
        later = "queued" if body.get("later") else None  # the client chooses not to wait
        return Decoded(jobs, body, webhook=body.get("webhook"), answers=later)

    def encode(
        self, decoded: Decoded[dict[str, Any]], outputs: list[dict[str, Any]], execution_ms: int
    ) -> dict[str, Any]:
        if decoded.request.get("raw"):
            return Raw(bytes(o["seed"] for o in outputs), "application/x-seeds")
        return {"seeds": [o["seed"] for o in outputs], "ms": execution_ms}

    def encode_error(self, failure: Failure) -> tuple[int, dict[str, Any]]:
        return http_status(failure, client=400), {"oops": failure.message}

    def accepted(self, decoded: Decoded[dict[str, Any]], queued: Queued) -> tuple[int, Any]:
        return 202, {"id": queued.job_id, "poll": queued.status_url, "at": queued.position}


class QueuedEcho(Echo):
    answers = "queued"


def _router(pipe: Pipeline[Any]) -> APIRouter:
    """The routes a new format writes: declarations that hand requests to its pipeline."""
    router = APIRouter(route_class=FormatRoute, lifespan=pipe.lifespan)

    @router.post("/echo")
    async def echo(request: Request) -> Response:
        return await pipe(request, status_url=lambda job_id: f"http://t/echo/{job_id}")

    return router


def echo_app(registry: ModelRegistry, gateway: FakeGateway, fmt: Echo) -> TestClient:
    ctx = FormatContext(registry, Settings(dialect_wait_s=5.0), lambda request: gateway)
    app = FastAPI()
    app.include_router(_router(Pipeline(fmt, ctx)))
    return TestClient(app)


def test_a_sync_call_answers_with_every_jobs_outputs(registry: ModelRegistry) -> None:
    gateway = FakeGateway()
    r = echo_app(registry, gateway, Echo()).post("/echo", json={"words": "hi"})
    assert r.status_code == 200 and r.json() == {"seeds": [0, 1], "ms": 84}
    assert [v.status for v in gateway.jobs.values()] == [Status.COMPLETED] * 2


def test_an_answer_may_be_bytes_of_their_own_type(registry: ModelRegistry) -> None:
    r = echo_app(registry, FakeGateway(), Echo()).post("/echo", json={"words": "hi", "raw": 1})
    assert r.status_code == 200 and r.content == bytes([0, 1])
    assert r.headers["content-type"] == "application/x-seeds"


def test_a_request_may_choose_not_to_wait(registry: ModelRegistry) -> None:
    gateway = FakeGateway(auto=False)
    r = echo_app(registry, gateway, Echo()).post("/echo", json={"words": "hi", "later": 1})
    assert r.status_code == 202 and r.json()["id"] == next(iter(gateway.jobs))


def test_a_bad_body_is_refused_in_the_formats_shape(registry: ModelRegistry) -> None:
    client = echo_app(registry, FakeGateway(), Echo())
    r = client.post("/echo", json={"words": 3})
    assert r.status_code == 400 and r.json() == {"oops": "invalid input: words: is required"}
    r = client.post("/echo", content=b"{", headers={"content-type": "application/json"})
    assert r.status_code == 400 and r.json()["oops"].startswith("invalid input: body:")


def test_a_failed_job_is_answered_in_the_formats_names_and_its_other_jobs_cancelled(
    registry: ModelRegistry,
) -> None:
    class FirstFails(FakeGateway):
        """The first job fails on its width; the second never ends by itself."""

        def finish(self, job_id: str) -> None:
            if list(self.jobs).index(job_id) == 0:
                super().finish(job_id)

    gateway = FirstFails(run=_refuse_width)
    ctx = FormatContext(registry, Settings(dialect_wait_s=0.2), lambda request: gateway)
    app = FastAPI()
    app.include_router(_router(Pipeline(Echo(), ctx)))
    r = TestClient(app).post("/echo", json={"words": "hi"})
    assert r.status_code == 400 and r.json() == {"oops": "invalid input: size: is odd (got 65)"}
    second = list(gateway.jobs)[1]
    assert gateway.cancelled == [second]  # answered: nothing else of the call keeps running


def _refuse_width(job: dict[str, Any]) -> list[dict[str, Any]]:
    raise InvalidInput.one("width", "is odd", 65)


def test_an_input_the_queue_refuses_is_refused_in_the_formats_shape(
    registry: ModelRegistry,
) -> None:
    gateway = FakeGateway(auto=False)
    body = b'{"words": "hi", "second": {"guidance_scale": NaN}}'
    r = echo_app(registry, gateway, Echo()).post(
        "/echo", content=body, headers={"content-type": "application/json"}
    )
    assert r.status_code == 400 and "input.guidance_scale" in r.json()["oops"]
    assert gateway.cancelled == list(gateway.jobs)  # the first job, queued before, is cancelled
    assert len(gateway.jobs) == 1


def test_a_queued_format_answers_at_once_with_where_to_poll(registry: ModelRegistry) -> None:
    gateway = FakeGateway(auto=False)
    r = echo_app(registry, gateway, QueuedEcho()).post("/echo", json={"words": "hi"})
    first = next(iter(gateway.jobs))
    assert r.status_code == 202
    assert r.json() == {"id": first, "poll": f"http://t/echo/{first}", "at": 0}
    assert [v.status for v in gateway.jobs.values()] == [Status.IN_QUEUE] * 2


def test_a_webhook_gets_the_answer_a_sync_call_would(registry: ModelRegistry) -> None:
    posted: list[tuple[str, Any]] = []
    gateway = FakeGateway()
    ctx = FormatContext(
        registry,
        Settings(dialect_wait_s=5.0),
        lambda request: gateway,
        webhooks=lambda request: lambda url, body: posted.append((url, body)),
    )
    pipe = Pipeline(Echo(), ctx)

    async def scenario() -> Response:
        request = _request(json.dumps({"words": "hi", "webhook": "http://h/w"}).encode())
        answer = await pipe(request)
        await asyncio.gather(*pipe._delivering)
        return answer

    answer = asyncio.run(scenario())
    assert answer.status_code == 202
    assert posted == [("http://h/w", {"seeds": [0, 1], "ms": 84})]


@pytest.mark.parametrize(
    ("path", "body", "jobs"),
    [
        ("/sdapi/v1/txt2img", {"prompt": "x", "n_iter": 2}, 2),
        ("/v1/images/generations", {"prompt": "x"}, 1),
        ("/v1/inference/tiny", {"prompt": "x"}, 1),
    ],
)
def test_a_client_that_leaves_has_its_jobs_cancelled(
    registry: ModelRegistry, path: str, body: dict[str, Any], jobs: int
) -> None:
    """The jobs of a synchronous call whose client closed the connection are cancelled: no
    one will read their result, and they would keep a worker busy."""
    gateway = FakeGateway(auto=False)  # the jobs never finish by themselves
    app = make_client(registry, gateway).app
    sent: list[dict[str, Any]] = []

    async def scenario() -> None:
        submitted = asyncio.Event()
        real_submit = gateway.submit

        async def submit(job_input: dict[str, Any], **kw: Any) -> Any:
            view = await real_submit(job_input, **kw)
            if len(gateway.jobs) == jobs:
                submitted.set()
            return view

        gateway.submit = submit  # type: ignore[method-assign]
        messages = [{"type": "http.request", "body": json.dumps(body).encode()}]

        async def receive() -> dict[str, Any]:
            if messages:
                return messages.pop(0)
            await submitted.wait()  # the client goes once its jobs are queued
            return {"type": "http.disconnect"}

        async def send(message: dict[str, Any]) -> None:
            sent.append(message)

        scope = _scope(path)
        await asyncio.wait_for(app(scope, receive, send), 30)

    asyncio.run(scenario())
    assert len(gateway.jobs) == jobs
    assert sorted(gateway.cancelled) == sorted(gateway.jobs)
    assert sent[0]["status"] == CLIENT_LEFT


def _scope(path: str) -> dict[str, Any]:
    headers = [(b"content-type", b"application/json"), (b"host", b"testserver")]
    return {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "root_path": "",
        "headers": headers,
        "client": ("127.0.0.1", 5000),
        "server": ("testserver", 80),
    }


def _request(body: bytes) -> Request:
    sent = False

    async def receive() -> dict[str, Any]:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body}
        await asyncio.Event().wait()  # the client stays
        return {"type": "http.disconnect"}

    return Request(_scope("/echo"), receive)
