"""Every request format on SD 3.x and FLUX.1 models: each maps its own fields as the model's
family reads them (A1111 as Forge serves FLUX.1, DeepInfra's model paths and aspect ratios,
OpenAI's sizes and Kontext edits, Salad's pipeline classes), and refuses a field that does not
apply, naming it as the client wrote it and the family. Without a server; the parity of HTTP
and the RunPod envelopes on a FLUX.1 model is at the end."""

from __future__ import annotations

import json
from typing import Any

import pytest

from sdworker.core.errors import InvalidInput, ModelNotFound
from sdworker.core.input import InputContext, ModelFacts, parse_input
from sdworker.core.jobs import Failure
from sdworker.core.media import infotext
from sdworker.formats.a1111 import A1111Format
from sdworker.formats.deepinfra import DEEPINFRA, ratio_size
from sdworker.formats.openai import OPENAI
from sdworker.formats.salad import SALAD
from tests.unit.formats.families import FACTS, FLOW, MODELS, manifest, native_checks, png


def problems(exc: pytest.ExceptionInfo[InvalidInput]) -> dict[str, str]:
    return {p.field: p.message for p in exc.value.problems}


# -- A1111 as Forge serves FLUX.1 ------------------------------------------------------------


def a1111(body: dict[str, Any], kind: str = "txt2img") -> tuple[A1111Format, Any]:
    fmt = A1111Format()
    return fmt, fmt.decode({"prompt": "a lighthouse", "seed": 5, **body}, MODELS, kind=kind)


def a1111_job(body: dict[str, Any], kind: str = "txt2img") -> dict[str, Any]:
    [job] = a1111(body, kind)[1].inputs
    native_checks(job)
    return job


def a1111_refusal(body: dict[str, Any], kind: str = "txt2img") -> dict[str, str]:
    with pytest.raises(InvalidInput) as exc:
        a1111(body, kind)
    return problems(exc)


def test_a1111_on_flux_reads_distilled_cfg_scale_and_runs_flow_match_euler() -> None:
    job = a1111_job({"distilled_cfg_scale": 3.5, "sampler_name": "Euler", "scheduler": "Simple"})
    assert job["guidance_scale"] == 3.5 and "true_cfg_scale" not in job
    assert job["scheduler"] == FLOW and job["model"] == "schnell"
    # A1111's default sampler (Euler) and schedule (Automatic) mean the same on FLUX.1
    assert a1111_job({})["scheduler"] == FLOW


def test_a1111_on_flux_leaves_guidance_to_the_model_and_cfg_off() -> None:
    """No distilled_cfg_scale: the model's own guidance (schnell's 0, dev's 3.5), not Forge's
    fixed 3.5; A1111's default cfg_scale (7) is not given, so true CFG is off."""
    assert a1111_job({})["guidance_scale"] == 0.0
    job = a1111_job({"override_settings": {"sd_model_checkpoint": "dev"}})
    assert (job["guidance_scale"], job["model"]) == (3.5, "dev")
    assert "true_cfg_scale" not in job


def test_a1111_cfg_scale_is_flux_true_cfg_with_a_negative_prompt() -> None:
    job = a1111_job({"negative_prompt": "fog", "cfg_scale": 4, "distilled_cfg_scale": 2.5})
    assert (job["guidance_scale"], job["true_cfg_scale"]) == (2.5, 4)
    assert job["negative_prompt"] == "fog"


def test_a1111_refuses_what_flux_cannot_do_in_a1111_names() -> None:
    refused = a1111_refusal({"sampler_name": "Euler a", "scheduler": "Karras", "cfg_scale": 7})
    assert refused["sampler_name"].startswith("Euler a does not run FLUX.1 models")
    assert "they take Euler" in refused["sampler_name"]
    assert "FLUX.1 models (model 'schnell')" in refused["scheduler"]
    assert refused["cfg_scale"].startswith("is true CFG on FLUX.1 models (model 'schnell')")
    refused = a1111_refusal({"negative_prompt": "fog"})
    assert "give cfg_scale above 1" in refused["negative_prompt"]
    refused = a1111_refusal({"enable_hr": True})
    assert refused == {"enable_hr": "does not apply to FLUX.1 models (model 'schnell')"}


