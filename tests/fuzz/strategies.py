"""Generated values for the fuzz suite: JSON-ish values with the awkward ones in (NaN, the
infinities, huge integers, lone surrogates, deep nesting), inputs built from real field
names with values near and far from their rules, and the surfaces (every route and envelope)
the common battery of test_fuzz_surfaces.py runs on: a new route or field plugs in there."""

from __future__ import annotations

import base64
import io
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from hypothesis import strategies as st
from PIL import Image
from pydantic import BaseModel

from sdworker.core.schema import INPUT_FIELDS

#: text with lone surrogates among ordinary characters
surrogate_text = st.text(
    st.one_of(st.characters(), st.characters(min_codepoint=0xD800, max_codepoint=0xDFFF)),
    max_size=20,
)
numbers = st.one_of(
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from([0, 1, 7, 8, 64, 500, 512, 2048, 2049, 2**32 - 1, 2**32, -1, 0.5, 1e309]),
)
scalars = st.one_of(st.none(), st.booleans(), numbers, st.text(max_size=30), surrogate_text)
json_values = st.recursive(
    scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=10), inner, max_size=4)
    ),
    max_leaves=12,
)


def _png(size: tuple[int, int], mode: str = "RGB", colour: tuple[int, ...] = (90, 120, 200)) -> str:
    buf = io.BytesIO()
    Image.new(mode, size, colour).save(buf, format="PNG")
    return base64.b64encode(buf.getvalue()).decode()


SMALL_PNG = _png((16, 16))
#: an OpenAI edit mask: transparent where to paint (everywhere)
CLEAR_PNG = _png((16, 16), "RGBA", (0, 0, 0, 0))
#: values a field of the native input might get: plausible ones and nonsense
field_values: dict[str, Any] = {
    "prompt": st.one_of(st.text(max_size=40), surrogate_text, json_values),
    "negative_prompt": st.one_of(st.text(max_size=20), json_values),
    "model": st.one_of(st.sampled_from(["tiny", "tiny-safe", "nope", ""]), json_values),
    "image": st.one_of(
        st.sampled_from([SMALL_PNG, "", "not base64!", "data:image/png;base64," + SMALL_PNG]),
        json_values,
    ),
    "mask_image": st.one_of(st.sampled_from([SMALL_PNG, ""]), json_values),
    "strength": st.one_of(st.floats(min_value=-1, max_value=2), numbers, json_values),
    "width": st.one_of(st.sampled_from([64, 72, 63, 0, 4096, 2048]), numbers, json_values),
    "height": st.one_of(st.sampled_from([64, 72, 63, 0, 4096, 2048]), numbers, json_values),
    "num_inference_steps": st.one_of(st.integers(-2, 600), numbers, json_values),
    "guidance_scale": st.one_of(st.floats(-1, 40), numbers, json_values),
    "num_images": st.one_of(st.integers(-1, 10), json_values),
    "num_images_per_prompt": st.one_of(st.integers(-1, 10), json_values),
    "seed": st.one_of(st.integers(-1, 2**33), numbers, json_values),
    "scheduler": st.one_of(
        st.sampled_from(["Euler a", "DPM++ 2M Karras", "DDIM", "Euler z", "eulerr"]), json_values
    ),
    "safety_checker": st.one_of(st.sampled_from([True, False, "true", "no"]), json_values),
    "output_format": st.one_of(st.sampled_from(["png", "jpeg", "webp", "gif"]), json_values),
    "output_quality": st.one_of(st.integers(-1, 101), numbers, json_values),
    "lora": st.one_of(
        st.sampled_from(
            [
                "ink",
                [{"name": "ink", "scale": 3}],
                [],
                # references: only addresses the guard refuses without a name lookup
                "http://127.0.0.1:9/lora.safetensors",
                [{"url": "http://[::1]:9/x", "sha256": "zz", "token": "t"}],
                [{"hub": "org/x", "file": "../x.safetensors"}],
                [{"hub": "org/x", "name": "ink"}],
                [{"name": "ink", "token": "t", "tokn": "t"}],
            ]
        ),
        json_values,
    ),
    "use_compel": st.one_of(st.booleans(), json_values),
    "upload": st.one_of(st.booleans(), json_values),
    "clip_skip": st.one_of(st.integers(-1, 20), json_values),
    # the RunPod SD workers' spellings and fields
    "lora_scale": st.one_of(st.floats(-1, 3), json_values),
    "refiner_inference_steps": st.one_of(st.integers(-1, 60), json_values),
    "high_noise_frac": st.one_of(st.floats(-0.5, 1.5), json_values),
    # the hires pass and the upscale-only job: objects of their own
    "hires": st.one_of(
        st.fixed_dictionaries(
            {},
            optional={
                "scale": st.one_of(st.floats(0, 5), numbers),
                "width": st.sampled_from([64, 72, 63, 0, 4096, None]),
                "height": st.sampled_from([64, 72, 63, 0, 4096, None]),
                "upscaler": st.sampled_from(["latent", "latent-bicubic", "lanczos", "bicubic"]),
                "steps": st.one_of(st.integers(-1, 20), json_values),
                "strength": st.one_of(st.floats(-0.5, 1.5), numbers),
                "scheduler": st.sampled_from(["Euler a", "eulerr", None]),
                "prompt": st.one_of(st.text(max_size=10), surrogate_text),
                "negative_prompt": st.one_of(st.text(max_size=10), st.none()),
                "hr_scale": st.floats(0, 2),
            },
        ),
        json_values,
    ),
    "upscale": st.one_of(
        st.fixed_dictionaries(
            {},
            optional={
                "scale": st.one_of(st.floats(0, 10), numbers),
                "width": st.one_of(st.integers(-1, 9000), st.none()),
                "height": st.one_of(st.integers(-1, 9000), st.none()),
                "upscaler": st.sampled_from(["lanczos", "nearest", "latent"]),
            },
        ),
        json_values,
    ),
    # the T5 families' fields (the fuzzed models are SD 1.x: refused there, by family)
    "max_sequence_length": st.one_of(st.integers(-1, 600), json_values),
    "true_cfg_scale": st.one_of(st.floats(0, 40), json_values),
    "num_outputs": st.one_of(st.integers(-1, 10), json_values),
    "init_image": st.one_of(st.sampled_from([SMALL_PNG, ""]), json_values),
    "image_url": st.one_of(st.sampled_from([SMALL_PNG, "data:,x"]), json_values),
    "mask": st.one_of(st.sampled_from([SMALL_PNG, ""]), json_values),
    "prompt_strength": st.one_of(st.floats(-1, 2), json_values),
    "nsfw": st.one_of(st.booleans(), json_values),
    # PNG text chunks (ComfyUI's prompt)
    "png_text": st.one_of(
        st.dictionaries(
            st.sampled_from(["prompt", "workflow", " x", "a" * 80]), st.text(max_size=20)
        ),
        json_values,
    ),
}
assert set(field_values) == set(INPUT_FIELDS), set(INPUT_FIELDS) ^ set(field_values)

