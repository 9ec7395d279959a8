"""Model aliases: the setting's syntax, the registry's resolution and start-up checks, the
unknown-model message, ``sdworker bake --alias``, and every format honouring them."""

from __future__ import annotations

from pathlib import Path

import pytest

from sdworker.core.aliases import parse_aliases, unknown_model_message
from sdworker.core.errors import ConfigError, ModelNotFound
from sdworker.core.manifest import Manifest
from sdworker.core.models import ModelRegistry
from sdworker.core.settings import Settings


def _bake(models: Path, name: str, aliases: tuple[str, ...] = ()) -> None:
    folder = models / name
    folder.mkdir(parents=True)
    Manifest(
        name=name,
        family="sd2",
        native_width=768,
        native_height=768,
        default_scheduler="DDIMScheduler",
        has_safety_checker=False,
        aliases=aliases,
    ).write(folder)


def _registry(models: Path, aliases: str | None = None, **more: object) -> ModelRegistry:
    return ModelRegistry(Settings(models_dir=models, model_aliases=aliases, **more))


def test_parse_aliases() -> None:
    text = " stable-diffusion-2=sd21, stabilityai/stable-diffusion-2-1 = sd21 ,,"
    assert parse_aliases(text) == {
        "stable-diffusion-2": "sd21",
        "stabilityai/stable-diffusion-2-1": "sd21",
    }
    assert parse_aliases(None) == {} == parse_aliases("")


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ("sd2", "expected ALIAS=BAKED_NAME"),
        ("sd2=", "expected ALIAS=BAKED_NAME"),
        ("=sd21", "must not be empty"),
        ("a b=sd21", "white space"),
        ("x=a,x=b", "names two models"),
    ],
)
def test_bad_alias_settings_stop_at_start(text: str, says: str) -> None:
    with pytest.raises(ConfigError) as caught:
        Settings.from_env({"SDWORKER_MODEL_ALIASES": text})
    assert "SDWORKER_MODEL_ALIASES" in str(caught.value) and says in str(caught.value)


def test_aliases_from_the_setting_and_the_manifest_resolve(tmp_path: Path) -> None:
    _bake(tmp_path, "sd21", aliases=("stable-diffusion-2",))
    _bake(tmp_path, "other")
    registry = _registry(tmp_path, "stabilityai/stable-diffusion-2-1=sd21")
    registry.check_aliases()
    assert registry.resolve("stable-diffusion-2") == "sd21"
    assert registry.resolve("stabilityai/stable-diffusion-2-1") == "sd21"
    assert registry.resolve("other") == "other"
    assert registry.resolve("nope") is None
    assert registry.get("stable-diffusion-2").name == "sd21"
    manifest = registry.get("sd21").manifest
    assert manifest.aliases == ("stabilityai/stable-diffusion-2-1", "stable-diffusion-2")
    assert registry.named({"model": "stable-diffusion-2", "prompt": "x"}) == {
        "model": "sd21",
        "prompt": "x",
    }
    assert registry.named({"model": "nope"}) == {"model": "nope"}


def test_the_setting_wins_over_a_baked_alias(tmp_path: Path) -> None:
    _bake(tmp_path, "a", aliases=("fast",))
    _bake(tmp_path, "b")
    registry = _registry(tmp_path, "fast=b")
    assert registry.resolve("fast") == "b"
    assert registry.get("a").manifest.aliases == ()


def test_the_default_model_may_be_an_alias(tmp_path: Path) -> None:
    _bake(tmp_path, "a")
    _bake(tmp_path, "sd21")
    registry = _registry(tmp_path, "sd2=sd21", default_model="sd2")
    registry.verify()
    assert registry.default_name == "sd21"


@pytest.mark.parametrize(
    ("aliases", "baked", "says"),
    [
        ("sd2=missing", {}, "alias 'sd2' names 'missing', which is not a baked model"),
        ("other=sd21", {}, "alias 'other' of 'sd21' is another baked model's name"),
        (None, {"sd21": ("x",), "other": ("x",)}, "alias 'x' is baked into two models"),
    ],
)
def test_an_alias_that_names_no_model_stops_the_worker(
    tmp_path: Path, aliases: str | None, baked: dict[str, tuple[str, ...]], says: str
) -> None:
    for name in ("sd21", "other"):
        _bake(tmp_path, name, baked.get(name, ()))
    registry = _registry(tmp_path, aliases)
    with pytest.raises(ConfigError) as caught:
        registry.verify()
    assert says in str(caught.value)
    assert "baked: other, sd21" in str(caught.value) or "missing" not in str(aliases)