def test_a1111_on_fill_has_neither_cfg_nor_negative_prompt() -> None:
    fill = {"override_settings": {"sd_model_checkpoint": "fill"}}
    refused = a1111_refusal({**fill, "negative_prompt": "fog", "cfg_scale": 4})
    assert refused["negative_prompt"] == "does not apply to FLUX.1 Fill models (model 'fill')"
    assert "their guidance is distilled_cfg_scale" in refused["cfg_scale"]
    # cfg_scale at 1 asks for nothing: accepted
    job = a1111_job(
        {**fill, "cfg_scale": 1, "init_images": [png((64, 64))], "mask": png((64, 64))}, "img2img"
    )
    assert job["guidance_scale"] == 30.0 and "true_cfg_scale" not in job


def test_a1111_distilled_cfg_scale_is_refused_where_guidance_is_cfg() -> None:
    for model, label in (("tiny", "SD 1.x"), ("sd35m", "SD 3.x")):
        body = {"distilled_cfg_scale": 3, "override_settings": {"sd_model_checkpoint": model}}
        rule = a1111_refusal(body)["distilled_cfg_scale"]
        assert (
            rule
            == f"does not apply to {label} models (model '{model}'): their guidance is cfg_scale"
        )


def test_a1111_on_sd3_maps_euler_and_heun_to_their_flow_match_classes() -> None:
    sd3 = {"override_settings": {"sd_model_checkpoint": "sd35m"}}
    assert (
        a1111_job({**sd3, "sampler_name": "Heun"})["scheduler"] == "FlowMatchHeunDiscreteScheduler"
    )
    job = a1111_job({**sd3, "cfg_scale": 5, "negative_prompt": "fog"})
    assert (job["scheduler"], job["guidance_scale"]) == (FLOW, 5)  # SD 3.x's CFG is cfg_scale
    assert (
        "DPM++ 2M does not run SD 3.x models"
        in a1111_refusal({**sd3, "sampler_name": "DPM++ 2M"})["sampler_name"]
    )


def test_a1111_clip_skip_option_is_for_the_models_it_applies_to() -> None:
    fmt = A1111Format()
    fmt.options.values["CLIP_stop_at_last_layers"] = 2
    [on_flux] = fmt.decode({"prompt": "x"}, MODELS, kind="txt2img").inputs
    assert "clip_skip" not in on_flux
    sd = {"prompt": "x", "override_settings": {"sd_model_checkpoint": "tiny"}}
    [on_sd] = fmt.decode(sd, MODELS, kind="txt2img").inputs
    assert on_sd["clip_skip"] == 2


def test_a1111_infotext_is_forges_for_flux_and_the_same_as_the_images() -> None:
    """``info``'s infotext is written as the PNG's: Forge's sampler and schedule names for
    flow-match Euler, CFG scale 1 (off), the distilled guidance as ``Distilled CFG Scale``."""
    fmt, decoded = a1111({"distilled_cfg_scale": 3.5, "steps": 4})
    [job] = decoded.inputs
    answer = fmt.encode(decoded, [{"image": "aW1n", "seed": 5}], 10)
    info = json.loads(answer["info"])
    text = info["infotexts"][0]
    assert (
        "Steps: 4, Sampler: Euler, Schedule type: Simple, CFG scale: 1, Distilled CFG Scale: 3.5, Seed: 5"
        in text
    )
    assert info["extra_generation_params"] == {
        "Schedule type": "Simple",
        "Distilled CFG Scale": 3.5,
    }
    assert (info["cfg_scale"], info["distilled_cfg_scale"]) == (1.0, 3.5)
    # the image's own infotext (the service writes it from the native request alike)
    request = parse_input(job, InputContext.of(FACTS, default_model="schnell", max_pixels=2**22))
    assert request.scheduler is not None and request.scheduler.label == FLOW
    image_text = infotext(
        prompt="a lighthouse",
        negative_prompt="",
        steps=4,
        sampler="Euler",
        schedule_type="Simple",
        guidance_scale=request.input.true_cfg_scale or 1.0,
        distilled_guidance=request.input.guidance_scale,
        seed=5,
        width=512,
        height=512,
        model_name="schnell",
    )
    assert text == image_text


def test_a1111_on_sd_keeps_its_names_and_answer() -> None:
    fmt, decoded = a1111({"override_settings": {"sd_model_checkpoint": "sd15"}, "cfg_scale": 6})
    [job] = decoded.inputs
    assert (job["guidance_scale"], job["scheduler"], job["model"]) == (6, "Euler", "tiny")
    info = json.loads(fmt.encode(decoded, [{"image": "aW1n", "seed": 5}], 1)["info"])
    assert "distilled_cfg_scale" not in info and "Distilled" not in info["infotexts"][0]
    assert "Sampler: Euler, CFG scale: 6," in info["infotexts"][0]


# -- DeepInfra's model paths and fields ------------------------------------------------------


