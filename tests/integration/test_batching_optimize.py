"""Optimisation settings: what each resolves to per device, and that none changes the image."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from sdworker.core.errors import ConfigError
from sdworker.core.settings import Settings
from sdworker.families import get as family
from sdworker.gpu.optimize import apply, load_kwargs, plan, warmup_batches

CPU, CUDA = torch.device("cpu"), torch.device("cuda")


def test_cuda_gets_the_fast_defaults_and_the_cpu_nothing() -> None:
    gpu = plan(Settings(), CUDA)
    assert (gpu.attention, gpu.fuse_qkv, gpu.channels_last, gpu.vae_slicing) == (
        "sdpa",
        True,
        True,
        True,
    )
    assert gpu.cudnn_benchmark and gpu.warmup and not gpu.compile and not gpu.vae_tiling
    cpu = plan(Settings(), CPU)
    assert not (cpu.fuse_qkv or cpu.channels_last or cpu.vae_slicing or cpu.cudnn_benchmark)
    assert not cpu.warmup
    assert load_kwargs(CUDA) == {"device_map": "cuda"} and load_kwargs(CPU) == {}


def test_settings_override_the_defaults_and_loras_keep_qkv_unfused() -> None:
    assert not plan(Settings(), CUDA, loras=True).fuse_qkv
    assert not plan(Settings(fuse_qkv=True), CUDA, loras=True).fuse_qkv  # LoRAs would vanish
    assert plan(Settings(fuse_qkv=True), CPU).fuse_qkv
    assert not plan(Settings(attention="xformers"), CUDA).fuse_qkv  # fusing means SDPA
    assert not plan(Settings(channels_last=False), CUDA).channels_last
    compiled = plan(Settings(compile=True, cudnn_benchmark=False), CUDA)
    assert compiled.compile and compiled.warmup
    env = Settings.from_env({"SDWORKER_COMPILE": "true", "SDWORKER_FUSE_QKV": "auto"})
    assert env.compile and env.fuse_qkv is None
    with pytest.raises(ConfigError, match="SDWORKER_ATTENTION"):
        plan(Settings(attention="flash"), CUDA)


def test_warm_up_covers_one_two_and_the_largest_batch() -> None:
    assert warmup_batches(1) == [1]
    assert warmup_batches(8) == [1, 2, 8]


def test_fused_qkv_and_channels_last_keep_the_image(models_dir: Path) -> None:
    from diffusers import AutoPipelineForText2Image

    def image(optimised: bool) -> torch.Tensor:
        pipe = AutoPipelineForText2Image.from_pretrained(
            str(models_dir / "tiny"), safety_checker=None, requires_safety_checker=False
        )
        pipe.set_progress_bar_config(disable=True)
        if optimised:
            forced = plan(Settings(fuse_qkv=True, channels_last=True, vae_slicing=True), CPU)
            assert apply(pipe, forced, family("sd1")) == [
                "fused-qkv",
                "channels-last",
                "vae-slicing",
            ]
        with torch.inference_mode():
            out = pipe(
                "a lighthouse",
                num_inference_steps=2,
                width=64,
                height=64,
                generator=torch.Generator("cpu").manual_seed(3),
                output_type="pt",
            ).images
        return torch.as_tensor(out)

    plain, fast = image(False), image(True)
    assert plain.shape == fast.shape
    # float reassociation only: far below one level of 255
    assert (plain - fast).abs().max().item() < 1e-3


def test_an_unusable_xformers_fails_the_load_with_the_reason(models_dir: Path) -> None:
    from diffusers import AutoPipelineForText2Image

    pipe = AutoPipelineForText2Image.from_pretrained(
        str(models_dir / "tiny"), safety_checker=None, requires_safety_checker=False
    )

    def broken_wheel() -> None:
        # what a wheel built for another torch does: its probe on the card raises
        raise NotImplementedError("No operator found for `memory_efficient_attention_forward`")

    pipe.enable_xformers_memory_efficient_attention = broken_wheel
    # asked for and unusable: never a silent fall back to another attention
    with pytest.raises(ConfigError, match="SDWORKER_ATTENTION=xformers: xformers attention cannot"):
        apply(pipe, plan(Settings(attention="xformers"), CPU), family("sd1"))