native_inputs = st.fixed_dictionaries(
    {"prompt": field_values["prompt"]},
    optional={
        **{k: v for k, v in field_values.items() if k != "prompt"},
        "promt": st.text(max_size=5),
        "steps": st.integers(),
    },
)


# -- surfaces: every way a request reaches a job, and the battery each gets ----------------
#
# A new route or field plugs in here, and every common property (tests/fuzz/test_fuzz_surfaces.py:
# no 5xx, every refusal names its field, every job ends; values JSON cannot carry and integers
# past float range in every field; SSRF canaries in every URL; traversal in every name that
# could become a path) runs on it. Give a Surface the route, a small body it accepts, the
# body models whose fields (and inert keys) are fuzzed, and the paths of its URL and name fields.

#: values no field of any format may take; each must be refused naming its field (never a 5xx)
UNJSONABLE: tuple[Any, ...] = (float("nan"), float("inf"), float("-inf"), "x\ud800")
#: integers JSON can write but no float can hold: refused naming the field, or harmless
PAST_FLOAT: tuple[int, ...] = (10**309, 10**400, -(10**400), 2**1030)
#: every spelling of loopback a URL may use: no URL field may reach a server there
LOOPBACK_SPELLINGS: tuple[str, ...] = (
    "127.0.0.1",
    "127.1",
    "2130706433",
    "0x7f000001",
    "017700000001",
    "localhost",
    "[::1]",
    "[::ffff:127.0.0.1]",
    "[0:0:0:0:0:ffff:7f00:1]",
)
#: names that would leave their folder if they ever became a path
TRAVERSALS: tuple[str, ...] = (
    "../outside",
    "../../outside",
    "..\\outside",
    "/etc/passwd",
    "tiny/../../outside",
    "%2e%2e/outside",
    "....//outside",
    "tiny\x00",
    "~/outside",
)