def deepinfra(path: str, body: dict[str, Any]) -> dict[str, Any]:
    [job] = DEEPINFRA.decode({"prompt": "a lighthouse", **body}, MODELS, model=path).inputs
    return job


@pytest.mark.parametrize(
    ("path", "model"),
    [
        ("black-forest-labs/FLUX-1-schnell", "schnell"),
        ("black-forest-labs/FLUX-1-dev", "dev"),
        ("black-forest-labs/FLUX-1-Kontext-dev", "kontext"),
        ("black-forest-labs/FLUX.1-schnell", "schnell"),  # the hub id itself
        ("stabilityai/sd3.5-medium", "sd35m"),
        ("schnell", "schnell"),
        ("sd15", "tiny"),
    ],
)
def test_deepinfra_model_paths_name_the_models_baked_from_their_hub_ids(
    path: str, model: str
) -> None:
    assert deepinfra(path, {})["model"] == model


def test_deepinfra_an_unknown_path_is_a_404_naming_it() -> None:
    with pytest.raises(ModelNotFound) as exc:
        deepinfra("stabilityai/sd3.5", {})  # Large: not baked here
    assert "unknown model 'stabilityai/sd3.5'" in str(exc.value)


def test_deepinfra_flux_fields_map_to_native_ones() -> None:
    body = {"num_images": 2, "num_inference_steps": 4, "width": 512, "height": 768, "seed": 9}
    job = deepinfra("black-forest-labs/FLUX-1-schnell", {**body, "guidance_scale": 0})
    native_checks(job)
    assert job == {
        "prompt": "a lighthouse",
        "model": "schnell",
        "upload": False,
        "num_images": 2,
        "num_inference_steps": 4,
        "guidance_scale": 0.0,
        "width": 512,
        "height": 768,
        "seed": 9,
    }
    dev = deepinfra("black-forest-labs/FLUX-1-dev", {"negative_prompt": "fog", "true_cfg_scale": 4})
    native_checks(dev)
    assert dev["true_cfg_scale"] == 4


def test_deepinfra_sd35_aspect_ratio_is_a_size_at_the_models_pixel_count() -> None:
    assert deepinfra("stabilityai/sd3.5-medium", {"aspect_ratio": "16:9"})["width"] == 1344
    sizes = {
        r: ratio_size(tuple(int(x) for x in r.split(":")), FACTS["sd35m"])  # type: ignore[arg-type]
        for r in ("1:1", "16:9", "9:16", "21:9", "2:3")
    }
    assert sizes == {
        "1:1": (1024, 1024),
        "16:9": (1344, 768),
        "9:16": (768, 1344),
        "21:9": (1536, 640),
        "2:3": (832, 1280),
    }
    tiny = ModelFacts.of(manifest("t", "flux", 256))
    w, h = ratio_size((16, 9), tiny)
    assert w % 16 == h % 16 == 0 and w > h and abs(w * h - 256 * 256) < 256 * 256 * 0.1
    with pytest.raises(InvalidInput) as exc:
        DEEPINFRA.decode(
            {"prompt": "x", "aspect_ratio": "16:9", "width": 512}, MODELS, model="sd35m"
        )
    assert problems(exc) == {"aspect_ratio": "give aspect_ratio or width and height, not both"}
    with pytest.raises(InvalidInput) as exc:
        DEEPINFRA.decode({"prompt": "x", "aspect_ratio": "wide"}, MODELS, model="sd35m")
    assert "must be WIDTH:HEIGHT" in problems(exc)["aspect_ratio"]


def test_deepinfra_use_compel_on_flux_is_refused_by_the_family_in_deepinfra_shape() -> None:
    job = deepinfra("black-forest-labs/FLUX-1-schnell", {"use_compel": True})
    with pytest.raises(InvalidInput) as exc:
        native_checks(job)
    status, body = DEEPINFRA.encode_error(Failure.of(exc.value).renamed(DEEPINFRA.names))
    assert status == 422
    assert body["detail"][0]["loc"] == ["body", "use_compel"]
    assert "does not apply to FLUX.1 models (model 'schnell')" in body["detail"][0]["msg"]


# -- OpenAI: models by hub id and alias, sizes by the family, Kontext edits -------------------


def openai(body: dict[str, Any], kind: str = "generations") -> dict[str, Any]:
    [job] = OPENAI.decode({"prompt": "a lighthouse", **body}, MODELS, kind=kind).inputs
    return job


def test_openai_model_may_be_the_hub_id_the_model_was_baked_from() -> None:
    job = openai({"model": "black-forest-labs/FLUX.1-schnell", "size": "1024x768", "n": 2})
    native_checks(job)
    assert (job["model"], job["width"], job["height"], job["num_images"]) == (
        "schnell",
        1024,
        768,
        2,
    )


