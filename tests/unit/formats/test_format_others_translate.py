"""Salad, Stochastic and DeepInfra bodies ↔ native inputs, without a server."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pytest

from sdworker.core.errors import InvalidInput, ModelNotFound
from sdworker.core.jobs import Failure, Status
from sdworker.core.manifest import Manifest
from sdworker.formats import deepinfra, salad, stochastic
from sdworker.formats.base import Models
from sdworker.formats.deepinfra import DEEPINFRA
from sdworker.formats.salad import SALAD
from sdworker.formats.stochastic import STOCHASTIC


def salad_native(
    body: Any, manifests: list[Manifest], default: str = "tiny", endpoint: str = ""
) -> dict[str, Any]:
    [native] = SALAD.decode(body, Models(manifests, default), endpoint=endpoint).inputs
    return native


def stochastic_native(body: Any, uploads: bool = False) -> dict[str, Any]:
    [native] = STOCHASTIC.decode(body, Models(None, None, uploads), model="tiny").inputs
    return native


SALAD_DOC = {
    "modelInputs": {
        "prompt": "An oil painting of a salad",
        "num_inference_steps": 50,
        "guidance_scale": 20,
        "width": 512,
        "height": 512,
    },
    "callInputs": {
        "PIPELINE": "StableDiffusionPipeline",
        "SCHEDULER": "LMSDiscreteScheduler",
        "safety_checker": "true",
    },
}


def test_salad_documented_task(manifests: list[Manifest]) -> None:
    native = salad_native(SALAD_DOC, manifests)
    assert native == {
        "prompt": "An oil painting of a salad",
        "num_inference_steps": 50,
        "guidance_scale": 20,
        "width": 512,
        "height": 512,
        "scheduler": "LMSDiscreteScheduler",
        "model": "tiny",
        "upload": False,
    }


def test_salad_safety_checker_kept_for_a_model_that_ships_one(manifests: list[Manifest]) -> None:
    with_checker = [
        replace(m, has_safety_checker=True) if m.name == "tiny" else m for m in manifests
    ]
    native = salad_native(SALAD_DOC, with_checker)
    assert native["safety_checker"] is True


def test_salad_model_id_and_endpoint_name(manifests: list[Manifest]) -> None:
    body = {
        "modelInputs": {"prompt": "p", "num_images_per_prompt": 2},
        "callInputs": {"MODEL_ID": "runwayml/stable-diffusion-v1-5"},
    }
    native = salad_native(body, manifests)
    assert native["model"] == "v1-5-pruned-emaonly" and native["num_images"] == 2
    by_url = salad_native(
        {"modelInputs": {"prompt": "p"}}, manifests, endpoint="v1-5-pruned-emaonly"
    )
    assert by_url["model"] == "v1-5-pruned-emaonly"


def test_salad_pipeline_needs_images(manifests: list[Manifest]) -> None:
    body = {
        "modelInputs": {"prompt": "p", "image": "AAAA"},
        "callInputs": {
            "PIPELINE": "StableDiffusionInpaintPipeline",
            "MODEL_ID": "nope",
            "SCHEDULER": 3,
            "safety_checker": "maybe",
        },
    }
    with pytest.raises(InvalidInput) as info:
        salad_native(body, manifests)
    assert set(info.value.fields) == {
        "modelInputs.mask_image", "callInputs.MODEL_ID", "callInputs.SCHEDULER", "callInputs.safety_checker",
    }  # fmt: skip
    native = salad_native(
        {
            "modelInputs": {"prompt": "p", "image": "AAAA", "strength": 0.3},
            "callInputs": {"PIPELINE": "StableDiffusionImg2ImgPipeline"},
        },
        manifests,
    )
    assert native["image"] == "AAAA" and native["strength"] == 0.3


def test_salad_rejects_typos_and_missing_inputs(manifests: list[Manifest]) -> None:
    with pytest.raises(InvalidInput) as info:
        salad_native({"modelInput": {}}, manifests)
    assert set(info.value.fields) == {"modelInput", "modelInputs"}
    assert "did you mean 'modelInputs'" in str(info.value)
    with pytest.raises(InvalidInput) as info:
        salad_native({"modelInputs": {"prompt": "p", "num_steps": 3}}, manifests)
    assert info.value.fields == ["modelInputs.num_steps"]


def test_salad_outputs_single_and_many() -> None:
    one = salad.model_outputs([{"image": "aW1n", "seed": 1}], 120)
    assert one == {
        "image_base64": "aW1n",
        "nsfw_content_detected": None,
        "$timings": {"init": 0, "inference": 120},
    }
    many = salad.model_outputs(
        [
            {"image": "a", "seed": 1, "nsfw_content_detected": False},
            {"image": "b", "seed": 2, "nsfw_content_detected": True},
        ],
        5,
    )
    assert many["images_base64"] == ["a", "b"] and many["nsfw_content_detected"] == [False, True]
    failure = Failure.of(InvalidInput.one("num_images", "must be at most 8", 9))
    renamed = failure.renamed(salad.NATIVE_TO_SALAD)
    assert [p.field for p in renamed.problems] == ["modelInputs.num_images_per_prompt"]


STOCHASTIC_DOC = {
    "prompt": "A turtle – swimming underwater, – expressionist painting.",  # noqa: RUF001
    "params": {
        "img_height": 512,
        "img_width": 512,
        "num_inference_steps": 50,
        "guidance_scale": 7.5,
        "seed": None,
    },
}


def test_stochastic_documented_body() -> None:
    native = stochastic_native(STOCHASTIC_DOC)
    assert stochastic_native(STOCHASTIC_DOC, uploads=True)["upload"] is True
    assert native == {
        "prompt": STOCHASTIC_DOC["prompt"],
        "model": "tiny",
        "height": 512,
        "width": 512,
        "num_inference_steps": 50,
        "guidance_scale": 7.5,
    }


def test_stochastic_errors_and_shapes() -> None:
    with pytest.raises(InvalidInput) as info:
        stochastic_native({"prompt": ["a", "b"], "params": {"max_length": 3}})
    assert info.value.fields == ["prompt", "params.max_length"]
    assert stochastic_native({"prompt": ["one"], "params": {}})["prompt"] == "one"
    with pytest.raises(ModelNotFound):
        STOCHASTIC.decode({"prompt": "x", "params": {}}, Models([], None), model="nope")
    assert stochastic.submitted("j", "http://x/j", 3)["data"]["queuePosition"] == "3"
    pending = stochastic.result("j", Status.IN_QUEUE, None, 2)["data"]
    assert "generatedImages" not in pending and pending["queuePosition"] == "2"
    done = stochastic.result("j", Status.COMPLETED, ["http://x/a.png"])["data"]
    assert done["generatedImages"] == [{"presigned_url": "http://x/a.png"}]


def test_deepinfra_form_fields_are_typed() -> None:
    form = {
        "prompt": "A photo of an astronaut riding a horse on Mars.",
        "num_images": "2",
        "guidance_scale": "7.5",
        "seed": "42",
        "use_compel": "true",
        "lora": "pixel",
    }
    decoded = DEEPINFRA.decode(form, Models(None, None), model="tiny")
    [native] = decoded.inputs
    assert decoded.request.webhook is None
    assert native == {
        "model": "tiny",
        "upload": False,
        "prompt": form["prompt"],
        "num_images": 2,
        "seed": 42,
        "guidance_scale": 7.5,
        "use_compel": True,
        "lora": [{"name": "pixel", "scale": 1.0}],
    }


def test_deepinfra_ranges_and_errors() -> None:
    with pytest.raises(InvalidInput) as info:
        DEEPINFRA.decode(
            {"prompt": "", "num_images": 5, "guidance_scale": "x", "webhook": "ftp://a", "nope": 1},
            Models(None, None),
            model="tiny",
        )
    assert set(info.value.fields) == {"prompt", "num_images", "guidance_scale", "webhook", "nope"}
    status, body = DEEPINFRA.encode_error(Failure.of(info.value))
    assert status == 422
    assert {tuple(d["loc"]) for d in body["detail"]} >= {
        ("body", "num_images"),
        ("body", "webhook"),
    }


def test_deepinfra_response_shape() -> None:
    answer = deepinfra.response("rid", [{"image": "aW1n", "seed": 7, "format": "png"}], 1234)
    assert answer["images"] == ["data:image/png;base64,aW1n"]
    assert answer["nsfw_content_detected"] == [False] and answer["seed"] == 7
    assert (
        answer["inference_status"]["runtime_ms"] == 1234 and answer["inference_status"]["cost"] == 0
    )