@dataclass(frozen=True)
class Surface:
    """One route of the local endpoint (or a RunPod job envelope sent through ``/run``)."""

    name: str
    route: str
    #: a small body the route accepts (a 64x64 image, one step)
    body: dict[str, Any]
    #: (path in the body, the pydantic model that reads the object there); their fields and
    #: inert keys are fuzzed
    models: tuple[tuple[str, type[BaseModel]], ...] = ()
    #: paths of fields that take a URL to fetch (each gets the SSRF canaries: refused)
    urls: tuple[str, ...] = ()
    #: paths of URLs the endpoint posts to later (webhooks: the canaries are never reached)
    callbacks: tuple[str, ...] = ()
    #: paths of fields naming a model, a LoRA or a file (each gets :data:`TRAVERSALS`)
    names: tuple[str, ...] = ()
    #: the submit answer -> where its result is polled (None: the answer is the result)
    result: Callable[[dict[str, Any]], str] | None = None

    def fields(self) -> list[str]:
        """Every field path the models declare, with their inert keys."""
        return sorted({*self.numeric(), *self.inert(), *self._declared()})

    def _declared(self) -> list[str]:
        return [_join(at, name) for at, model in self.models for name in _names(model)]

    def numeric(self) -> list[str]:
        """Paths of the fields that take a number."""
        return [
            _join(at, name)
            for at, model in self.models
            for name, kinds in _kinds(model).items()
            if kinds & {"number", "integer"}
        ]

    def inert(self) -> list[str]:
        """Paths of the keys accepted without effect."""
        return [
            _join(at, name) for at, model in self.models for name in getattr(model, "inert", ())
        ]

    def with_value(self, path: str, value: Any) -> dict[str, Any]:
        """A copy of the body with ``value`` at ``path`` (``a.b``, ``a[0]``)."""
        return put(self.body, path, value)


def _join(at: str, name: str) -> str:
    return f"{at}.{name}" if at else name


def _names(model: type[BaseModel]) -> list[str]:
    return [f.alias or name for name, f in model.model_fields.items()]


def _kinds(model: type[BaseModel]) -> dict[str, set[str]]:
    """Field name -> the JSON types its schema allows."""
    props = model.model_json_schema(mode="validation").get("properties", {})
    out = {}
    for name in _names(model):
        schema = props.get(name, {})
        out[name] = {schema.get("type"), *(s.get("type") for s in schema.get("anyOf", []))} - {None}
    return out


def put(body: Any, path: str, value: Any) -> Any:
    """``body`` (copied) with ``value`` at ``path``; missing objects on the way are made."""
    head, _, rest = path.partition(".")
    name, _, index = head.partition("[")
    copy = dict(body) if isinstance(body, dict) else {}
    if index:
        items = list(copy.get(name) or [None])
        at = int(index.rstrip("]"))
        items[at] = put(items[at], rest, value) if rest else value
        copy[name] = items
    else:
        copy[name] = put(copy.get(name), rest, value) if rest else value
    return copy


def _status(answer: dict[str, Any]) -> str:
    return f"/v2/local/status/{answer['id']}"


SMALL = {"width": 64, "height": 64}
_NATIVE = {"prompt": "x", **SMALL, "num_inference_steps": 2}
_A1111 = {"prompt": "x", **SMALL, "steps": 2}


#: a LoRA the dry world's hub cache holds (tests/fuzz/dryrun.py), by hub id and file
HUB_LORA = {"hub": "org/dry-lora", "file": "lora.safetensors", "scale": 0.5}


def comfy_workflow(ckpt: str = "tiny.safetensors") -> dict[str, Any]:
    """ComfyUI's default workflow as its editor exports it, small and short for the tiny model."""

    def node(cls: str, **inputs: Any) -> dict[str, Any]:
        return {"inputs": inputs, "class_type": cls, "_meta": {"title": cls}}

    return {
        "3": node("KSampler", seed=156680208700286, steps=2, cfg=8, sampler_name="euler",
                  scheduler="normal", denoise=1, model=["4", 0], positive=["6", 0],
                  negative=["7", 0], latent_image=["5", 0]),
        "4": node("CheckpointLoaderSimple", ckpt_name=ckpt),
        "5": node("EmptyLatentImage", width=64, height=64, batch_size=1),
        "6": node("CLIPTextEncode", text="x", clip=["4", 1]),
        "7": node("CLIPTextEncode", text="text, watermark", clip=["4", 1]),
        "8": node("VAEDecode", samples=["3", 0], vae=["4", 2]),
        "9": node("SaveImage", filename_prefix="ComfyUI", images=["8", 0]),
    }  # fmt: skip


