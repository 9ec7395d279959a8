"""``SDWORKER_ATTENTION=xformers`` with an xformers that cannot load its kernels stops the worker
at start with the reason (sdworker.gpu.xformers), checked here on fake xformers modules."""

from __future__ import annotations

from dataclasses import dataclass
from types import ModuleType, SimpleNamespace
from typing import Any

import pytest

from sdworker.core.errors import ConfigError
from sdworker.core.settings import Settings
from sdworker.gpu.xformers import built_for, check, problem

TORCH = "2.10.0+cu128"


@dataclass
class _BuildInfo:
    torch_version: str


class _InvalidLib(Exception):
    """What xformers raises, and keeps, when its library does not load beside this torch."""

    def __init__(self, build_info: _BuildInfo) -> None:
        super().__init__("xFormers can't load C++/CUDA extensions. xFormers was built for:\n ...")
        self.build_info = build_info


def fake_xformers(*, built: str | None, loaded: bool = True) -> Any:
    """A loader that imports fake ``xformers``, ``xformers._cpp_lib`` and ``xformers.ops``."""
    info = _BuildInfo(built) if built else None
    cpp_lib = SimpleNamespace(
        _build_metadata=info if loaded else None,
        _cpp_library_load_exception=None if loaded else _InvalidLib(info or _BuildInfo("?")),
    )
    calls: list[str] = []
    modules = {
        "xformers": SimpleNamespace(__version__="0.0.35"),
        "xformers._cpp_lib": cpp_lib,
        "xformers.ops": SimpleNamespace(memory_efficient_attention=lambda *a: calls.append("ran")),
    }

    def load(name: str) -> ModuleType:
        return modules[name]  # type: ignore[return-value]

    load.calls = calls  # type: ignore[attr-defined]
    return load


def test_the_pair_built_for_each_other_passes() -> None:
    load = fake_xformers(built=TORCH)
    assert problem(TORCH, load=load) is None
    assert built_for(load("xformers._cpp_lib")) == TORCH


def test_a_wheel_built_for_another_torch_names_both_versions() -> None:
    # what the image had: xformers 0.0.35 for 2.10.0+cu128 beside torch 2.13.0+cu130
    found = problem("2.13.0+cu130", load=fake_xformers(built=TORCH, loaded=False))
    assert found is not None
    assert found == (
        "xformers 0.0.35 (built for torch 2.10.0+cu128) cannot load its C++/CUDA kernels next "
        "to torch 2.13.0+cu130: xFormers can't load C++/CUDA extensions"
    )


def test_a_library_that_loaded_beside_another_torch_is_refused_too() -> None:
    found = problem("2.13.0+cu130", load=fake_xformers(built=TORCH))
    assert (
        found == "xformers 0.0.35 was built for torch 2.10.0+cu128, not the installed 2.13.0+cu130"
    )


def test_no_xformers_at_all() -> None:
    def missing(name: str) -> ModuleType:
        raise ModuleNotFoundError(f"No module named {name!r}")

    assert problem(TORCH, load=missing) == "xformers is not installed (No module named 'xformers')"


def test_on_a_card_the_attention_call_must_run() -> None:
    load = fake_xformers(built=TORCH)
    ran: list[ModuleType] = []
    assert problem(TORCH, ran.append, load=load) is None and len(ran) == 1

    def fails(ops: ModuleType) -> None:
        raise NotImplementedError("No operator found for `memory_efficient_attention_forward`")

    found = problem(TORCH, fails, load=load)
    assert found is not None and "its attention fails on the device (No operator found" in found


def test_the_worker_refuses_to_start_only_when_xformers_is_asked_for() -> None:
    check(Settings(attention="sdpa"))  # never imports xformers
    check(Settings(attention="auto"))
    pytest.importorskip("torch")
    try:
        import xformers  # noqa: F401
    except ImportError:
        with pytest.raises(ConfigError) as raised:
            check(Settings(attention="xformers"))
        message = str(raised.value)
        assert message.startswith("SDWORKER_ATTENTION=xformers: xformers is not installed")
        assert message.endswith(
            "set SDWORKER_ATTENTION=sdpa, or install the image's torch and "
            "xformers pair (the gpu extra)"
        )
    else:  # the image: the pair loads
        check(Settings(attention="xformers"))
