"""ComfyUI workflows read as native jobs: each node's meaning, the names ComfyUI's names map
to, the refusals (naming node id, class and input), and the graph bombs."""

from __future__ import annotations

import asyncio
import base64
import io
import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from PIL import Image

from sdworker.core.errors import InvalidInput
from sdworker.core.jobs import Failure
from sdworker.core.models import ModelRegistry
from sdworker.families import get as family
from sdworker.formats.comfyui.errors import NodeRef, parse_field
from sdworker.formats.comfyui.evaluate import Context, fraction
from sdworker.formats.comfyui.graph import MAX_NODES
from sdworker.formats.comfyui.interpret import interpret
from sdworker.formats.comfyui.plan import native_seed
from sdworker.formats.comfyui.samplers import native_scheduler
from sdworker.formats.comfyui.worker import WORKER_COMFYUI
from sdworker.runpod.envelopes import unwrap
from tests.unit.formats.comfy import make_registry, models, png, runner, workflow


@pytest.fixture
def registry(tmp_path: Path) -> ModelRegistry:
    return make_registry(tmp_path)


def jobs(registry: ModelRegistry, graph: Any, images: dict[str, str] | None = None) -> list[Any]:
    """The native inputs (and their names) the workflow becomes."""
    result = interpret(graph, Context(models(registry), images or {}), previews=False)
    return [(job.input, job.names) for job in result.jobs]


def refusal(registry: ModelRegistry, graph: Any, images: dict[str, str] | None = None) -> str:
    with pytest.raises(InvalidInput) as caught:
        jobs(registry, graph, images)
    return str(caught.value)


def test_the_default_workflow_on_an_sdxl_checkpoint(registry: ModelRegistry) -> None:
    [(native, names)] = jobs(registry, workflow("sdxl_txt2img"))
    assert native == {
        "model": "tiny-sdxl",  # sd_xl_base_1.0.safetensors is its alias
        "prompt": "beautiful scenery nature glass bottle landscape, , purple galaxy bottle,",
        "negative_prompt": "text, watermark",
        "guidance_scale": 8.0,
        "scheduler": "Euler",  # euler / normal: the sampler's own spacing
        "num_inference_steps": 20,
        "seed": 156680208700286 % (2**32 - 8),
        "width": 1024,
        "height": 1024,
    }
    assert names["num_inference_steps"] == "node 3 (KSampler) steps"
    assert names["model"] == "node 4 (CheckpointLoaderSimple) ckpt_name"
    assert names["width"] == "node 5 (EmptyLatentImage) width"
    assert names["negative_prompt"] == "node 7 (CLIPTextEncode) text"


def test_img2img_denoise_runs_the_last_steps_of_a_longer_schedule(registry: ModelRegistry) -> None:
    image = png()
    [(native, names)] = jobs(registry, workflow("sdxl_img2img"), {"example.png": image})
    # ComfyUI: denoise 0.87 with 20 steps builds int(20 / 0.87) = 22 and runs the last 20
    assert native["num_inference_steps"] == 22
    assert int(22 * native["strength"]) == 20 and abs(native["strength"] - 20 / 22) < 1e-9
    assert native["image"] == image  # used as it is: passed through to the worker
    assert native["scheduler"] == "DPM++ 2M"
    assert names["strength"] == "node 3 (KSampler) denoise"
    assert names["image"] == "node 10 (LoadImage) image"


@given(steps=st.integers(1, 500), denoise=st.floats(0.01, 0.9998))
def test_a_denoise_strength_runs_exactly_the_steps_asked(steps: int, denoise: float) -> None:
    total = int(steps / denoise)
    if total <= 500:
        assert int(total * fraction(steps, total)) == steps <= total


