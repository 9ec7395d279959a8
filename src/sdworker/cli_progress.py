"""How ``sdworker generate`` shows a job's progress: a bar on a terminal, plain lines elsewhere.

The handler reports ``{"step", "steps", "progress"}`` where ``steps`` counts the denoising steps
of every image of the job (each image is its own pipeline call), so the image being made is
``step`` over the steps of one image.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from typing import Any, TextIO


def image_count(job_input: Any) -> int | None:
    """How many images a native input asks for (None when it does not say: an envelope)."""
    if not isinstance(job_input, dict) or "prompt" not in job_input:
        return None
    count = job_input.get("num_images", job_input.get("num_images_per_prompt", 1))
    return count if isinstance(count, int) and count > 0 else None


def image_of(step: int, steps: int, images: int) -> int:
    """The 1-based image that ``step`` of ``steps`` (all images together) belongs to."""
    per_image = steps / images
    return min(images, max(1, math.ceil(step / per_image)))


def eta_text(seconds: float | None) -> str:
    if seconds is None:
        return "?"
    seconds = round(seconds)
    return f"{seconds // 60}m{seconds % 60:02d}s" if seconds >= 60 else f"{seconds}s"


class JobProgress:
    """A progress sink for one job (``Worker.handle_sync(job, on_progress=...)``).

    On a terminal: one tqdm bar (steps, image i/n, elapsed and ETA). Elsewhere (a log file, a
    pipe, CI): a plain line at each tenth of the job and at its end, with the same facts.
    """

    def __init__(
        self,
        job_id: str,
        images: int | None,
        stream: TextIO,
        *,
        tty: bool | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.job_id = job_id
        self.images = images
        self.stream = stream
        self.tty = stream.isatty() if tty is None else tty
        self._clock = clock
        self._bar: Any = None
        self._first: tuple[float, int] | None = None
        self._next_tenth = 0

    def _where(self, step: int, steps: int) -> str:
        if not self.images or self.images < 2 or steps <= 0:
            return ""
        return f"image {image_of(step, steps, self.images)}/{self.images}"

    def eta_s(self, step: int, steps: int) -> float | None:
        """Seconds left at the rate since the first update (None until there is a rate)."""
        now = self._clock()
        if self._first is None:
            self._first = (now, step)
            return None
        since, first_step = self._first
        done = step - first_step
        if done <= 0 or now <= since:
            return None
        return (steps - step) * (now - since) / done

    def __call__(self, update: dict[str, Any]) -> None:
        step, steps = int(update.get("step", 0)), int(update.get("steps", 0))
        if steps <= 0:
            return
        eta = self.eta_s(step, steps)
        where = self._where(step, steps)
        if self.tty:
            self._draw(step, steps, where)
            return
        tenth = step * 10 // steps
        if tenth < self._next_tenth and step < steps:
            return
        self._next_tenth = tenth + 1
        parts = [f"step {step}/{steps}", f"{100 * step // steps}%"]
        if where:
            parts.append(where)
        if step < steps:
            parts.append(f"eta {eta_text(eta)}")
        print(f"{self.job_id}: " + ", ".join(parts), file=self.stream, flush=True)

    def _draw(self, step: int, steps: int, where: str) -> None:
        if self._bar is None:
            from tqdm import tqdm

            self._bar = tqdm(
                total=steps, unit="step", desc=self.job_id, file=self.stream, dynamic_ncols=True
            )
        if self._bar.total != steps:  # a scheduler with a warm-up step recounts at the start
            self._bar.total = steps
        self._bar.n = step
        if where:
            self._bar.set_postfix_str(where, refresh=False)
        self._bar.refresh()

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None
