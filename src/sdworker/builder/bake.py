"""Bake a model from a hub id, a local diffusers folder, or a single original-layout checkpoint.

Every path ends the same way: a diffusers folder under ``models_dir/NAME`` holding only what the
pipeline needs (one weights format, variant files renamed so they load without ``variant=``),
with a manifest (:mod:`sdworker.core.manifest`) describing each file.
"""

from __future__ import annotations

import argparse
import logging
import re
import shutil
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

from sdworker import families
from sdworker.builder.describe import (
    config_folder,
    describe_folder,
    restore_index_names,
    weights_file,
)
from sdworker.builder.files import canonical_name, read_model_index, select_files
from sdworker.builder.layout import atomic_model_dir, check_name, scratch_dir, write_manifest
from sdworker.builder.loras import bake_loras
from sdworker.core.errors import BuildError
from sdworker.core.manifest import sha256_file

log = logging.getLogger("sdworker.builder")

CHECKPOINT_EXTS = (".safetensors", ".ckpt")
HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")
#: the full-size random-weights references, and the shipped configs each is built from
RANDOM: dict[str, str] = {
    "random-sd15": "sd1",
    "random-sdxl": "sdxl",
    "random-flux-schnell": "flux-schnell",
    "random-sd35-medium": "sd35-medium",
}
#: how an original-layout (single-file) checkpoint's keys tell its family, and the shipped
#: configs that describe it: the text encoder's keys are each family's own
CHECKPOINT_FAMILIES: tuple[tuple[str, str], ...] = (
    ("conditioner.embedders.", "sdxl"),
    ("cond_stage_model.model.", "sd2"),
    ("cond_stage_model.transformer.", "sd1"),
)


def bake_from_args(args: argparse.Namespace, models_dir: Path) -> Path:
    """Dispatch ``sdworker bake MODEL_REF`` (everything but the tiny models)."""
    ref: str = args.ref
    name: str | None = args.name
    if ref in RANDOM:
        from sdworker.builder.random_weights import bake_random

        path = bake_random(models_dir, name or ref, config=RANDOM[ref], seed=args.seed)
    else:
        local = Path(ref).expanduser()
        if local.is_dir():
            path = bake_folder(local, models_dir, name or _default_name(local.name))
        elif local.suffix.lower() in CHECKPOINT_EXTS:
            if not local.is_file():
                raise BuildError(f"checkpoint {local} does not exist")
            path = bake_checkpoint(
                local,
                models_dir,
                name or _default_name(local.stem),
                family=args.family,
                config=args.config,
            )
        elif HUB_ID.match(ref) and not local.exists():
            path = bake_hub(
                ref,
                models_dir,
                name or _default_name(ref.split("/")[-1]),
                revision=args.revision,
                variant=args.variant or "auto",
            )
        else:
            raise BuildError(
                f"MODEL_REF {ref!r} is neither a diffusers folder, a .safetensors/.ckpt file, "
                "nor a hub id (org/name)"
            )
    if args.lora:
        bake_loras(models_dir, args.lora)
    return path


def _default_name(raw: str) -> str:
    cleaned = re.sub(r"[^A-Za-z0-9._-]+", "-", raw).strip("-.") or "model"
    return check_name(cleaned[:100])


# ---------------------------------------------------------------- describing a diffusers folder


def bake_folder(
    src: Path, models_dir: Path, name: str, *, variant: str | None = "auto", source: str = ""
) -> Path:
    """Copy the files the pipeline needs from the diffusers folder ``src`` and describe them."""
    if not (src / "model_index.json").is_file():
        raise BuildError(f"{src} is not a diffusers folder (no model_index.json)")
    index = read_model_index((src / "model_index.json").read_text())
    available = [p.relative_to(src).as_posix() for p in src.rglob("*") if p.is_file()]
    wanted = select_files(available, index, variant)
    with atomic_model_dir(models_dir, name) as tmp:
        for rel in wanted:
            dest = tmp / canonical_name(rel)
            dest.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(src / rel, dest)
        manifest = describe_folder(tmp, name, source or f"folder:{src.resolve()}")
        denoiser = families.get(manifest.family).denoiser
        write_manifest(tmp, manifest, weights=weights_file(tmp, denoiser))
    return models_dir / name


# ----------------------------------------------------------------------------------- hub


