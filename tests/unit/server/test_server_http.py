"""The routes over a real app (no worker processes): a test plays the worker over HTTP."""

from __future__ import annotations

import asyncio
import base64
import json
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi import APIRouter, Request
from fastapi.testclient import TestClient

from sdworker.core.manifest import Manifest
from sdworker.core.models import ModelRegistry
from sdworker.core.settings import Settings
from sdworker.formats.registry import routers
from sdworker.server.app import create_app
from sdworker.server.clock import ManualClock
from sdworker.server.queue import JobQueue


@pytest.fixture
def client(settings: Settings, clock: ManualClock) -> Iterator[TestClient]:
    with TestClient(create_app(settings, clock=clock, workers=0)) as c:
        yield c


def worker_take(client: TestClient, worker: str = "w1") -> dict:
    token = client.app.state.worker_token  # type: ignore[attr-defined]
    r = client.get(f"/_worker/job-take/{worker}?token={token}&job_in_progress=0")
    assert r.status_code == 200, r.text
    return r.json()


def worker_done(client: TestClient, job_id: str, payload: dict, worker: str = "w1") -> None:
    token = client.app.state.worker_token  # type: ignore[attr-defined]
    # the SDK posts a JSON string with a form content type
    r = client.post(
        f"/_worker/job-done/{worker}/{job_id}?token={token}&isStream=false",
        content=json.dumps(payload),
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )
    assert r.status_code == 200


def test_run_status_done_over_http(client: TestClient, clock: ManualClock) -> None:
    r = client.post("/v2/local/run", json={"input": {"prompt": "dog"}})
    assert r.status_code == 200
    job_id = r.json()["id"]
    assert r.json() == {"id": job_id, "status": "IN_QUEUE"}
    clock.advance(1.25)
    assert worker_take(client) == {"id": job_id, "input": {"prompt": "dog"}}
    clock.advance(2)
    worker_done(client, job_id, {"output": [{"image": "b64", "seed": 3}]})
    for method in ("GET", "POST"):
        body = client.request(method, f"/v2/local/status/{job_id}").json()
        assert body == {
            "id": job_id,
            "status": "COMPLETED",
            "delayTime": 1250,
            "executionTime": 2000,
            "output": [{"image": "b64", "seed": 3}],
        }


def test_unknown_job_and_unknown_endpoint_are_404(client: TestClient) -> None:
    r = client.get("/v2/local/status/nope")
    assert r.status_code == 404 and "nope" in r.json()["error"]
    r = client.get("/v2/other/health")
    assert r.status_code == 404 and "'local'" in r.json()["error"]


def test_runsync_returns_unfinished_status_after_the_wait(client: TestClient) -> None:
    body = client.post("/v2/local/runsync", json={"input": {}}).json()
    assert body["status"] == "IN_QUEUE" and body["id"].startswith("sync-")


def test_runsync_with_a_finished_job(client: TestClient) -> None:
    token = client.app.state.worker_token  # type: ignore[attr-defined]

    def play_worker() -> None:
        for _ in range(100):
            r = client.get(f"/_worker/job-take/w1?token={token}&job_in_progress=0")
            if r.status_code == 200:
                worker_done(client, r.json()["id"], {"output": {"a": 1}})
                return

    worker = threading.Thread(target=play_worker)
    worker.start()
    body = client.post("/v2/local/runsync?wait=5000", json={"input": {"a": 1}}).json()
    worker.join()
    assert body["status"] == "COMPLETED" and body["output"] == {"a": 1}


def test_payload_limits_answer_413(settings: Settings, clock: ManualClock) -> None:
    small = settings.with_(run_body_limit_bytes=1000, runsync_body_limit_bytes=2000)
    with TestClient(create_app(small, clock=clock, workers=0)) as client:
        big = {"input": {"image": "x" * 1500}}
        r = client.post("/v2/local/run", json=big)
        assert r.status_code == 413
        assert "/run accepts at most 1000 bytes" in r.json()["error"]
        assert client.post("/v2/local/runsync", json={"input": {}}).status_code == 200
        r = client.post("/v2/local/runsync", json={"input": {"image": "x" * 2500}})
        assert r.status_code == 413 and "/runsync" in r.json()["error"]


def test_bad_bodies_are_400(client: TestClient) -> None:
    assert client.post("/v2/local/run", content=b"{not json").status_code == 400
    r = client.post("/v2/local/run", json={"prompt": "no input envelope"})
    assert r.status_code == 400 and '"input"' in r.json()["error"]
    r = client.post("/v2/local/run", json={"input": {}, "policy": {"executionTimeout": 0}})
    assert r.status_code == 400 and "policy.executionTimeout" in r.json()["error"]


