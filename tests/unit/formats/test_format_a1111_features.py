"""A1111 options, hires fix, scripts and schedule types, without a server."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from sdworker.core import schedulers
from sdworker.core.errors import InvalidInput
from sdworker.core.manifest import Manifest
from sdworker.formats import a1111
from sdworker.formats.a1111.options import DEFAULTS, STORE_NAME
from sdworker.formats.base import Models

REAL = a1111.default_catalog()


def parse(body: dict[str, Any], manifests: list[Manifest], **kw: Any) -> a1111.A1111Request:
    kind = kw.pop("kind", "txt2img")
    return a1111.parse(body, kind, catalog=REAL, models=Models(manifests, "tiny"), **kw)


def refused(body: dict[str, Any], manifests: list[Manifest], **kw: Any) -> InvalidInput:
    with pytest.raises(InvalidInput) as info:
        parse(body, manifests, **kw)
    return info.value


# -- options ------------------------------------------------------------------------------


def test_every_a1111_option_is_listed_with_its_default(manifests: list[Manifest]) -> None:
    shown = a1111.get_options(a1111.Options(), manifests[0])
    assert len(DEFAULTS) >= 300 and set(DEFAULTS) <= set(shown)
    assert shown["live_previews_enable"] is True and shown["jpeg_quality"] == 80
    assert shown["sd_model_checkpoint"].startswith("tiny.safetensors")


def test_a_known_option_is_stored_and_shown(manifests: list[Manifest]) -> None:
    values, model = a1111.set_options(
        a1111.Options(),
        {"live_previews_enable": False, "show_progress_every_n_steps": 3},
        manifests,
    )
    assert model is None
    shown = a1111.get_options(a1111.Options(values), manifests[0])
    assert shown["live_previews_enable"] is False and shown["show_progress_every_n_steps"] == 3


def test_an_unknown_option_is_refused_with_the_closest(manifests: list[Manifest]) -> None:
    with pytest.raises(InvalidInput) as info:
        a1111.set_options(a1111.Options(), {"live_preview_enable": False}, manifests)
    [problem] = info.value.problems
    assert problem.field == "live_preview_enable"
    assert "not an option A1111 knows" in problem.message
    assert "live_previews_enable" in problem.message


def test_an_option_of_the_wrong_kind_is_refused(manifests: list[Manifest]) -> None:
    with pytest.raises(InvalidInput) as info:
        a1111.set_options(a1111.Options(), {"jpeg_quality": "high", "samples_save": 1}, manifests)
    assert info.value.fields == ["jpeg_quality", "samples_save"]
    assert "must be a number" in str(info.value) and "must be a boolean" in str(info.value)


def test_options_survive_a_restart(tmp_path: Path, manifests: list[Manifest]) -> None:
    store = a1111.Options.load(tmp_path / STORE_NAME)
    values, _ = a1111.set_options(store, {"samples_format": "webp", "eta_ddim": 0.5}, manifests)
    store.replace(values)
    again = a1111.Options.load(tmp_path / STORE_NAME)
    assert again.values["samples_format"] == "webp" and again.values["eta_ddim"] == 0.5
    [job] = parse({"prompt": "x"}, manifests, options=again).jobs()
    assert job["output_format"] == "webp"


def test_a_damaged_store_starts_from_the_defaults(tmp_path: Path) -> None:
    (tmp_path / STORE_NAME).write_text("{not json")
    assert a1111.Options.load(tmp_path / STORE_NAME).values == {"samples_format": "png"}


def test_override_settings_take_every_option_name(manifests: list[Manifest]) -> None:
    body = {"prompt": "x", "override_settings": {"live_previews_enable": False, "eta_ddim": 0}}
    assert parse(body, manifests).jobs()
    error = refused({"prompt": "x", "override_settings": {"made_up_option": 1}}, manifests)
    assert error.fields == ["override_settings.made_up_option"]
    assert "not an option A1111 knows" in str(error)


# -- scripts ------------------------------------------------------------------------------


def test_empty_script_selections_are_accepted(manifests: list[Manifest]) -> None:
    body = {"prompt": "x", "alwayson_scripts": {}, "script_name": None, "script_args": []}
    assert parse(body, manifests).jobs()


def test_a_named_script_is_refused_naming_it(manifests: list[Manifest]) -> None:
    body = {
        "prompt": "x",
        "alwayson_scripts": {"ADetailer": {"args": [True]}},
        "script_name": "xyz",
    }
    error = refused(body, manifests)
    assert set(error.fields) == {"alwayson_scripts.ADetailer", "script_name"}


# -- hires fix ----------------------------------------------------------------------------

HIRES = {"prompt": "a cat", "seed": 5, "steps": 4, "width": 64, "height": 64, "enable_hr": True}


def test_hires_becomes_the_native_hires_object(manifests: list[Manifest]) -> None:
    [job] = parse(HIRES, manifests).jobs()
    assert job["hires"] == {
        "scale": 2.0,
        "width": None,
        "height": None,
        "upscaler": "latent",
        "steps": None,
        "strength": 0.7,
        "scheduler": None,
        "prompt": None,
        "negative_prompt": None,
    }
    assert (job["width"], job["height"]) == (64, 64)


def test_hires_fields_map_one_to_one(manifests: list[Manifest]) -> None:
    body = {
        **HIRES,
        "sampler_name": "Euler",
        "hr_resize_x": 128,
        "hr_upscaler": "Latent (nearest-exact)",
        "hr_second_pass_steps": 3,
        "denoising_strength": 0.5,
        "hr_sampler_name": "DPM++ 2M",
        "hr_scheduler": "karras",
        "hr_prompt": "a tiger",
        "hr_negative_prompt": "blur",
    }
    [job] = parse(body, manifests).jobs()
    assert job["hires"] == {
        "scale": 2.0,
        "width": 128,
        "height": None,
        "upscaler": "latent-nearest-exact",
        "steps": 3,
        "strength": 0.5,
        "scheduler": "DPM++ 2M Karras",
        "prompt": "a tiger",
        "negative_prompt": "blur",
    }


@pytest.mark.parametrize(
    ("name", "native"),
    [("Lanczos", "lanczos"), ("nearest", "nearest"), ("None", "lanczos"), ("Latent", "latent")],
)
def test_hires_image_upscalers(manifests: list[Manifest], name: str, native: str) -> None:
    [job] = parse({**HIRES, "hr_upscaler": name}, manifests).jobs()
    assert job["hires"]["upscaler"] == native


def test_hires_off_ignores_the_hr_fields(manifests: list[Manifest]) -> None:
    body = {**HIRES, "enable_hr": False, "hr_upscaler": "R-ESRGAN 4x+", "hr_scale": 9}
    [job] = parse(body, manifests).jobs()
    assert "hires" not in job


def test_hires_refuses_what_this_server_lacks(manifests: list[Manifest]) -> None:
    body = {
        **HIRES,
        "hr_upscaler": "R-ESRGAN 4x+",
        "hr_scale": 5,
        "hr_resize_y": 100,
        "hr_sampler_name": "Nope",
        "hr_checkpoint_name": "other.safetensors",
    }
    error = refused(body, manifests)
    assert set(error.fields) == {
        "hr_upscaler", "hr_scale", "hr_resize_y", "hr_checkpoint_name",
    }  # fmt: skip
    assert "Latent (antialiased)" in str(error) and "Lanczos" in str(error)
    error = refused({**HIRES, "hr_sampler_name": "Nope"}, manifests)
    assert error.fields == ["hr_sampler_name"]
    error = refused({**HIRES, "hr_scheduler": "wobbly"}, manifests)
    assert error.fields == ["hr_scheduler"]


def test_hires_is_txt2img_only(manifests: list[Manifest]) -> None:
    body = {"prompt": "x", "init_images": ["AAAA"], "enable_hr": True}
    assert refused(body, manifests, kind="img2img").fields == ["enable_hr"]


def test_hires_infotext_as_a1111_writes_it(manifests: list[Manifest]) -> None:
    body = {**HIRES, "sampler_name": "Euler", "hr_second_pass_steps": 2, "hr_prompt": "a, tiger"}
    req = parse(body, manifests)
    text = a1111.infotext(req, 5, "tiny", "")
    assert text.endswith(
        "Steps: 4, Sampler: Euler, CFG scale: 7, Seed: 5, Size: 64x64, Model: tiny, "
        'Denoising strength: 0.7, Hires prompt: "a, tiger", Hires upscale: 2, Hires steps: 2, '
        "Hires upscaler: Latent"
    )
    resized = parse({**HIRES, "hr_resize_x": 96}, manifests)
    assert "Hires resize: 96x0, Hires upscaler" in a1111.infotext(resized, 5, "tiny", "")
    own = {
        **HIRES,
        "hr_sampler_name": "DPM++ 2M",
        "hr_scheduler": "Karras",
        "hr_negative_prompt": "fog",
        "override_settings": {"CLIP_stop_at_last_layers": 2},
    }
    assert a1111.infotext(parse(own, manifests), 5, "tiny", "").endswith(
        "Denoising strength: 0.7, Clip skip: 2, Hires sampler: DPM++ 2M, Hires negative prompt: "
        "fog, Hires schedule type: Karras, Hires upscale: 2, Hires upscaler: Latent"
    )
    answer = a1111.response(req, body, [{"image": "AAAA", "seed": 5}], model_name="tiny")
    info = json.loads(answer["info"])
    assert info["denoising_strength"] == 0.7
    assert info["extra_generation_params"]["Hires upscaler"] == "Latent"
    assert info["infotexts"] == [text]


# -- samplers and schedule types ------------------------------------------------------------


def test_every_listed_schedule_type_is_accepted_as_listed(manifests: list[Manifest]) -> None:
    listed = [s["name"] for s in a1111.schedulers(REAL)]
    assert "sgm_uniform" in listed
    for name in listed:
        for label in (name, name.upper()):
            req = parse({"prompt": "x", "sampler_name": "Euler", "scheduler": label}, manifests)
            assert schedulers.resolve(req.native_scheduler) is not None


def test_every_listed_sampler_and_schedule_resolves(manifests: list[Manifest]) -> None:
    for sampler in REAL.samplers:
        for schedule in [s["name"] for s in a1111.schedulers(REAL)]:
            body = {"prompt": "x", "sampler_name": sampler, "scheduler": schedule}
            assert schedulers.resolve(parse(body, manifests).native_scheduler) is not None


def test_sgm_uniform_spaces_timesteps_as_sgm_does(manifests: list[Manifest]) -> None:
    req = parse({"prompt": "x", "sampler_name": "Euler", "scheduler": "sgm_uniform"}, manifests)
    spec = schedulers.resolve(req.native_scheduler)
    assert spec is not None and spec.overrides == {"timestep_spacing": "trailing"}
    # DPM++ 2S a's diffusers class has no timestep spacing: the schedule type does not apply
    req = parse(
        {"prompt": "x", "sampler_name": "DPM++ 2S a", "scheduler": "sgm_uniform"}, manifests
    )
    assert req.native_scheduler == "DPM++ 2S a"
