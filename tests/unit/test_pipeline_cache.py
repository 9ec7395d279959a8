"""The pipeline cache: eviction (least recently used first, never a model in use) and its
locking (a load never blocks requests for models already loaded; one load per model)."""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path

import pytest
import torch

from sdworker.core.errors import ModelDamaged, OutOfMemory
from sdworker.core.manifest import Manifest
from sdworker.core.models import ModelInfo, ModelRegistry
from sdworker.core.settings import Settings
from sdworker.gpu.pipelines import LoadedModel, PipelineCache

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


class FakeLoads:
    """Stands in for ``PipelineCache._load``: counts loads per model, can hold one model's load
    until released, and can fail the next load of a model."""

    def __init__(self, cache: PipelineCache, monkeypatch: pytest.MonkeyPatch) -> None:
        self.calls: dict[str, int] = {}
        self.started = threading.Event()
        self.release = threading.Event()
        self.blocking: str | None = None
        self.failing: dict[str, BaseException] = {}
        self._count_lock = threading.Lock()
        monkeypatch.setattr(cache.registry, "get", lambda name: fake(name, 0).info)
        monkeypatch.setattr(cache, "_estimate", lambda info: 10 * MB)
        # room for every model: these tests are about locking, not eviction
        monkeypatch.setattr(cache, "budget_bytes", 1024 * MB)
        monkeypatch.setattr(cache, "_load", self)

    def __call__(self, info: ModelInfo) -> LoadedModel:
        with self._count_lock:
            self.calls[info.name] = self.calls.get(info.name, 0) + 1
        if info.name == self.blocking:
            self.started.set()
            assert self.release.wait(WAIT), "the test never released the load"
        if info.name in self.failing:
            raise self.failing.pop(info.name)
        return fake(info.name, 10 * MB)


#: upper bound on any wait in these tests; they pass in milliseconds, this only stops a hang
WAIT = 5.0


def run_in_thread(work: Callable[[], object]) -> tuple[threading.Thread, list[object]]:
    """Starts ``work`` in a daemon thread; its result (or exception) lands in the list."""
    out: list[object] = []

    def target() -> None:
        try:
            out.append(work())
        except BaseException as exc:  # handed to the test, which asserts on it
            out.append(exc)

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    return thread, out


def test_a_loaded_model_is_served_while_another_loads(
    cache: PipelineCache, monkeypatch: pytest.MonkeyPatch
) -> None:
    loads = FakeLoads(cache, monkeypatch)
    loads.blocking = "slow"
    loader, loaded_slow = run_in_thread(lambda: cache.get("slow"))
    assert loads.started.wait(WAIT)

    def use_a() -> LoadedModel:
        with cache.using("a") as model:
            assert model.users == 1
        return cache.get("a")

    reader, got = run_in_thread(use_a)
    reader.join(WAIT)
    try:
        assert not reader.is_alive(), "a request for a loaded model waited on another's load"
        assert got == [cache._models["a"]] and not loaded_slow
    finally:
        loads.release.set()
        loader.join(WAIT)
    assert isinstance(loaded_slow[0], LoadedModel) and "slow" in cache.loaded()
    assert cache._models["a"].users == 0


def test_two_requests_for_one_model_load_it_once(
    cache: PipelineCache, monkeypatch: pytest.MonkeyPatch
) -> None:
    loads = FakeLoads(cache, monkeypatch)
    loads.blocking = "new"
    first, got_first = run_in_thread(lambda: cache.get("new"))
    assert loads.started.wait(WAIT)

    def use_new() -> LoadedModel:
        with cache.using("new") as model:
            return model

    second, got_second = run_in_thread(use_new)
    # the second is parked on the load lock; let the load finish
    loads.release.set()
    first.join(WAIT)
    second.join(WAIT)
    assert loads.calls == {"new": 1}
    assert got_first[0] is got_second[0] is cache._models["new"]
    assert cache._models["new"].users == 0


@pytest.mark.parametrize(
    "error",
    [ModelDamaged("weights unreadable"), OutOfMemory("does not fit"), RuntimeError("boom")],
)
def test_a_failed_load_raises_leaves_nothing_and_is_tried_again(
    cache: PipelineCache, monkeypatch: pytest.MonkeyPatch, error: Exception
) -> None:
    loads = FakeLoads(cache, monkeypatch)
    loads.failing["x"] = error
    with pytest.raises(type(error)) as raised, cache.using("x"):
        pytest.fail("the block ran without a model")
    assert raised.value is error
    assert "x" not in cache.loaded()
    with cache.using("x") as model:
        assert model.users == 1 and cache.loaded()[-1] == "x"
    assert loads.calls == {"x": 2} and model.users == 0


def test_out_of_memory_on_load_evicts_everything_and_retries(
    cache: PipelineCache, monkeypatch: pytest.MonkeyPatch
) -> None:
    loads = FakeLoads(cache, monkeypatch)
    loads.failing["x"] = torch.cuda.OutOfMemoryError("CUDA out of memory")
    with cache.using("a"):
        model = cache.get("x")
    # the retry's evict_all ran from the loading thread without deadlocking, and passed
    # over the model in use
    assert loads.calls == {"x": 2} and model is cache._models["x"]
    assert cache.loaded() == ["a", "x"]


def test_the_load_after_a_failure_can_go_ahead(
    cache: PipelineCache, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A failed load lets go of the load lock: a load of another model is not stuck."""
    loads = FakeLoads(cache, monkeypatch)
    loads.failing["x"] = ModelDamaged("weights unreadable")
    with pytest.raises(ModelDamaged):
        cache.get("x")
    thread, got = run_in_thread(lambda: cache.get("y"))
    thread.join(WAIT)
    assert not thread.is_alive() and got == [cache._models["y"]]
