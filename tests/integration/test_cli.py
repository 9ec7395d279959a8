"""``sdworker generate``: one job through the handler, images written as files."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from PIL import Image

from sdworker.cli import main


@pytest.fixture
def env(models_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SDWORKER_MODELS_DIR", str(models_dir))
    monkeypatch.setenv("SDWORKER_DEFAULT_MODEL", "tiny")


def write(tmp_path: Path, job: dict[str, object]) -> Path:
    path = tmp_path / "job.json"
    path.write_text(json.dumps(job))
    return path


def test_generate_writes_one_file_per_image(
    env: None, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    job = {
        "input": {
            "prompt": "a barn",
            "seed": 9,
            "num_images": 2,
            "width": 64,
            "height": 64,
            "num_inference_steps": 2,
            "output_format": "webp",
        }
    }
    assert (
        main(["generate", str(write(tmp_path, job)), "-o", str(tmp_path / "out"), "--quiet"]) == 0
    )
    files = sorted((tmp_path / "out").iterdir())
    assert [f.name for f in files] == ["0-9.webp", "1-10.webp"]
    assert Image.open(files[0]).size == (64, 64)
    summary = json.loads(capsys.readouterr().out)
    assert [i["seed"] for i in summary["images"]] == [9, 10]


def test_generate_reports_a_bad_input_and_fails(
    env: None, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    job = {"input": {"prompt": "a barn", "width": 500}}
    assert main(["generate", str(write(tmp_path, job)), "-o", str(tmp_path / "out")]) == 1
    assert "width: must be a multiple of 8 (got 500)" in capsys.readouterr().err


def test_generate_prints_an_envelope_answer_in_its_shape(
    env: None, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    job = {"input": {"api": {"method": "GET", "endpoint": "/sdapi/v1/samplers"}, "payload": {}}}
    assert main(["generate", str(write(tmp_path, job)), "-o", str(tmp_path / "out")]) == 0
    answer = json.loads(capsys.readouterr().out)
    assert any(s["name"] == "Euler a" for s in answer)
    assert not (tmp_path / "out").exists()


def test_generate_reports_progress_and_the_files_it_wrote(
    env: None, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    job = {
        "id": "cli-job",
        "input": {"prompt": "a barn", "seed": 3, "num_images": 2, "width": 64, "height": 64}
        | {"num_inference_steps": 3},
    }
    out = tmp_path / "out"
    assert main(["generate", str(write(tmp_path, job)), "-o", str(out)]) == 0
    err = capsys.readouterr().err.splitlines()
    # not a terminal: plain lines, the last one the whole job (PNDM adds a warm-up step)
    lines = [line for line in err if line.startswith("cli-job: step ")]
    assert lines[0].startswith("cli-job: step 1/") and lines[0].endswith("image 1/2, eta ?")
    assert lines[-1].endswith(", 100%, image 2/2")
    assert f"wrote {out / '0-3.png'}" in err and f"wrote {out / '1-4.png'}" in err