def test_flux_split_loaders_with_custom_sampling(registry: ModelRegistry) -> None:
    [(native, names)] = jobs(registry, workflow("flux_schnell_split"))
    assert native == {
        "model": "tiny-flux",
        "prompt": "a bottle with a rainbow galaxy inside it on top of a wooden table on a "
        "snowy mountain top",
        "scheduler": "FlowMatchEulerDiscreteScheduler",
        "num_inference_steps": 4,
        "seed": 972054013131368 % (2**32 - 8),
        "width": 1024,
        "height": 1024,
    }
    assert names["num_inference_steps"] == "node 17 (BasicScheduler) steps"
    assert names["seed"] == "node 25 (RandomNoise) noise_seed"
    assert names["model"] == "node 12 (UNETLoader) unet_name"


def test_flux_guidance_and_true_cfg(registry: ModelRegistry) -> None:
    graph = workflow("flux_schnell_split")
    graph["30"] = {
        "class_type": "FluxGuidance",
        "inputs": {"guidance": 3.5, "conditioning": ["6", 0]},
    }
    graph["31"] = {"class_type": "CLIPTextEncode", "inputs": {"text": "blurry", "clip": ["11", 0]}}
    graph["22"] = {
        "class_type": "CFGGuider",
        "inputs": {"model": ["12", 0], "positive": ["30", 0], "negative": ["31", 0], "cfg": 4},
    }
    [(native, names)] = jobs(registry, graph)
    assert (native["guidance_scale"], native["true_cfg_scale"]) == (3.5, 4.0)
    assert native["negative_prompt"] == "blurry"
    assert names["guidance_scale"] == "node 30 (FluxGuidance) guidance"
    graph["22"]["inputs"]["cfg"] = 1  # cfg 1: the negative is not read (no true CFG)
    [(native, _)] = jobs(registry, graph)
    assert "negative_prompt" not in native and "true_cfg_scale" not in native


def test_a_lora_loader(registry: ModelRegistry) -> None:
    [(native, names)] = jobs(registry, workflow("sdxl_lora"))
    assert native["lora"] == [{"name": "neon", "scale": 1.0}]
    assert names["lora[0].name"] == "node 10 (LoraLoader) lora_name"
    assert names["lora[0].scale"] == "node 10 (LoraLoader) strength_model"
    graph = workflow("sdxl_lora")
    graph["10"]["inputs"].update(strength_model=0, strength_clip=0)  # changes nothing
    [(native, _)] = jobs(registry, graph)
    assert "lora" not in native
    graph["10"]["inputs"]["strength_clip"] = 1
    assert "node 10 (LoraLoader) strength_model: is 0 while strength_clip" in refusal(
        registry, graph
    )


def test_a_custom_node_is_refused_by_id_class_and_input(registry: ModelRegistry) -> None:
    message = refusal(registry, workflow("custom_node"))
    assert message.startswith("invalid input: node 9 (Image Save) images: is not a node")
    graph = workflow("sdxl_txt2img")
    graph["20"] = {"class_type": "UpscaleModelLoader", "inputs": {"model_name": "x.pth"}}
    graph["21"] = {
        "class_type": "ImageUpscaleWithModel",
        "inputs": {"upscale_model": ["20", 0], "image": ["8", 0]},
    }
    graph["9"]["inputs"]["images"] = ["21", 0]
    message = refusal(registry, graph)
    assert "node 20 (UpscaleModelLoader): is not a node sdworker runs" in message
    assert "it feeds node 21 (ImageUpscaleWithModel) upscale_model" in message
    assert (
        "node 21 (ImageUpscaleWithModel): " in message
        and "it feeds node 9 (SaveImage) images" in message
    )


def test_controlnet_nodes_are_refused_by_name(registry: ModelRegistry) -> None:
    graph = workflow("sdxl_txt2img")
    graph["11"] = {
        "class_type": "ControlNetLoader",
        "inputs": {"control_net_name": "c.safetensors"},
    }
    assert "node 11 (ControlNetLoader): ControlNet nodes are not supported yet" in refusal(
        registry, graph
    )


