"""AUTOMATIC1111 bodies ↔ native inputs, without a server."""

from __future__ import annotations

import json
import random

import pytest

from sdworker.core.errors import InvalidInput
from sdworker.core.jobs import Failure
from sdworker.core.manifest import Manifest
from sdworker.formats import a1111
from sdworker.formats.a1111 import SamplerCatalog
from sdworker.formats.base import Models

SEED_DOC_PAYLOAD = {
    "prompt": "apple",
    "negative_prompt": "red",
    "sampler_name": "DPM++ 2M Karras",
    "seed": 985454925,
    "cfg_scale": 7,
    "steps": 20,
    "width": 512,
    "height": 512,
}


def parse(
    body: dict,
    catalog: SamplerCatalog,
    manifests: list[Manifest],
    kind: a1111.Kind = "txt2img",
    **kw,
):  # type: ignore[no-untyped-def]
    return a1111.parse(body, kind, catalog=catalog, models=Models(manifests, "tiny"), **kw)


def test_documented_payload_becomes_one_native_job(
    catalog: SamplerCatalog, manifests: list[Manifest]
) -> None:
    req = parse(SEED_DOC_PAYLOAD, catalog, manifests)
    [job] = req.jobs()
    assert job == {
        "prompt": "apple",
        "negative_prompt": "red",
        "width": 512,
        "height": 512,
        "num_inference_steps": 20,
        "guidance_scale": 7.0,
        "num_images": 1,
        "seed": 985454925,
        "scheduler": "DPM++ 2M Karras",
        "output_format": "png",
        "upload": False,
        "model": "tiny",
    }


def test_batch_size_times_n_iter_gives_consecutive_seeds(
    catalog: SamplerCatalog, manifests: list[Manifest]
) -> None:
    req = parse({"prompt": "x", "seed": 100, "batch_size": 2, "n_iter": 3}, catalog, manifests)
    jobs = req.jobs()
    assert [j["seed"] for j in jobs] == [100, 102, 104]
    assert all(j["num_images"] == 2 for j in jobs)
    assert req.all_seeds == [100, 101, 102, 103, 104, 105]


def test_seed_minus_one_is_random_but_reported(
    catalog: SamplerCatalog, manifests: list[Manifest]
) -> None:
    a = parse({"prompt": "x", "seed": -1}, catalog, manifests, rng=random.Random(1))
    b = parse({"prompt": "x"}, catalog, manifests, rng=random.Random(2))
    assert a.seed != b.seed
    assert 0 <= a.seed < 2**32 and a.jobs()[0]["seed"] == a.seed


def test_sampler_and_schedule_type_combine(
    catalog: SamplerCatalog, manifests: list[Manifest]
) -> None:
    req = parse(
        {"prompt": "x", "sampler_name": "DPM++ SDE", "scheduler": "karras"}, catalog, manifests
    )
    assert req.native_scheduler == "DPM++ SDE Karras"
    assert parse({"prompt": "x"}, catalog, manifests).native_scheduler == "Euler"
    assert (
        parse({"prompt": "x", "sampler_index": "DDIM"}, catalog, manifests).native_scheduler
        == "DDIM"
    )


@pytest.mark.parametrize(
    "name", ["DPM++ 2M", "DPM++ SDE", "Euler a", "Euler", "LMS", "Heun", "DDIM", "UniPC"]
)
def test_every_listed_sampler_is_accepted(
    name: str, catalog: SamplerCatalog, manifests: list[Manifest]
) -> None:
    assert name in [s["name"] for s in a1111.samplers(catalog)]
    assert parse({"prompt": "x", "sampler_name": name}, catalog, manifests).native_scheduler == name


def test_override_checkpoint_by_title_hash_or_name(
    catalog: SamplerCatalog, manifests: list[Manifest]
) -> None:
    for ref in [
        "v1-5-pruned-emaonly.safetensors [6ce0161689]",
        "v1-5-pruned-emaonly",
        "6ce0161689",
    ]:
        req = parse(
            {"prompt": "x", "override_settings": {"sd_model_checkpoint": ref}}, catalog, manifests
        )
        assert req.model == "v1-5-pruned-emaonly"


