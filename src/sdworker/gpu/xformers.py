"""xformers, checked before the worker trusts it with attention.

``SDWORKER_ATTENTION=xformers`` asks for xformers' memory-efficient attention. A wheel built for
another torch imports without error but leaves its C++/CUDA library unloaded (xformers only logs
a warning), and every model would then run without it. So the worker checks at start, and
refuses to start with a message that says why, instead of falling back in silence:

- the package imports, and its library loaded (``xformers._cpp_lib`` keeps the load's failure);
- the torch it was built for (its ``cpp_lib.json``, which ``python -m xformers.info`` prints)
  is the installed torch;
- on a CUDA device, one memory-efficient attention call runs on the card.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from types import ModuleType
from typing import Any

from sdworker.core.errors import ConfigError
from sdworker.core.settings import Settings

#: what to do instead, for every message
_INSTEAD = (
    "set SDWORKER_ATTENTION=sdpa, or install the image's torch and xformers pair (the gpu extra)"
)


def built_for(cpp_lib: Any) -> str | None:
    """The torch version xformers' library was built for, from its build metadata (also kept
    on the load's failure), or None when the wheel has none."""
    info = getattr(cpp_lib, "_build_metadata", None)
    if info is None:
        failure = getattr(cpp_lib, "_cpp_library_load_exception", None)
        info = getattr(failure, "build_info", None)
    version = getattr(info, "torch_version", None)
    return str(version) if version is not None else None


def problem(
    torch_version: str,
    probe: Callable[[ModuleType], None] | None = None,
    load: Callable[[str], ModuleType] = importlib.import_module,
) -> str | None:
    """Why xformers cannot serve attention next to ``torch_version``, or None when it can.

    ``probe`` runs one attention call on the device (None: no device to try, as on a CPU);
    ``load`` imports a module (tests pass fakes)."""
    try:
        xformers = load("xformers")
        cpp_lib = load("xformers._cpp_lib")
    except ImportError as exc:
        return f"xformers is not installed ({exc})"
    version = getattr(xformers, "__version__", "?")
    wanted = built_for(cpp_lib)
    failure = getattr(cpp_lib, "_cpp_library_load_exception", None)
    if failure is not None or getattr(cpp_lib, "_build_metadata", None) is None:
        # xformers' own message, to its first full stop: the rest repeats the versions
        why = str(failure).strip().split(". ")[0] if failure is not None else "no library"
        made = f" (built for torch {wanted})" if wanted else ""
        return (
            f"xformers {version}{made} cannot load its C++/CUDA kernels next to torch "
            f"{torch_version}: {why}"
        )
    if wanted != torch_version:
        return f"xformers {version} was built for torch {wanted}, not the installed {torch_version}"
    if probe is not None:
        try:
            probe(load("xformers.ops"))
        except Exception as exc:
            return f"xformers {version} loaded, but its attention fails on the device ({exc})"
    return None


def check(settings: Settings) -> None:
    """Raise :class:`ConfigError` when ``SDWORKER_ATTENTION=xformers`` cannot be honoured."""
    if settings.attention != "xformers":
        return
    import torch

    from sdworker.gpu.pipelines import resolve_device

    device = resolve_device(settings.device)
    found = problem(torch.__version__, _card_probe(device) if device.type == "cuda" else None)
    if found is not None:
        raise ConfigError(f"SDWORKER_ATTENTION=xformers: {found}; {_INSTEAD}")


def _card_probe(device: Any) -> Callable[[ModuleType], None]:
    def run(ops: ModuleType) -> None:
        import torch

        # the probe diffusers' enable_xformers_memory_efficient_attention runs, on our card
        q = torch.randn((1, 2, 40), device=device, dtype=torch.float16)
        ops.memory_efficient_attention(q, q, q)

    return run
