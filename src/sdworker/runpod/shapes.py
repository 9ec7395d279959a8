"""The answer's shape for native jobs: ours (RunPod's SD v1 endpoint's), or worker-sdxl's.

A deployment that replaces worker-sdxl keeps its clients by answering as worker-sdxl does
(``SDWORKER_OUTPUT_SHAPE=worker-sdxl``). The setting chooses, never the job: the same input
could come from either kind of client. Failures keep ``{"error", "failure"}`` either way, and
envelope jobs answer in their own dialect's shape.
"""

from __future__ import annotations

from typing import Any

#: the accepted ``SDWORKER_OUTPUT_SHAPE`` values
OUTPUT_SHAPES = ("native", "worker-sdxl")


def shape_output(output: list[dict[str, Any]], shape: str) -> Any:
    """A successful native job's output list in ``shape``.

    worker-sdxl's: ``{"images": [...], "image_url": <the first>, "seed": <the first seed>}``,
    each image a ``data:image/png;base64,...`` URI, or its URL when it was uploaded (as
    worker-sdxl answers with a bucket configured)."""
    if shape != "worker-sdxl" or not output:
        return output
    images = [
        item["url"]
        if "url" in item
        else f"data:image/{item.get('format', 'png')};base64,{item['image']}"
        for item in output
    ]
    return {"images": images, "image_url": images[0], "seed": output[0]["seed"]}
