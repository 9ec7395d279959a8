"""The manifest check the worker runs at start (no torch: plain files stand in for weights)."""

from __future__ import annotations

from pathlib import Path

import pytest

from sdworker.builder.layout import atomic_model_dir, check_name, write_manifest
from sdworker.core.errors import BuildError, ModelDamaged, ModelNotFound
from sdworker.core.manifest import Manifest
from sdworker.core.models import ModelRegistry
from sdworker.core.settings import Settings


def _fake_model(models: Path, name: str) -> Path:
    with atomic_model_dir(models, name) as tmp:
        (tmp / "unet").mkdir()
        (tmp / "unet" / "diffusion_pytorch_model.safetensors").write_bytes(b"w" * 1000)
        (tmp / "model_index.json").write_text("{}")
        manifest = Manifest(name, "sd1", 512, 512, "PNDMScheduler", False, source="test")
        write_manifest(tmp, manifest, weights="unet/diffusion_pytorch_model.safetensors")
    return models / name


def test_intact_model_passes(tmp_path: Path) -> None:
    _fake_model(tmp_path, "a")
    registry = ModelRegistry(Settings(models_dir=tmp_path))
    registry.verify(check_sha256=True)
    assert registry.get("a").manifest.short_hash == registry.get("a").manifest.sha256[:10]


def test_truncated_file_caught_by_size(tmp_path: Path) -> None:
    model = _fake_model(tmp_path, "a")
    (model / "unet" / "diffusion_pytorch_model.safetensors").write_bytes(b"w" * 10)
    with pytest.raises(ModelDamaged) as err:
        ModelRegistry(Settings(models_dir=tmp_path)).verify()
    message = str(err.value)
    assert "model 'a'" in message
    assert "unet/diffusion_pytorch_model.safetensors: size 10 bytes, manifest says 1000" in message
    assert "Bake it again" in message


def test_flipped_byte_caught_only_by_sha256(tmp_path: Path) -> None:
    model = _fake_model(tmp_path, "a")
    (model / "unet" / "diffusion_pytorch_model.safetensors").write_bytes(b"x" + b"w" * 999)
    registry = ModelRegistry(Settings(models_dir=tmp_path))
    registry.verify()  # same size: the cheap check cannot see it
    with pytest.raises(ModelDamaged, match="sha256 differs"):
        registry.verify(check_sha256=True)
    with pytest.raises(ModelDamaged, match="sha256 differs"):
        ModelRegistry(Settings(models_dir=tmp_path, verify_sha256=True)).verify()


def test_missing_file_and_missing_models(tmp_path: Path) -> None:
    model = _fake_model(tmp_path, "a")
    (model / "model_index.json").unlink()
    with pytest.raises(ModelDamaged, match=r"model_index\.json: missing"):
        ModelRegistry(Settings(models_dir=tmp_path)).verify()
    with pytest.raises(ModelNotFound, match="no baked models"):
        ModelRegistry(Settings(models_dir=tmp_path / "empty")).verify()


def test_default_model_must_exist(tmp_path: Path) -> None:
    _fake_model(tmp_path, "a")
    with pytest.raises(ModelNotFound, match="SDWORKER_DEFAULT_MODEL: unknown model 'b'"):
        ModelRegistry(Settings(models_dir=tmp_path, default_model="b")).verify()


def test_failed_bake_leaves_previous_model(tmp_path: Path) -> None:
    _fake_model(tmp_path, "a")
    with pytest.raises(RuntimeError), atomic_model_dir(tmp_path, "a") as tmp:
        (tmp / "half-written").write_text("x")
        raise RuntimeError("conversion failed")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a"]
    ModelRegistry(Settings(models_dir=tmp_path)).verify(check_sha256=True)


@pytest.mark.parametrize("bad", ["", "../x", "a/b", ".hidden", "x.tmp", "a" * 101])
def test_bad_names_refused(bad: str) -> None:
    with pytest.raises(BuildError):
        check_name(bad)


@pytest.mark.parametrize(
    ("source", "ref"),
    [
        ("hub:stabilityai/sdxl-base@main", "stabilityai/sdxl-base"),
        ("folder:/data/my-model", "/data/my-model"),
        ("checkpoint:/ckpt/v1-5.safetensors", "/ckpt/v1-5.safetensors"),
        ("tiny:seed=0", "tiny"),
    ],
)
def test_damage_message_gives_a_rebake_command_that_parses(source: str, ref: str) -> None:
    assert Manifest("m", "sd1", 512, 512, "PNDMScheduler", False, source=source).bake_ref == ref


def test_registry_skips_bakes_in_progress(tmp_path: Path) -> None:
    _fake_model(tmp_path, "a")
    hidden = tmp_path / ".a.1234.tmp"
    hidden.mkdir()
    (hidden / "sdworker.json").write_text((tmp_path / "a" / "sdworker.json").read_text())
    registry = ModelRegistry(Settings(models_dir=tmp_path))
    assert registry.names() == ["a"] and registry.get("a").path == tmp_path / "a"
