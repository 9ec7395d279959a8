"""``sdworker generate``'s progress: a tqdm bar on a terminal, plain lines elsewhere."""

from __future__ import annotations

import io

from sdworker.cli_progress import JobProgress, eta_text, image_count, image_of


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def feed(progress: JobProgress, clock: Clock, steps: int, every_s: float = 0.5) -> None:
    for step in range(1, steps + 1):
        progress({"step": step, "steps": steps, "progress": round(step / steps, 4)})
        clock.now += every_s


def test_plain_lines_at_each_tenth_with_image_and_eta() -> None:
    out, clock = io.StringIO(), Clock()
    progress = JobProgress("job-1", 2, out, tty=False, clock=clock)
    feed(progress, clock, 40)
    lines = out.getvalue().splitlines()
    assert len(lines) == 11  # 0/10 (the first step), then each tenth, and the end
    assert lines[0] == "job-1: step 1/40, 2%, image 1/2, eta ?"
    assert lines[1] == "job-1: step 4/40, 10%, image 1/2, eta 18s"
    assert "image 2/2" in lines[6]
    assert lines[-1] == "job-1: step 40/40, 100%, image 2/2"


def test_one_image_or_an_envelope_shows_no_image_count() -> None:
    out, clock = io.StringIO(), Clock()
    progress = JobProgress("job-2", None, out, tty=False, clock=clock)
    feed(progress, clock, 5)
    assert "image" not in out.getvalue()
    assert out.getvalue().splitlines()[-1] == "job-2: step 5/5, 100%"


def test_a_terminal_gets_one_tqdm_bar() -> None:
    out, clock = io.StringIO(), Clock()
    progress = JobProgress("job-3", 3, out, tty=True, clock=clock)
    feed(progress, clock, 30, every_s=0)
    progress.close()
    text = out.getvalue()
    assert "\r" in text and "\n" not in text.rstrip("\n")  # one line, redrawn
    assert "job-3" in text and "30/30" in text and "image 3/3" in text


def test_helpers() -> None:
    assert image_count({"prompt": "x", "num_images": 3}) == 3
    assert image_count({"prompt": "x", "num_images_per_prompt": 2}) == 2
    assert image_count({"prompt": "x"}) == 1
    assert image_count({"modelInputs": {}}) is None
    assert [image_of(s, 20, 2) for s in (1, 10, 11, 20)] == [1, 1, 2, 2]
    assert image_of(21, 20, 2) == 2  # a warm-up step never makes image 3 of 2
    assert eta_text(None) == "?" and eta_text(75.4) == "1m15s" and eta_text(9.6) == "10s"
