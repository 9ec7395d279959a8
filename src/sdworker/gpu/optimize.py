"""Speed-ups for a loaded pipeline: each one a setting, applied once when a model loads.

The defaults are what pays on a CUDA card and changes no image beyond half-precision noise:
PyTorch's SDPA attention with fused QKV projections, channels-last UNet and VAE, VAE slicing
and cuDNN autotuning. ``torch.compile`` of the UNet and the VAE decoder is opt-in: it takes
minutes, so :func:`prepare` warms the pipeline up at load, before the worker's first job, at
the sizes ``SDWORKER_COMPILE_SIZES`` lists (the model's native size by default) and the batch
sizes cross-request batching will use. After that warm-up no request ever compiles: a shape
the warm-up did not cover runs uncompiled (``torch.compiler`` stance ``eager_on_recompile``),
at plain speed instead of stalling for minutes. On the CPU nothing is changed unless a setting
asks for it (the tests rely on the plain path there).
"""

from __future__ import annotations

import itertools
import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from sdworker.core.errors import ConfigError
from sdworker.core.settings import Settings
from sdworker.families import Family
from sdworker.gpu.derive import derive

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Plan:
    """What :func:`apply` does to a pipeline, every ``auto`` resolved for one device."""

    attention: str
    channels_last: bool
    fuse_qkv: bool
    compile: bool
    compile_mode: str
    compile_backend: str
    vae_slicing: bool
    vae_tiling: bool
    cudnn_benchmark: bool
    warmup: bool


def has_loras(models_dir: Path) -> bool:
    root = models_dir / "loras"
    return root.is_dir() and any(root.glob("*.safetensors"))


def plan(settings: Settings, device: torch.device, *, loras: bool = False) -> Plan:
    """Resolve the settings for ``device``. ``loras``: LoRAs are baked, so QKV stays unfused
    (a LoRA patches ``to_q``/``to_k``/``to_v``, which a fused projection would bypass)."""
    cuda = device.type == "cuda"
    attention = "sdpa" if settings.attention == "auto" else settings.attention

    def choose(value: bool | None, default: bool) -> bool:
        return default if value is None else value

    # never with LoRAs baked, even when asked: a LoRA patches to_q/to_k/to_v, which the fused
    # projection bypasses, so its effect on attention would silently vanish
    fuse = choose(settings.fuse_qkv, cuda) and attention == "sdpa" and not loras
    if settings.fuse_qkv and loras:
        log.warning("SDWORKER_FUSE_QKV ignored: LoRAs are baked and need unfused projections")
    cudnn = choose(settings.cudnn_benchmark, cuda)
    return Plan(
        attention=attention,
        channels_last=choose(settings.channels_last, cuda),
        fuse_qkv=fuse,
        compile=settings.compile,
        compile_mode=settings.compile_mode,
        compile_backend=settings.compile_backend,
        vae_slicing=choose(settings.vae_slicing, cuda),
        vae_tiling=settings.vae_tiling,
        cudnn_benchmark=cudnn,
        warmup=choose(settings.warmup, settings.compile or (cuda and cudnn)),
    )


def load_kwargs(device: torch.device) -> dict[str, Any]:
    """Extra ``from_pretrained`` arguments: on CUDA, safetensors load straight onto the card
    (no full copy of the weights in host memory first)."""
    if device.type == "cuda" and device.index in (None, 0):
        # device_map places weights on the default card; another index loads, then moves
        return {"device_map": "cuda"}
    return {}


def apply(pipe: Any, plan: Plan, family: Family) -> list[str]:
    """Apply ``plan`` to ``pipe`` (a model of ``family``) in place; returns the names of what
    was applied.

    The attention switches and channels-last are a UNet's: a transformer family keeps its
    own attention processors (diffusers' per-family ones), and its sequences have no
    channels to reorder."""
    done: list[str] = []
    denoiser = getattr(pipe, family.denoiser)
    unet = family.denoiser == "unet"
    if unet:
        done += _attention(pipe, plan)
    if plan.fuse_qkv:
        if unet:
            pipe.fuse_qkv_projections()
        else:
            denoiser.fuse_qkv_projections()
        done.append("fused-qkv")
    if plan.channels_last:
        if unet:
            denoiser.to(memory_format=torch.channels_last)
        pipe.vae.to(memory_format=torch.channels_last)
        done.append("channels-last")
    if plan.vae_slicing:
        pipe.vae.enable_slicing()
        done.append("vae-slicing")
    if plan.vae_tiling:
        pipe.vae.enable_tiling()
        done.append("vae-tiling")
    if plan.compile:
        done.append(_compile(denoiser, pipe.vae, plan))
    return done


