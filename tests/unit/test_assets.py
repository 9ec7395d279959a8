"""The asset registry without a model: headers, baked and volume scans, names, refusals, the
tensors in memory, the catalog the input rules read."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from sdworker.core.assets import (
    EMBEDDING,
    LORA,
    AssetRegistry,
    NotSafetensors,
    judge,
    read_header,
    walk,
)
from sdworker.core.embeddings import a1111_entry, fits, layout
from sdworker.core.settings import Settings
from tests.loras import write_safetensors

SD1_KEY = "unet.down_blocks.1.attentions.0.transformer_blocks.0.attn2.to_k.lora_A.weight"
SDXL_KEY = "text_encoder_2.text_model.encoder.layers.0.self_attn.q_proj.lora_A.weight"


def lora(path: Path, width: int = 768, key: str = SD1_KEY) -> Path:
    return write_safetensors(path, {key: (4, width)})


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings(models_dir=tmp_path / "models", volume_dir=tmp_path / "volume")


def volume(settings: Settings, folder: str) -> Path:
    return settings.volume_dir / "models" / folder


def test_a_safetensors_header_is_read_without_its_tensors(tmp_path: Path) -> None:
    path = write_safetensors(tmp_path / "a.safetensors", {"x": (2, 3)}, {"ss_base": "sd_v1"})
    header = read_header(path)
    assert header.shapes == {"x": (2, 3)} and header.dtypes == {"x": "F32"}
    assert header.metadata == {"ss_base": "sd_v1"}


@pytest.mark.parametrize(
    "content",
    [
        b"\x80\x04\x95pickle data of a .ckpt",  # a pickle: its first bytes are no header length
        b"PK\x03\x04 a zip, as torch.save writes",
        b"<html><body>Please log in</body></html>",
        b"short",
        (40).to_bytes(8, "little") + b'{"x": {"dtype": "F32"',  # truncated
        (2).to_bytes(8, "little") + b"[]",
        (60).to_bytes(8, "little")
        + json.dumps({"x": {"dtype": "F32", "shape": [4], "data_offsets": [0, 16]}}).encode(),
    ],
)
def test_anything_but_safetensors_is_refused_by_its_bytes(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "lora.safetensors"  # the extension says nothing
    path.write_bytes(content)
    with pytest.raises(NotSafetensors, match="is not a safetensors file"):
        read_header(path)


def test_baked_and_volume_loras_are_named_as_their_folders_list_them(settings: Settings) -> None:
    lora(settings.models_dir / "loras" / "ink.safetensors")
    lora(volume(settings, "loras") / "style" / "water.safetensors")
    lora(volume(settings, "loras") / "top.safetensors", width=2048)
    lora(volume(settings, "loras") / ".git" / "hidden.safetensors")
    registry = AssetRegistry(settings)
    assert registry.names(LORA) == ["ink", "style/water.safetensors", "top.safetensors"]
    sources = {a.name: a.source for a in registry.all(LORA)}
    assert sources == {
        "ink": "baked",
        "style/water.safetensors": "volume",
        "top.safetensors": "volume",
    }
    assert registry.family(LORA, "top.safetensors") == "sdxl"
    assert registry.family(LORA, "ink") == "sd1"
    # A1111's <lora:style/water:1> names it without the extension
    found = registry.find(LORA, "style/water")
    assert found is not None and found.name == "style/water.safetensors"


def test_unusable_volume_files_are_listed_as_refused_with_the_reason(settings: Settings) -> None:
    folder = volume(settings, "loras")
    folder.mkdir(parents=True)
    (folder / "old.ckpt").write_bytes(b"\x80\x04pickle")
    (folder / "fake.safetensors").write_bytes(b"<html>not found</html>")
    write_safetensors(folder / "unet.safetensors", {"conv_in.weight": (4, 4)})
    write_safetensors(folder / "loha.safetensors", {"lora_unet_x.hada_w1_a": (4, 4)})
    (folder / "notes.txt").write_text("ignored")
    refused = AssetRegistry(settings).refused(LORA)
    assert refused == {
        "fake.safetensors": "is not a safetensors file (no safetensors header)",
        "loha.safetensors": "is a LoHa (LyCORIS) file, which diffusers cannot apply; use a LoRA",
        "old.ckpt": "is a pickle-based .ckpt file; only safetensors files are read",
        "unet.safetensors": "holds no LoRA weights (1 tensors, none of them a LoRA's)",
    }
    catalog = AssetRegistry(settings).catalog(LORA)
    assert catalog.names() == [] and not catalog.knows("old.ckpt")
    assert catalog.refusal("old.ckpt") == (
        "volume LoRA 'old.ckpt' is a pickle-based .ckpt file; only safetensors files are read"
    )


@pytest.mark.parametrize(
    "name",
    ["../outside", "../outside.safetensors", "/etc/passwd", "style/../../outside", "~/outside"],
)
def test_no_name_leaves_its_folder(settings: Settings, name: str) -> None:
    lora(settings.volume_dir / "outside.safetensors")  # beside models/loras
    lora(settings.models_dir / "outside.safetensors")
    lora(volume(settings, "loras") / "style" / "inside.safetensors")
    assert AssetRegistry(settings).find(LORA, name) is None


def test_a_file_added_or_changed_is_found_without_a_refresh(settings: Settings) -> None:
    registry = AssetRegistry(settings)
    assert registry.names(LORA) == []
    lora(volume(settings, "loras") / "new.safetensors", width=1024)
    found = registry.find(LORA, "new.safetensors")
    assert found is not None and found.family == "sd2"
    lora(volume(settings, "loras") / "new.safetensors", width=2048)
    path = volume(settings, "loras") / "new.safetensors"
    os.utime(path, ns=(1, 1))  # a new version, whatever the clock's resolution
    again = registry.find(LORA, "new.safetensors")
    assert again is not None and again.family == "sdxl" and again.key != found.key


def test_the_family_a_bake_recorded_wins(settings: Settings) -> None:
    path = lora(settings.models_dir / "loras" / "a.safetensors", width=768)
    path.with_suffix(".json").write_text(json.dumps({"name": "a", "family": "sd2"}))
    assert AssetRegistry(settings).family(LORA, "a") == "sd2"


def test_walk_follows_links_once(tmp_path: Path) -> None:
    root = tmp_path / "loras"
    lora(root / "a.safetensors")
    (root / "loop").symlink_to(root)
    assert [name for name, _ in walk(root)] == ["a.safetensors"]


@pytest.mark.torch
def test_tensors_are_read_once_while_they_stay_in_memory(settings: Settings) -> None:
    for name in ("a", "b", "c"):
        lora(settings.models_dir / "loras" / f"{name}.safetensors")
    registry = AssetRegistry(settings, cache_files=2)
    a = registry.find(LORA, "a")
    assert a is not None
    first = registry.tensors(a)
    assert registry.tensors(a) is first and registry.disk_reads == 1
    for name in ("b", "c"):
        found = registry.find(LORA, name)
        assert found is not None
        registry.tensors(found)  # a, the least recently used, drops out
    registry.tensors(a)
    assert registry.disk_reads == 4


def test_embeddings_are_named_by_their_trigger_word(settings: Settings) -> None:
    write_safetensors(
        settings.models_dir / "embeddings" / "badhand.safetensors", {"emb_params": (2, 768)}
    )
    pair = {"clip_l": (3, 768), "clip_g": (3, 1280)}
    write_safetensors(volume(settings, "embeddings") / "xl" / "glow.safetensors", pair)
    write_safetensors(
        volume(settings, "embeddings") / "two.safetensors", {"a": (1, 8), "b": (1, 8)}
    )
    registry = AssetRegistry(settings)
    assert registry.names(EMBEDDING) == ["badhand", "glow"]
    assert "two" in registry.refused(EMBEDDING)
    sd1 = layout({"emb_params": (2, 768)})
    xl = layout(pair)
    assert sd1 is not None and xl is not None
    assert (sd1.widths, sd1.vectors, xl.widths, xl.vectors) == ((768,), 2, (768, 1280), 3)
    assert fits(sd1, (768,)) and not fits(sd1, (768, 1280)) and fits(xl, (768, 1280))
    assert a1111_entry(xl) == {
        "step": None,
        "sd_checkpoint": None,
        "sd_checkpoint_name": None,
        "shape": 2048,
        "vectors": 3,
    }
    assert layout({"v": (768,)}) is not None  # a single vector, as some files hold it


def test_judge_says_what_a_file_is(tmp_path: Path) -> None:
    assert judge(LORA, lora(tmp_path / "a.safetensors", 2048, SDXL_KEY)) == ("sdxl", None)
    missing = judge(LORA, tmp_path / "gone.safetensors")
    assert missing[0] is None and missing[1] is not None and "cannot be read" in missing[1]
