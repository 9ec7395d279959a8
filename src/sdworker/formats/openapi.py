"""OpenAPI request bodies of the request formats' routes, for ``/docs``.

The routes read their bodies themselves (a ``Request``, JSON or form), so FastAPI cannot infer
a schema; each route passes one of these as ``openapi_extra``. Documentation only: nothing
here validates (the routes' auth dependencies declare their own security schemes).
"""

from __future__ import annotations

from typing import Any

from sdworker.core.settings import MAX_SIDE, MIN_SIDE, SIDE_STEP

_SIDE = {"type": "integer", "minimum": MIN_SIDE, "maximum": MAX_SIDE, "multipleOf": SIDE_STEP}
_IMAGE = {"type": "string", "description": "base64, a data: URL, or an http(s) URL"}


def _json_body(schema: dict[str, Any], example: dict[str, Any]) -> dict[str, Any]:
    return {
        "required": True,
        "content": {"application/json": {"schema": schema, "example": example}},
    }


def _object(properties: dict[str, Any], required: tuple[str, ...] = ()) -> dict[str, Any]:
    schema: dict[str, Any] = {"type": "object", "properties": properties}
    if required:
        schema["required"] = list(required)
    return schema


#: the native fields of some model families only (refused, naming the family, elsewhere)
FAMILY_FIELDS: dict[str, Any] = {
    "use_compel": {"type": "boolean", "description": "SD 1.x, 2.x, XL"},
    "clip_skip": {"type": "integer", "minimum": 1, "maximum": 12, "description": "SD, SD 3.x"},
    "max_sequence_length": {
        "type": "integer",
        "minimum": 1,
        "maximum": 512,
        "description": "SD 3.x, FLUX.1: the prompt tokens T5 reads",
    },
    "true_cfg_scale": {
        "type": "number",
        "minimum": 1,
        "maximum": 30,
        "description": "FLUX.1: true CFG, which a negative prompt needs",
    },
}


_A1111_COMMON: dict[str, Any] = {
    "prompt": {"type": "string"},
    "negative_prompt": {"type": "string"},
    "seed": {"type": "integer", "description": "-1 = random", "default": -1},
    "sampler_name": {"type": "string", "default": "Euler", "example": "DPM++ 2M"},
    "scheduler": {"type": "string", "description": "schedule type", "example": "Karras"},
    "steps": {"type": "integer", "default": 50},
    "cfg_scale": {
        "type": "number",
        "default": 7.0,
        "description": "CFG; on FLUX.1 true CFG (1: off), as in Forge",
    },
    "distilled_cfg_scale": {
        "type": "number",
        "description": "FLUX.1's guidance, as in Forge (default: the model's)",
    },
    "width": {**_SIDE, "default": 512},
    "height": {**_SIDE, "default": 512},
    "batch_size": {"type": "integer", "default": 1},
    "n_iter": {"type": "integer", "default": 1},
    "send_images": {"type": "boolean", "default": True},
    "override_settings": _object(
        {
            "sd_model_checkpoint": {"type": "string", "description": "a baked model"},
            "CLIP_stop_at_last_layers": {"type": "integer"},
            "samples_format": {"type": "string", "enum": ["png", "jpg", "webp"]},
        }
    ),
}
_A1111_IMG2IMG: dict[str, Any] = {
    **_A1111_COMMON,
    "init_images": {"type": "array", "items": _IMAGE, "minItems": 1},
    "mask": {**_IMAGE, "description": "white = repaint (inpainting)"},
    "denoising_strength": {"type": "number", "default": 0.75},
}

_HR_UPSCALERS = [
    "Latent", "Latent (antialiased)", "Latent (bicubic)", "Latent (bicubic antialiased)",
    "Latent (nearest)", "Latent (nearest-exact)", "None", "Lanczos", "Nearest",
]  # fmt: skip
_A1111_TXT2IMG: dict[str, Any] = {
    **_A1111_COMMON,
    "enable_hr": {"type": "boolean", "default": False, "description": "the hires fix"},
    "hr_scale": {"type": "number", "default": 2.0, "minimum": 1, "maximum": 4},
    "hr_resize_x": {"type": "integer", "default": 0, "description": "0 = from hr_scale"},
    "hr_resize_y": {"type": "integer", "default": 0, "description": "0 = from hr_scale"},
    "hr_upscaler": {"type": "string", "enum": _HR_UPSCALERS, "default": "Latent"},
    "hr_second_pass_steps": {"type": "integer", "default": 0, "description": "0 = steps"},
    "denoising_strength": {"type": "number", "default": 0.7, "description": "hires pass"},
    "hr_sampler_name": {"type": "string", "description": "empty = sampler_name"},
    "hr_scheduler": {"type": "string", "description": "empty = scheduler"},
    "hr_prompt": {"type": "string", "description": "empty = prompt"},
    "hr_negative_prompt": {"type": "string", "description": "empty = negative_prompt"},
}

