"""worker-comfyui's job: ``{"workflow": {...}, "images": [{name, image}]}`` in, its 5.x answer
``{"images": [{"filename", "type": "base64"|"s3_url", "data"}]}`` out.

The same format object reads a RunPod job's ``input`` (:mod:`sdworker.runpod.envelopes`) and
``POST /comfyui/runsync`` on the local endpoint. A workflow becomes one native job per
sampler its ``SaveImage`` nodes save (:mod:`.interpret`); ``PreviewImage`` outputs are read
but not made, since worker-comfyui returns only saved (``output``) images. Each PNG carries
the workflow in its ``prompt`` text chunk, as ComfyUI writes it. With a bucket (the worker's
``BUCKET_*`` settings, or the job's ``s3Config``) every image is uploaded and its entry is
``{"type": "s3_url", "data": <presigned URL>}``, as worker-comfyui does with
``BUCKET_ENDPOINT_URL`` set.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Annotated, Any

from pydantic import AfterValidator, Field

from sdworker.core import strictjson
from sdworker.core.errors import InvalidInput, Problem
from sdworker.core.jobs import Failure
from sdworker.formats.base import Decoded, Format, Models, http_status
from sdworker.formats.comfyui import images as pictures
from sdworker.formats.comfyui.evaluate import Context
from sdworker.formats.comfyui.files import Counters
from sdworker.formats.comfyui.interpret import Workflow, interpret
from sdworker.formats.comfyui.results import per_job, saved
from sdworker.formats.comfyui.uploads import clean_name
from sdworker.formats.validation import FormatBody, Text, refuse, validate

#: the most input images one job may carry
MAX_IMAGES = 64


def _base64(value: str) -> str:
    if value.lstrip()[:8].lower().startswith(("http://", "https://")):
        # worker-comfyui decodes every image it is given: no address is ever fetched
        raise refuse("not_base64", "must be the image in base64 (with or without a data: prefix)")
    return value


class InputImage(FormatBody):
    """One input image: the name ``LoadImage`` nodes use, and the image in base64."""

    name: Text = Field(min_length=1, max_length=255)
    image: Annotated[Text, AfterValidator(_base64)] = Field(min_length=1)


class WorkerInput(FormatBody):
    """worker-comfyui's job ``input``."""

    workflow: dict[str, Any]
    images: list[InputImage] | None = Field(default=None, max_length=MAX_IMAGES)
    #: Comfy.org's API-node key (worker-comfyui 5.5): for nodes sdworker does not run
    inert = frozenset({"comfy_org_api_key", "api_key_comfy_org"})


@dataclass(frozen=True)
class WorkerRequest:
    """A worker-comfyui job read: the workflow interpreted."""

    workflow: Workflow


def png_text(prompt: dict[str, Any], extra: dict[str, Any] | None = None) -> dict[str, str]:
    """The PNG text chunks ComfyUI writes: ``prompt`` (the graph), then one per
    ``extra_pnginfo`` key (the editor's ``workflow``), each as ``json.dumps`` writes it."""
    chunks = {"prompt": json.dumps(prompt)}
    for key, value in (extra or {}).items():
        chunks[str(key)] = json.dumps(value)
    return chunks


def read_workflow(
    workflow: Any, images: Mapping[str, str], models: Models, previews: bool
) -> Workflow:
    """The interpreted workflow; its PNG ``prompt`` must be strict JSON (a NaN in a title
    could not be written back)."""
    result = interpret(workflow, Context(models, images), previews=previews)
    found = strictjson.find(result.prompt, "workflow")
    if found is not None:
        raise InvalidInput.one(found[0], found[1], has_value=False)
    return result


