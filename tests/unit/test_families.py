"""The model families as objects: the registry, what each declares, how a folder and a LoRA
are recognised, and that nothing outside the families tests a family's name."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from sdworker import families
from sdworker.core.schema import GenerateInput
from sdworker.families import FAMILIES, FAMILY_FIELDS, ModelConfigs, lora_family, recognise

SRC = Path(__file__).resolve().parents[2] / "src" / "sdworker"


def index(pipeline: str, **components: str) -> dict[str, object]:
    return {"_class_name": pipeline, **{k: ["diffusers", v] for k, v in components.items()}}


def test_every_family_is_registered_once_by_name() -> None:
    assert families.names() == sorted(f.name for f in FAMILIES)
    assert families.get("flux").label == "FLUX.1"
    with pytest.raises(families.UnknownFamily, match="unknown model family 'sd9'"):
        families.get("sd9")


def test_family_fields_are_input_fields() -> None:
    assert set(GenerateInput.model_fields) >= FAMILY_FIELDS
    for family in FAMILIES:
        assert family.fields <= FAMILY_FIELDS, family.name
        assert set(family.defaults.fields()) <= set(GenerateInput.model_fields)
        for name in (*family.batch_fields, *family.call_fields):
            assert family.applies(name), (family.name, name)


@pytest.mark.parametrize(
    ("name", "field", "applies"),
    [
        ("sd1", "use_compel", True),
        ("sd1", "refiner_inference_steps", False),
        ("sdxl", "high_noise_frac", True),
        ("sd3", "max_sequence_length", True),
        ("sd3", "true_cfg_scale", False),
        ("flux", "true_cfg_scale", True),
        ("flux", "clip_skip", False),
        ("flux", "hires", False),
        ("flux-fill", "true_cfg_scale", False),
        ("flux", "prompt", True),
    ],
)
def test_which_fields_apply(name: str, field: str, applies: bool) -> None:
    assert families.get(name).applies(field) is applies


@pytest.mark.parametrize(
    ("name", "image", "mask", "mode", "offered"),
    [
        ("sd1", False, False, "txt2img", True),
        ("sdxl", True, False, "img2img", True),
        ("flux", True, True, "inpaint", True),
        ("flux-kontext", True, False, "edit", True),
        ("flux-kontext", False, False, "txt2img", True),
        ("flux-fill", True, True, "inpaint", True),
        ("flux-fill", False, False, "txt2img", False),
        ("flux-fill", True, False, "img2img", False),
    ],
)
def test_modes_and_pipelines(name: str, image: bool, mask: bool, mode: str, offered: bool) -> None:
    family = families.get(name)
    assert family.mode_for(image, mask) == mode
    assert (family.pipelines.of(family.mode_for(image, mask)) is not None) is offered


def test_each_family_loads_as_its_first_mode() -> None:
    assert families.get("sd1").pipelines.loads_as == "StableDiffusionPipeline"
    assert families.get("flux-fill").pipelines.loads_as == "FluxFillPipeline"
    assert families.get("flux-kontext").pipelines.load_mode == "txt2img"


def test_flow_match_families_take_flow_match_schedulers_only() -> None:
    flux, sd1 = families.get("flux"), families.get("sd1")
    assert flux.takes_scheduler("FlowMatchEulerDiscreteScheduler")
    assert not flux.takes_scheduler("EulerDiscreteScheduler")
    assert not sd1.takes_scheduler("FlowMatchEulerDiscreteScheduler")
    assert families.get("sd3").takes_scheduler("FlowMatchHeunDiscreteScheduler")


def test_dtypes_and_guidance() -> None:
    assert {f.gpu_dtype for f in FAMILIES if f.denoiser == "transformer"} == {"bf16"}
    assert families.get("sdxl").gpu_dtype == "fp16"
    assert families.get("flux").guidance == "distilled"
    assert families.get("sd3").guidance == "cfg"


def test_the_memory_estimate_leaves_out_what_is_dropped() -> None:
    sd3 = families.get("sd3")
    parameters = {"transformer": 100, "text_encoder_3": 50, "vae": 10}
    assert sd3.estimate_bytes(parameters, 2) == 320
    assert sd3.estimate_bytes(parameters, 2, sd3.droppable) == 220


@pytest.mark.parametrize(
    ("configs", "name"),
    [
        (
            ModelConfigs(
                index("StableDiffusionPipeline", unet="UNet2DConditionModel"),
                {"unet": {"cross_attention_dim": 768}},
            ),
            "sd1",
        ),
        (
            ModelConfigs(
                index("StableDiffusionPipeline", unet="UNet2DConditionModel"),
                {"unet": {"cross_attention_dim": 1024}},
            ),
            "sd2",
        ),
        (
            ModelConfigs(
                index("StableDiffusionXLPipeline", unet="UNet2DConditionModel"), {"unet": {}}
            ),
            "sdxl",
        ),
        (
            ModelConfigs(index("StableDiffusion3Pipeline", transformer="SD3Transformer2DModel")),
            "sd3",
        ),
        (ModelConfigs(index("FluxPipeline", transformer="FluxTransformer2DModel")), "flux"),
        (
            ModelConfigs(index("FluxKontextPipeline", transformer="FluxTransformer2DModel")),
            "flux-kontext",
        ),
        (
            ModelConfigs(
                index("FluxPipeline", transformer="FluxTransformer2DModel"),
                {"transformer": {"in_channels": 384}},
            ),
            "flux-fill",
        ),
    ],
)
def test_a_folder_is_recognised_by_its_configs(configs: ModelConfigs, name: str) -> None:
    found = recognise(configs)
    assert found is not None and found.name == name


def test_an_unknown_pipeline_is_no_family() -> None:
    assert recognise(ModelConfigs(index("KandinskyPipeline"))) is None


def test_defaults_that_come_from_the_model() -> None:
    flux = families.get("flux")
    schnell = ModelConfigs({}, {"transformer": {"guidance_embeds": False}})
    dev = ModelConfigs({}, {"transformer": {"guidance_embeds": True}})
    assert flux.model_defaults(schnell) == {
        "num_inference_steps": 4,
        "guidance_scale": 0.0,
        "max_sequence_length": 256,
    }
    assert flux.model_defaults(dev) == {}
    assert (flux.defaults.num_inference_steps, flux.defaults.guidance_scale) == (28, 3.5)
    sd3 = families.get("sd3")
    turbo = ModelConfigs({}, source="hub:stabilityai/stable-diffusion-3.5-large-turbo@main")
    medium = ModelConfigs({}, source="hub:stabilityai/stable-diffusion-3.5-medium@main")
    assert sd3.model_defaults(turbo) == {"num_inference_steps": 4, "guidance_scale": 0.0}
    assert sd3.model_defaults(medium) == {"num_inference_steps": 40, "guidance_scale": 4.5}
    assert sd3.model_defaults(ModelConfigs({}, source="folder:/models/sd3-medium")) == {}


@pytest.mark.parametrize(
    ("shapes", "family"),
    [
        # FLUX.1 in diffusers' layout, kohya's (BFL block names) and XLabs'
        ({"transformer.single_transformer_blocks.0.attn.to_q.lora_A.weight": (4, 3072)}, "flux"),
        ({"lora_unet_double_blocks_0_img_attn_qkv.lora_down.weight": (16, 3072)}, "flux"),
        ({"lora_unet_single_blocks_7_linear1.lora_down.weight": (16, 3072)}, "flux"),
        ({"double_blocks.0.processor.qkv_lora1.down.weight": (16, 3072)}, "flux"),
        ({"diffusion_model.double_blocks.3.img_attn.proj.lora_A.weight": (8, 3072)}, "flux"),
        # a diffusers FLUX.1 LoRA on the double blocks alone: its width tells it from SD 3
        ({"transformer.transformer_blocks.0.attn.to_k.lora_A.weight": (4, 3072)}, "flux"),
        ({"transformer.transformer_blocks.0.attn.to_k.lora_A.weight": (4, 1536)}, "sd3"),
        ({"lora_unet_joint_blocks_0_x_block_attn_qkv.lora_down.weight": (8, 1536)}, "sd3"),
        ({"lora_te2_text_model_encoder_layers_0_mlp_fc1.lora_down.weight": (4, 1280)}, "sdxl"),
        (
            {
                "lora_unet_down_blocks_1_attentions_0_transformer_blocks_0_attn2_to_k.lora_down.weight": (
                    4,
                    768,
                )
            },
            "sd1",
        ),
    ],
)
def test_lora_layouts_are_recognised(shapes: dict[str, tuple[int, ...]], family: str) -> None:
    assert lora_family(shapes) == family


def test_kontext_and_fill_take_flux_loras() -> None:
    assert families.get("flux-kontext").lora_key == families.get("flux-fill").lora_key == "flux"
    assert families.label("flux") == "FLUX.1" and families.label("nope") == "nope"


#: every family name, as a string a module might compare against
_NAMES = set(families.names())


def _name_tests(tree: ast.AST) -> list[int]:
    """Lines where a family name is compared with ``==``, ``!=`` or ``in``."""
    lines = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Compare):
            for operand in (node.left, *node.comparators):
                if isinstance(operand, ast.Constant) and operand.value in _NAMES:
                    lines.append(node.lineno)
    return lines


def test_nothing_outside_the_families_tests_a_family_name() -> None:
    found = {}
    for path in SRC.rglob("*.py"):
        if "families" in path.parts:
            continue
        lines = _name_tests(ast.parse(path.read_text()))
        if lines:
            found[str(path.relative_to(SRC))] = lines
    assert found == {}
