"""Dialect envelopes inside a RunPod job's input."""

from __future__ import annotations

import asyncio
import json
from typing import Any

from sdworker.core.errors import InvalidInput
from sdworker.core.jobs import Failure
from sdworker.core.manifest import Manifest
from sdworker.formats import a1111
from sdworker.formats.a1111 import SamplerCatalog
from sdworker.runpod.envelopes import Envelope, Outcome, is_envelope, unwrap


async def fake_generate(job: dict[str, Any]) -> Outcome:
    return [{"image": f"img{k}", "seed": job["seed"] + k} for k in range(job.get("num_images", 1))]


def answer_of(env: Envelope, generate: Any = fake_generate) -> Any:
    return asyncio.run(env.run(generate))


def test_native_input_is_not_an_envelope() -> None:
    assert unwrap({"prompt": "x"}) is None
    assert not is_envelope({"prompt": "x", "modelInputs": {}})
    assert not is_envelope({"api": "x"})


def test_salad_envelope_round_trip(manifests: list[Manifest]) -> None:
    env = unwrap(
        {"modelInputs": {"prompt": "p", "seed": 5, "num_images_per_prompt": 2}, "callInputs": {}},
        manifests=manifests,
        default_model="tiny",
    )
    assert env is not None and env.inputs is not None
    assert env.inputs[0]["num_images"] == 2 and env.inputs[0]["model"] == "tiny"
    answer = answer_of(env, fake_generate)
    assert answer["images_base64"] == ["img0", "img1"] and "$timings" in answer


def test_salad_envelope_errors_in_its_shape() -> None:
    env = unwrap({"modelInputs": {"promt": "p"}})
    assert env is not None
    answer = answer_of(env, fake_generate)
    assert "modelInputs.promt" in answer["error"]
    assert answer["$error"]["code"] == "invalid_input"

    async def failing(job: dict[str, Any]) -> Outcome:
        return Failure.of(InvalidInput.one("num_images", "must be at most 8", 9))

    env = unwrap({"modelInputs": {"prompt": "p"}})
    assert env is not None
    assert "modelInputs.num_images_per_prompt" in answer_of(env, failing)["error"]


def test_a1111_envelope_txt2img(catalog: SamplerCatalog, manifests: list[Manifest]) -> None:
    raw = {
        "api": {"method": "POST", "endpoint": "/sdapi/v1/txt2img"},
        "payload": {
            "prompt": "an astronaut",
            "seed": 11,
            "batch_size": 2,
            "sampler_name": "DPM++ SDE",
            "scheduler": "karras",
            "override_settings": {"sd_model_checkpoint": "tiny"},
        },
    }
    env = unwrap(raw, manifests=manifests, catalog=catalog)
    assert env is not None and env.inputs is not None
    assert env.inputs[0]["scheduler"] == "DPM++ SDE Karras" and env.inputs[0]["num_images"] == 2
    answer = answer_of(env, fake_generate)
    assert answer["images"] == ["img0", "img1"]
    assert json.loads(answer["info"])["all_seeds"] == [11, 12]


def test_a1111_envelope_lists_and_errors(
    catalog: SamplerCatalog, manifests: list[Manifest]
) -> None:
    env = unwrap({"api": {"method": "GET", "endpoint": "/sdapi/v1/samplers"}}, catalog=catalog)
    assert env is not None and env.inputs is None
    assert [s["name"] for s in answer_of(env, fake_generate)][:2] == ["DPM++ 2M", "DPM++ SDE"]
    env = unwrap({"api": {"method": "GET", "endpoint": "/sdapi/v1/sd-models"}}, manifests=manifests)
    assert env is not None and answer_of(env, fake_generate)[1]["hash"] == "6ce0161689"
    bad = unwrap(
        {
            "api": {"method": "POST", "endpoint": "/sdapi/v1/txt2img"},
            "payload": {"prompt": "x", "steps": "many"},
        },
        catalog=catalog,
    )
    assert bad is not None
    answer = answer_of(bad, fake_generate)
    assert "steps: must be an integer" in answer["error"]
    assert answer["output"]["error"] == "InvalidInput"
    unknown = unwrap(
        {"api": {"method": "POST", "endpoint": "/sdapi/v1/extra-single-image"}, "payload": {}}
    )
    assert unknown is not None and "api.endpoint" in answer_of(unknown, fake_generate)["error"]


def test_a1111_envelope_options_persist_per_worker(
    catalog: SamplerCatalog, manifests: list[Manifest]
) -> None:
    opts = a1111.Options()
    env = unwrap(
        {
            "api": {"method": "POST", "endpoint": "/sdapi/v1/options"},
            "payload": {"sd_model_checkpoint": "v1-5-pruned-emaonly"},
        },
        manifests=manifests,
        options=opts,
    )
    assert env is not None and answer_of(env, fake_generate) == {}
    env = unwrap(
        {"api": {"method": "POST", "endpoint": "/sdapi/v1/txt2img"}, "payload": {"prompt": "x"}},
        manifests=manifests,
        options=opts,
        catalog=catalog,
        default_model="tiny",
    )
    assert (
        env is not None
        and env.inputs is not None
        and env.inputs[0]["model"] == "v1-5-pruned-emaonly"
    )
    stateless = unwrap(
        {
            "api": {"method": "POST", "endpoint": "/sdapi/v1/options"},
            "payload": {"sd_model_checkpoint": "tiny"},
        }
    )
    assert (
        stateless is not None
        and "override_settings" in answer_of(stateless, fake_generate)["error"]
    )
