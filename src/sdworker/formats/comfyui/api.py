"""ComfyUI's own HTTP API over the native jobs: ``POST /prompt`` queues a workflow, and its
history (``GET /history/{prompt_id}``), its images (``GET /view``) and its queue say what
became of it, in ComfyUI's shapes.

A prompt is the native jobs its workflow became (:mod:`.interpret`), queued at once;
:class:`Prompts` remembers each (the endpoint's memory, as ComfyUI keeps its history, at most
:data:`MAX_HISTORY` of them). A prompt's history entry is written once all its jobs have
ended, the first time it is asked for: its images are then given their ComfyUI names
(``ComfyUI_00001_.png``, counted across the endpoint) and ``/view`` serves them from the
jobs' results, for as long as the queue keeps those.
"""

from __future__ import annotations

import asyncio
import itertools
import threading
import time
import uuid
from collections import OrderedDict
from dataclasses import dataclass, field, replace
from typing import Any

from pydantic import Field

from sdworker.core import strictjson
from sdworker.core.errors import InvalidInput
from sdworker.core.jobs import Failure, JobGateway, JobView, Status
from sdworker.formats.base import Decoded, Format, Models, Queued, http_status
from sdworker.formats.comfyui.errors import parse_field
from sdworker.formats.comfyui.files import Counters
from sdworker.formats.comfyui.interpret import Workflow
from sdworker.formats.comfyui.results import Saved, saved
from sdworker.formats.comfyui.uploads import InputImages, Uploads
from sdworker.formats.comfyui.worker import png_text, read_workflow
from sdworker.formats.pipeline import outputs_of
from sdworker.formats.validation import FormatBody, LaxBool, LaxFloat, Text, validate

#: prompts remembered (ComfyUI keeps 10,000 history entries; each here holds its workflow)
MAX_HISTORY = 1000
#: what ``extra_data`` may carry that must never be stored (Comfy.org credentials)
_SECRET_KEYS = ("api_key_comfy_org", "auth_token_comfy_org")


class PromptBody(FormatBody):
    """``POST /prompt``'s body, as ComfyUI's editor and its API examples send it."""

    prompt: dict[str, Any]
    client_id: Text | None = Field(default=None, max_length=200)
    prompt_id: Text | None = Field(default=None, min_length=1, max_length=200)
    extra_data: dict[str, Any] | None = None
    number: LaxFloat | None = None
    front: LaxBool | None = None
    partial_execution_targets: list[Text] | None = Field(default=None, max_length=100)


@dataclass
class Prompt:
    """One queued prompt: its workflow, its jobs, and its history entry once it has ended."""

    prompt_id: str
    number: int
    workflow: Workflow
    client_id: str | None
    extra_data: dict[str, Any]
    job_ids: list[str] = field(default_factory=list)
    created: float = field(default_factory=time.time)
    entry: dict[str, Any] | None = None
    images: list[Saved] = field(default_factory=list)
    #: the job that failed and why, once ended
    failure: tuple[int, Failure] | None = None

    @property
    def outputs_to_execute(self) -> list[str]:
        return [o.ref.node_id for o in self.workflow.outputs]

    def queue_item(self) -> list[Any]:
        """ComfyUI's queue tuple: ``[number, prompt_id, prompt, extra_data, outputs]``."""
        return [
            self.number,
            self.prompt_id,
            self.workflow.prompt,
            self.extra_data,
            self.outputs_to_execute,
        ]


class Listeners:
    """The websockets following prompts, by client id: each gets the prompts queued for it."""

    def __init__(self) -> None:
        self.queues: dict[str, set[asyncio.Queue[Prompt]]] = {}

    def subscribe(self, client_id: str) -> asyncio.Queue[Prompt]:
        queue: asyncio.Queue[Prompt] = asyncio.Queue()
        self.queues.setdefault(client_id, set()).add(queue)
        return queue

    def unsubscribe(self, client_id: str, queue: asyncio.Queue[Prompt]) -> None:
        found = self.queues.get(client_id)
        if found is not None:
            found.discard(queue)
            if not found:
                del self.queues[client_id]

    def announce(self, prompt: Prompt) -> None:
        for queue in self.queues.get(prompt.client_id or "", ()):
            queue.put_nowait(prompt)