def comfy_img2img() -> dict[str, Any]:
    """The default workflow on an input image (``LoadImage`` + ``VAEEncode``)."""
    graph = comfy_workflow()
    graph["10"] = {"inputs": {"image": "in.png", "upload": "image"}, "class_type": "LoadImage"}
    graph["12"] = {"inputs": {"pixels": ["10", 0], "vae": ["4", 2]}, "class_type": "VAEEncode"}
    graph["3"]["inputs"].update(latent_image=["12", 0], denoise=0.75)
    return graph


def _comfy_models(at: str) -> tuple[tuple[str, type[BaseModel]], ...]:
    from sdworker.formats.comfyui import nodes

    return (
        (f"{at}.3.inputs", nodes.KSamplerW),
        (f"{at}.4.inputs", nodes.CheckpointLoaderSimpleW),
        (f"{at}.5.inputs", nodes.EmptyLatentImageW),
        (f"{at}.6.inputs", nodes.CLIPTextEncodeW),
        (f"{at}.9.inputs", nodes.SaveImageW),
    )


def _comfy_surfaces() -> list[Surface]:
    from sdworker.formats.comfyui import nodes
    from sdworker.formats.comfyui.api import PromptBody
    from sdworker.formats.comfyui.worker import InputImage, WorkerInput

    job = {"workflow": comfy_workflow()}
    img2img = {"workflow": comfy_img2img(), "images": [{"name": "in.png", "image": SMALL_PNG}]}
    workers = (("input", WorkerInput), *_comfy_models("input.workflow"))
    with_image = (
        ("input.images[0]", InputImage),
        ("input.workflow.10.inputs", nodes.LoadImageW),
    )
    names = ("input.workflow.4.inputs.ckpt_name",)
    return [
        Surface(
            "runpod-comfyui-envelope",
            "/v2/local/run",
            {"input": job},
            workers,
            names=names,
            result=_status,
        ),
        Surface(
            "runpod-comfyui-img2img",
            "/v2/local/run",
            {"input": img2img},
            with_image,
            urls=("input.images[0].image",),
            names=("input.workflow.10.inputs.image", "input.images[0].name"),
            result=_status,
        ),
        Surface("comfyui-runsync", "/comfyui/runsync", {"input": job}, workers, names=names),
        Surface(
            "comfyui-prompt",
            "/prompt",
            {"prompt": comfy_workflow(), "client_id": "fuzz"},
            (("", PromptBody), *_comfy_models("prompt")),
            names=("prompt.4.inputs.ckpt_name",),
            result=lambda answer: f"/history/{answer['prompt_id']}",
        ),
    ]


def surfaces() -> list[Surface]:
    """Every surface the battery runs on (imported lazily: the formats' body models)."""
    img2img = {**_A1111, "init_images": [SMALL_PNG]}
    salad_inputs = {"modelInputs": {**_NATIVE}}
    return [*_common(img2img, salad_inputs), *_families()]