def test_every_problem_is_named_at_once(registry: ModelRegistry) -> None:
    graph = workflow("sdxl_txt2img")
    graph["3"]["inputs"].update(steps=0, sampler_name="eulr", cfg="high")
    graph["5"]["inputs"]["batch_size"] = 0
    graph["4"]["inputs"]["ckpt_name"] = "nope.safetensors"
    message = refusal(registry, graph)
    for field in (
        "node 4 (CheckpointLoaderSimple) ckpt_name: unknown model; baked models: tiny-flux, tiny-sdxl",
        "node 5 (EmptyLatentImage) batch_size: must be at least 1",
    ):
        assert field in message
    graph["4"]["inputs"]["ckpt_name"] = "sd_xl_base_1.0.safetensors"
    graph["5"]["inputs"]["batch_size"] = 1
    message = refusal(registry, graph)
    assert "node 3 (KSampler) steps: must be at least 1 (got 0)" in message
    assert "node 3 (KSampler) sampler_name: unknown sampler; closest: 'euler'" in message
    assert "node 3 (KSampler) cfg: must be a number" in message


def test_links_of_the_wrong_type_or_shape(registry: ModelRegistry) -> None:
    graph = workflow("sdxl_txt2img")
    graph["3"]["inputs"]["model"] = ["4", 1]
    graph["8"]["inputs"]["vae"] = ["4", 7]
    graph["6"]["inputs"]["clip"] = ["4"]
    message = refusal(registry, graph)
    assert "node 6 (CLIPTextEncode) clip: is a link of the wrong shape" in message
    graph["6"]["inputs"]["clip"] = ["4", 1]
    message = refusal(registry, graph)
    assert (
        "node 3 (KSampler) model: links to output 1 of node 4 (CheckpointLoaderSimple), a CLIP; it takes a MODEL"
        in message
    )
    assert (
        "node 8 (VAEDecode) vae: links to output 7 of node 4 (CheckpointLoaderSimple), which has 3"
        in message
    )


def test_samplers_and_schedulers_as_the_family_takes_them() -> None:
    sdxl, flux = family("sdxl"), family("flux")
    assert native_scheduler("euler", "karras", sdxl).name == "Euler Karras"
    assert native_scheduler("dpmpp_2m", "sgm_uniform", sdxl).name == "DPM++ 2M SGM Uniform"
    assert native_scheduler("euler_ancestral", "karras", sdxl).name == "Euler a"  # as A1111
    assert native_scheduler("euler", "simple", flux).name == "FlowMatchEulerDiscreteScheduler"
    assert native_scheduler("ddim", "normal", flux).name == "FlowMatchEulerDiscreteScheduler"
    refused = native_scheduler("dpmpp_2m", "normal", flux)
    assert refused.name is None and refused.field == "sampler_name"
    assert "does not run FLUX.1 models here (those that do: euler, ddim)" in refused.rule
    assert native_scheduler("res_multistep", "normal", sdxl).field == "sampler_name"
    assert native_scheduler("euler", "kl_optimal", sdxl).field == "scheduler"


def test_seeds_past_the_native_range() -> None:
    assert native_seed(42, 1) == 42
    assert native_seed(2**32 - 1, 1) == 2**32 - 1
    assert native_seed(2**32 - 1, 2) == (2**32 - 1) % (2**32 - 8)
    assert native_seed(2**64 - 1, 8) + 7 < 2**32


def test_ksampler_advanced_starting_part_way(registry: ModelRegistry) -> None:
    graph = workflow("sdxl_img2img")
    graph["3"] = {
        "class_type": "KSamplerAdvanced",
        "inputs": {
            "add_noise": "enable", "noise_seed": 5, "steps": 20, "cfg": 7, "sampler_name": "euler",
            "scheduler": "karras", "start_at_step": 5, "end_at_step": 10000,
            "return_with_leftover_noise": "disable", "model": ["14", 0], "positive": ["6", 0],
            "negative": ["7", 0], "latent_image": ["12", 0],
        },
    }  # fmt: skip
    [(native, names)] = jobs(registry, graph, {"example.png": png()})
    assert (native["num_inference_steps"], native["seed"]) == (20, 5)
    assert int(20 * native["strength"]) == 15
    assert names["strength"] == "node 3 (KSamplerAdvanced) start_at_step"
    graph["3"]["inputs"].update(add_noise="disable", end_at_step=12)
    message = refusal(registry, graph, {"example.png": png()})
    assert "node 3 (KSamplerAdvanced) add_noise: disable means a latent" in message


