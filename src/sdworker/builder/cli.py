"""``sdworker bake``: the command line of the builder (the Dockerfile's bake step calls it too).

``bake_command`` takes the arguments that follow ``bake``::

    sdworker bake tiny [--name NAME]         the tiny SD 1.x test model; without --name it bakes
                                             "tiny" and "tiny-safe" (with a safety checker that
                                             flags every image)
    sdworker bake tiny-sdxl [--name NAME]    the tiny SDXL test model, with a tiny refiner
    sdworker bake tiny-sd3 | tiny-flux | tiny-flux-kontext | tiny-flux-fill [--name NAME]
                                             the tiny SD 3, FLUX.1 schnell, Kontext and Fill
                                             test models
    sdworker bake random-sd15 | random-sdxl | random-flux-schnell | random-sd35-medium
                                             full-size architectures with random weights
    sdworker bake MODEL_REF [--name NAME] [--lora FILE ...] [--embedding FILE|DIR ...]
                                             [--refiner REF]
                                             a hub id, a local diffusers folder, or a single
                                             .safetensors/.ckpt checkpoint

``--alias NAME`` (repeatable) records other names of the baked model in its manifest.

``sdworker bake --from-env`` bakes what the Docker build arguments in the environment say
(``MODEL_ID``, ``MODEL_NAME``, ``LORAS``, ``EMBEDDINGS``, ``MODEL_ALIASES``:
:mod:`sdworker.builder.buildargs`);
the Dockerfile's bake step runs it from the source tree, before the package is installed.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import time
from collections.abc import Callable, Mapping
from dataclasses import replace
from pathlib import Path

from sdworker.builder.bake import CHECKPOINT_FAMILIES, RANDOM
from sdworker.builder.tiny_flux import REFS as TINY_FLUX
from sdworker.core.aliases import alias_problem
from sdworker.core.errors import InvalidInput, SdworkerError
from sdworker.core.manifest import Manifest
from sdworker.core.settings import Settings

log = logging.getLogger("sdworker.builder")

#: the tiny test models (offline, random weights, seconds to bake)
TINY = ("tiny", "tiny-sdxl", "tiny-sd3", *TINY_FLUX)
#: the built-in references that need no download
BUILTIN = (*TINY, *RANDOM)


def build_parser() -> argparse.ArgumentParser:
    """The ``sdworker bake`` argument parser."""
    parser = argparse.ArgumentParser(
        prog="sdworker bake",
        description="Bake a model into SDWORKER_MODELS_DIR with its manifest.",
    )
    parser.add_argument(
        "ref",
        metavar="MODEL_REF",
        nargs="?",
        help=f"one of {', '.join(BUILTIN)}; a hub id (org/name); a diffusers folder; "
        "a .safetensors/.ckpt checkpoint",
    )
    parser.add_argument(
        "--from-env",
        action="store_true",
        help="bake what the Docker build arguments in the environment say (MODEL_ID, "
        "MODEL_NAME, LORAS, MODEL_ALIASES) instead of MODEL_REF; other options apply to "
        "every model of MODEL_ID",
    )
    parser.add_argument("--name", help="the model's name (default: derived from MODEL_REF)")
    parser.add_argument(
        "--models-dir",
        type=Path,
        help="where baked models go (default: $SDWORKER_MODELS_DIR, else ./models)",
    )
    parser.add_argument(
        "--family",
        choices=sorted({family for _, family in CHECKPOINT_FAMILIES}),
        help="the model family of a single-file checkpoint (default: detected from its keys)",
    )
    parser.add_argument(
        "--config",
        type=Path,
        help="a diffusers folder whose configs describe a single-file checkpoint "
        "(default: the shipped config for its family)",
    )
    parser.add_argument(
        "--lora",
        action="append",
        default=[],
        type=Path,
        metavar="FILE",
        help="a LoRA .safetensors file to bake alongside (repeatable)",
    )
    parser.add_argument(
        "--embedding",
        action="append",
        default=[],
        type=Path,
        metavar="FILE",
        help="a textual-inversion embedding .safetensors file, or a folder of them, to bake "
        "alongside; its file name is its trigger word (repeatable)",
    )
    parser.add_argument(
        "--refiner",
        metavar="REF",
        help="an SDXL refiner (hub id or diffusers folder) baked into the model's refiner/ "
        "folder; it shares the base's VAE and second text encoder",
    )
    parser.add_argument(
        "--alias",
        action="append",
        default=[],
        metavar="NAME",
        help="another name clients may use for the model, recorded in its manifest "
        "(repeatable; with `tiny` and no --name, the aliases go to `tiny`)",
    )
    parser.add_argument("--revision", help="hub revision (branch, tag or commit)")
    parser.add_argument(
        "--variant",
        help="hub weights variant (default: fp16 when the repository has it, else full precision)",
    )
    parser.add_argument("--seed", type=int, default=0, help="seed of random-weights models")
    return parser


def bake_command(
    argv: list[str], settings: Settings | None = None, environ: Mapping[str, str] | None = None
) -> int:
    """Run ``sdworker bake`` with ``argv`` (the arguments after ``bake``); returns an exit code.
    ``environ`` holds the build arguments ``--from-env`` reads (default: ``os.environ``)."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.from_env:
        if args.ref is not None:
            parser.error(f"MODEL_REF ({args.ref}) and --from-env exclude each other")
        return _bake_from_env([a for a in argv if a != "--from-env"], settings, environ)
    if args.ref is None:
        parser.error("MODEL_REF is required (or --from-env)")
    settings = settings or Settings.from_env()
    models_dir: Path = args.models_dir or settings.models_dir
    started = time.perf_counter()
    try:
        aliases = _checked_aliases(args.alias)
        baked = _dispatch(args, models_dir)
        if aliases:
            record_aliases(baked[0], aliases)
    except SdworkerError as exc:
        print(f"sdworker bake: error: {exc}", file=sys.stderr)
        return 1
    elapsed = time.perf_counter() - started
    for path in baked:
        manifest = Manifest.read(path)
        size = sum(f.size for f in manifest.files.values())
        also = f", also called {', '.join(manifest.aliases)}" if manifest.aliases else ""
        print(
            f"baked {manifest.name}{also} ({manifest.family}, {manifest.native_width}x"
            f"{manifest.native_height}, {len(manifest.files)} files, {size / 1e6:.1f} MB, "
            f"hash {manifest.short_hash}) into {path}"
        )
    print(f"done in {elapsed:.1f} s")
    return 0


