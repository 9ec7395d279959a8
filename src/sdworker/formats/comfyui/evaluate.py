"""What each node makes of its inputs: one function per class, from the descriptions on its
sockets and its widget values to the descriptions on its outputs (:mod:`.values`).

A node sdworker cannot run as asked raises :class:`~sdworker.core.errors.InvalidInput`
naming its input, and its outputs are not read further (what depends on it is not judged
twice). The functions hold ComfyUI's meaning: ``denoise`` runs the last ``steps`` of a
longer schedule, ``KSamplerAdvanced`` starts part way at ``start_at_step``, a LoRA loader
with both strengths 0 changes nothing, a 517-wide empty latent is 512 wide.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from typing import Any

from sdworker.core.aliases import unknown_model_message
from sdworker.core.errors import InvalidInput, ModelNotFound
from sdworker.core.schema import GenerateInput
from sdworker.families import get as family_of
from sdworker.formats.base import Models
from sdworker.formats.comfyui import components
from sdworker.formats.comfyui import values as v
from sdworker.formats.comfyui.errors import NodeRef
from sdworker.formats.modelref import strip_ref

#: ComfyUI's ``ModelSamplingSD3`` and ``ModelSamplingFlux`` defaults: the released models'
#: own shifts, which the baked model's scheduler config already holds
SD3_SHIFT = 3.0
FLUX_SHIFTS = {"max_shift": 1.15, "base_shift": 0.5}
#: an image name may carry the folder it is in (``photo.png [input]``)
_INPUT_SUFFIX = " [input]"


def _native_max(name: str) -> int:
    """The native field's upper bound (its ``le``), so messages here agree with it."""
    for rule in GenerateInput.model_fields[name].metadata:
        bound = getattr(rule, "le", None)
        if bound is not None:
            return int(bound)
    raise LookupError(name)


NATIVE_MAX_STEPS = _native_max("num_inference_steps")


@dataclass(frozen=True)
class Context:
    """What nodes are read against: the deployment's models and the request's images."""

    models: Models
    #: input image name -> the image (base64, perhaps with a ``data:`` prefix)
    images: Mapping[str, str]

    def checkpoint(self, at: NodeRef, name: str) -> v.Checkpoint:
        """The baked model a loader names (by its name, an alias or a file name)."""
        try:
            model = self.models.resolve(name)
        except ModelNotFound:
            baked = [m.name for m in self.models.manifests or []]
            raise InvalidInput(
                [at.problem(unknown_model_message(name, baked, named=False), name)]
            ) from None
        manifest = self.models.manifest(model)
        family = family_of(manifest.family) if manifest is not None else None
        return v.Checkpoint(at, model, family)

    def image(self, at: NodeRef, name: str) -> v.LoadedImage:
        """The input image a ``LoadImage`` names."""
        key = name.removesuffix(_INPUT_SUFFIX)
        data = self.images.get(key)
        if data is None:
            given = ", ".join(repr(n) for n in list(self.images)[:10]) or "none"
            rule = f"is not one of the request's input images (given: {given})"
            raise InvalidInput([at.problem(rule, name)])
        return v.LoadedImage(key, at, data)


Inputs = Mapping[str, Any]
Evaluator = Callable[[Context, NodeRef, Any, Inputs], tuple[Any, ...]]


def _fail(at: NodeRef, rule: str, value: Any = None, *, has_value: bool = True) -> InvalidInput:
    return InvalidInput([at.problem(rule, value, has_value=has_value)])


# -- loaders ---------------------------------------------------------------------------------


def checkpoint_loader(ctx: Context, ref: NodeRef, w: Any, inp: Inputs) -> tuple[Any, ...]:
    ckpt = ctx.checkpoint(ref.at("ckpt_name"), w.ckpt_name)
    return v.Model(ckpt), v.Clip(ref.at("ckpt_name"), ckpt), v.Vae(ref.at("ckpt_name"), ckpt)


def unet_loader(ctx: Context, ref: NodeRef, w: Any, inp: Inputs) -> tuple[Any, ...]:
    # weight_dtype (fp8...) is how ComfyUI stores the weights; the model runs in its own dtype
    return (v.Model(ctx.checkpoint(ref.at("unet_name"), w.unet_name)),)


def dual_clip_loader(ctx: Context, ref: NodeRef, w: Any, inp: Inputs) -> tuple[Any, ...]:
    files = ((ref.at("clip_name1"), w.clip_name1), (ref.at("clip_name2"), w.clip_name2))
    return (v.Clip(ref, files=files),)