def test_openai_size_keeps_the_familys_side_rule() -> None:
    with pytest.raises(InvalidInput) as exc:
        openai({"model": "schnell", "size": "1000x1000"})
    assert problems(exc)["size"] == (
        "FLUX.1 models (model 'schnell') cannot make 1000x1000: each side must be a multiple "
        "of 16 from 64 to 2048"
    )
    assert openai({"model": "tiny", "size": "1000x1000"})["width"] == 1000


def test_openai_family_fields_pass_and_are_refused_by_the_family() -> None:
    job = openai(
        {"model": "dev", "negative_prompt": "fog", "true_cfg_scale": 3, "max_sequence_length": 128}
    )
    native_checks(job)
    job = openai({"model": "schnell", "use_compel": True, "clip_skip": 2})
    with pytest.raises(InvalidInput) as exc:
        native_checks(job)
    assert set(problems(exc)) == {"use_compel", "clip_skip"}
    assert all("FLUX.1 models" in m for m in problems(exc).values())


def test_openai_edit_without_a_mask_is_an_instruction_edit_on_kontext() -> None:
    image = png((64, 64))
    job = openai({"model": "kontext", "image": image}, "edits")
    native_checks(job)
    assert job["image"] == image and "mask_image" not in job and "strength" not in job
    # an image with a transparent area is still an inpaint of that area
    clear = png((64, 64), "RGBA", (0, 0, 0, 0))
    assert "mask_image" in openai({"model": "kontext", "image": clear}, "edits")
    # on FLUX.1 an opaque image without a mask is refused on mask, as before
    with pytest.raises(InvalidInput) as exc:
        openai({"model": "schnell", "image": image}, "edits")
    assert "mask" in problems(exc)
    variation = openai({"model": "kontext", "image": image}, "variations")
    assert "strength" not in variation
    assert openai({"model": "schnell", "image": image}, "variations")["strength"] == 0.6


# -- Salad: MODEL_ID by hub id, the family's pipeline classes --------------------------------


def salad(call: dict[str, Any], inputs: dict[str, Any] | None = None) -> dict[str, Any]:
    body = {"modelInputs": {"prompt": "a lighthouse", **(inputs or {})}, "callInputs": call}
    [job] = SALAD.decode(body, MODELS).inputs
    return job


def test_salad_model_id_names_an_sd3_model_by_its_hub_id() -> None:
    job = salad(
        {
            "MODEL_ID": "stabilityai/stable-diffusion-3.5-medium",
            "PIPELINE": "StableDiffusion3Pipeline",
        },
        {"max_sequence_length": 128, "guidance_scale": 4.5},
    )
    native_checks(job)
    assert (job["model"], job["max_sequence_length"]) == ("sd35m", 128)


def test_salad_pipeline_must_be_the_models_familys() -> None:
    with pytest.raises(InvalidInput) as exc:
        salad({"MODEL_ID": "sd35m", "PIPELINE": "FluxPipeline"})
    rule = problems(exc)["callInputs.PIPELINE"]
    assert rule.startswith("is not a pipeline of SD 3.x models (model 'sd35m'); they run ")
    assert "StableDiffusion3Img2ImgPipeline" in rule
    image = png((64, 64))
    job = salad({"MODEL_ID": "schnell", "PIPELINE": "FluxImg2ImgPipeline"}, {"image": image})
    assert job["image"] == image
    with pytest.raises(InvalidInput) as exc:
        salad({"MODEL_ID": "schnell", "PIPELINE": "FluxImg2ImgPipeline"})
    assert problems(exc) == {"modelInputs.image": "is required by FluxImg2ImgPipeline"}
    # Kontext's pipeline makes images from a prompt, and edits one
    salad({"MODEL_ID": "kontext", "PIPELINE": "FluxKontextPipeline"})
    salad({"MODEL_ID": "kontext", "PIPELINE": "FluxKontextPipeline"}, {"image": image})
    salad({"MODEL_ID": "sd35m", "PIPELINE": "AutoPipelineForText2Image"})


def test_salad_clip_skip_on_flux_is_refused_by_the_family_in_salads_names() -> None:
    job = salad({"MODEL_ID": "schnell"}, {"clip_skip": 2})
    with pytest.raises(InvalidInput) as exc:
        native_checks(job)
    failure = Failure.of(exc.value).renamed(SALAD.names)
    assert failure.problems[0].field == "modelInputs.clip_skip"
    assert "FLUX.1 models (model 'schnell')" in failure.message
