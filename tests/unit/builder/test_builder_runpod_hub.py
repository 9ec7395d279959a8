"""``.runpod/hub.json`` and ``.runpod/tests.json`` against the RunPod Hub's documented schema."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Literal

import pytest
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from sdworker.core.settings import Settings

ROOT = Path(__file__).resolve().parents[3]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Option(_Strict):
    label: str
    value: Any


class EnvInput(_Strict):
    name: str
    type: Literal["string", "number", "boolean"]
    description: str
    default: Any = None
    options: list[Option] | None = None
    advanced: bool = False

    @model_validator(mode="after")
    def default_matches_type(self) -> EnvInput:
        expected = {"string": str, "number": (int, float), "boolean": bool}[self.type]
        if self.default is not None and not isinstance(self.default, expected):
            raise ValueError(f"{self.name}: default {self.default!r} is not a {self.type}")
        if self.options and self.default not in [o.value for o in self.options]:
            raise ValueError(f"{self.name}: default {self.default!r} is not one of the options")
        return self


class EnvEntry(_Strict):
    key: str = Field(pattern=r"^[A-Z][A-Z0-9_]*$")
    input: EnvInput


class HubConfig(_Strict):
    runsOn: Literal["GPU", "CPU"]
    containerDiskInGb: int = Field(gt=0)
    gpuCount: int = Field(ge=1)
    gpuIds: str
    allowedCudaVersions: list[str]
    presets: list[dict[str, Any]] = []
    env: list[EnvEntry] = []


class Hub(_Strict):
    title: str = Field(min_length=1)
    description: str = Field(min_length=1)
    type: Literal["serverless"]
    category: Literal["audio", "embedding", "language", "image", "video"]
    iconUrl: str = ""
    config: HubConfig


class TestCase(_Strict):
    name: str
    input: dict[str, Any]
    timeout: int = Field(gt=0)


class TestEnv(_Strict):
    key: str
    value: str


class TestConfig(_Strict):
    gpuTypeId: str
    gpuCount: int = Field(ge=1)
    env: list[TestEnv] = []
    allowedCudaVersions: list[str]


class Tests(_Strict):
    tests: list[TestCase] = Field(min_length=1)
    config: TestConfig


def _load(name: str) -> Any:
    return json.loads((ROOT / ".runpod" / name).read_text())


def test_hub_json_follows_the_schema() -> None:
    hub = Hub.model_validate(_load("hub.json"))
    assert hub.category == "image"
    assert hub.config.runsOn == "GPU"


def test_hub_env_keys_are_real_settings() -> None:
    hub = Hub.model_validate(_load("hub.json"))
    known = {env for env, _, _ in Settings.documented()}
    keys = [e.key for e in hub.config.env]
    assert len(keys) == len(set(keys))
    assert set(keys) <= known, set(keys) - known
    assert "SDWORKER_DEFAULT_MODEL" in keys
    # the Hub sets each default as text: every one must start a worker
    as_text = {
        e.key: str(e.input.default).lower()
        if isinstance(e.input.default, bool)
        else str(e.input.default)
        for e in hub.config.env
        if e.input.default is not None
    }
    Settings.from_env(as_text)


def test_tests_json_follows_the_schema() -> None:
    tests = Tests.model_validate(_load("tests.json"))
    known = {env for env, _, _ in Settings.documented()}
    assert {e.key for e in tests.config.env} <= known
    for case in tests.tests:
        assert case.input["prompt"].strip()


def test_schema_rejects_what_the_hub_would() -> None:
    broken = _load("hub.json")
    broken["category"] = "images"
    with pytest.raises(ValidationError):
        Hub.model_validate(broken)
    broken = _load("tests.json")
    del broken["tests"][0]["timeout"]
    with pytest.raises(ValidationError):
        Tests.model_validate(broken)


def test_every_preset_sets_env_the_hub_lists_with_values_of_their_type() -> None:
    hub = Hub.model_validate(_load("hub.json"))
    inputs = {e.key: e.input for e in hub.config.env}
    names = [p["name"] for p in hub.config.presets]
    assert len(names) == len(set(names)) and any("FLUX.1" in n for n in names)
    assert any("SD 3.5" in n for n in names)
    for preset in hub.config.presets:
        assert set(preset) == {"name", "defaults"}, preset
        for key, value in preset["defaults"].items():
            assert key in inputs, (preset["name"], key)
            # the value must be one the env input itself would take
            EnvInput.model_validate({**inputs[key].model_dump(), "default": value})