def _bake_from_env(
    extra: list[str], settings: Settings | None, environ: Mapping[str, str] | None
) -> int:
    from sdworker.builder.buildargs import bake_commands

    try:
        commands = bake_commands(os.environ if environ is None else environ, extra)
    except SdworkerError as exc:
        print(f"sdworker bake: error: {exc}", file=sys.stderr)
        return 1
    for argv in commands:
        code = bake_command(argv, settings)
        if code:
            return code
    return 0


def _checked_aliases(aliases: list[str]) -> tuple[str, ...]:
    """The ``--alias`` names, each checked before anything is baked."""
    problems = [p for p in (alias_problem(a.strip()) for a in aliases) if p]
    if problems:
        raise InvalidInput.one("--alias", "; ".join(problems), has_value=False)
    return tuple(dict.fromkeys(a.strip() for a in aliases))


def record_aliases(model_dir: Path, aliases: tuple[str, ...]) -> Manifest:
    """Write ``aliases`` into the manifest of the model baked in ``model_dir``."""
    manifest = Manifest.read(model_dir)
    names = tuple(a for a in aliases if a != manifest.name)
    updated = replace(manifest, aliases=tuple(dict.fromkeys((*manifest.aliases, *names))))
    updated.write(model_dir)
    return updated


def _dispatch(args: argparse.Namespace, models_dir: Path) -> list[Path]:
    baked = _bake_models(args, models_dir)
    if args.embedding:
        from sdworker.builder.loras import bake_embeddings

        bake_embeddings(models_dir, args.embedding)
    if args.refiner:
        from sdworker.builder.refiner import bake_refiner_ref

        bake_refiner_ref(models_dir, baked[0].name, args.refiner, variant=args.variant or "auto")
    return baked


def _bake_models(args: argparse.Namespace, models_dir: Path) -> list[Path]:
    ref: str = args.ref
    if ref not in TINY:
        return [_full_bake()(args, models_dir)]  # bakes --lora files itself
    baked = _bake_tiny(ref, args.name, args.seed, models_dir)
    if args.lora:
        from sdworker.builder.loras import bake_loras

        bake_loras(models_dir, args.lora)
    return baked


def _bake_tiny(ref: str, name: str | None, seed: int, models_dir: Path) -> list[Path]:
    """The tiny model ``ref``; ``tiny`` without a name bakes ``tiny-safe`` beside it."""
    from sdworker.builder import tiny, tiny_flux, tiny_sd3

    if ref == "tiny" and not name:
        return [
            tiny.bake_tiny(models_dir, "tiny", seed=seed),
            tiny.bake_tiny(models_dir, "tiny-safe", safety_checker=True, seed=seed),
        ]
    if ref == "tiny":
        return [tiny.bake_tiny(models_dir, name or ref, seed=seed)]
    if ref == "tiny-sdxl":
        return [tiny.bake_tiny_sdxl(models_dir, name or ref, seed=seed)]
    if ref == "tiny-sd3":
        return [tiny_sd3.bake_tiny_sd3(models_dir, name or ref, seed=seed)]
    return [tiny_flux.bake_tiny_flux(models_dir, name, ref=ref, seed=seed)]


def _full_bake() -> Callable[[argparse.Namespace, Path], Path]:
    from sdworker.builder.bake import bake_from_args

    return bake_from_args