@dataclass
class Prompts:
    """The prompts of one endpoint, oldest first, and the files their history names."""

    uploads: Uploads
    counters: Counters = field(default_factory=Counters)
    by_id: OrderedDict[str, Prompt] = field(default_factory=OrderedDict)
    #: (type, subfolder, filename) -> (prompt, the saved image)
    files: dict[tuple[str, str, str], tuple[Prompt, Saved]] = field(default_factory=dict)
    numbers: itertools.count[int] = field(default_factory=itertools.count)
    listeners: Listeners = field(default_factory=Listeners)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def add(self, prompt: Prompt) -> None:
        """Keep ``prompt`` (the oldest forgotten past :data:`MAX_HISTORY`) and tell the
        websockets of its client."""
        with self._lock:
            self.by_id.pop(prompt.prompt_id, None)
            self.by_id[prompt.prompt_id] = prompt
            while len(self.by_id) > MAX_HISTORY:
                _, old = self.by_id.popitem(last=False)
                self._forget_files(old)
        self.listeners.announce(prompt)

    def forget(self, prompt_id: str) -> None:
        with self._lock:
            old = self.by_id.pop(prompt_id, None)
            if old is not None:
                self._forget_files(old)

    def _forget_files(self, prompt: Prompt) -> None:
        for image in prompt.images:
            self.files.pop(_file_key(image), None)

    def all(self) -> list[Prompt]:
        with self._lock:
            return list(self.by_id.values())

    def get(self, prompt_id: str) -> Prompt | None:
        return self.by_id.get(prompt_id)

    async def views(self, gateway: JobGateway, prompt: Prompt) -> list[JobView | None]:
        return [await gateway.get(job_id) for job_id in prompt.job_ids]

    async def entry(self, gateway: JobGateway, prompt: Prompt) -> dict[str, Any] | None:
        """The history entry of ``prompt`` once every job has ended (None before)."""
        if prompt.entry is not None:
            return prompt.entry
        views = await self.views(gateway, prompt)
        if not all(view is None or view.status.is_terminal() for view in views):
            return None
        with self._lock:
            if prompt.entry is None:  # another request may have written it meanwhile
                self._write(prompt, views)
        return prompt.entry

    def _write(self, prompt: Prompt, views: list[JobView | None]) -> None:
        # each image by where it is (its job and place), not its bytes: /view reads them
        # from the job's result, so the history holds no image
        by_job = [
            [{"job_id": view.id, "index": index} for index, _ in enumerate(outputs_of(view))]
            if view is not None and view.status is Status.COMPLETED
            else []
            for view in views
        ]
        prompt.images = saved(prompt.workflow, by_job, self.counters)
        for image in prompt.images:
            self.files[_file_key(image)] = (prompt, image)
        prompt.failure = _first_failure(prompt, views)
        prompt.entry = history_entry(prompt)


def _file_key(image: Saved) -> tuple[str, str, str]:
    return (image.name.type, image.name.subfolder, image.name.filename)


def _first_failure(prompt: Prompt, views: list[JobView | None]) -> tuple[int, Failure] | None:
    for index, view in enumerate(views):
        if view is None:
            return index, Failure("job_expired", "the job's result expired before it was read")
        if view.status is not Status.COMPLETED:
            failure = view.failure
            if view.status is not Status.FAILED:
                failure = Failure(view.status.value.lower(), failure.message)
            return index, failure.renamed(prompt.workflow.jobs[index].names)
    return None


def _ms(seconds: float) -> int:
    return int(seconds * 1000)


def execution_error(prompt: Prompt, index: int, failure: Failure) -> dict[str, Any]:
    """ComfyUI's ``execution_error`` data: the node the failure is about (a problem's node,
    else the job's sampler)."""
    job = prompt.workflow.jobs[index]
    node = next((parse_field(p.field) for p in failure.problems if parse_field(p.field)), None)
    node = node or parse_field(job.names.get("input", ""))
    return {
        "prompt_id": prompt.prompt_id,
        "node_id": node.node_id if node else "",
        "node_type": node.class_type if node else "",
        "executed": [],
        "exception_message": failure.message,
        "exception_type": failure.kind,
        "traceback": [],
        "current_inputs": {},
        "current_outputs": {},
        "timestamp": _ms(time.time()),
    }


def messages(prompt: Prompt) -> list[list[Any]]:
    """The status messages a history entry lists."""
    start = {"prompt_id": prompt.prompt_id, "timestamp": _ms(prompt.created)}
    found: list[list[Any]] = [
        ["execution_start", start],
        ["execution_cached", {"nodes": [], **start}],
    ]
    end = {"prompt_id": prompt.prompt_id, "timestamp": _ms(time.time())}
    if prompt.failure is None:
        found.append(["execution_success", end])
    elif prompt.failure[1].code in ("cancelled", "timed_out"):
        found.append(["execution_interrupted", {**end, "node_id": "", "node_type": "", "executed": []}])  # fmt: skip
    else:
        found.append(["execution_error", execution_error(prompt, *prompt.failure)])
    return found


def node_outputs(prompt: Prompt) -> dict[str, dict[str, list[dict[str, str]]]]:
    """``{node_id: {"images": [{filename, subfolder, type}]}}`` of the saved images."""
    found: dict[str, dict[str, list[dict[str, str]]]] = {}
    for image in prompt.images:
        found.setdefault(image.output.ref.node_id, {"images": []})["images"].append(
            image.name.as_json()
        )
    return found


