"""The pipeline cache: eviction (least recently used first, never a model in use) and its
locking (a load never blocks requests for models already loaded; one load per model)."""

# ruff: noqa: E402 -- nothing here imports without torch: the module is skipped first

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

torch = pytest.importorskip("torch")

from sdworker.core.errors import ModelDamaged, OutOfMemory
from sdworker.core.manifest import Manifest
from sdworker.core.models import ModelInfo
from sdworker.core.settings import Settings
from sdworker.gpu.pipelines import LoadedModel, PipelineCache

pytestmark = pytest.mark.torch

MB = 1024**2


def fake(name: str, nbytes: int) -> LoadedModel:
    info = ModelInfo(Manifest(name, "sd1", 512, 512, "PNDMScheduler", False), Path(name))
    return LoadedModel(info=info, pipelines={}, nbytes=nbytes, safety=None, load_seconds=0.0)


class FakeRegistry:
    """Any name is a baked model (the cache asks the registry for a model's files)."""

    def get(self, name: str) -> ModelInfo:
        return fake(name, 0).info


class FakeLoads:
    """Stands in for loading from disk: counts loads per model, gives each model the size in
    ``sizes`` (100 MB by default), can hold one model's load until released, and can fail the
    next load of a model."""

    def __init__(self, sizes: dict[str, int] | None = None) -> None:
        self.sizes = sizes or {}
        self.calls: dict[str, int] = {}
        self.started = threading.Event()
        self.release = threading.Event()
        self.blocking: str | None = None
        self.failing: dict[str, BaseException] = {}
        self._count_lock = threading.Lock()

    def size(self, info: ModelInfo) -> int:
        return self.sizes.get(info.name, 100 * MB)

    def __call__(self, info: ModelInfo) -> LoadedModel:
        with self._count_lock:
            self.calls[info.name] = self.calls.get(info.name, 0) + 1
        if info.name == self.blocking:
            self.started.set()
            assert self.release.wait(WAIT), "the test never released the load"
        if info.name in self.failing:
            raise self.failing.pop(info.name)
        return fake(info.name, self.size(info))


@pytest.fixture
def loads() -> FakeLoads:
    return FakeLoads({"big": 250 * MB})


@pytest.fixture
def budget_mb() -> int:
    return 300


@pytest.fixture
def cache(tmp_path: Path, loads: FakeLoads, budget_mb: int) -> PipelineCache:
    """A 300 MB budget holding ``a``, ``b`` and ``c`` (100 MB each), ``a`` least recent."""
    settings = Settings(models_dir=tmp_path, model_memory_gb=budget_mb / 1024, device="cpu")
    registry: Any = FakeRegistry()
    cache = PipelineCache(settings, registry, load=loads, estimate=loads.size)
    for name in ("a", "b", "c"):
        cache.get(name)
    loads.calls.clear()  # the tests count their own loads
    return cache


def test_least_recently_used_goes_first(cache: PipelineCache) -> None:
    cache.get("d")
    assert cache.loaded() == ["b", "c", "d"]


def test_a_model_in_use_is_passed_over(cache: PipelineCache) -> None:
    with cache.using("a"):
        cache.get("d")
        assert cache.loaded() == ["c", "a", "d"]


def test_when_everything_is_in_use_nothing_is_evicted(cache: PipelineCache) -> None:
    with cache.using("a"), cache.using("b"), cache.using("c"):
        cache.get("d")  # over the budget until they are done
        assert cache.loaded() == ["a", "b", "c", "d"]


def test_using_marks_the_model_for_the_block(cache: PipelineCache) -> None:
    with cache.using("b") as loaded:
        assert loaded.users == 1 and cache.loaded()[-1] == "b"
        cache.evict_all()
        assert cache.loaded() == ["b"]
    assert loaded.users == 0


def test_the_model_just_loaded_is_kept(cache: PipelineCache) -> None:
    cache.get("big")
    assert cache.loaded() == ["big"]


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


@pytest.mark.parametrize("budget_mb", [1024])  # about locking, not eviction
def test_a_loaded_model_is_served_while_another_loads(
    cache: PipelineCache, loads: FakeLoads
) -> None:
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
        assert got == [cache.resident("a")] and not loaded_slow
    finally:
        loads.release.set()
        loader.join(WAIT)
    assert isinstance(loaded_slow[0], LoadedModel) and "slow" in cache.loaded()
    assert cache.resident("a").users == 0


@pytest.mark.parametrize("budget_mb", [1024])  # about locking, not eviction
def test_two_requests_for_one_model_load_it_once(cache: PipelineCache, loads: FakeLoads) -> None:
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
    assert got_first[0] is got_second[0] is cache.resident("new")
    assert cache.resident("new").users == 0


@pytest.mark.parametrize(
    "error",
    [ModelDamaged("weights unreadable"), OutOfMemory("does not fit"), RuntimeError("boom")],
)
def test_a_failed_load_raises_leaves_nothing_and_is_tried_again(
    cache: PipelineCache, loads: FakeLoads, error: Exception
) -> None:
    loads.failing["x"] = error
    with pytest.raises(type(error)) as raised, cache.using("x"):
        pytest.fail("the block ran without a model")
    assert raised.value is error
    assert "x" not in cache.loaded()
    with cache.using("x") as model:
        assert model.users == 1 and cache.loaded()[-1] == "x"
    assert loads.calls == {"x": 2} and model.users == 0


def test_out_of_memory_on_load_evicts_everything_and_retries(
    cache: PipelineCache, loads: FakeLoads
) -> None:
    loads.failing["x"] = torch.cuda.OutOfMemoryError("CUDA out of memory")
    with cache.using("a"):
        model = cache.get("x")
    # the retry's evict_all ran from the loading thread without deadlocking, and passed
    # over the model in use
    assert loads.calls == {"x": 2} and model is cache.resident("x")
    assert cache.loaded() == ["a", "x"]


@pytest.mark.parametrize("budget_mb", [1024])  # about locking, not eviction
def test_the_load_after_a_failure_can_go_ahead(cache: PipelineCache, loads: FakeLoads) -> None:
    """A failed load lets go of the load lock: a load of another model is not stuck."""
    loads.failing["x"] = ModelDamaged("weights unreadable")
    with pytest.raises(ModelDamaged):
        cache.get("x")
    thread, got = run_in_thread(lambda: cache.get("y"))
    thread.join(WAIT)
    assert not thread.is_alive() and got == [cache.resident("y")]


class _Part:
    """A part loaded beside a model (a refiner stand-in) and what it weighs."""

    def __init__(self, nbytes: int) -> None:
        self.nbytes = nbytes


def test_an_attached_part_loads_once_and_counts_in_the_model_bytes(cache: PipelineCache) -> None:
    made: list[_Part] = []

    def load() -> _Part:
        made.append(_Part(100 * MB))
        return made[-1]

    with cache.using("c") as loaded:
        part = cache.attach(loaded, "refiner", 100 * MB, load)
        assert cache.attach(loaded, "refiner", 100 * MB, load) is part
        assert len(made) == 1 and loaded.nbytes == 200 * MB
        # room was made for it: the least recently used model went first
        assert cache.loaded() == ["b", "c"]
    # the model now weighs base + part, so the next model evicts by that weight
    cache.get("d")
    assert cache.loaded() == ["c", "d"]