A1111_TXT2IMG = {
    "requestBody": _json_body(
        _object(_A1111_TXT2IMG),
        {"prompt": "a lighthouse at dusk", "steps": 20, "sampler_name": "Euler a", "seed": -1},
    ),
}
A1111_IMG2IMG = {
    "requestBody": _json_body(
        _object(_A1111_IMG2IMG, ("init_images",)),
        {"prompt": "the same lighthouse, in winter", "init_images": ["<base64 PNG>"]},
    ),
}
A1111_OPTIONS = {
    "requestBody": _json_body(
        {
            "type": "object",
            "additionalProperties": True,
            "description": "any option A1111 knows (GET /sdapi/v1/options lists them)",
        },
        {"sd_model_checkpoint": "tiny", "live_previews_enable": False},
    ),
}
A1111_PNG_INFO = {
    "requestBody": _json_body(
        _object({"image": {"type": "string", "description": "base64 or a data: URL"}}, ("image",)),
        {"image": "<base64 PNG>"},
    ),
}
A1111_EXTRAS = {
    "requestBody": _json_body(
        _object(
            {
                "image": {"type": "string", "description": "base64 or a data: URL"},
                "resize_mode": {"type": "integer", "enum": [0, 1], "default": 0},
                "upscaling_resize": {"type": "number", "default": 2, "minimum": 1, "maximum": 4},
                "upscaling_resize_w": {**_SIDE, "default": 512},
                "upscaling_resize_h": {**_SIDE, "default": 512},
                "upscaler_1": {"type": "string", "enum": ["None", "Lanczos", "Nearest"]},
            },
            ("image",),
        ),
        {"image": "<base64 PNG>", "upscaling_resize": 2, "upscaler_1": "Lanczos"},
    ),
}

SALAD_TASK = {
    "requestBody": _json_body(
        _object(
            {
                "modelInputs": _object(
                    {
                        "prompt": {"type": "string"},
                        "negative_prompt": {"type": "string"},
                        "num_inference_steps": {"type": "integer"},
                        "guidance_scale": {"type": "number"},
                        "width": _SIDE,
                        "height": _SIDE,
                        "seed": {"type": "integer"},
                        "num_images_per_prompt": {"type": "integer"},
                        "image": _IMAGE,
                        "init_image": _IMAGE,
                        "mask_image": _IMAGE,
                        "strength": {"type": "number"},
                        "clip_skip": FAMILY_FIELDS["clip_skip"],
                        "max_sequence_length": FAMILY_FIELDS["max_sequence_length"],
                        "true_cfg_scale": FAMILY_FIELDS["true_cfg_scale"],
                    },
                    ("prompt",),
                ),
                "callInputs": _object(
                    {
                        "MODEL_ID": {
                            "type": "string",
                            "description": "a baked model or its hub id",
                        },
                        "PIPELINE": {
                            "type": "string",
                            "example": "StableDiffusionPipeline",
                            "description": "one of the model family's diffusers classes",
                        },
                        "SCHEDULER": {"type": "string", "example": "DPMSolverMultistepScheduler"},
                        "safety_checker": {"type": "boolean"},
                    }
                ),
            },
            ("modelInputs",),
        ),
        {"modelInputs": {"prompt": "a lighthouse", "num_inference_steps": 20, "seed": 1}},
    ),
}

STOCHASTIC_SUBMIT = {
    "requestBody": _json_body(
        _object(
            {
                "prompt": {"type": "string"},
                "params": _object(
                    {
                        "img_width": _SIDE,
                        "img_height": _SIDE,
                        "num_inference_steps": {"type": "integer"},
                        "guidance_scale": {"type": "number"},
                        "seed": {"type": "integer"},
                        "negative_prompt": {"type": "string"},
                        "num_images": {"type": "integer"},
                        "scheduler": {"type": "string"},
                    }
                ),
            },
            ("prompt", "params"),
        ),
        {"prompt": "a lighthouse", "params": {"img_width": 512, "img_height": 512, "seed": 1}},
    ),
}

_DEEPINFRA_FIELDS: dict[str, Any] = {
    "prompt": {"type": "string"},
    "negative_prompt": {"type": "string"},
    "image": _IMAGE,
    "mask_image": _IMAGE,
    "num_images": {"type": "integer", "minimum": 1, "maximum": 4},
    "num_inference_steps": {"type": "integer", "minimum": 1, "maximum": 512},
    "guidance_scale": {"type": "number", "minimum": 0, "maximum": 20},
    "strength": {"type": "number", "minimum": 0, "maximum": 1},
    "width": _SIDE,
    "height": _SIDE,
    "seed": {"type": "integer", "minimum": 0, "maximum": 2**32 - 1},
    "scheduler": {"type": "string"},
    "aspect_ratio": {
        "type": "string",
        "example": "16:9",
        "description": "SD 3.5's: in place of width and height",
    },
    **FAMILY_FIELDS,
    "lora": {"type": "string", "description": "a baked or volume LoRA's name"},
    "webhook": {"type": "string", "description": "answer at once; POST the result here"},
}
#: in a form, images may be files (read as base64)
_DEEPINFRA_FORM: dict[str, Any] = {
    **_DEEPINFRA_FIELDS,
    "image": {"type": "string", "format": "binary"},
    "mask_image": {"type": "string", "format": "binary"},
}
DEEPINFRA_INFERENCE = {
    "requestBody": {
        "required": True,
        "content": {
            "application/json": {
                "schema": _object(_DEEPINFRA_FIELDS, ("prompt",)),
                "example": {"prompt": "a lighthouse", "num_images": 1, "seed": 1},
            },
            "multipart/form-data": {"schema": _object(_DEEPINFRA_FORM, ("prompt",))},
        },
    },
}
