"""Baking from a folder, a single-file checkpoint, a (fake) hub, with LoRAs; damage detection."""

from __future__ import annotations

import shutil
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
import torch
from diffusers import StableDiffusionPipeline
from safetensors.torch import save_file

from sdworker.builder.bake import bake_checkpoint, bake_folder, bake_hub
from sdworker.builder.cli import bake_command
from sdworker.builder.original import write_original_checkpoint
from sdworker.core.errors import BuildError, ModelDamaged
from sdworker.core.manifest import Manifest, sha256_file
from sdworker.core.models import ModelRegistry
from sdworker.core.settings import Settings


def _image(path: Path) -> torch.Tensor:
    pipe = StableDiffusionPipeline.from_pretrained(path, local_files_only=True)
    pipe.set_progress_bar_config(disable=True)
    out = pipe(
        "a photo of a cat",
        num_inference_steps=2,
        height=128,
        width=128,
        generator=torch.Generator().manual_seed(11),
        output_type="pt",
    )
    images: torch.Tensor = out.images
    return images


def test_folder_bake_copies_only_what_the_pipeline_needs(baked_tiny: Path, tmp_path: Path) -> None:
    src = tmp_path / "src"
    shutil.copytree(baked_tiny / "tiny", src)
    (src / "README.md").write_text("docs")
    (src / "unet" / "diffusion_flax_model.msgpack").write_bytes(b"x")
    shutil.copyfile(
        src / "unet" / "diffusion_pytorch_model.safetensors",
        src / "unet" / "diffusion_pytorch_model.fp16.safetensors",
    )
    models = tmp_path / "models"
    assert bake_command([str(src), "--name", "copy"], Settings(models_dir=models)) == 0
    manifest = Manifest.read(models / "copy")
    assert "README.md" not in manifest.files
    assert not any("msgpack" in f or ".fp16." in f for f in manifest.files)
    # the fp16 variant was chosen and renamed so it loads without variant=
    assert "unet/diffusion_pytorch_model.safetensors" in manifest.files
    assert (manifest.family, manifest.native_width) == ("sd1", 512)
    assert manifest.source.startswith("folder:")
    assert torch.equal(_image(models / "copy"), _image(baked_tiny / "tiny"))


def test_single_file_checkpoint_is_bit_identical(baked_tiny: Path, tmp_path: Path) -> None:
    ckpt = write_original_checkpoint(baked_tiny / "tiny", tmp_path / "tiny-ckpt.safetensors")
    models = tmp_path / "models"
    argv = [str(ckpt), "--config", str(baked_tiny / "tiny")]
    assert bake_command(argv, Settings(models_dir=models)) == 0
    baked = models / "tiny-ckpt"
    manifest = Manifest.read(baked)
    assert manifest.family == "sd1"
    # AUTOMATIC1111 hashes the checkpoint file itself
    assert manifest.sha256 == sha256_file(ckpt)
    assert manifest.source == "checkpoint:tiny-ckpt.safetensors"
    assert (baked / "tokenizer" / "vocab.json").is_file()
    assert torch.equal(_image(baked), _image(baked_tiny / "tiny"))


def test_checkpoint_that_is_not_sd(tmp_path: Path) -> None:
    bogus = tmp_path / "bogus.safetensors"
    save_file({"weight": torch.zeros(2)}, str(bogus))
    with pytest.raises(BuildError, match="cannot tell the model family"):
        bake_checkpoint(bogus, tmp_path / "models", "bogus")
    (tmp_path / "junk.safetensors").write_bytes(b"not a checkpoint")
    with pytest.raises(BuildError, match="not a readable safetensors file"):
        bake_checkpoint(tmp_path / "junk.safetensors", tmp_path / "models", "junk")


def test_corrupted_file_detected_at_start(baked_tiny: Path, tmp_path: Path) -> None:
    models = tmp_path / "models"
    bake_folder(baked_tiny / "tiny", models, "tiny")
    weights = models / "tiny" / "text_encoder" / "model.safetensors"
    data = bytearray(weights.read_bytes())
    data[-1] ^= 0xFF
    weights.write_bytes(bytes(data))
    registry = ModelRegistry(Settings(models_dir=models))
    with pytest.raises(ModelDamaged) as err:
        registry.verify(check_sha256=True)
    assert "model 'tiny'" in str(err.value)
    assert "text_encoder/model.safetensors: sha256 differs" in str(err.value)