def test_api_key_required_when_configured(settings: Settings, clock: ManualClock) -> None:
    with TestClient(create_app(settings.with_(api_key="s3cret"), clock=clock, workers=0)) as c:
        assert c.get("/v2/local/health").status_code == 401
        assert c.post("/run", json={"input": {}}).status_code == 401
        bad = {"Authorization": "Bearer nope"}
        assert c.get("/v2/local/health", headers=bad).status_code == 401
        assert (
            c.get("/v2/local/health", headers={"Authorization": "Bearer s3cret"}).status_code == 200
        )
        assert c.get("/v2/local/health", headers={"Authorization": "s3cret"}).status_code == 200


def test_worker_routes_need_the_worker_token(client: TestClient) -> None:
    assert client.get("/_worker/job-take/w1?token=wrong&job_in_progress=0").status_code == 401
    token = client.app.state.worker_token  # type: ignore[attr-defined]
    # nothing queued: the long poll ends with 204 after worker_poll_s
    assert client.get(f"/_worker/job-take/w1?token={token}&job_in_progress=0").status_code == 204
    assert client.get(f"/_worker/job-stop/w1?token={token}").status_code == 204


def test_batch_take_returns_a_list(client: TestClient) -> None:
    ids = [client.post("/v2/local/run", json={"input": {"n": i}}).json()["id"] for i in range(3)]
    token = client.app.state.worker_token  # type: ignore[attr-defined]
    r = client.get(f"/_worker/job-take-batch/w1?token={token}&batch_size=2&job_in_progress=0")
    assert [job["id"] for job in r.json()] == ids[:2]


def test_cancel_running_reaches_the_worker_stop_channel(client: TestClient) -> None:
    job_id = client.post("/v2/local/run", json={"input": {}}).json()["id"]
    worker_take(client)
    assert client.post(f"/v2/local/cancel/{job_id}").json() == {"id": job_id, "status": "CANCELLED"}
    token = client.app.state.worker_token  # type: ignore[attr-defined]
    assert client.get(f"/_worker/job-stop/w1?token={token}").json() == {"jobsToStop": [job_id]}


def test_retry_purge_and_health(client: TestClient) -> None:
    failed = client.post("/v2/local/run", json={"input": {}}).json()["id"]
    worker_take(client)
    worker_done(client, failed, {"error": "boom"})
    queued = client.post("/v2/local/run", json={"input": {}}).json()["id"]
    r = client.post(f"/v2/local/retry/{queued}")
    assert r.status_code == 400 and "IN_QUEUE" in r.json()["error"]
    assert client.post(f"/v2/local/retry/{failed}").json() == {"id": failed, "status": "IN_QUEUE"}
    assert client.post("/v2/local/purge-queue").json() == {"removed": 2, "status": "completed"}
    health = client.get("/v2/local/health").json()
    assert health["jobs"] == {
        "completed": 0,
        "failed": 1,
        "inProgress": 0,
        "inQueue": 0,
        "retried": 1,
    }
    assert set(health["workers"]) == {"idle", "running"}


def test_stream_route(client: TestClient) -> None:
    job_id = client.post("/v2/local/run", json={"input": {}}).json()["id"]
    worker_take(client)
    token = client.app.state.worker_token  # type: ignore[attr-defined]
    client.post(f"/_worker/job-stream/w1/{job_id}?token={token}", content='{"output": "a"}')
    body = client.get(f"/v2/local/stream/{job_id}").json()
    assert body == {"id": job_id, "status": "IN_PROGRESS", "stream": [{"output": "a"}]}
    assert client.post(f"/v2/local/stream/{job_id}").json()["stream"] == []


def test_sdk_test_server_root_routes(client: TestClient) -> None:
    job_id = client.post("/run", json={"input": {"x": 1}}).json()["id"]
    assert client.post(f"/status/{job_id}").json()["status"] == "IN_QUEUE"
    assert client.post(f"/stream/{job_id}").json()["stream"] == []
    assert client.post("/runsync", json={"input": {}}).json()["status"] == "IN_QUEUE"


def test_files_are_served_and_expire_with_the_job(client: TestClient, clock: ManualClock) -> None:
    queue: JobQueue = client.app.state.gateway  # type: ignore[attr-defined]
    job_id = client.post("/v2/local/run", json={"input": {}}).json()["id"]
    url = asyncio.run(queue.store_file(job_id, "0.png", b"\x89PNG", "image/png"))
    # relative: resolved against the base URL of whichever client asks
    assert url == f"v2/local/files/{job_id}/0.png"
    r = client.get("/" + url)
    assert r.status_code == 200 and r.content == b"\x89PNG"
    assert r.headers["content-type"] == "image/png"
    assert client.get(f"/v2/local/files/{job_id}/..%2Fqueue.sqlite3").status_code == 404
    clock.advance(86400 + 1)
    assert client.get(f"/v2/local/files/{job_id}/0.png").status_code == 404
    assert not (Path(queue.files.root) / job_id).exists()