def test_the_worker_refuses_to_start(tmp_path: Path) -> None:
    from sdworker.runpod.adapter import start

    _bake(tmp_path, "sd21")
    settings = Settings(models_dir=tmp_path, model_aliases="sd2=sd-2-1", preload=False)
    with pytest.raises(SystemExit) as caught:
        start(settings)
    assert "refusing to start" in str(caught.value)
    assert "alias 'sd2' names 'sd-2-1', which is not a baked model" in str(caught.value)


def test_the_endpoint_refuses_to_start(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from sdworker.server.cli import serve_command

    _bake(tmp_path, "sd21")
    monkeypatch.setenv("SDWORKER_MODELS_DIR", str(tmp_path))
    monkeypatch.setenv("SDWORKER_MODEL_ALIASES", "sd2=nothing")
    assert serve_command(["--workers", "0", "--port", "0"]) == 2
    err = capsys.readouterr().err
    assert "refusing to start" in err and "alias 'sd2' names 'nothing'" in err


def test_the_unknown_model_message_lists_models_and_the_fix(tmp_path: Path) -> None:
    _bake(tmp_path, "sd21")
    registry = _registry(tmp_path)
    with pytest.raises(ModelNotFound) as caught:
        registry.get("stable-diffusion-2")
    message = str(caught.value)
    assert "baked models: sd21" in message
    assert "SDWORKER_MODEL_ALIASES='stable-diffusion-2=sd21'" in message
    assert "--alias stable-diffusion-2" in message
    assert message == unknown_model_message("stable-diffusion-2", ["sd21"])


@pytest.mark.torch  # baking the tiny model
def test_bake_alias_is_recorded_in_the_manifest(tmp_path: Path) -> None:
    from sdworker.builder.cli import bake_command

    argv = ["tiny", "--name", "t", "--alias", "sd2", "--alias", "org/sd-2", "--alias", "sd2"]
    assert bake_command([*argv, "--models-dir", str(tmp_path)], Settings()) == 0
    assert Manifest.read(tmp_path / "t").aliases == ("sd2", "org/sd-2")
    registry = _registry(tmp_path)
    assert registry.resolve("org/sd-2") == "t"
    registry.verify()  # the manifest's files still match after the aliases were written


def test_bake_refuses_a_bad_alias_before_baking(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from sdworker.builder.cli import bake_command

    argv = ["tiny", "--name", "t", "--alias", "a,b", "--models-dir", str(tmp_path)]
    assert bake_command(argv, Settings()) == 1
    assert "--alias" in capsys.readouterr().err
    assert not (tmp_path / "t").exists()


def test_every_format_resolves_aliases(tmp_path: Path) -> None:
    """The formats read manifests from the registry: an alias works in each model field."""
    from sdworker.formats.a1111.options import Options, set_options
    from sdworker.formats.base import Models
    from sdworker.formats.deepinfra import DEEPINFRA
    from sdworker.formats.salad import SALAD
    from sdworker.formats.stochastic import STOCHASTIC

    _bake(tmp_path, "sd21")
    _bake(tmp_path, "other")
    registry = _registry(tmp_path, "stable-diffusion-2=sd21,stabilityai/stable-diffusion-2-1=sd21")
    manifests = [info.manifest for info in registry.all()]
    models = Models(manifests, "other")
    body = {"prompt": "x", "params": {}}
    assert STOCHASTIC.decode(body, models, model="stable-diffusion-2").inputs[0]["model"] == "sd21"
    deepinfra = DEEPINFRA.decode({"prompt": "x"}, models, model="stabilityai/stable-diffusion-2-1")
    assert deepinfra.inputs[0]["model"] == "sd21"
    salad = {"modelInputs": {"prompt": "x"}, "callInputs": {"MODEL_ID": "stable-diffusion-2"}}
    assert SALAD.decode(salad, models).inputs[0]["model"] == "sd21"
    # A1111's checkpoint option (and override_settings, which reads it the same way)
    _, chosen = set_options(Options(), {"sd_model_checkpoint": "stable-diffusion-2"}, manifests)
    assert chosen == "sd21"


def test_the_image_bake_step_passes_model_aliases() -> None:
    from sdworker.builder.buildargs import bake_commands

    environ = {"MODEL_ID": "tiny,other", "MODEL_ALIASES": " sd2, org/sd-2 ,"}
    assert bake_commands(environ, []) == [
        ["tiny", "--alias", "sd2", "--alias", "org/sd-2"],
        ["other"],
    ]