def clip_loader(ctx: Context, ref: NodeRef, w: Any, inp: Inputs) -> tuple[Any, ...]:
    return (v.Clip(ref, files=((ref.at("clip_name"), w.clip_name),)),)


def vae_loader(ctx: Context, ref: NodeRef, w: Any, inp: Inputs) -> tuple[Any, ...]:
    problem = components.vae_problem(w.vae_name)
    if problem is not None:
        raise _fail(ref.at("vae_name"), problem, w.vae_name)
    return (v.Vae(ref.at("vae_name")),)


def _lora(ref: NodeRef, w: Any, clip_strength: float) -> v.LoraUse | None:
    """The LoRA a loader applies (None: both strengths 0, which changes nothing)."""
    if w.strength_model == 0 and clip_strength == 0:
        return None
    if w.strength_model == 0:
        rule = (
            "is 0 while strength_clip is not: a LoRA on the text encoder alone is not "
            "supported (sdworker applies a LoRA with one scale to every part it adapts)"
        )
        raise _fail(ref.at("strength_model"), rule, 0.0)
    return v.LoraUse(ref.at("lora_name"), strip_ref(w.lora_name)[0], w.strength_model)


def lora_loader(ctx: Context, ref: NodeRef, w: Any, inp: Inputs) -> tuple[Any, ...]:
    model, clip = inp["model"], inp["clip"]
    use = _lora(ref, w, w.strength_clip)
    if use is None:
        return model, clip
    return replace(model, loras=(*model.loras, use)), replace(clip, loras=(*clip.loras, use))


def lora_model_only(ctx: Context, ref: NodeRef, w: Any, inp: Inputs) -> tuple[Any, ...]:
    model = inp["model"]
    use = _lora(ref, w, 0.0)
    return (model if use is None else replace(model, loras=(*model.loras, use)),)


def _flow_shift(ref: NodeRef, model: v.Model, given: Mapping[str, tuple[float, float]]) -> None:
    """A shift node on a flow-matching model at its default: the model's own shift."""
    family = model.checkpoint.family
    if family is not None and not any(s.startswith("FlowMatch") for s in family.schedulers):
        rule = (
            f"applies to flow-matching models; model {model.checkpoint.model!r} is {family.label}"
        )
        raise _fail(ref, rule, has_value=False)
    wrong = [
        ref.at(name).problem(
            f"must be {default:g}, ComfyUI's default: sdworker runs the shift the model was "
            "baked with",
            value,
        )
        for name, (value, default) in given.items()
        if not math.isclose(value, default)
    ]
    if wrong:
        raise InvalidInput(wrong)


def model_sampling_sd3(ctx: Context, ref: NodeRef, w: Any, inp: Inputs) -> tuple[Any, ...]:
    _flow_shift(ref, inp["model"], {"shift": (w.shift, SD3_SHIFT)})
    return (inp["model"],)


def model_sampling_flux(ctx: Context, ref: NodeRef, w: Any, inp: Inputs) -> tuple[Any, ...]:
    # width and height only set the shift's image size: the pipeline reads the real one
    given = {name: (getattr(w, name), default) for name, default in FLUX_SHIFTS.items()}
    _flow_shift(ref, inp["model"], given)
    return (inp["model"],)


# -- conditioning ----------------------------------------------------------------------------


def clip_text_encode(ctx: Context, ref: NodeRef, w: Any, inp: Inputs) -> tuple[Any, ...]:
    return (v.Conditioning(w.text, ref.at("text"), inp["clip"]),)


def flux_guidance(ctx: Context, ref: NodeRef, w: Any, inp: Inputs) -> tuple[Any, ...]:
    return (replace(inp["conditioning"], guidance=w.guidance, guidance_at=ref.at("guidance")),)


def zero_out(ctx: Context, ref: NodeRef, w: Any, inp: Inputs) -> tuple[Any, ...]:
    return (replace(inp["conditioning"], zero=True),)


# -- latents and images ----------------------------------------------------------------------


def empty_latent(ctx: Context, ref: NodeRef, w: Any, inp: Inputs) -> tuple[Any, ...]:
    # the latent is width // 8 wide: the image is that times 8
    width, height = w.width // 8 * 8, w.height // 8 * 8
    return (v.EmptyLatent(width, height, w.batch_size, ref.at("batch_size"), ref),)