def test_inpainting_takes_the_mask_from_the_alpha(registry: ModelRegistry) -> None:
    graph = workflow("sdxl_img2img")
    graph["12"] = {
        "class_type": "VAEEncodeForInpaint",
        "inputs": {"pixels": ["10", 0], "vae": ["14", 2], "mask": ["10", 1], "grow_mask_by": 0},
    }
    picture = Image.new("RGBA", (64, 48), (200, 10, 10, 255))
    picture.paste((0, 0, 0, 0), (0, 0, 32, 48))  # the left half transparent: repaint it
    buf = io.BytesIO()
    picture.save(buf, "PNG")
    [(native, names)] = jobs(
        registry, graph, {"example.png": base64.b64encode(buf.getvalue()).decode()}
    )
    mask = Image.open(io.BytesIO(base64.b64decode(native["mask_image"])))
    assert mask.size == (64, 48) and mask.getpixel((5, 5)) == 255 and mask.getpixel((60, 5)) == 0
    assert Image.open(io.BytesIO(base64.b64decode(native["image"]))).mode == "RGB"
    assert names["mask_image"] == "node 10 (LoadImage) image"


def test_image_scale_resizes_the_input(registry: ModelRegistry) -> None:
    graph = workflow("sdxl_img2img")
    graph["15"] = {
        "class_type": "ImageScale",
        "inputs": {
            "image": ["10", 0],
            "upscale_method": "lanczos",
            "width": 96,
            "height": 0,
            "crop": "disabled",
        },
    }
    graph["12"]["inputs"]["pixels"] = ["15", 0]
    [(native, _)] = jobs(registry, graph, {"example.png": png((64, 32))})
    assert Image.open(io.BytesIO(base64.b64decode(native["image"]))).size == (96, 48)


def test_two_outputs_of_one_sampler_are_one_job(registry: ModelRegistry) -> None:
    graph = workflow("sdxl_txt2img")
    graph["10"] = {
        "class_type": "SaveImage",
        "inputs": {"images": ["8", 0], "filename_prefix": "b/x"},
    }
    result = interpret(graph, Context(models(registry), {}), previews=False)
    assert len(result.jobs) == 1 and [o.job for o in result.outputs] == [0, 0]


def test_the_graph_is_stored_as_comfyui_coerces_it(registry: ModelRegistry) -> None:
    graph = workflow("sdxl_txt2img")
    graph["3"]["inputs"]["steps"] = "20"
    result = interpret(graph, Context(models(registry), {}), previews=False)
    assert (
        result.prompt["3"]["inputs"]["steps"] == 20 and result.prompt["3"]["inputs"]["cfg"] == 8.0
    )
    assert result.prompt["9"]["_meta"] == {"title": "Save Image"}


def test_a_flow_shift_node_at_its_default_is_the_models_own(registry: ModelRegistry) -> None:
    graph = workflow("flux_schnell_split")
    graph["30"] = {
        "class_type": "ModelSamplingFlux",
        "inputs": {
            "model": ["12", 0],
            "max_shift": 1.15,
            "base_shift": 0.5,
            "width": 1024,
            "height": 1024,
        },
    }
    graph["17"]["inputs"]["model"] = graph["22"]["inputs"]["model"] = ["30", 0]
    assert len(jobs(registry, graph)) == 1
    graph["30"]["inputs"]["max_shift"] = 2
    assert "node 30 (ModelSamplingFlux) max_shift: must be 1.15" in refusal(registry, graph)
    sdxl = workflow("sdxl_txt2img")
    sdxl["30"] = {"class_type": "ModelSamplingSD3", "inputs": {"model": ["4", 0], "shift": 3}}
    sdxl["3"]["inputs"]["model"] = ["30", 0]
    assert "node 30 (ModelSamplingSD3): applies to flow-matching models" in refusal(registry, sdxl)


