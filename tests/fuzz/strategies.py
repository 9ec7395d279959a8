"""Generated values for the fuzz suite: JSON-ish values with the awkward ones in (NaN, the
infinities, huge integers, lone surrogates, deep nesting), and inputs built from real field
names with values near and far from their rules."""

from __future__ import annotations

import base64
import io
from typing import Any

from hypothesis import strategies as st
from PIL import Image

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


def _png(size: tuple[int, int]) -> str:
    buf = io.BytesIO()
    Image.new("RGB", size, (90, 120, 200)).save(buf, format="PNG")
    return base64.b64encode(buf.getvalue()).decode()


SMALL_PNG = _png((16, 16))
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
    "lora": st.one_of(st.sampled_from(["ink", [{"name": "ink", "scale": 3}], []]), json_values),
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