def _pixels(at: NodeRef, value: Any) -> v.PixelImage:
    if isinstance(value, v.Decoded):
        rule = (
            f"reads an image sampled by node {value.plan.at.node_id}: sdworker runs one "
            "sampler per image, so a generated image cannot be processed further"
        )
        raise _fail(at, rule, has_value=False)
    pixels: v.PixelImage = value
    return pixels


def vae_encode(ctx: Context, ref: NodeRef, w: Any, inp: Inputs) -> tuple[Any, ...]:
    return (v.ImageLatent(_pixels(ref.at("pixels"), inp["pixels"]), inp["vae"], ref),)


def vae_encode_inpaint(ctx: Context, ref: NodeRef, w: Any, inp: Inputs) -> tuple[Any, ...]:
    image = _pixels(ref.at("pixels"), inp["pixels"])
    return (v.ImageLatent(image, inp["vae"], ref, inp["mask"], w.grow_mask_by),)


def set_noise_mask(ctx: Context, ref: NodeRef, w: Any, inp: Inputs) -> tuple[Any, ...]:
    latent = _unsampled(ref.at("samples"), inp["samples"])
    if not isinstance(latent, v.ImageLatent):
        raise _fail(ref.at("samples"), "must be an encoded image to inpaint", has_value=False)
    return (replace(latent, mask=inp["mask"]),)


def _unsampled(at: NodeRef, value: Any) -> v.EmptyLatent | v.ImageLatent:
    if isinstance(value, v.SamplePlan):
        rule = (
            f"is the output of sampler node {value.at.node_id}: sdworker runs one sampler "
            "per image (a second pass over a sampled latent is not supported)"
        )
        raise _fail(at, rule, has_value=False)
    latent: v.EmptyLatent | v.ImageLatent = value
    return latent


def _scaled(width: int, height: int, size: tuple[int, int]) -> tuple[int, int]:
    """``LatentUpscale``'s size: 0 keeps the aspect from the other side (both 0: unchanged),
    each at least 64, a multiple of 8."""
    if width == 0 and height == 0:
        return size
    if width == 0:
        width = max(1, round(size[0] * height / size[1]))
    elif height == 0:
        height = max(1, round(size[1] * width / size[0]))
    return max(64, width) // 8 * 8, max(64, height) // 8 * 8


#: LatentUpscale's methods on pixels (its bislerp has no pixel counterpart: bicubic is the closest)
_PIXEL_METHODS = {"bislerp": "bicubic"}


def latent_upscale(ctx: Context, ref: NodeRef, w: Any, inp: Inputs) -> tuple[Any, ...]:
    latent = _unsampled(ref.at("samples"), inp["samples"])
    if isinstance(latent, v.EmptyLatent):
        width, height = _scaled(w.width, w.height, (latent.width, latent.height))
        return (replace(latent, width=width, height=height, size_at=ref),)
    method = _PIXEL_METHODS.get(w.upscale_method, w.upscale_method)
    image = v.ScaledImage(latent.image, w.width, w.height, method, w.crop, ref)
    return (replace(latent, image=image),)


def image_scale(ctx: Context, ref: NodeRef, w: Any, inp: Inputs) -> tuple[Any, ...]:
    image = _pixels(ref.at("image"), inp["image"])
    return (v.ScaledImage(image, w.width, w.height, w.upscale_method, w.crop, ref),)


def load_image(ctx: Context, ref: NodeRef, w: Any, inp: Inputs) -> tuple[Any, ...]:
    image = ctx.image(ref.at("image"), w.image)
    return image, v.Mask(image, "alpha", ref)


def load_image_mask(ctx: Context, ref: NodeRef, w: Any, inp: Inputs) -> tuple[Any, ...]:
    return (v.Mask(ctx.image(ref.at("image"), w.image), w.channel, ref),)


def vae_decode(ctx: Context, ref: NodeRef, w: Any, inp: Inputs) -> tuple[Any, ...]:
    samples = inp["samples"]
    if not isinstance(samples, v.SamplePlan):
        raise _fail(ref.at("samples"), "must come from a sampler", has_value=False)
    return (v.Decoded(samples, inp["vae"], ref),)


# -- sampling --------------------------------------------------------------------------------