def _images(given: list[InputImage] | None) -> tuple[dict[str, str], list[Problem]]:
    found: dict[str, str] = {}
    problems = []
    for index, item in enumerate(given or []):
        try:
            clean_name(item.name, f"images[{index}].name")
        except InvalidInput as exc:
            problems += exc.problems  # a name ComfyUI would keep in its input folder
            continue
        if item.name in found:
            rule = "is given twice: names must be unique (LoadImage nodes name them)"
            problems.append(Problem(f"images[{index}].name", rule, item.name))
        found[item.name] = item.image
    return found, problems


class WorkerComfyFormat(Format[WorkerRequest]):
    """worker-comfyui's job: a workflow and its input images (see the module docstring)."""

    name = "worker-comfyui"

    def decode(self, body: Any, models: Models, **where: str) -> Decoded[WorkerRequest]:
        """``POST /comfyui/runsync``'s body: a RunPod job, ``{"input": {...}}``."""
        if not isinstance(body, dict) or "input" not in body:
            raise InvalidInput.one("input", 'is required (the body is a job: {"input": ...})', body)
        extra = set(body) - {"input", "id"}
        if extra:
            raise InvalidInput.one(sorted(extra)[0], "is not a known field of the job (input)")
        return self.decode_input(body["input"], models)

    def decode_input(self, raw: Any, models: Models) -> Decoded[WorkerRequest]:
        """A job's ``input`` (an object, or its JSON text, as worker-comfyui takes it)."""
        if isinstance(raw, str):
            try:
                raw = json.loads(raw)
            except ValueError:
                raise InvalidInput.one("input", "is not valid JSON", has_value=False) from None
        if not isinstance(raw, dict):
            raise InvalidInput.one("input", "must be an object with workflow", raw)
        parsed, problems = validate(WorkerInput, raw)
        if parsed is None:
            raise InvalidInput(problems)
        images, more = _images(parsed.images)
        if problems or more:
            raise InvalidInput(problems + more)
        workflow = read_workflow(parsed.workflow, images, models, previews=False)
        text = png_text(workflow.prompt)
        inputs = []
        for job in workflow.jobs:
            native = {**job.input, "output_format": "png", "png_text": text}
            if models.uploads:
                native["upload"] = True  # worker-comfyui uploads every image to a bucket
            inputs.append(native)
        names = [job.names for job in workflow.jobs]
        return Decoded(inputs, WorkerRequest(workflow), names=names)

    def encode(
        self, decoded: Decoded[WorkerRequest], outputs: list[dict[str, Any]], execution_ms: int
    ) -> dict[str, Any]:
        """RunPod's ``/runsync`` body of a finished job, worker-comfyui's answer its
        ``output``."""
        return {
            "id": decoded.job_ids[0] if decoded.job_ids else "",
            "status": "COMPLETED",
            "executionTime": execution_ms,
            "output": answer(decoded.request.workflow, outputs),
        }

    def encode_error(self, failure: Failure) -> tuple[int, dict[str, Any]]:
        """RunPod's ``/runsync`` body of a failed job."""
        status = http_status(failure, client=400)
        return status, {"status": "FAILED", "error": failure.message, "output": details(failure)}


def answer(workflow: Workflow, outputs: list[dict[str, Any]]) -> dict[str, Any]:
    """``{"images": [{"filename", "type", "data"}]}`` for every saved image, or worker-comfyui's
    answer to a run that saved none."""
    images = []
    for item in saved(workflow, per_job(workflow, outputs), Counters()):
        if item.output.kind != "output":
            continue  # worker-comfyui skips temp (PreviewImage) images
        url = item.entry.get("url")
        kind, data = (
            ("s3_url", url)
            if url
            else ("base64", pictures.payload(str(item.entry.get("image", ""))))
        )
        images.append({"filename": item.name.filename, "type": kind, "data": data})
    if not images:
        return {"status": "success_no_images", "images": []}
    return {"images": images}


def details(failure: Failure) -> dict[str, Any]:
    """What worker-comfyui adds to a failure: ``details``, one line per problem."""
    return {"details": [str(p) for p in failure.problems] or [failure.message]}


WORKER_COMFYUI = WorkerComfyFormat()
