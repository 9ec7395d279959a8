"""Generated jobs through ``sdworker serve`` with the real handler and the tiny model: every
job the endpoint accepts ends (completed or failed with its field named), nothing is answered
5xx, and the endpoint and its worker stay up to serve the next client."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.fuzz.conftest import fuzz_seed
from tests.fuzz.strategies import native_inputs

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "integration" / "server"))
from server_harness import FAST, ServerProcess, wait_status

HANDLER = Path(__file__).resolve().parents[2] / "handler.py"
TERMINAL = {"COMPLETED", "FAILED", "CANCELLED", "TIMED_OUT"}
#: each generated job runs on the model: keep them few and cheap
SMALL = {"width": 64, "height": 64, "num_inference_steps": 1}


@pytest.fixture(scope="module")
def server(models_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    env = {
        **FAST,
        "SDWORKER_MODELS_DIR": str(models_dir),
        "SDWORKER_DEFAULT_MODEL": "tiny",
        "HF_HUB_OFFLINE": "1",
        "SDWORKER_EXECUTION_TIMEOUT_S": "60",
    }
    proc = ServerProcess(str(HANDLER), 1, tmp_path_factory.mktemp("fuzz-jobs"), env)
    yield proc.start()
    proc.stop()


def ended(server: ServerProcess, body: str) -> dict[str, Any]:
    """Submit ``body`` (raw JSON text); an accepted job's final status, else the refusal."""
    r = httpx.post(
        f"{server.url}/run",
        content=body,
        headers={"Content-Type": "application/json"},
        timeout=30,
    )
    assert r.status_code < 500, (r.status_code, r.text[:300])
    if r.status_code >= 400:
        return {"status": "REFUSED", "code": r.status_code}
    return wait_status(server.url, r.json()["id"], TERMINAL)


def check(status: dict[str, Any]) -> None:
    if status["status"] == "FAILED":
        failure = status.get("output", {}).get("failure", {})
        assert failure.get("code"), status  # failed as data, not lost
        if failure["code"] == "invalid_input":
            assert failure["problems"], status
    else:
        assert status["status"] in {"COMPLETED", "REFUSED"}, status


@fuzz_seed
@settings(max_examples=12)
@given(job=native_inputs, small=st.booleans())
def test_generated_jobs_end(server: ServerProcess, job: dict[str, Any], small: bool) -> None:
    if small or "width" not in job:
        job = {**job, **SMALL}  # most run: a cheap shape, so the worker's path is exercised
    check(ended(server, json.dumps({"input": job}, allow_nan=True)))


@pytest.mark.parametrize(
    "body",
    [
        '{"input": {"prompt": "x", "guidance_scale": NaN}}',
        '{"input": {"prompt": "x", "guidance_scale": Infinity}}',
        '{"input": {"prompt": "x", "strength": -Infinity, "image": "aGk="}}',
        '{"input": {"prompt": "x\\ud800"}}',
        '{"input": {"prompt": "x", "seed": 1e309}}',
        '{"input": {"prompt": "x", "width": 1e309}}',
        '{"input": {"prompt": "x", "num_inference_steps": 100000000000000000000000}}',
    ],
)
def test_values_json_cannot_carry_end_their_job(server: ServerProcess, body: str) -> None:
    check(ended(server, body))


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ('{"input": {"prompt": "x", "width": 1' + "0" * 400 + "}}", "width"),
        (
            '{"input": {"prompt": "x", "num_inference_steps": 1' + "0" * 400 + "}}",
            "num_inference_steps",
        ),
        (
            '{"input": {"prompt": "x", "use_compel": true, "guidance_scale": 1' + "0" * 300 + "}}",
            "guidance_scale",
        ),
    ],
)
def test_integers_past_float_range_fail_on_their_field(
    server: ServerProcess, body: str, field: str
) -> None:
    """Regression: these ended with ``internal error: OverflowError`` and no field named."""
    status = ended(server, body)
    assert status["status"] == "FAILED", status
    assert f"{field}: must be" in status["error"] and "internal" not in status["error"], status


def test_the_worker_still_serves_after_the_fuzz(server: ServerProcess) -> None:
    status = ended(server, json.dumps({"input": {"prompt": "after", "seed": 1, **SMALL}}))
    assert status["status"] == "COMPLETED", status
    health = httpx.get(f"{server.url}/health", timeout=10).json()
    assert health["workers"]["idle"] + health["workers"]["running"] >= 1
