"""The official clients, unchanged, against ``sdworker serve`` with the echo handler."""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Callable
from typing import Any

import aiohttp
import httpx
import pytest
import runpod
from runpod.endpoint.asyncio.asyncio_runner import Endpoint as AsyncioEndpoint
from server_harness import ServerProcess, wait_status


@pytest.fixture(scope="module")
def echo(serve: Callable[..., ServerProcess]) -> ServerProcess:
    return serve("echo", workers=2)


@pytest.fixture
def official(echo: ServerProcess, monkeypatch: pytest.MonkeyPatch) -> None:
    # what RUNPOD_ENDPOINT_BASE_URL=http://127.0.0.1:PORT/v2 does when runpod is imported
    monkeypatch.setattr(runpod, "endpoint_url_base", f"{echo.root}/v2")
    monkeypatch.setattr(runpod, "api_key", "any-key")


def test_runpod_endpoint_client(echo: ServerProcess, official: None) -> None:
    endpoint = runpod.Endpoint("local")
    job = endpoint.run({"prompt": "a dog"})
    assert job.status() in {"IN_QUEUE", "IN_PROGRESS", "COMPLETED"}
    assert job.output(timeout=20) == {"echo": {"prompt": "a dog"}}
    assert job.status() == "COMPLETED"
    assert endpoint.run_sync({"prompt": "sync"}, timeout=20) == {"echo": {"prompt": "sync"}}
    health = endpoint.health()
    assert health["jobs"]["completed"] >= 2 and health["workers"]["idle"] >= 1
    assert endpoint.purge_queue() == {"removed": 0, "status": "completed"}
    done = endpoint.run({"prompt": "done"})
    done.output(timeout=20)
    assert done.cancel() == {"id": done.job_id, "status": "COMPLETED"}


def test_runpod_asyncio_endpoint_client(echo: ServerProcess, official: None) -> None:
    async def main() -> tuple[Any, str, dict[str, Any], dict[str, Any]]:
        async with aiohttp.ClientSession() as session:
            endpoint = AsyncioEndpoint("local", session)
            job = await endpoint.run({"prompt": "async"})
            output = await job.output(timeout=20)
            status = await job.status()
            health = await endpoint.health()
            purged = await endpoint.purge_queue()
            return output, status, health, purged

    output, status, health, purged = asyncio.run(main())
    assert output == {"echo": {"prompt": "async"}}
    assert status == "COMPLETED"
    assert set(health["jobs"]) == {"completed", "failed", "inProgress", "inQueue", "retried"}
    assert purged["status"] == "completed"


def test_raw_http_as_in_runpods_curl_examples(echo: ServerProcess) -> None:
    headers = {"Content-Type": "application/json", "Authorization": "Bearer anything"}
    run = httpx.post(f"{echo.url}/run", headers=headers, json={"input": {"prompt": "curl"}})
    assert run.status_code == 200 and run.json()["status"] == "IN_QUEUE"
    body = wait_status(echo.url, run.json()["id"], {"COMPLETED"})
    assert body["output"] == {"echo": {"prompt": "curl"}}
    assert body["delayTime"] >= 0 and body["executionTime"] >= 0
    sync = httpx.post(f"{echo.url}/runsync", headers=headers, json={"input": {"n": 1}}, timeout=30)
    assert sync.json()["status"] == "COMPLETED" and sync.json()["output"] == {"echo": {"n": 1}}
    # the runpod SDK test server's root routes
    root = httpx.post(f"{echo.root}/runsync", json={"input": {"n": 2}}, timeout=30).json()
    assert root["output"] == {"echo": {"n": 2}}
    status = httpx.post(f"{echo.root}/status/{root['id']}").json()
    assert status["status"] == "COMPLETED"


def test_200_jobs_from_20_clients_complete_exactly_once(
    serve: Callable[..., ServerProcess],
) -> None:
    server = serve("echo", workers=3, FIXTURE_CONCURRENCY="16")

    async def client(http: httpx.AsyncClient, c: int) -> list[tuple[str, int]]:
        sent = []
        for i in range(10):
            n = c * 10 + i
            r = await http.post(f"{server.url}/run", json={"input": {"n": n}})
            sent.append((r.json()["id"], n))
        return sent

    async def main() -> list[tuple[str, int]]:
        async with httpx.AsyncClient(timeout=30) as http:
            batches = await asyncio.gather(*(client(http, c) for c in range(20)))
        return [job for batch in batches for job in batch]

    jobs = asyncio.run(main())
    assert len({job_id for job_id, _ in jobs}) == 200
    for job_id, n in jobs:
        body = wait_status(server.url, job_id, {"COMPLETED", "FAILED"})
        assert body["status"] == "COMPLETED" and body["output"] == {"echo": {"n": n}}
    health = httpx.get(f"{server.url}/health").json()
    assert health["jobs"]["completed"] == 200 and health["jobs"]["retried"] == 0
    # exactly once: every job was taken by a worker a single time
    db = sqlite3.connect(server.state_dir / "queue.sqlite3")
    attempts = db.execute("SELECT attempts, COUNT(*) FROM jobs GROUP BY attempts").fetchall()
    db.close()
    assert attempts == [(1, 200)]
