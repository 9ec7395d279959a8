"""Assets by reference and on the volume, through a real ``sdworker serve`` on the tiny model:

- a LoRA by URL from a file server on 127.0.0.1 (private URLs allowed for the test): applied,
  downloaded once however often it is used, and once for two jobs asking at the same time;
  refused, naming the field, when too large, not safetensors, of another family, or not the
  sha256 given;
- a LoRA from a hand-built hub cache, offline;
- a volume laid out as worker-comfyui's: a LoRA used by name from the native API and from
  A1111's ``<lora:...>`` tag, listed by A1111 and the playground, a pickle listed as refused;
- an embedding's trigger word changing the image, and the next plain request bit-identical;
- a download token never in the server's log, the job store or a job's answer.
"""

from __future__ import annotations

import base64
import hashlib
import io
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import requests
from PIL import Image

from tests.assetserver import AssetServer, asset_server
from tests.integration.serving import Served, serve
from tests.integration.waits import wait_until
from tests.loras import write_safetensors

KEY = "assets-key"
SMALL = {"width": 64, "height": 64, "num_inference_steps": 2, "seed": 7}
SDXL_KEY = "text_encoder_2.text_model.encoder.layers.0.self_attn.q_proj.lora_A.weight"


@dataclass
class Setup:
    served: Served
    files: AssetServer
    state: Path
    ink: bytes


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Setup]:
    from sdworker.builder.tiny import bake_tiny
    from tests.integration.features.conftest import make_tiny_lora
    from tests.integration.features.test_embeddings import write_embedding
    from tests.unit.test_asset_fetch import hub_repo

    models = tmp_path_factory.mktemp("assets-models")
    bake_tiny(models, "tiny")
    made = tmp_path_factory.mktemp("assets-files")
    ink = make_tiny_lora(models / "tiny", made / "ink.safetensors", 1).read_bytes()
    volume = tmp_path_factory.mktemp("assets-volume")
    make_tiny_lora(models / "tiny", volume / "models" / "loras" / "style" / "vol.safetensors", 2)
    (volume / "models" / "loras" / "old.ckpt").write_bytes(b"\x80\x04\x95 a pickle")
    write_embedding(
        volume / "models" / "embeddings" / "badhand.safetensors", {"emb_params": (2, 32)}, 4
    )
    hub = tmp_path_factory.mktemp("assets-hub")
    hub_lora = make_tiny_lora(models / "tiny", made / "hub" / "pytorch_lora_weights.safetensors", 3)
    hub_repo(hub, "org/ink-lora", {"pytorch_lora_weights.safetensors": hub_lora.read_bytes()})
    state = tmp_path_factory.mktemp("assets-state")
    with asset_server() as files:
        files.state.files.update(
            {
                "ink.safetensors": ink,
                "again.safetensors": ink,
                "html.safetensors": b"<html><body>Sign in to download</body></html>",
                "big.safetensors": ink + b"\0" * 4096,
                "sdxl.safetensors": write_safetensors(
                    made / "sdxl.safetensors", {SDXL_KEY: (4, 32)}
                ).read_bytes(),
                "private.safetensors": ink,
            }
        )
        with serve(
            models,
            state,
            KEY,
            SDWORKER_DEFAULT_MODEL="tiny",
            SDWORKER_ALLOW_PRIVATE_URLS="true",
            SDWORKER_VOLUME_DIR=str(volume),
            SDWORKER_HUB_CACHE_DIR=str(hub),
            SDWORKER_HUB_DOWNLOADS="false",
            SDWORKER_LORA_MAX_BYTES=str(len(ink) + 1024),
            HF_HUB_OFFLINE="1",
            RUNPOD_SKIP_AUTO_SYSTEM_CHECKS="true",
        ) as served:
            yield Setup(served, files, state, ink)


def run(setup: Setup, **fields: Any) -> dict[str, Any]:
    body = {"input": {"prompt": "a lighthouse", **SMALL, **fields}}
    answer = requests.post(
        f"{setup.served.url}/v2/local/runsync",
        json=body,
        headers={"Authorization": f"Bearer {KEY}"},
        timeout=600,
    )
    assert answer.status_code == 200, answer.text
    job: dict[str, Any] = answer.json()
    return job


def image(setup: Setup, **fields: Any) -> np.ndarray:
    job = run(setup, **fields)
    assert job["status"] == "COMPLETED", job
    return decoded(job["output"][0]["image"])


def decoded(b64: str) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(base64.b64decode(b64))).convert("RGB"))


def failed(setup: Setup, **fields: Any) -> str:
    job = run(setup, **fields)
    assert job["status"] == "FAILED", job
    return str(job["error"])


def test_a_lora_by_url_is_applied_and_downloaded_once(setup: Setup) -> None:
    url = f"{setup.files.url}/files/ink.safetensors"
    plain = image(setup)
    first = image(setup, lora=[{"url": url, "scale": 1.0}])
    again = image(setup, lora=url)
    assert not np.array_equal(plain, first) and np.array_equal(first, again)
    assert setup.files.state.downloads["/files/ink.safetensors"] == 1
    assert np.array_equal(image(setup), plain)  # the next plain request: bit for bit
    digest = hashlib.sha256(setup.ink).hexdigest()
    assert np.array_equal(image(setup, lora=[{"url": url, "sha256": digest.upper()}]), first)