def _families() -> list[Surface]:
    """The surfaces whose fields a format maps by the model's family, on a FLUX.1 and an SD 3
    model: Forge's guidance and samplers, DeepInfra's model paths and aspect ratio, OpenAI's
    family fields, Salad's family pipelines."""
    from sdworker.formats.a1111.options import Settings as A1111Options
    from sdworker.formats.a1111.request import Txt2ImgBody
    from sdworker.formats.deepinfra import DeepInfraBody
    from sdworker.formats.openai.request import GenerationBody
    from sdworker.formats.salad import CallInputs, ModelInputs

    forge = {
        **_A1111,
        "distilled_cfg_scale": 3.5,
        "sampler_name": "Euler",
        "scheduler": "Simple",
        "override_settings": {"sd_model_checkpoint": "tiny-flux"},
    }
    return [
        Surface(
            "a1111-txt2img-flux",
            "/sdapi/v1/txt2img",
            forge,
            (("", Txt2ImgBody), ("override_settings", A1111Options)),
            names=("override_settings.sd_model_checkpoint",),
        ),
        Surface(
            "runpod-a1111-envelope-flux",
            "/v2/local/run",
            {
                "input": {
                    "api": {"method": "POST", "endpoint": "/sdapi/v1/txt2img"},
                    "payload": forge,
                }
            },
            (("input.payload", Txt2ImgBody),),
            result=_status,
        ),
        Surface(
            "deepinfra-flux",
            "/v1/inference/black-forest-labs/FLUX-1-schnell",
            {**_NATIVE, "true_cfg_scale": 2, "negative_prompt": "fog"},
            (("", DeepInfraBody),),
            urls=("image", "mask_image"),
            callbacks=("webhook",),
            names=("lora",),
        ),
        Surface(
            "deepinfra-sd35-aspect-ratio",
            "/v1/inference/stabilityai/sd3.5-medium",
            {"prompt": "x", "aspect_ratio": "16:9", "num_inference_steps": 2},
            (("", DeepInfraBody),),
        ),
        Surface(
            "openai-generations-flux",
            "/v1/images/generations",
            {
                "prompt": "x",
                "model": "black-forest-labs/FLUX.1-schnell",
                "size": "64x64",
                "num_inference_steps": 2,
                "max_sequence_length": 64,
            },
            (("", GenerationBody),),
            names=("model",),
        ),
        Surface(
            "salad-sd3",
            "/api/beta/organizations/o/inference-endpoints/tiny-sd3",
            {
                "modelInputs": {**_NATIVE, "max_sequence_length": 64},
                "callInputs": {
                    "MODEL_ID": "stabilityai/stable-diffusion-3.5-medium",
                    "PIPELINE": "StableDiffusion3Pipeline",
                },
            },
            (("modelInputs", ModelInputs), ("callInputs", CallInputs)),
            urls=("modelInputs.image", "modelInputs.mask_image"),
            names=("callInputs.MODEL_ID",),
            result=lambda answer: str(answer["resultUrl"]),
        ),
    ]