class _FakeHub:
    """``huggingface_hub`` as bake_hub uses it, serving a local folder, failing the first call."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.downloaded: list[str] = []
        self.failures = 1

    def HfApi(self) -> Any:
        files = sorted(
            p.relative_to(self.root).as_posix() for p in self.root.rglob("*") if p.is_file()
        )
        return SimpleNamespace(list_repo_files=lambda repo_id, revision=None: files)

    def hf_hub_download(self, repo_id: str, filename: str, revision: str | None = None) -> str:
        return str(self.root / filename)

    def snapshot_download(
        self, repo_id: str, revision: str | None, allow_patterns: list[str], local_dir: Path
    ) -> str:
        if self.failures:
            self.failures -= 1
            raise ConnectionError("connection reset")
        for rel in allow_patterns:
            dest = Path(local_dir) / rel
            dest.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(self.root / rel, dest)
            self.downloaded.append(rel)
        return str(local_dir)


def test_hub_bake_downloads_selected_files_with_retry(baked_tiny: Path, tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    shutil.copytree(baked_tiny / "tiny", repo)
    (repo / "v1-5-pruned.ckpt").write_bytes(b"big original checkpoint")
    hub = _FakeHub(repo)
    sleeps: list[float] = []
    path = bake_hub("org/tiny", tmp_path / "models", "hubbed", hub=hub, sleep=sleeps.append)
    assert sleeps == [2.0]
    assert "v1-5-pruned.ckpt" not in hub.downloaded
    assert "unet/diffusion_pytorch_model.safetensors" in hub.downloaded
    assert Manifest.read(path).source == "hub:org/tiny@main"


def test_lora_baked_alongside(baked_tiny: Path, tmp_path: Path) -> None:
    lora = tmp_path / "style.safetensors"
    save_file({"lora_unet_down.lora_down.weight": torch.zeros(4, 4)}, str(lora))
    models = tmp_path / "models"
    argv = [str(baked_tiny / "tiny"), "--lora", str(lora)]
    assert bake_command(argv, Settings(models_dir=models)) == 0
    assert (models / "loras" / "style.safetensors").read_bytes() == lora.read_bytes()
    assert '"sha256"' in (models / "loras" / "style.json").read_text()
    not_lora = tmp_path / "plain.safetensors"
    save_file({"weight": torch.zeros(2)}, str(not_lora))
    assert (
        bake_command(
            [str(baked_tiny / "tiny"), "--lora", str(not_lora)], Settings(models_dir=models)
        )
        == 1
    )


def test_lora_baked_alongside_the_tiny_model(tmp_path: Path) -> None:
    lora = tmp_path / "style.safetensors"
    save_file({"lora_unet_down.lora_down.weight": torch.zeros(4, 4)}, str(lora))
    models = tmp_path / "models"
    argv = ["tiny", "--name", "t", "--lora", str(lora)]
    assert bake_command(argv, Settings(models_dir=models)) == 0
    assert (models / "t" / "sdworker.json").is_file()
    assert (models / "loras" / "style.safetensors").read_bytes() == lora.read_bytes()


def test_embeddings_baked_alongside_the_tiny_model(tmp_path: Path) -> None:
    one = tmp_path / "badhand.safetensors"
    save_file({"emb_params": torch.ones(2, 32)}, str(one))
    folder = tmp_path / "more"
    folder.mkdir()
    save_file(
        {"clip_l": torch.ones(1, 32), "clip_g": torch.ones(1, 32)}, str(folder / "glow.safetensors")
    )
    models = tmp_path / "models"
    argv = ["tiny", "--name", "t", "--embedding", str(one), "--embedding", str(folder)]
    assert bake_command(argv, Settings(models_dir=models)) == 0
    assert sorted(p.name for p in (models / "embeddings").iterdir()) == [
        "badhand.safetensors",
        "glow.safetensors",
    ]
    pickle = tmp_path / "old.pt"
    pickle.write_bytes(b"\x80\x04 a pickle")
    not_one = tmp_path / "two.safetensors"
    save_file({"a": torch.ones(1, 4), "b": torch.ones(1, 4)}, str(not_one))
    for bad in (pickle, not_one):
        assert (
            bake_command(
                ["tiny", "--name", "u", "--embedding", str(bad)], Settings(models_dir=models)
            )
            == 1
        )


def test_an_inpainting_only_model_is_refused_at_bake(baked_tiny: Path, tmp_path: Path) -> None:
    import json

    src = tmp_path / "inpaint-src"
    shutil.copytree(baked_tiny / "tiny", src)
    config = json.loads((src / "unet" / "config.json").read_text())
    (src / "unet" / "config.json").write_text(json.dumps({**config, "in_channels": 9}))
    with pytest.raises(BuildError, match="9 input channels"):
        bake_folder(src, tmp_path / "models", "inp")
    assert not (tmp_path / "models" / "inp").exists()