def _schedule(
    steps: int, steps_at: NodeRef, denoise: float, denoise_at: NodeRef, latent: Any
) -> tuple[v.Said, v.Said | None]:
    """The native schedule for ComfyUI's ``steps`` and ``denoise``: below 1, ComfyUI builds
    ``int(steps / denoise)`` steps and runs the last ``steps`` of them, which is img2img
    with that many steps and ``strength = steps / int(steps / denoise)``."""
    image = isinstance(latent, v.ImageLatent)
    if denoise >= 0.9999:
        return v.Said(steps, steps_at), v.Said(1.0, denoise_at) if image else None
    if denoise <= 0:
        raise _fail(denoise_at, "is 0: no step would run", denoise)
    if not image:
        rule = "below 1 needs an image to denoise (VAEEncode): an empty latent is pure noise"
        raise _fail(denoise_at, rule, denoise)
    total = int(steps / denoise)
    if total > NATIVE_MAX_STEPS:
        rule = (
            f"makes a {total}-step schedule of which steps {steps} run; at most "
            f"{NATIVE_MAX_STEPS} here (raise denoise or lower steps)"
        )
        raise _fail(denoise_at, rule, denoise)
    return v.Said(total, steps_at), v.Said(fraction(steps, total), denoise_at)


def fraction(run: int, total: int) -> float:
    """``run / total`` as a strength img2img runs exactly ``run`` of ``total`` steps with
    (``int(total * strength)``: a float a hair low would lose a step)."""
    strength = run / total
    while int(total * strength) < run:
        strength = math.nextafter(strength, 2.0)
    return min(strength, 1.0)


def _plan(ref: NodeRef, inp: Inputs, **parts: Any) -> v.SamplePlan:
    latent = _unsampled(ref.at("latent_image"), inp["latent_image"])
    return v.SamplePlan(at=ref, latent=latent, **parts)


def _ksampler_plan(
    ref: NodeRef, w: Any, inp: Inputs, seed: str, schedule: tuple[v.Said, v.Said | None]
) -> tuple[Any, ...]:
    """A ``KSampler``'s or ``KSamplerAdvanced``'s plan (their seeds are named apart)."""
    steps, strength = schedule
    plan = _plan(
        ref,
        inp,
        model=inp["model"],
        positive=inp["positive"],
        negative=inp["negative"],
        seed=v.Said(getattr(w, seed), ref.at(seed)),
        sampler=v.Said(w.sampler_name, ref.at("sampler_name")),
        scheduler=v.Said(w.scheduler, ref.at("scheduler")),
        steps=steps,
        strength=strength,
        cfg=v.Said(w.cfg, ref.at("cfg")),
    )
    return (plan,)


def ksampler(ctx: Context, ref: NodeRef, w: Any, inp: Inputs) -> tuple[Any, ...]:
    latent = _unsampled(ref.at("latent_image"), inp["latent_image"])
    schedule = _schedule(w.steps, ref.at("steps"), w.denoise, ref.at("denoise"), latent)
    return _ksampler_plan(ref, w, inp, "seed", schedule)


def _advanced_schedule(ref: NodeRef, w: Any, latent: Any) -> tuple[v.Said, v.Said | None]:
    """``KSamplerAdvanced``'s steps: ``start_at_step`` s of ``steps`` N on an image is img2img
    of N steps with strength (N - s) / N; a stage that ends early or hands its noise on is a
    part of a chain of samplers, which sdworker does not run."""
    if w.add_noise == "disable":
        rule = "disable means a latent that already carries noise (a second stage); only enable"
        raise _fail(ref.at("add_noise"), rule, w.add_noise)
    if w.end_at_step < w.steps:
        if w.return_with_leftover_noise == "enable":
            rule = "enable hands a noisy latent to a next sampler; sdworker runs one per image"
            raise _fail(ref.at("return_with_leftover_noise"), rule, "enable")
        rule = f"stops the {w.steps}-step schedule early; only end_at_step >= steps runs here"
        raise _fail(ref.at("end_at_step"), rule, w.end_at_step)
    start = w.start_at_step
    if start >= w.steps:
        raise _fail(ref.at("start_at_step"), f"is not below steps ({w.steps}): no step runs", start)
    image = isinstance(latent, v.ImageLatent)
    if start and not image:
        rule = "above 0 needs an image to denoise (VAEEncode): an empty latent is pure noise"
        raise _fail(ref.at("start_at_step"), rule, start)
    steps = v.Said(w.steps, ref.at("steps"))
    if not image:
        return steps, None
    return steps, v.Said(fraction(w.steps - start, w.steps), ref.at("start_at_step"))