def test_every_bad_field_is_named_in_a1111_terms(
    catalog: SamplerCatalog, manifests: list[Manifest]
) -> None:
    body = {
        "prompt": "x",
        "steps": 0,
        "width": 500,
        "batch_size": 9,
        "cfg_scal": 7,
        "sampler_name": "Nope",
        "restore_faces": True,
        "override_settings": {"sd_model_checkpoint": "missing"},
    }
    with pytest.raises(InvalidInput) as info:
        parse(body, catalog, manifests)
    fields = info.value.fields
    assert set(fields) == {
        "steps", "width", "batch_size", "cfg_scal", "sampler_name", "restore_faces",
        "override_settings.sd_model_checkpoint",
    }  # fmt: skip
    assert "multiple of 8" in str(info.value) and "Nope" in str(info.value)


def test_unknown_schedule_type_names_scheduler(
    catalog: SamplerCatalog, manifests: list[Manifest]
) -> None:
    with pytest.raises(InvalidInput) as info:
        parse({"prompt": "x", "sampler_name": "Euler", "scheduler": "karas"}, catalog, manifests)
    assert info.value.fields == ["scheduler"]
    assert "closest: 'Karras'" in str(info.value) and "GET /sdapi/v1/schedulers" in str(info.value)


def test_docs_defaults_are_accepted(catalog: SamplerCatalog, manifests: list[Manifest]) -> None:
    body = {
        "prompt": "x", "styles": None, "subseed": -1, "subseed_strength": 0, "restore_faces": False,
        "tiling": False, "do_not_save_samples": False, "eta": None, "s_churn": 0, "script_name": None,
        "script_args": [], "alwayson_scripts": {}, "send_images": True, "save_images": False,
        "enable_hr": False, "hr_scale": 2, "override_settings": {"sd_vae": "sdxl_vae.safetensors"},
        "override_settings_restore_afterwards": True, "denoising_strength": 0,
    }  # fmt: skip
    assert parse(body, catalog, manifests).jobs()[0]["prompt"] == "x"


def test_img2img_with_mask_is_inpaint(catalog: SamplerCatalog, manifests: list[Manifest]) -> None:
    body = {
        "prompt": "x",
        "init_images": ["AAAA" * 8],
        "mask": "BBBB" * 8,
        "denoising_strength": 0.5,
    }
    [job] = parse(body, catalog, manifests, kind="img2img").jobs()
    assert job["image"] == "AAAA" * 8 and job["mask_image"] == "BBBB" * 8 and job["strength"] == 0.5
    with pytest.raises(InvalidInput) as info:
        parse({"prompt": "x"}, catalog, manifests, kind="img2img")
    assert info.value.fields == ["init_images"]
    with pytest.raises(InvalidInput):
        parse({"prompt": "x", "mask": "m"}, catalog, manifests)  # mask is img2img only


def test_response_info_is_a1111_json(catalog: SamplerCatalog, manifests: list[Manifest]) -> None:
    req = parse({**SEED_DOC_PAYLOAD, "batch_size": 2}, catalog, manifests)
    outputs = [{"image": "aW1n", "seed": 985454925}, {"image": "aW1o", "seed": 985454926}]
    answer = a1111.response(
        req, SEED_DOC_PAYLOAD, outputs, model_name="tiny", model_hash="abababab"
    )
    assert answer["images"] == ["aW1n", "aW1o"]
    info = json.loads(answer["info"])
    assert info["seed"] == 985454925 and info["all_seeds"] == [985454925, 985454926]
    assert info["infotexts"][1] == (
        "apple\nNegative prompt: red\nSteps: 20, Sampler: DPM++ 2M Karras, CFG scale: 7, "
        "Seed: 985454926, Size: 512x512, Model hash: abababab, Model: tiny"
    )
    assert answer["parameters"]["seed"] == 985454925


def test_send_images_false_returns_no_images(
    catalog: SamplerCatalog, manifests: list[Manifest]
) -> None:
    req = parse({"prompt": "x", "send_images": False}, catalog, manifests)
    answer = a1111.response(req, {}, [{"image": "aW1n", "seed": 1}], model_name="tiny")
    assert answer["images"] == [] and json.loads(answer["info"])["all_seeds"] == [1]


