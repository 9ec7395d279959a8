"""ComfyUI's websocket (``/ws?clientId=...``): what happens to the prompts a client queued
with that ``client_id``, in the messages ComfyUI's API examples and worker-comfyui read.

On connect: ``status`` (with the ``sid``). For each prompt of the client, in the order they
were queued: ``execution_start``, ``execution_cached``, then per job ``executing`` (its
sampler node) and ``progress`` (its steps), then ``executed`` for each output node with its
images, ``execution_success`` or ``execution_error`` / ``execution_interrupted``, and last
``executing`` with ``node: null``, the end marker clients wait for. No binary previews are
sent. A job's progress is read from the queue twice a second while it runs.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from typing import Any

from starlette.websockets import WebSocket, WebSocketDisconnect

from sdworker.core.jobs import JobGateway, Status
from sdworker.formats.comfyui.api import Prompt, Prompts, execution_error, node_outputs
from sdworker.formats.comfyui.errors import parse_field

#: how often a running job's progress is looked at
PROGRESS_EVERY_S = 0.5


def _ms() -> int:
    return int(time.time() * 1000)


async def remaining(gateway: JobGateway, prompts: Prompts) -> int:
    """Prompts not yet ended (ComfyUI's ``queue_remaining``)."""
    count = 0
    for prompt in prompts.all():
        if prompt.entry is None and await prompts.entry(gateway, prompt) is None:
            count += 1
    return count


async def serve(ws: WebSocket, gateway: JobGateway, prompts: Prompts) -> None:
    """One client's websocket, until it closes."""
    await ws.accept()
    sid = ws.query_params.get("clientId") or uuid.uuid4().hex
    queue = prompts.listeners.subscribe(sid)
    for prompt in prompts.all():
        # prompts queued before the socket opened, not ended yet, are followed too
        if prompt.client_id == sid and prompt.entry is None:
            queue.put_nowait(prompt)
    receiving = asyncio.ensure_future(_drain(ws))
    try:
        status = {"exec_info": {"queue_remaining": await remaining(gateway, prompts)}}
        await ws.send_json({"type": "status", "data": {"status": status, "sid": sid}})
        while True:
            next_prompt = asyncio.ensure_future(queue.get())
            if not await _first(next_prompt, receiving):
                break
            following = asyncio.ensure_future(follow(ws, gateway, prompts, next_prompt.result()))
            if not await _first(following, receiving):
                break
    except (WebSocketDisconnect, RuntimeError):
        pass  # the client went away while a message was sent
    finally:
        prompts.listeners.unsubscribe(sid, queue)
        receiving.cancel()
        with contextlib.suppress(BaseException):
            await receiving


async def _first(task: asyncio.Future[Any], receiving: asyncio.Future[None]) -> bool:
    """Wait for ``task``; False (and ``task`` cancelled) when the client closes first."""
    await asyncio.wait({task, receiving}, return_when=asyncio.FIRST_COMPLETED)
    if task.done():
        task.result()  # a send that failed raises here
        return True
    task.cancel()
    with contextlib.suppress(BaseException):
        await task
    return False


async def _drain(ws: WebSocket) -> None:
    """Read what the client sends (``feature_flags``...) until it closes."""
    with contextlib.suppress(WebSocketDisconnect, RuntimeError):
        while True:
            message = await ws.receive()
            if message["type"] == "websocket.disconnect":
                return


async def follow(ws: WebSocket, gateway: JobGateway, prompts: Prompts, prompt: Prompt) -> None:
    """The messages of one prompt, from its start to its end marker."""
    pid = prompt.prompt_id
    await _send(ws, "execution_start", {"prompt_id": pid, "timestamp": _ms()})
    await _send(ws, "execution_cached", {"nodes": [], "prompt_id": pid, "timestamp": _ms()})
    for index, job_id in enumerate(prompt.job_ids):
        found = parse_field(prompt.workflow.jobs[index].names.get("input", ""))
        await _job(ws, gateway, pid, job_id, found.node_id if found else "")
    entry = None
    while entry is None:  # every job has ended by now; a result read meanwhile is kept
        entry = await prompts.entry(gateway, prompt)
        if entry is None:
            await gateway.wait(prompt.job_ids[-1], PROGRESS_EVERY_S)
    for node, output in node_outputs(prompt).items():
        await _send(
            ws, "executed", {"node": node, "display_node": node, "output": output, "prompt_id": pid}
        )
    if prompt.failure is None:
        await _send(ws, "execution_success", {"prompt_id": pid, "timestamp": _ms()})
    elif prompt.failure[1].code in ("cancelled", "timed_out"):
        data = {
            "prompt_id": pid,
            "node_id": "",
            "node_type": "",
            "executed": [],
            "timestamp": _ms(),
        }
        await _send(ws, "execution_interrupted", data)
    else:
        await _send(ws, "execution_error", execution_error(prompt, *prompt.failure))
    await _send(ws, "executing", {"node": None, "display_node": None, "prompt_id": pid})
    left = await remaining(gateway, prompts)
    await _send(ws, "status", {"status": {"exec_info": {"queue_remaining": left}}})


async def _job(ws: WebSocket, gateway: JobGateway, pid: str, job_id: str, node: str) -> None:
    """``executing`` when the job starts, ``progress`` as its steps go, until it ends."""
    started = False
    shown: Any = None
    while True:
        view = await gateway.wait(job_id, PROGRESS_EVERY_S)
        if view is None:
            return
        if not started and view.status is not Status.IN_QUEUE:
            started = True
            await _send(ws, "executing", {"node": node, "display_node": node, "prompt_id": pid})
        step = view.output if isinstance(view.output, dict) else None
        if view.status is Status.IN_PROGRESS and step and "step" in step and step != shown:
            shown = step
            data = {"value": step["step"], "max": step.get("steps"), "prompt_id": pid, "node": node}
            await _send(ws, "progress", data)
        if view.status.is_terminal():
            return


async def _send(ws: WebSocket, kind: str, data: dict[str, Any]) -> None:
    await ws.send_json({"type": kind, "data": data})
