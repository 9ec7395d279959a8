"""Writing a model folder safely: build beside the target, write the manifest, then rename."""

from __future__ import annotations

import re
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path

from sdworker.core.errors import BuildError
from sdworker.core.manifest import Manifest, describe_files

#: a model name becomes a folder name and a request field: keep it plain
NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$")


def check_name(name: str) -> str:
    """``name`` if it is usable as a model name, else a :class:`BuildError` saying why."""
    if not NAME_RE.match(name) or name.endswith((".tmp", ".old")):
        raise BuildError(
            f"model name {name!r}: use letters, digits, '.', '_' and '-' "
            "(at most 100, starting with a letter or digit)"
        )
    return name


@contextmanager
def atomic_model_dir(models_dir: Path, name: str) -> Iterator[Path]:
    """Yield an empty folder that becomes ``models_dir/name`` when the block succeeds.

    A failed bake leaves the previous model (if any) untouched and no half-written folder: the
    worker must never find a model folder whose files are still being written.
    """
    check_name(name)
    models_dir.mkdir(parents=True, exist_ok=True)
    final = models_dir / name
    tmp = Path(tempfile.mkdtemp(prefix=f".{name}.", suffix=".tmp", dir=models_dir))
    try:
        yield tmp
        old = models_dir / f".{name}.old"
        shutil.rmtree(old, ignore_errors=True)
        if final.exists():
            final.rename(old)
        tmp.rename(final)
        shutil.rmtree(old, ignore_errors=True)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


@contextmanager
def scratch_dir() -> Iterator[Path]:
    """A temporary folder removed afterwards (for files that are copied into a model later)."""
    with tempfile.TemporaryDirectory(prefix="sdworker-bake-") as tmp:
        yield Path(tmp)


def write_manifest(model_dir: Path, manifest: Manifest, *, weights: str | None = None) -> Manifest:
    """Describe every file of ``model_dir`` into ``manifest`` and write it there.

    ``weights`` names the file whose sha256 becomes the model's hash when the manifest has none
    (a checkpoint bake sets it to the checkpoint's own hash, as AUTOMATIC1111 shows it).
    """
    files = describe_files(model_dir)
    sha = manifest.sha256
    if not sha and weights is not None:
        if weights not in files:
            raise BuildError(f"{model_dir}: expected weights file {weights} is missing")
        sha = files[weights].sha256
    complete = replace(manifest, files=files, sha256=sha)
    complete.write(model_dir)
    return complete
