"""The pipeline cache's eviction: least recently used first, never a model in use."""

from __future__ import annotations

from pathlib import Path

import pytest

from sdworker.manifest import Manifest
from sdworker.models import ModelInfo, ModelRegistry
from sdworker.pipelines import LoadedModel, PipelineCache
from sdworker.settings import Settings

MB = 1024**2


def fake(name: str, nbytes: int) -> LoadedModel:
    info = ModelInfo(Manifest(name, "sd1", 512, 512, "PNDMScheduler", False), Path(name))
    return LoadedModel(info=info, pipelines={}, nbytes=nbytes, safety=None, load_seconds=0.0)


@pytest.fixture
def cache(tmp_path: Path) -> PipelineCache:
    settings = Settings(models_dir=tmp_path, model_memory_gb=300 / 1024, device="cpu")
    cache = PipelineCache(settings, ModelRegistry(settings))
    for name in ("a", "b", "c"):
        cache._models[name] = fake(name, 100 * MB)
    return cache


def test_least_recently_used_goes_first(cache: PipelineCache) -> None:
    cache._make_room(100 * MB)
    assert cache.loaded() == ["b", "c"]


def test_a_model_in_use_is_passed_over(cache: PipelineCache) -> None:
    cache._models["a"].users = 1
    cache._make_room(100 * MB)
    assert cache.loaded() == ["a", "c"]


def test_when_everything_is_in_use_nothing_is_evicted(cache: PipelineCache) -> None:
    for model in cache._models.values():
        model.users = 1
    cache._make_room(200 * MB)
    assert cache.loaded() == ["a", "b", "c"]


def test_using_marks_the_model_for_the_block(cache: PipelineCache) -> None:
    with cache.using("b") as loaded:
        assert loaded.users == 1 and cache.loaded()[-1] == "b"
        cache.evict_all()
        assert cache.loaded() == ["b"]
    assert loaded.users == 0


def test_the_model_just_loaded_is_kept(cache: PipelineCache) -> None:
    cache._models["big"] = fake("big", 250 * MB)
    cache._make_room(0, keep="big")
    assert cache.loaded() == ["big"]