def bake_hub(
    repo_id: str,
    models_dir: Path,
    name: str,
    *,
    revision: str | None = None,
    variant: str | None = "auto",
    retries: int = 3,
    sleep: Callable[[float], None] = time.sleep,
    hub: Any = None,
) -> Path:
    """Download only the needed files of ``repo_id`` (with retries) and bake them.

    ``hub`` provides ``list_repo_files``, ``hf_hub_download`` and ``snapshot_download`` (the
    ``huggingface_hub`` functions by default; tests pass a fake). Downloads show a progress bar.
    """
    if hub is None:
        import huggingface_hub

        hub = huggingface_hub
    api = hub.HfApi()
    hf_hub_download, snapshot_download = hub.hf_hub_download, hub.snapshot_download

    def attempt(what: str, fn: Callable[[], Any]) -> Any:
        for n in range(1, retries + 1):
            try:
                return fn()
            except Exception as exc:  # network errors come in many classes; all are retried
                if n == retries or _is_permanent(exc):
                    raise BuildError(f"{repo_id}: {what} failed: {exc}") from exc
                log.warning(
                    "%s: %s failed (%s); retry %d of %d", repo_id, what, exc, n, retries - 1
                )
                sleep(2.0**n)
        raise AssertionError("unreachable")

    files = attempt("listing files", lambda: api.list_repo_files(repo_id, revision=revision))
    index_path = attempt(
        "reading model_index.json",
        lambda: hf_hub_download(repo_id, "model_index.json", revision=revision),
    )
    wanted = select_files(files, read_model_index(Path(index_path).read_text()), variant)
    with scratch_dir() as scratch:
        attempt(
            "download",
            lambda: snapshot_download(
                repo_id, revision=revision, allow_patterns=wanted, local_dir=scratch / "repo"
            ),
        )
        return bake_folder(
            scratch / "repo",
            models_dir,
            name,
            variant=variant,
            source=f"hub:{repo_id}@{revision or 'main'}",
        )


def _is_permanent(exc: Exception) -> bool:
    """Errors a retry cannot fix: a missing repository, revision or file, or no access."""
    kind = type(exc).__name__
    return kind in {
        "RepositoryNotFoundError",
        "RevisionNotFoundError",
        "EntryNotFoundError",
        "GatedRepoError",
        "LocalEntryNotFoundError",
    }


# ---------------------------------------------------------------------- single-file checkpoint


def checkpoint_keys(path: Path) -> list[str]:
    """The parameter names of a ``.safetensors`` or ``.ckpt`` checkpoint."""
    if path.suffix.lower() == ".safetensors":
        from safetensors import safe_open

        try:
            with safe_open(str(path), framework="pt") as fh:
                return list(fh.keys())
        except Exception as exc:  # safetensors raises its own error types for bad headers
            raise BuildError(f"{path}: not a readable safetensors file: {exc}") from exc
    import torch

    try:
        data = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # pickle and zip errors alike
        raise BuildError(f"{path}: not a readable checkpoint: {exc}") from exc
    state = data.get("state_dict", data) if isinstance(data, dict) else {}
    return list(state)


def detect_checkpoint_family(keys: list[str]) -> str:
    """The family of an original-layout checkpoint, from its text encoder's keys."""
    for prefix, family in CHECKPOINT_FAMILIES:
        if any(k.startswith(prefix) for k in keys):
            return family
    raise BuildError(
        "cannot tell the model family from the checkpoint's keys (no Stable Diffusion text "
        "encoder found); pass --family"
    )


def bake_checkpoint(
    path: Path,
    models_dir: Path,
    name: str,
    *,
    family: str | None = None,
    config: Path | None = None,
) -> Path:
    """Convert an original-layout checkpoint to a diffusers folder, offline, and bake it.

    ``config`` is a diffusers folder whose configs (and tokenizers) describe the checkpoint;
    without it the shipped configs of ``family`` (detected from the keys when None) are used.
    The model's hash is the checkpoint's own sha256, as AUTOMATIC1111 shows it.
    """
    import diffusers

    keys = checkpoint_keys(path)
    family = family or detect_checkpoint_family(keys)
    with scratch_dir() as scratch:
        cfg = config if config is not None else config_folder(family, scratch / "config")
        index = read_model_index((cfg / "model_index.json").read_text())
        pipeline_class = getattr(diffusers, str(index["_class_name"]))
        try:
            pipe = pipeline_class.from_single_file(
                str(path), config=str(cfg), local_files_only=True
            )
        except (ValueError, KeyError, RuntimeError, OSError) as exc:
            raise BuildError(f"{path}: conversion as {family} failed: {exc}") from exc
        with atomic_model_dir(models_dir, name) as tmp:
            pipe.save_pretrained(tmp, safe_serialization=True)
            # ship the tokenizers as the config has them (vocab.json + merges.txt)
            for tok in ("tokenizer", "tokenizer_2"):
                if (cfg / tok).is_dir():
                    shutil.rmtree(tmp / tok, ignore_errors=True)
                    shutil.copytree(cfg / tok, tmp / tok)
            restore_index_names(tmp, index)
            manifest = describe_folder(tmp, name, f"checkpoint:{path.name}", sha256_file(path))
            manifest = replace(manifest, family=family)
            write_manifest(tmp, manifest)
    return models_dir / name