def _common(img2img: dict[str, Any], salad_inputs: dict[str, Any]) -> list[Surface]:
    """The surfaces on the SD 1.x model."""
    from sdworker.core.resize import HiresInput, UpscaleInput
    from sdworker.core.schema import GenerateInput, LoraRef
    from sdworker.formats.a1111.extras import ExtrasBody
    from sdworker.formats.a1111.hires import HiresBody
    from sdworker.formats.a1111.options import Settings as A1111Options
    from sdworker.formats.a1111.request import Img2ImgBody, Txt2ImgBody
    from sdworker.formats.deepinfra import DeepInfraBody
    from sdworker.formats.huggingface import HFBody, HFParameters
    from sdworker.formats.openai.request import EditBody, GenerationBody, VariationBody
    from sdworker.formats.replicate.inputs import ReplicateInput
    from sdworker.formats.replicate.request import PredictionBody
    from sdworker.formats.salad import CallInputs, ModelInputs
    from sdworker.formats.stochastic import Params, StochasticBody

    hf_task = {"inputs": "x", "parameters": {**SMALL, "num_inference_steps": 2}}
    prediction = {"input": {"prompt": "x", **SMALL, "num_inference_steps": 2}}
    hf_models = (("", HFBody), ("parameters", HFParameters))
    prediction_models = (("", PredictionBody), ("input", ReplicateInput))
    prediction_urls = ("input.image", "input.mask")
    prediction_hooks = ("webhook", "webhook_completed")
    prediction_names = ("input.lora_weights", "input.extra_lora")
    return [
        Surface(
            "native",
            "/v2/local/run",
            {"input": _NATIVE},
            (("input", GenerateInput), ("input.hires", HiresInput)),
            urls=("input.image", "input.mask_image", "input.lora[0].url"),
            callbacks=("webhook",),
            names=("input.model", "input.lora[0].name"),
            result=_status,
        ),
        Surface(
            "native-lora-reference",
            "/v2/local/runsync",
            {"input": {**_NATIVE, "lora": [{**HUB_LORA, "token": "hf_dry"}]}},
            (("input.lora[0]", LoraRef),),
            names=("input.lora[0].hub", "input.lora[0].file"),
        ),
        Surface(
            "native-lora-volume",
            "/v2/local/runsync",
            {"input": {**_NATIVE, "lora": [{"name": "style/dry.safetensors", "scale": 0.7}]}},
            (("input.lora[0]", LoraRef),),
            names=("input.lora[0].name",),
        ),
        Surface(
            "native-upscale",
            "/v2/local/runsync",
            {"input": {"image": SMALL_PNG, "upscale": {"scale": 1}}},
            (("input.upscale", UpscaleInput),),
            urls=("input.image",),
        ),
        Surface(
            "runpod-a1111-envelope",
            "/v2/local/run",
            {
                "input": {
                    "api": {"method": "POST", "endpoint": "/sdapi/v1/txt2img"},
                    "payload": _A1111,
                }
            },
            (("input.payload", Txt2ImgBody),),
            result=_status,
        ),
        Surface(
            "runpod-salad-envelope",
            "/v2/local/run",
            {"input": salad_inputs},
            (("input.modelInputs", ModelInputs), ("input.callInputs", CallInputs)),
            urls=("input.modelInputs.image",),
            names=("input.callInputs.MODEL_ID",),
            result=_status,
        ),
        Surface(
            "a1111-txt2img",
            "/sdapi/v1/txt2img",
            _A1111,
            (("", Txt2ImgBody), ("override_settings", A1111Options)),
            names=("override_settings.sd_model_checkpoint",),
        ),
        Surface(
            "a1111-hires",
            "/sdapi/v1/txt2img",
            {**_A1111, "enable_hr": True, "hr_scale": 1},
            (("", HiresBody),),
        ),
        Surface(
            "a1111-img2img",
            "/sdapi/v1/img2img",
            img2img,
            (("", Img2ImgBody),),
            urls=("init_images[0]", "mask"),
        ),
        Surface("a1111-options", "/sdapi/v1/options", {}, (("", A1111Options),)),
        Surface(
            "a1111-extras",
            "/sdapi/v1/extra-single-image",
            {"image": SMALL_PNG, "upscaling_resize": 1},
            (("", ExtrasBody),),
            urls=("image",),
        ),
        Surface(
            "salad",
            "/api/beta/organizations/o/inference-endpoints/tiny",
            salad_inputs,
            (("modelInputs", ModelInputs), ("callInputs", CallInputs)),
            urls=("modelInputs.image", "modelInputs.mask_image"),
            names=("callInputs.MODEL_ID",),
            result=lambda answer: str(answer["resultUrl"]),
        ),
        Surface(
            "stochastic",
            "/v1/modelApi/submit/tiny",
            {
                "prompt": "x",
                "params": {"img_width": 64, "img_height": 64, "num_inference_steps": 2},
            },
            (("", StochasticBody), ("params", Params)),
            result=lambda answer: str(answer["data"]["responseUrl"]),
        ),
        Surface(
            "deepinfra",
            "/v1/inference/tiny",
            _NATIVE,
            (("", DeepInfraBody),),
            urls=("image", "mask_image"),
            callbacks=("webhook",),
            names=("lora",),
        ),
        Surface(
            "openai-generations",
            "/v1/images/generations",
            {"prompt": "x", "size": "64x64", "num_inference_steps": 2},
            (("", GenerationBody),),
            names=("model",),
        ),
        Surface(
            "openai-edits",
            "/v1/images/edits",
            {"prompt": "x", "image": SMALL_PNG, "mask": CLEAR_PNG, "size": "64x64"},
            (("", EditBody),),
            urls=("image", "mask"),
        ),
        Surface(
            "runpod-huggingface-envelope",
            "/v2/local/run",
            {"input": hf_task},
            tuple((_join("input", at), model) for at, model in hf_models),
            result=_status,
        ),
        Surface(
            "runpod-replicate-envelope",
            "/v2/local/run",
            {"input": prediction},
            tuple((_join("input", at), model) for at, model in prediction_models),
            urls=tuple(f"input.{path}" for path in prediction_urls),
            names=tuple(f"input.{path}" for path in prediction_names),
            result=_status,
        ),
        Surface("huggingface", "/hf/models/tiny", hf_task, hf_models),
        Surface("huggingface-root", "/", hf_task, hf_models),
        Surface(
            "replicate-model",
            "/v1/models/sdworker/tiny/predictions",
            prediction,
            prediction_models,
            urls=prediction_urls,
            callbacks=prediction_hooks,
            names=prediction_names,
            result=lambda answer: str(answer["urls"]["get"]),
        ),
        Surface(
            "replicate-version",
            "/v1/predictions",
            {**prediction, "version": "tiny"},
            prediction_models,
            callbacks=prediction_hooks,
            names=("version",),
            result=lambda answer: str(answer["urls"]["get"]),
        ),
        Surface(
            "cog",
            "/predictions",
            prediction,
            prediction_models,
            urls=prediction_urls,
            callbacks=("webhook",),
            names=prediction_names,
        ),
        Surface(
            "openai-variations",
            "/v1/images/variations",
            {"image": SMALL_PNG, "size": "64x64", "num_inference_steps": 2},
            (("", VariationBody),),
            urls=("image",),
        ),
        *_comfy_surfaces(),
    ]
