"""Settings: read once from the environment; unusable values fail at start."""

from __future__ import annotations

from pathlib import Path

import pytest

from sdworker.core.errors import ConfigError
from sdworker.core.settings import Settings


def test_values_are_converted_by_type() -> None:
    s = Settings.from_env(
        {
            "SDWORKER_MODELS_DIR": "/m",
            "SDWORKER_MAX_PIXELS": "4096",
            "SDWORKER_VERIFY_SHA256": "yes",
            "SDWORKER_SAFETY_CHECKER": "auto",
            "SDWORKER_DEFAULT_MODEL": "",
        }
    )
    assert s.models_dir == Path("/m") and s.max_pixels == 4096 and s.verify_sha256 is True
    assert s.safety_checker is None and s.default_model is None


def test_a_bad_flag_names_its_variable() -> None:
    with pytest.raises(ConfigError, match="SDWORKER_VERIFY_SHA256"):
        Settings.from_env({"SDWORKER_VERIFY_SHA256": "maybe"})


def test_unusable_settings_fail_at_start_naming_the_variable() -> None:
    with pytest.raises(ConfigError) as info:
        Settings.from_env({"SDWORKER_DTYPE": "fp8", "SDWORKER_ATTENTION": "flash"})
    assert "SDWORKER_DTYPE" in str(info.value) and "SDWORKER_ATTENTION" in str(info.value)
    with pytest.raises(ConfigError, match="SDWORKER_URL_EXPIRY_S"):
        Settings.from_env({"SDWORKER_URL_EXPIRY_S": "0"})
    with pytest.raises(ConfigError, match="SDWORKER_MAX_PIXELS"):
        Settings.from_env({"SDWORKER_MAX_PIXELS": "abc"})


def test_handler_is_the_packaged_worker_unless_a_script_is_named() -> None:
    assert Settings.from_env({}).handler_path is None
    assert Settings.from_env({"SDWORKER_HANDLER": ""}).handler_path is None
    named = Settings.from_env({"SDWORKER_HANDLER": "my_handler.py"})
    assert named.handler_path == Path("my_handler.py")