def _attention(pipe: Any, plan: Plan) -> list[str]:
    """The attention processors the plan names, on a UNet pipeline."""
    done: list[str] = []
    if plan.attention == "xformers":
        try:
            pipe.enable_xformers_memory_efficient_attention()
        except Exception as exc:
            # asked for and unusable (the worker's start check, sdworker.gpu.xformers, catches
            # the usual causes first): the load fails with the reason, never falls back in
            # silence to an attention nobody chose
            raise ConfigError(
                f"SDWORKER_ATTENTION=xformers: xformers attention cannot be enabled ({exc}); "
                "set SDWORKER_ATTENTION=sdpa, or install the image's torch and xformers pair"
            ) from exc
        done.append("xformers")
    elif plan.attention == "classic":
        pipe.unet.set_default_attn_processor()
        pipe.vae.set_default_attn_processor()
        done.append("classic-attention")
    return done


def _compile(denoiser: Any, vae: Any, plan: Plan) -> str:
    # compiled in place (nn.Module.compile): the module keeps its class, so from_pipe,
    # the pipelines' dtype checks and LoRA loading see the same denoiser as before. Not
    # fullgraph: a graph break (an attention kernel dynamo cannot trace) costs speed, where
    # fullgraph would fail the model's load, or a job once the recompile limit is reached
    options: dict[str, Any] = {"backend": plan.compile_backend}
    if plan.compile_backend == "inductor":  # modes are inductor's
        options["mode"] = plan.compile_mode
    denoiser.compile(**options)
    vae.decoder.compile(**options)
    return f"compile({', '.join(map(str, options.values()))})"


def warmup_batches(batch_max: int) -> list[int]:
    """Batch sizes to warm up: 1 and 2 make ``torch.compile`` mark the batch dimension
    dynamic (one more graph then serves every size), ``batch_max`` tunes the largest."""
    return sorted({1, min(2, batch_max), batch_max})


def timestep_variants(pipe: Any, family: Family) -> list[Any]:
    """``pipe`` and a twin whose scheduler gives timesteps of the other dtype.

    Compiled UNet graphs are specialised on the timestep's dtype, and samplers differ: PNDM,
    DDIM, UniPC and DPM++ 2M give integers, Euler, Heun, LMS and the Karras variants floats.
    Warming up both kinds keeps a job's choice of sampler from running it uncompiled. (The
    flow-match schedulers all give floats: such a family needs no twin.)"""
    from diffusers import DDIMScheduler, EulerDiscreteScheduler

    own = pipe.scheduler
    probe = type(own).from_config(own.config)
    probe.set_timesteps(2)
    other = DDIMScheduler if probe.timesteps.is_floating_point() else EulerDiscreteScheduler
    if not family.takes_scheduler(other.__name__):
        return [pipe]
    return [pipe, derive(type(pipe), pipe, scheduler=other.from_config(own.config))]


def warm_up(pipe: Any, sizes: list[tuple[int, int]], batches: list[int], family: Family) -> float:
    """Run short generations so compilation and autotuning happen now, not in a job: every
    size and batch, with integer and with float timesteps."""
    started = time.perf_counter()
    # compiling is allowed here even when an earlier model's warm-up closed it for requests
    runners = timestep_variants(pipe, family)
    with torch.compiler.set_stance("default"):
        for width, height in sizes:
            for n, runner in itertools.product(batches, runners):
                generators = [torch.Generator("cpu").manual_seed(i) for i in range(n)]
                with torch.inference_mode():
                    runner(
                        prompt=["warm-up"] * n,
                        negative_prompt=["blurry"] * n,
                        num_inference_steps=2,
                        width=width,
                        height=height,
                        generator=generators,
                        output_type="pil",
                    )
    return time.perf_counter() - started


#: graphs dynamo may keep per compiled function (UNet forward, VAE decoder forward); every
#: model, size and batch shape of the warm-ups counts, so PyTorch's default of 8 is too few
RECOMPILE_LIMIT = 64


def prepare(
    pipe: Any, settings: Settings, device: torch.device, native: tuple[int, int], family: Family
) -> Plan:
    """Optimise a freshly loaded pipeline of ``family`` for ``device`` and warm it up when
    the plan says so."""
    chosen = plan(settings, device, loras=has_loras(settings.models_dir))
    applied = apply(pipe, chosen, family)
    if applied:
        log.info("pipeline optimisations: %s", ", ".join(applied))
    if chosen.warmup:
        sizes = settings.warmup_sizes(native)
        batches = warmup_batches(settings.batch_images())
        seconds = warm_up(pipe, sizes, batches, family)
        shown = ", ".join(f"{w}x{h}" for w, h in sizes)
        log.info("warmed up at %s, batches %s, in %.1fs", shown, batches, seconds)
    if chosen.compile:
        # from here on no job pays for a compile: a shape no warm-up covered runs uncompiled
        torch.compiler.set_stance("eager_on_recompile")
        if not chosen.warmup:
            log.warning("compiling without a warm-up: jobs run uncompiled (SDWORKER_WARMUP)")
    return chosen