def test_openapi_docs(client: TestClient) -> None:
    assert client.get("/docs").status_code == 200
    assert client.get("/redoc").status_code == 200
    paths = client.get("/openapi.json").json()["paths"]
    assert "/v2/{endpoint_id}/run" in paths and "/run" in paths
    assert not any(p.startswith("/_worker") for p in paths)
    assert not {"/docs", "/redoc", "/openapi.json"} & set(paths)


def test_docs_need_the_api_key_when_configured(settings: Settings, clock: ManualClock) -> None:
    app = create_app(settings.with_(api_key="k"), clock=clock, workers=0)
    with TestClient(app) as c:
        for path in ("/docs", "/redoc", "/openapi.json"):
            assert c.get(path).status_code == 401, path
            assert c.get(path, headers={"Authorization": "Bearer k"}).status_code == 200, path
        keyed = c.get("/docs", headers={"Authorization": "Bearer k"}).text
        assert "/openapi.json" in keyed
        paths = c.get("/openapi.json", headers={"Authorization": "k"}).json()["paths"]
        assert "/v2/{endpoint_id}/run" in paths


def test_extra_routers_are_mounted(settings: Settings, clock: ManualClock) -> None:
    router = APIRouter()

    @router.get("/dialect/ping")
    async def dialect_ping(request: Request) -> dict:
        return {"served": request.app.state.settings.endpoint_id}

    with TestClient(create_app(settings, clock=clock, workers=0, extra_routers=[router])) as c:
        assert c.get("/dialect/ping").json() == {"served": "local"}


def _stochastic_image(client: TestClient, key: str) -> str:
    """Submit a Stochastic request, play the worker returning an inline PNG, return its URL."""
    headers = {"apiKey": key}
    r = client.post(
        "/v1/modelApi/submit/tiny", json={"prompt": "a dog", "params": {}}, headers=headers
    )
    assert r.status_code == 200, r.text
    job_id = r.json()["data"]["id"]
    worker_take(client)
    png = base64.b64encode(b"\x89PNG-bytes").decode()
    worker_done(client, job_id, {"output": [{"image": png, "format": "png", "seed": 1}]})
    data = client.get(f"/v1/modelApi/inference/{job_id}", headers=headers).json()["data"]
    [image] = data["generatedImages"]
    return str(image["presigned_url"])


def _registry(tmp_path: Path) -> ModelRegistry:
    manifest = Manifest(
        name="tiny",
        family="sd1",
        native_width=64,
        native_height=64,
        default_scheduler="PNDMScheduler",
        has_safety_checker=False,
    )
    (tmp_path / "models" / "tiny").mkdir(parents=True)
    manifest.write(tmp_path / "models" / "tiny")
    return ModelRegistry(Settings(models_dir=tmp_path / "models", default_model="tiny"))


def test_file_urls_follow_the_clients_address(
    settings: Settings, clock: ManualClock, tmp_path: Path
) -> None:
    # a server bound to a public address with a key: the remote client must be able to fetch
    keyed = settings.with_(api_key="k")
    app = create_app(
        keyed, clock=clock, workers=0, extra_routers=routers(_registry(tmp_path), keyed)
    )
    with TestClient(app, base_url="http://203.0.113.7:8000") as c:
        url = _stochastic_image(c, "k")
        assert url.startswith("http://203.0.113.7:8000/v2/local/files/")
        assert "sig=" in url
        r = c.get(url)  # the signed URL alone, no key
        assert r.status_code == 200 and r.content == b"\x89PNG-bytes"


def test_file_urls_use_an_explicit_public_url(
    settings: Settings, clock: ManualClock, tmp_path: Path
) -> None:
    app = create_app(
        settings,
        clock=clock,
        workers=0,
        public_url="https://sd.example.com/",
        extra_routers=routers(_registry(tmp_path), settings),
    )
    with TestClient(app, base_url="http://10.1.2.3:8000") as c:
        url = _stochastic_image(c, "")
        assert url.startswith("https://sd.example.com/v2/local/files/")
        assert c.get(url.removeprefix("https://sd.example.com")).status_code == 200


def test_routers_share_one_queue_lookup(client: TestClient) -> None:
    from sdworker.server import deps, routes, worker_routes

    assert routes.app_queue is deps.app_queue and worker_routes.app_queue is deps.app_queue
    request = Request({"type": "http", "app": client.app})
    assert deps.app_queue(request) is client.app.state.gateway  # type: ignore[attr-defined]