def ksampler_advanced(ctx: Context, ref: NodeRef, w: Any, inp: Inputs) -> tuple[Any, ...]:
    latent = _unsampled(ref.at("latent_image"), inp["latent_image"])
    return _ksampler_plan(ref, w, inp, "noise_seed", _advanced_schedule(ref, w, latent))


def sampler_custom_advanced(ctx: Context, ref: NodeRef, w: Any, inp: Inputs) -> tuple[Any, ...]:
    noise: v.Noise = inp["noise"]
    guider: v.Guider = inp["guider"]
    sigmas: v.Sigmas = inp["sigmas"]
    sampler: v.SamplerName = inp["sampler"]
    latent = _unsampled(ref.at("latent_image"), inp["latent_image"])
    if sigmas.model.checkpoint.model != guider.model.checkpoint.model:
        rule = (
            f"schedules model {sigmas.model.checkpoint.model!r} while the guider runs "
            f"{guider.model.checkpoint.model!r}"
        )
        raise _fail(ref.at("sigmas"), rule, has_value=False)
    steps, strength = _schedule(
        sigmas.steps, sigmas.at.at("steps"), sigmas.denoise, sigmas.at.at("denoise"), latent
    )
    plan = _plan(
        ref,
        inp,
        model=guider.model,
        positive=guider.positive,
        negative=guider.negative,
        seed=v.Said(noise.seed, noise.at),
        sampler=v.Said(sampler.name, sampler.at),
        scheduler=v.Said(sigmas.scheduler, sigmas.at.at("scheduler")),
        steps=steps,
        strength=strength,
        cfg=None if guider.cfg is None else v.Said(guider.cfg, guider.at.at("cfg")),
    )
    # ``denoised_output`` is the last step's prediction: the same image once it has finished
    return plan, plan


def random_noise(ctx: Context, ref: NodeRef, w: Any, inp: Inputs) -> tuple[Any, ...]:
    return (v.Noise(w.noise_seed, ref.at("noise_seed")),)


def basic_guider(ctx: Context, ref: NodeRef, w: Any, inp: Inputs) -> tuple[Any, ...]:
    return (v.Guider(inp["model"], inp["conditioning"], ref),)


def cfg_guider(ctx: Context, ref: NodeRef, w: Any, inp: Inputs) -> tuple[Any, ...]:
    return (v.Guider(inp["model"], inp["positive"], ref, inp["negative"], w.cfg),)


def basic_scheduler(ctx: Context, ref: NodeRef, w: Any, inp: Inputs) -> tuple[Any, ...]:
    return (v.Sigmas(inp["model"], w.scheduler, w.steps, w.denoise, ref),)


def ksampler_select(ctx: Context, ref: NodeRef, w: Any, inp: Inputs) -> tuple[Any, ...]:
    return (v.SamplerName(w.sampler_name, ref.at("sampler_name")),)


def output(ctx: Context, ref: NodeRef, w: Any, inp: Inputs) -> tuple[Any, ...]:
    return ()


#: every node class's function
EVALUATORS: dict[str, Evaluator] = {
    "CheckpointLoaderSimple": checkpoint_loader,
    "UNETLoader": unet_loader,
    "DualCLIPLoader": dual_clip_loader,
    "CLIPLoader": clip_loader,
    "VAELoader": vae_loader,
    "LoraLoader": lora_loader,
    "LoraLoaderModelOnly": lora_model_only,
    "CLIPTextEncode": clip_text_encode,
    "FluxGuidance": flux_guidance,
    "ConditioningZeroOut": zero_out,
    "EmptyLatentImage": empty_latent,
    "EmptySD3LatentImage": empty_latent,
    "VAEEncode": vae_encode,
    "VAEEncodeForInpaint": vae_encode_inpaint,
    "SetLatentNoiseMask": set_noise_mask,
    "LatentUpscale": latent_upscale,
    "KSampler": ksampler,
    "KSamplerAdvanced": ksampler_advanced,
    "SamplerCustomAdvanced": sampler_custom_advanced,
    "RandomNoise": random_noise,
    "BasicGuider": basic_guider,
    "CFGGuider": cfg_guider,
    "BasicScheduler": basic_scheduler,
    "KSamplerSelect": ksampler_select,
    "ModelSamplingSD3": model_sampling_sd3,
    "ModelSamplingFlux": model_sampling_flux,
    "VAEDecode": vae_decode,
    "LoadImage": load_image,
    "LoadImageMask": load_image_mask,
    "ImageScale": image_scale,
    "SaveImage": output,
    "PreviewImage": output,
}