def test_parts_of_another_model_or_nonstandard_files_are_refused(registry: ModelRegistry) -> None:
    graph = workflow("flux_schnell_split")
    graph["11"]["inputs"]["clip_name2"] = "clip_g.safetensors"
    graph["10"]["inputs"]["vae_name"] = "my_vae.safetensors"
    assert "node 10 (VAELoader) vae_name: is not a standard VAE file" in refusal(registry, graph)
    graph["10"]["inputs"]["vae_name"] = "ae.safetensors"
    message = refusal(registry, graph)
    assert "node 11 (DualCLIPLoader) clip_name2: holds a openclip-g text encoder" in message
    sdxl = workflow("sdxl_txt2img")
    sdxl["10"] = {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": "tiny-flux"}}
    sdxl["8"]["inputs"]["vae"] = ["10", 2]
    assert "node 10 (CheckpointLoaderSimple) ckpt_name: is the VAE of model 'tiny-flux'" in refusal(
        registry, sdxl
    )


def test_a_missing_input_image(registry: ModelRegistry) -> None:
    message = refusal(registry, workflow("sdxl_img2img"), {"other.png": png()})
    assert (
        "node 10 (LoadImage) image: is not one of the request's input images (given: 'other.png')"
        in message
    )


# -- graph bombs: refused at once, the node named ----------------------------------------------


def test_a_cycle_is_refused_where_it_closes(registry: ModelRegistry) -> None:
    graph = workflow("sdxl_txt2img")
    graph["3"]["inputs"]["latent_image"] = ["10", 0]
    graph["10"] = {"class_type": "LatentUpscale", "inputs": {"samples": ["3", 0], "upscale_method": "nearest-exact", "width": 0, "height": 0, "crop": "disabled"}}  # fmt: skip
    assert "node 10 (LatentUpscale) samples: closes a cycle (3 -> 10 -> 3)" in refusal(
        registry, graph
    )


def test_ten_thousand_nodes_are_refused_before_any_is_read(registry: ModelRegistry) -> None:
    graph = {
        str(i): {"class_type": "Whatever", "inputs": {"x": [str(i + 1), 0]}} for i in range(10_000)
    }
    message = refusal(registry, graph)
    assert message == (
        f"invalid input: node {MAX_NODES}: is past the {MAX_NODES} nodes a workflow may have "
        "(this one has 10000)"
    )


def test_links_to_missing_nodes(registry: ModelRegistry) -> None:
    graph = workflow("sdxl_txt2img")
    del graph["5"]
    assert (
        "node 3 (KSampler) latent_image: links to node '5', which is not in the workflow"
        in refusal(registry, graph)
    )


def test_a_long_chain_is_read_without_recursion(registry: ModelRegistry) -> None:
    graph = workflow("sdxl_txt2img")
    previous = ["4", 0]
    for i in range(100, 100 + MAX_NODES - 10):
        graph[str(i)] = {
            "class_type": "ConditioningZeroOut",
            "inputs": {"conditioning": previous if i > 100 else ["7", 0]},
        }
        previous = [str(i), 0]
    graph["3"]["inputs"]["negative"] = previous
    [(native, _)] = jobs(registry, graph)
    assert native["negative_prompt"] == ""


def test_a_long_cycle_and_many_bad_nodes_stay_short(registry: ModelRegistry) -> None:
    graph = workflow("sdxl_txt2img")
    for i in range(100, 900):
        graph[str(i)] = {
            "class_type": "ConditioningZeroOut",
            "inputs": {"conditioning": [str(i + 1 if i < 899 else 100), 0]},
        }
    graph["3"]["inputs"]["negative"] = ["100", 0]
    message = refusal(registry, graph)
    assert "closes a cycle (800 nodes)" in message
    bad = {str(i): {"class_type": "Nope", "inputs": {}} for i in range(500)}
    message = refusal(registry, {**workflow("sdxl_txt2img"), **bad})
    assert message.count("(Nope)") == 20 and "and 480 more problems like these" in message


# -- the format: worker-comfyui's job, in an envelope and over HTTP ----------------------------


def test_worker_comfyui_job_in_the_envelope(registry: ModelRegistry) -> None:
    job = {
        "workflow": workflow("sdxl_img2img"),
        "images": [{"name": "example.png", "image": "data:image/png;base64," + png()}],
    }
    env = unwrap(
        json.dumps(job), manifests=[i.manifest for i in registry.all()], default_model="tiny-sdxl"
    )
    assert env is not None and env.failure is None and env.inputs is not None
    [native] = env.inputs
    assert json.loads(native["png_text"]["prompt"])["10"]["inputs"]["image"] == "example.png"
    run = runner(registry)

    async def generate(native: dict[str, Any]) -> Any:
        return run(native)

    answer = asyncio.run(env.run(generate))
    [image] = answer["images"]
    assert image["filename"] == "ComfyUI_00001_.png" and image["type"] == "base64"
    assert base64.b64decode(image["data"]).startswith(b"\x89PNG")


def test_worker_comfyui_refusals_in_the_envelope(registry: ModelRegistry) -> None:
    common: dict[str, Any] = {
        "manifests": [i.manifest for i in registry.all()],
        "default_model": "tiny-sdxl",
    }
    env = unwrap({"workflow": workflow("custom_node")}, **common)
    assert env is not None and env.failure is not None
    answer = asyncio.run(env.run(lambda native: None))  # type: ignore[arg-type,return-value]
    assert answer["error"].startswith("invalid input: node 9 (Image Save) images: ")
    assert answer["details"] == [answer["error"].removeprefix("invalid input: ")]
    assert answer["failure"]["problems"][0]["field"] == "node 9 (Image Save) images"
    env = unwrap({"workflow": {}, "images": [{"name": "a"}], "prompt": "x"}, **common)
    assert env is not None and env.failure is not None
    fields = [p.field for p in env.failure.problems]
    assert fields == ["images[0].image", "prompt"]


def test_a_native_failure_names_the_node_input(registry: ModelRegistry) -> None:
    graph = workflow("sdxl_txt2img")
    graph["3"]["inputs"]["steps"] = 600  # ComfyUI takes it; the native input stops at 500
    env = unwrap(
        {"workflow": graph},
        manifests=[i.manifest for i in registry.all()],
        default_model="tiny-sdxl",
    )
    assert env is not None and env.inputs is not None
    run = runner(registry)

    async def generate(native: dict[str, Any]) -> Any:
        try:
            return run(native)
        except InvalidInput as exc:
            return Failure.of(exc)

    answer = asyncio.run(env.run(generate))
    assert (
        answer["error"] == "invalid input: node 3 (KSampler) steps: must be at most 500 (got 600)"
    )


def test_only_previews_make_no_jobs_in_worker_comfyui(registry: ModelRegistry) -> None:
    graph = workflow("sdxl_txt2img")
    graph["9"] = {"class_type": "PreviewImage", "inputs": {"images": ["8", 0]}}
    decoded = WORKER_COMFYUI.decode_input({"workflow": graph}, models(registry))
    assert decoded.inputs == []
    assert WORKER_COMFYUI.encode(decoded, [], 0)["output"] == {
        "status": "success_no_images",
        "images": [],
    }


def test_uploads_are_asked_for_with_a_bucket(registry: ModelRegistry) -> None:
    decoded = WORKER_COMFYUI.decode_input(
        {"workflow": workflow("sdxl_txt2img")}, models(registry, uploads=True)
    )
    assert decoded.inputs[0]["upload"] is True
    answer = WORKER_COMFYUI.encode(decoded, [{"url": "https://b/x.png", "seed": 1}], 0)["output"]
    assert answer == {
        "images": [{"filename": "ComfyUI_00001_.png", "type": "s3_url", "data": "https://b/x.png"}]
    }


def test_field_names_read_back() -> None:
    for ref in (
        NodeRef("3", "KSampler", "steps"),
        NodeRef("54:73", "KSampler (Efficient)"),
        NodeRef("9", "Image Save", "images"),
    ):
        assert parse_field(ref.field) == ref
    assert parse_field("images[0].name") is None
