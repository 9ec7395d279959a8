"""``sdworker bake --from-env``: the Docker build arguments become ``sdworker bake`` arguments."""

from __future__ import annotations

from pathlib import Path

import pytest

from sdworker.builder.buildargs import BUILD_ARGS, MODEL_ID, bake_commands
from sdworker.builder.cli import bake_command
from sdworker.core.errors import ConfigError
from sdworker.core.settings import Settings


def test_the_first_model_gets_name_loras_aliases_and_every_model_the_options() -> None:
    environ = {
        "MODEL_ID": " org/base , org/second,",
        "MODEL_NAME": "base",
        "LORAS": "loras/a.safetensors, loras/b.safetensors",
        "MODEL_ALIASES": "sd15,",
        "UNRELATED": "x",
    }
    assert bake_commands(environ, ["--variant", "fp16"]) == [
        [
            "org/base",
            "--name", "base",
            "--lora", "loras/a.safetensors",
            "--lora", "loras/b.safetensors",
            "--alias", "sd15",
            "--variant", "fp16",
        ],
        ["org/second", "--variant", "fp16"],
    ]  # fmt: skip


def test_empty_build_arguments_add_nothing() -> None:
    environ = {"MODEL_ID": "tiny", **{arg.name: " " for arg in BUILD_ARGS}}
    assert bake_commands(environ, []) == [["tiny"]]


@pytest.mark.parametrize(("environ", "said"), [({}, "not set"), ({"MODEL_ID": " , "}, "empty")])
def test_no_model_id_is_a_clear_error(environ: dict[str, str], said: str) -> None:
    with pytest.raises(ConfigError, match=f"{MODEL_ID}: {said}; give the model"):
        bake_commands(environ, [])


def test_every_build_argument_is_a_bake_option() -> None:
    from sdworker.builder.cli import build_parser

    options = {o for action in build_parser()._actions for o in action.option_strings}
    for arg in BUILD_ARGS:
        assert arg.option in options, arg.name
        assert arg.name.isupper() and arg.help


def test_from_env_reports_a_missing_model_id(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert bake_command(["--from-env"], Settings(models_dir=tmp_path), environ={}) == 1
    assert "sdworker bake: error: MODEL_ID: not set" in capsys.readouterr().err
    assert not any(tmp_path.iterdir())


def test_from_env_and_a_model_ref_exclude_each_other(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        bake_command(["tiny", "--from-env"], environ={"MODEL_ID": "tiny"})
    assert exited.value.code == 2
    assert "MODEL_REF (tiny) and --from-env exclude each other" in capsys.readouterr().err


def test_a_model_ref_is_required_without_from_env(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        bake_command([])
    assert "MODEL_REF is required (or --from-env)" in capsys.readouterr().err