def test_native_errors_are_renamed() -> None:
    failure = Failure.of(InvalidInput.one("num_inference_steps", "must be at most 500", 900))
    assert (
        failure.renamed(a1111.NATIVE_TO_A1111).message
        == "invalid input: steps: must be at most 500 (got 900)"
    )


def test_options_switch_and_reject(manifests: list[Manifest]) -> None:
    opts = a1111.Options()
    values, model = a1111.set_options(
        opts,
        {
            "sd_model_checkpoint": "v1-5-pruned-emaonly.safetensors [6ce0161689]",
            "samples_format": "jpg",
        },
        manifests,
    )
    assert model == "v1-5-pruned-emaonly" and values["samples_format"] == "jpg"
    with pytest.raises(InvalidInput) as info:
        a1111.set_options(opts, {"sd_model_checkpoint": "nope", "made_up": 1}, manifests)
    assert info.value.fields == ["sd_model_checkpoint", "made_up"]
    shown = a1111.get_options(a1111.Options(values), manifests[1])
    assert shown["sd_model_checkpoint"] == "v1-5-pruned-emaonly.safetensors [6ce0161689]"


def test_sd_models_lists_titles(manifests: list[Manifest]) -> None:
    [tiny, v15] = a1111.sd_models(manifests, "/models")
    assert v15["title"] == "v1-5-pruned-emaonly.safetensors [6ce0161689]"
    assert v15["hash"] == "6ce0161689" and v15["model_name"] == "v1-5-pruned-emaonly"
    assert tiny["sha256"] == "ab" * 32


def test_real_catalog_accepts_every_listed_sampler(manifests: list[Manifest]) -> None:
    real = a1111.default_catalog()
    for name in real.samplers:
        assert parse({"prompt": "x", "sampler_name": name}, real, manifests).native_scheduler
    req = parse({"prompt": "x", "sampler_name": "DPM++ 2M", "scheduler": "karras"}, real, manifests)
    assert req.native_scheduler == "DPM++ 2M Karras"
    with pytest.raises(InvalidInput) as info:
        parse({"prompt": "x", "sampler_name": "Nope", "scheduler": "Karras"}, real, manifests)
    assert info.value.fields == ["sampler_name"]
    with pytest.raises(InvalidInput) as info:
        parse({"prompt": "x", "sampler_name": "Euler", "scheduler": "Wobbly"}, real, manifests)
    assert info.value.fields == ["scheduler"]


def test_infotext_is_the_png_one_in_a1111_format(
    catalog: SamplerCatalog, manifests: list[Manifest]
) -> None:
    from sdworker.core.media import infotext

    body = {
        "prompt": "a cat",
        "sampler_name": "Euler a",
        "scheduler": "Karras",
        "steps": 20,
        "cfg_scale": 7,
        "seed": 1,
        "override_settings": {"CLIP_stop_at_last_layers": 2},
    }
    req = parse(body, catalog, manifests)
    expected = (
        "a cat\nSteps: 20, Sampler: Euler a, Schedule type: Karras, CFG scale: 7, Seed: 1, "
        "Size: 512x512, Model hash: abababab, Model: tiny, Clip skip: 2"
    )
    assert a1111.infotext(req, 1, "tiny", "abababab") == expected
    # the writer the handler uses for the PNG chunk gives the same text
    png = infotext(
        prompt="a cat",
        negative_prompt="",
        steps=20,
        sampler="Euler a",
        schedule_type="Karras",
        guidance_scale=7.0,
        seed=1,
        width=512,
        height=512,
        model_name="tiny",
        model_hash="abababab",
        extra={"Clip skip": 2},
    )
    assert png == expected


def test_infotext_quotes_as_a1111_does() -> None:
    from sdworker.core.media import infotext

    text = infotext(
        prompt="p",
        negative_prompt="",
        steps=1,
        sampler="Euler",
        guidance_scale=7.5,
        seed=2,
        width=64,
        height=64,
        model_name='my "best", v2',
        extra={"Note": 'say "hi"', "Skipped": None},
    )
    assert text.splitlines()[1] == (
        "Steps: 1, Sampler: Euler, CFG scale: 7.5, Seed: 2, Size: 64x64, "
        'Model: "my \\"best\\", v2", Note: say "hi"'
    )
