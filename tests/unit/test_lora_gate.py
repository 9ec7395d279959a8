"""LoRA bookkeeping without a model: the gate, the set key, the family guess (the files
themselves: tests/unit/test_assets.py)."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest

from sdworker.core.assets import LORA, Asset
from sdworker.core.errors import LoraError
from sdworker.core.loras import AppliedLora, LoraSet, lora_set
from sdworker.families import lora_family
from sdworker.gpu.adapters import AdapterGate


def test_requests_wanting_the_same_set_run_together() -> None:
    gate = AdapterGate()
    switches: list[LoraSet] = []
    inside = threading.Barrier(2, timeout=5)

    def plain() -> None:
        with gate.use((), switches.append):
            inside.wait()  # both are inside at once, or this times out

    threads = [threading.Thread(target=plain) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert switches == []  # the gate starts on the plain set: nothing to switch


def test_a_different_set_waits_for_the_requests_inside() -> None:
    gate = AdapterGate()
    events: list[str] = []
    release = threading.Event()

    def switch(target: LoraSet) -> None:
        events.append(f"switch {target}")

    def plain() -> None:
        with gate.use((), switch):
            events.append("plain in")
            release.wait(5)
            events.append("plain out")

    def with_lora() -> None:
        with gate.use((("ink", 1.0),), switch):
            events.append("lora in")

    first = threading.Thread(target=plain)
    first.start()
    while "plain in" not in events:
        time.sleep(0.001)
    second = threading.Thread(target=with_lora)
    second.start()
    time.sleep(0.05)
    assert events == ["plain in"]  # the LoRA request is held at the gate
    release.set()
    first.join()
    second.join()
    assert events == ["plain in", "plain out", "switch (('ink', 1.0),)", "lora in"]
    assert gate.active == (("ink", 1.0),)


def test_arrival_order_is_kept_so_a_stream_of_plain_requests_cannot_starve_a_lora() -> None:
    gate = AdapterGate()
    order: list[str] = []
    release = threading.Event()

    def run(name: str, wanted: LoraSet, hold: bool = False) -> None:
        with gate.use(wanted, lambda _t: None):
            order.append(name)
            if hold:
                release.wait(5)

    threads = [threading.Thread(target=run, args=("plain-1", (), True))]
    threads[0].start()
    while not order:
        time.sleep(0.001)
    for name, wanted in (("lora", (("ink", 1.0),)), ("plain-2", ())):
        t = threading.Thread(target=run, args=(name, wanted))
        threads.append(t)
        t.start()
        time.sleep(0.02)
    release.set()
    for t in threads:
        t.join()
    assert order == ["plain-1", "lora", "plain-2"]


def test_a_failed_switch_makes_the_next_request_switch_again() -> None:
    gate = AdapterGate()
    calls: list[LoraSet] = []

    def failing(target: LoraSet) -> None:
        calls.append(target)
        raise LoraError("does not fit")

    with pytest.raises(LoraError), gate.use((("bad", 1.0),), failing):
        pass
    with gate.use((), calls.append):
        pass
    assert calls == [(("bad", 1.0),), ()]


def _applied(name: str, scale: float) -> AppliedLora:
    asset = Asset(LORA, name, "baked", Path(f"{name}.safetensors"), f"baked:{name}")
    return AppliedLora(asset, scale, "lora[0]")


def test_lora_set_merges_repeats_and_drops_zero_scales() -> None:
    loras = [_applied("a", 0.5), _applied("b", 0.0), _applied("a", 1.0)]
    assert lora_set(loras) == (("baked:a", 1.5),)
    assert lora_set(()) == ()


@pytest.mark.parametrize(
    ("shapes", "family"),
    [
        ({"text_encoder_2.x.lora_A.weight": (4, 32)}, "sdxl"),
        ({"lora_te2_text_model_encoder_layers_0_mlp_fc1.lora_down.weight": (4, 1280)}, "sdxl"),
        (
            {
                "lora_unet_down_blocks_0_attentions_0_transformer_blocks_0_attn2_to_k.lora_down.weight": (
                    4,
                    768,
                )
            },
            "sd1",
        ),
        (
            {
                "unet.mid_block.attentions.0.transformer_blocks.0.attn2.to_k.lora_A.weight": (
                    4,
                    1024,
                )
            },
            "sd2",
        ),
        (
            {
                "unet.up_blocks.1.attentions.0.transformer_blocks.0.attn2.to_k.lora.down.weight": (
                    8,
                    2048,
                )
            },
            "sdxl",
        ),
        ({"unet.x.attn2.to_k.lora_A.weight": (4, 32)}, None),
        ({"unet.x.attn1.to_q.lora_A.weight": (4, 320)}, None),
    ],
)
def test_lora_family(shapes: dict[str, tuple[int, ...]], family: str | None) -> None:
    assert lora_family(shapes) == family