def history_entry(prompt: Prompt) -> dict[str, Any]:
    """A prompt's entry in ``GET /history``."""
    outputs = node_outputs(prompt)
    return {
        "prompt": prompt.queue_item(),
        "outputs": outputs,
        "status": {
            "status_str": "success" if prompt.failure is None else "error",
            "completed": prompt.failure is None,
            "messages": messages(prompt),
        },
        "meta": {
            node: {"node_id": node, "display_node": node, "parent_node": None, "real_node_id": node}
            for node in outputs
        },
    }


@dataclass(frozen=True)
class ApiRequest:
    """A ``POST /prompt`` read."""

    prompt_id: str
    client_id: str | None
    workflow: Workflow
    extra_data: dict[str, Any]
    front: bool = False


class ComfyApiFormat(Format[ApiRequest]):
    """ComfyUI's ``POST /prompt``: the workflow's jobs are queued, the prompt answered at once."""

    name = "comfyui"
    answers = "queued"

    def __init__(self, prompts: Prompts) -> None:
        self.prompts = prompts

    def decode(self, body: Any, models: Models, **where: str) -> Decoded[ApiRequest]:
        if not isinstance(body, dict) or "prompt" not in body:
            raise InvalidInput.one("prompt", "is required (no prompt provided)", has_value=False)
        parsed, problems = validate(PromptBody, body)
        if problems or parsed is None:
            raise InvalidInput(problems)
        found = strictjson.find(parsed.extra_data, "extra_data")
        if found is not None:  # it is stored and answered back: it must be JSON
            raise InvalidInput.one(found[0], found[1], has_value=False)
        images = InputImages(self.prompts.uploads)
        workflow = read_workflow(parsed.prompt, images, models, previews=True)
        targets = parsed.partial_execution_targets
        if targets is not None:
            workflow = _only(workflow, set(targets))
        extra = {k: v for k, v in (parsed.extra_data or {}).items() if k not in _SECRET_KEYS}
        if parsed.client_id:
            extra["client_id"] = parsed.client_id
        pnginfo = extra.get("extra_pnginfo")
        text = png_text(workflow.prompt, pnginfo if isinstance(pnginfo, dict) else None)
        inputs = [{**job.input, "output_format": "png", "png_text": text} for job in workflow.jobs]
        request = ApiRequest(
            parsed.prompt_id or str(uuid.uuid4()),
            parsed.client_id,
            workflow,
            extra,
            bool(parsed.front),
        )
        return Decoded(inputs, request, names=[job.names for job in workflow.jobs])

    def encode(
        self, decoded: Decoded[ApiRequest], outputs: list[dict[str, Any]], execution_ms: int
    ) -> dict[str, Any]:
        """Not used: a prompt is answered when it is queued (its history says the rest)."""
        return {"prompt_id": decoded.request.prompt_id}

    def accepted(self, decoded: Decoded[ApiRequest], queued: Queued) -> tuple[int, Any]:
        """ComfyUI's 200 ``{"prompt_id", "number", "node_errors": {}}``; the prompt is kept."""
        request = decoded.request
        prompt = Prompt(
            request.prompt_id,
            next(self.prompts.numbers),
            request.workflow,
            request.client_id,
            request.extra_data,
            list(decoded.job_ids),
        )
        self.prompts.add(prompt)
        return 200, {"prompt_id": prompt.prompt_id, "number": prompt.number, "node_errors": {}}

    def encode_error(self, failure: Failure) -> tuple[int, dict[str, Any]]:
        """ComfyUI's 400: ``error`` and, for a workflow's problems, ``node_errors``."""
        return http_status(failure, client=400), error_body(failure)


def _only(workflow: Workflow, targets: set[str]) -> Workflow:
    """The workflow with only the outputs ``partial_execution_targets`` names (their jobs)."""
    kept = [o for o in workflow.outputs if o.ref.node_id in targets]
    jobs = sorted({o.job for o in kept if o.job is not None})
    renumber = {old: new for new, old in enumerate(jobs)}
    return Workflow(
        [workflow.jobs[j] for j in jobs],
        [o if o.job is None else replace(o, job=renumber[o.job]) for o in kept],
        workflow.prompt,
    )


def error_body(failure: Failure) -> dict[str, Any]:
    """``{"error": {type, message, details, extra_info}, "node_errors": {id: {errors,
    dependent_outputs, class_type}}}``, as ComfyUI answers a prompt it refuses."""
    node_errors: dict[str, dict[str, Any]] = {}
    for problem in failure.problems:
        node = parse_field(problem.field)
        if node is None:
            continue
        entry = node_errors.setdefault(
            node.node_id, {"errors": [], "dependent_outputs": [], "class_type": node.class_type}
        )
        entry["errors"].append(
            {
                "type": "value_not_valid" if node.input else "invalid_node",
                "message": problem.message,
                "details": str(problem),
                "extra_info": {"input_name": node.input} if node.input else {},
            }
        )
    kind = "prompt_outputs_failed_validation" if failure.problems else failure.code
    message = "Prompt outputs failed validation" if failure.problems else failure.message
    return {
        "error": {"type": kind, "message": message, "details": failure.message, "extra_info": {}},
        "node_errors": node_errors,
    }