@pytest.mark.parametrize(
    ("name", "extra", "error"),
    [
        ("big", {}, "lora[0].url: is larger than"),
        ("html", {}, "lora[0].url: the file is not a safetensors file"),
        ("sdxl", {}, "lora[0].url: is made for SDXL models; model 'tiny' is SD 1.x"),
        ("ink", {"sha256": "0" * 64}, "lora[0].sha256: does not match: the file's sha256 is"),
    ],
)
def test_a_lora_url_is_refused_naming_the_field(
    setup: Setup, name: str, extra: dict[str, Any], error: str
) -> None:
    url = f"{setup.files.url}/files/{name}.safetensors"
    assert error in failed(setup, lora=[{"url": url, **extra}])


def test_two_jobs_with_one_url_download_it_once(setup: Setup) -> None:
    url = f"{setup.files.url}/files/again.safetensors"
    state = setup.files.state
    state.gate.clear()  # the first download is held until both jobs are in
    headers = {"Authorization": f"Bearer {KEY}"}
    body = {"input": {"prompt": "a lighthouse", **SMALL, "lora": url}}
    ids = [
        requests.post(
            f"{setup.served.url}/v2/local/run", json=body, headers=headers, timeout=60
        ).json()["id"]
        for _ in range(2)
    ]
    wait_until(
        lambda: any(s.path == "/files/again.safetensors" for s in state.seen), "the download"
    )
    state.gate.set()

    def done() -> list[dict[str, Any]] | None:
        jobs = [
            requests.get(
                f"{setup.served.url}/v2/local/status/{i}", headers=headers, timeout=60
            ).json()
            for i in ids
        ]
        return jobs if all(j["status"] in ("COMPLETED", "FAILED") for j in jobs) else None

    jobs = wait_until(done, "both jobs to end")
    assert [j["status"] for j in jobs] == ["COMPLETED", "COMPLETED"], jobs
    assert state.downloads["/files/again.safetensors"] == 1


def test_a_lora_from_the_hub_cache(setup: Setup) -> None:
    assert not np.array_equal(image(setup, lora=[{"hub": "org/ink-lora"}]), image(setup))
    assert "lora[0].hub: is not in the local hub cache" in failed(
        setup, lora=[{"hub": "org/absent"}]
    )


def test_a_volume_lora_by_name_from_native_and_a1111(setup: Setup) -> None:
    plain = image(setup)
    native = image(setup, lora=[{"name": "style/vol.safetensors", "scale": 0.8}])
    assert not np.array_equal(native, plain)
    auth = ("admin", KEY)

    def a1111(prompt: str) -> np.ndarray:
        body = {"prompt": prompt, "steps": 2, "width": 64, "height": 64, "seed": 7}
        answer = requests.post(
            f"{setup.served.url}/sdapi/v1/txt2img", json=body, auth=auth, timeout=600
        )
        assert answer.status_code == 200, answer.text
        return decoded(answer.json()["images"][0])

    tagged = a1111("a lighthouse <lora:style/vol:0.8>")
    assert not np.array_equal(tagged, a1111("a lighthouse "))
    # the tag leaves the prompt and becomes the lora entry (A1111's sampler and CFG scale)
    lora = [{"name": "style/vol.safetensors", "scale": 0.8}]
    same = image(setup, prompt="a lighthouse ", scheduler="Euler", guidance_scale=7.0, lora=lora)
    assert np.array_equal(tagged, same)
    listed = requests.get(f"{setup.served.url}/sdapi/v1/loras", auth=auth, timeout=60).json()
    assert [e["name"] for e in listed] == ["style/vol"]
    config = requests.get(
        f"{setup.served.url}/playground/config",
        headers={"Authorization": f"Bearer {KEY}"},
        timeout=60,
    ).json()
    assert config["loras"] == ["style/vol.safetensors"]
    refused = failed(setup, lora="old.ckpt")
    assert "lora[0].name: volume LoRA 'old.ckpt' is a pickle-based .ckpt file" in refused


def test_an_embeddings_trigger_word_changes_the_image(setup: Setup) -> None:
    plain = image(setup)
    assert not np.array_equal(image(setup, prompt="a lighthouse, badhand"), plain)
    assert np.array_equal(image(setup), plain)
    listed = requests.get(
        f"{setup.served.url}/sdapi/v1/embeddings", auth=("a", KEY), timeout=60
    ).json()
    assert listed == {
        "loaded": {
            "badhand": {
                "step": None,
                "sd_checkpoint": None,
                "sd_checkpoint_name": None,
                "shape": 32,
                "vectors": 2,
            }
        },
        "skipped": {},
    }


def test_a_download_token_is_used_and_never_kept(setup: Setup) -> None:
    token = setup.files.state.token
    url = f"{setup.files.url}/private/private.safetensors"
    assert "lora[0].url: answered HTTP 401: the file needs a token" in failed(setup, lora=url)
    job = run(setup, lora=[{"url": url, "token": token}])
    assert job["status"] == "COMPLETED", job
    in_url = run(setup, lora=f"{setup.files.url}/files/sdxl.safetensors?token={token}")
    assert in_url["status"] == "FAILED" and token not in str(in_url)
    status = requests.get(
        f"{setup.served.url}/v2/local/status/{job['id']}",
        headers={"Authorization": f"Bearer {KEY}"},
        timeout=60,
    )
    assert token not in status.text
    for path in setup.state.rglob("*"):  # the job store (SQLite and its WAL), the log, the cache
        if path.is_file():
            assert token.encode() not in path.read_bytes(), path
