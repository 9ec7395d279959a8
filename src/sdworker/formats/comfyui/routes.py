"""The ComfyUI routes of the local endpoint: worker-comfyui's job (``POST /comfyui/runsync``)
and ComfyUI's own API, at the root and under ``/api`` as ComfyUI serves it: ``POST /prompt``,
``GET /prompt``, ``GET|POST /history``, ``GET /history/{prompt_id}``, ``GET /view``,
``POST /upload/image``, ``GET|POST /queue``, ``POST /interrupt``, ``GET /object_info``,
``GET /object_info/{node_class}``, ``GET /system_stats``, ``GET /embeddings`` and the
``/ws`` websocket. With an API key set, each takes ``Authorization: Bearer <key>`` (the
websocket also ``?token=<key>``, as a browser cannot set its headers).
"""

from __future__ import annotations

import base64
import platform
import sys
from typing import Any

from fastapi import APIRouter, Depends, Request, Response, WebSocket
from fastapi.responses import RedirectResponse
from starlette.datastructures import UploadFile
from starlette.exceptions import HTTPException
from starlette.formparsers import MultiPartException
from starlette.types import Message

from sdworker import __version__
from sdworker.core.assets import LORA, AssetRegistry
from sdworker.core.errors import InvalidInput, PayloadTooLarge
from sdworker.core.jobs import Failure, JobGateway, Status
from sdworker.formats import auth
from sdworker.formats.base import FormatContext
from sdworker.formats.comfyui.api import ComfyApiFormat, Prompt, Prompts, error_body
from sdworker.formats.comfyui.objectinfo import object_info
from sdworker.formats.comfyui.uploads import Uploads
from sdworker.formats.comfyui.worker import WORKER_COMFYUI
from sdworker.formats.comfyui.ws import remaining, serve
from sdworker.formats.http import read_body, read_json
from sdworker.formats.pipeline import Pipeline, outputs_of
from sdworker.formats.web import FormatRoute, Refusal

#: ComfyUI serves each route at the root and under /api (the newer editor uses /api)
PREFIXES = ("", "/api")
#: the version ComfyUI's API here follows
COMFYUI_VERSION = "0.3.64"


def _refusal(status: int, message: str, kind: str = "invalid_request") -> Refusal:
    failure = Failure(kind, message)
    return Refusal(status, error_body(failure))


def comfyui_routers(ctx: FormatContext) -> list[APIRouter]:
    """worker-comfyui's route and ComfyUI's API, over one store of prompts and uploads."""
    denied = _refusal(401, "missing or wrong 'Authorization: Bearer <key>' header", "unauthorized")
    check = auth.bearer(ctx.settings, denied)
    prompts = Prompts(Uploads(ctx.settings.state_dir / "comfyui"))
    worker = APIRouter(
        tags=["worker-comfyui"], route_class=FormatRoute, dependencies=[Depends(check)]
    )
    runsync = Pipeline(WORKER_COMFYUI, ctx)

    @worker.post("/comfyui/runsync")
    async def comfyui_runsync(request: Request) -> Response:
        """worker-comfyui's job ``{"input": {"workflow", "images"}}``: waits for its images and
        answers RunPod's ``/runsync`` body with worker-comfyui's ``output``."""
        return await runsync(request)

    api = APIRouter(tags=["ComfyUI"], route_class=FormatRoute, dependencies=[Depends(check)])
    pipe = Pipeline(ComfyApiFormat(prompts), ctx)
    handlers = _Api(ctx, prompts, pipe).routes()
    for prefix in PREFIXES:
        for method, path, handler in handlers:
            api.add_api_route(
                prefix + path, handler, methods=[method], name=f"comfyui_{handler.__name__}{prefix.replace('/', '_')}",
                include_in_schema=not prefix,
            )  # fmt: skip
    sockets = APIRouter()
    for prefix in PREFIXES:
        sockets.add_api_websocket_route(prefix + "/ws", _socket(ctx, prompts))
    return [worker, api, sockets]


def _socket(ctx: FormatContext, prompts: Prompts) -> Any:
    async def websocket(ws: WebSocket) -> None:
        key = ctx.settings.api_key
        given = (ws.headers.get("authorization"), ws.query_params.get("token"))
        if key and not any(auth.key_matches(g, key) for g in given):
            await ws.close(code=1008)  # policy violation: no key
            return
        await serve(ws, ctx.gateway(ws), prompts)  # type: ignore[arg-type]

    return websocket


class _Api:
    """The HTTP routes of ComfyUI's API, over one store of prompts (each method a route)."""

    def __init__(self, ctx: FormatContext, prompts: Prompts, pipe: Pipeline[Any]) -> None:
        self.ctx = ctx
        self.prompts = prompts
        self.pipe = pipe

    def routes(self) -> list[tuple[str, str, Any]]:
        """(method, path, handler) of each route."""
        return [
            ("POST", "/prompt", self.post_prompt),
            ("GET", "/prompt", self.get_prompt),
            ("GET", "/history", self.get_history),
            ("GET", "/history/{prompt_id}", self.get_history_id),
            ("POST", "/history", self.post_history),
            ("GET", "/queue", self.get_queue),
            ("POST", "/queue", self.post_queue),
            ("POST", "/interrupt", self.post_interrupt),
            ("GET", "/view", self.get_view),
            ("POST", "/upload/image", self.upload_image),
            ("GET", "/object_info", self.get_object_info),
            ("GET", "/object_info/{node_class}", self.get_object_info_class),
            ("GET", "/system_stats", self.get_system_stats),
            ("GET", "/embeddings", self.get_embeddings),
        ]

    def gateway(self, request: Request) -> JobGateway:
        return self.ctx.gateway(request)

    async def post_prompt(self, request: Request) -> Response:
        """Queue a workflow: ``{"prompt_id", "number", "node_errors": {}}``; a workflow
        sdworker cannot run is a 400 naming each node input."""
        return await self.pipe(request)

    async def get_prompt(self, request: Request) -> dict[str, Any]:
        """``{"exec_info": {"queue_remaining"}}``."""
        left = await remaining(self.gateway(request), self.prompts)
        return {"exec_info": {"queue_remaining": left}}

    async def get_history(
        self, request: Request, max_items: int | None = None, offset: int = 0
    ) -> dict[str, Any]:
        """Every ended prompt's entry, oldest first (``max_items`` from ``offset``)."""
        ended = {}
        for prompt in self.prompts.all():
            entry = await self.prompts.entry(self.gateway(request), prompt)
            if entry is not None:
                ended[prompt.prompt_id] = entry
        items = list(ended.items())[max(offset, 0) :]
        return dict(items[:max_items] if max_items is not None and max_items >= 0 else items)

    async def get_history_id(self, request: Request, prompt_id: str) -> dict[str, Any]:
        """``{}`` until the prompt has ended, then ``{prompt_id: entry}``."""
        prompt = self.prompts.get(prompt_id)
        if prompt is None:
            return {}
        entry = await self.prompts.entry(self.gateway(request), prompt)
        return {prompt_id: entry} if entry is not None else {}

    async def post_history(self, request: Request) -> Response:
        """``{"clear": true}`` or ``{"delete": [prompt_id...]}``: forget ended prompts."""
        chosen = _chosen(await _body(request, self.ctx))
        for prompt in self.prompts.all():
            if prompt.entry is not None and chosen(prompt):
                self.prompts.forget(prompt.prompt_id)
        return Response(status_code=200)

    async def get_queue(self, request: Request) -> dict[str, Any]:
        """``{"queue_running", "queue_pending"}``: ComfyUI's queue tuples."""
        running, pending = await _queue(self.gateway(request), self.prompts)
        return {
            "queue_running": [p.queue_item() for p in running],
            "queue_pending": [p.queue_item() for p in pending],
        }

    async def post_queue(self, request: Request) -> Response:
        """``{"clear": true}`` or ``{"delete": [prompt_id...]}``: cancel pending prompts."""
        chosen = _chosen(await _body(request, self.ctx))
        _, pending = await _queue(self.gateway(request), self.prompts)
        for prompt in filter(chosen, pending):
            await _cancel(self.gateway(request), prompt)
        return Response(status_code=200)

    async def post_interrupt(self, request: Request) -> Response:
        """Stop the running prompt (``{"prompt_id"}``: that one): its jobs are cancelled."""
        asked = (await _body(request, self.ctx)).get("prompt_id")
        running, _ = await _queue(self.gateway(request), self.prompts)
        for prompt in running:
            if not asked or asked == prompt.prompt_id:
                await _cancel(self.gateway(request), prompt)
        return Response(status_code=200)

    async def get_view(
        self, request: Request, filename: str = "", subfolder: str = "", type: str = "output"
    ) -> Response:
        """An image by ComfyUI's name: a saved or previewed one, or an upload."""
        return await _view(self.gateway(request), self.prompts, filename, subfolder, type)

    async def upload_image(self, request: Request) -> dict[str, str]:
        """multipart ``image`` (with ``overwrite``, ``type``, ``subfolder``):
        ``{"name", "subfolder", "type"}``."""
        return await _upload(request, self.ctx, self.prompts.uploads)

    async def get_object_info(self, request: Request) -> dict[str, Any]:
        """Every node sdworker reads, with this deployment's models and files."""
        return _object_info(self.ctx, self.prompts)

    async def get_object_info_class(self, request: Request, node_class: str) -> dict[str, Any]:
        """One node, or ``{}``."""
        info = _object_info(self.ctx, self.prompts)
        return {node_class: info[node_class]} if node_class in info else {}

    async def get_system_stats(self, request: Request) -> dict[str, Any]:
        """ComfyUI's ``system_stats``; the devices are the workers', not known here."""
        return _system_stats()

    async def get_embeddings(self, request: Request) -> list[str]:
        """Textual-inversion embeddings: none are read from workflows."""
        return []


def _chosen(body: dict[str, Any]) -> Any:
    """Which prompts a ``clear``/``delete`` body names."""
    ids = _ids(body.get("delete"))
    return lambda prompt: bool(body.get("clear")) or prompt.prompt_id in ids


async def _body(request: Request, ctx: FormatContext) -> dict[str, Any]:
    """A small JSON body of a queue or history call (none is ``{}``)."""
    try:
        body = await read_json(request, ctx.body_limit)
    except InvalidInput as exc:
        raise _refusal(400, str(exc)) from None
    if not isinstance(body, dict):
        raise _refusal(400, "the body must be a JSON object")
    return body


def _ids(value: Any) -> set[str]:
    return {str(v) for v in value} if isinstance(value, list) else set()


async def _queue(gateway: JobGateway, prompts: Prompts) -> tuple[list[Prompt], list[Prompt]]:
    """The prompts running (a job taken) and pending (none taken yet), oldest first."""
    running: list[Prompt] = []
    pending: list[Prompt] = []
    for prompt in prompts.all():
        if prompt.entry is not None:
            continue
        views = await prompts.views(gateway, prompt)
        live = [v for v in views if v is not None and not v.status.is_terminal()]
        if not live:
            continue
        if any(v.status is not Status.IN_QUEUE for v in views if v is not None):
            running.append(prompt)
        else:
            pending.append(prompt)
    return running, pending


async def _cancel(gateway: JobGateway, prompt: Prompt) -> None:
    for job_id in prompt.job_ids:
        await gateway.cancel(job_id)


def _view_key(filename: str, subfolder: str, kind: str) -> tuple[str, str, str]:
    """ComfyUI's reading of ``/view``'s query: a ``name [output]`` suffix picks the folder."""
    for folder in ("output", "input", "temp"):
        suffix = f" [{folder}]"
        if filename.endswith(suffix):
            return folder, subfolder, filename[: -len(suffix)]
    return kind, subfolder, filename


async def _view(
    gateway: JobGateway, prompts: Prompts, filename: str, subfolder: str, kind: str
) -> Response:
    kind, subfolder, filename = _view_key(filename, subfolder, kind)
    if not filename or filename.startswith("/") or ".." in filename or ".." in subfolder:
        raise _refusal(400, "filename must be a plain file name")
    if kind == "input":
        name = f"{subfolder.strip('/')}/{filename}" if subfolder.strip("/") else filename
        data = prompts.uploads.read(name)
        if data is None:
            raise _refusal(404, f"no input image {name!r}", "not_found")
        return _image(data, filename)
    found = prompts.files.get((kind, subfolder, filename))
    if found is None:
        raise _refusal(404, f"no {kind} image {filename!r} in {subfolder!r}", "not_found")
    _, image = found
    view = await gateway.get(str(image.entry["job_id"]))
    outputs = outputs_of(view) if view is not None else []
    index = int(image.entry["index"])
    if index >= len(outputs):
        raise _refusal(404, f"{filename!r}: its job's result has expired", "not_found")
    entry = outputs[index]
    if entry.get("url"):
        return RedirectResponse(str(entry["url"]), status_code=302)
    return _image(base64.b64decode(str(entry.get("image") or "")), filename)


def _image(data: bytes, filename: str) -> Response:
    kind = "image/png"
    if data[:2] == b"\xff\xd8":
        kind = "image/jpeg"
    elif data[:4] == b"RIFF":
        kind = "image/webp"
    disposition = {"Content-Disposition": f'filename="{filename}"'}
    return Response(data, media_type=kind, headers=disposition)


async def _upload(request: Request, ctx: FormatContext, uploads: Uploads) -> dict[str, str]:
    raw = await _read(request, ctx.body_limit)

    async def replay() -> Message:
        return {"type": "http.request", "body": raw, "more_body": False}

    try:
        async with Request(request.scope, replay).form(max_part_size=ctx.body_limit) as form:
            image = form.get("image")
            fields = {k: str(form.get(k) or "") for k in ("overwrite", "type", "subfolder")}
            if not isinstance(image, UploadFile) or not image.filename:
                raise _refusal(400, "image: a file part named image (with a file name) is required")
            data = await image.read()
            filename = image.filename
    except (HTTPException, MultiPartException, ValueError, KeyError) as exc:
        raise _refusal(400, f"the body is not a readable multipart form ({exc})") from None
    try:
        name, sub = uploads.save(
            filename,
            data,
            subfolder=fields["subfolder"],
            kind=fields["type"] or "input",
            overwrite=fields["overwrite"].lower() in ("true", "1"),
        )
    except InvalidInput as exc:
        raise _refusal(400, str(exc)) from None
    return {"name": name, "subfolder": sub, "type": fields["type"] or "input"}


async def _read(request: Request, limit: int) -> bytes:
    try:
        return await read_body(request, limit)
    except PayloadTooLarge as exc:
        raise _refusal(413, str(exc), "payload_too_large") from None


def _object_info(ctx: FormatContext, prompts: Prompts) -> dict[str, Any]:
    models = []
    for info in ctx.registry.all():
        models += [*info.manifest.aliases, f"{info.name}.safetensors"]
    loras = AssetRegistry(ctx.settings).names(LORA)  # baked and on the volume
    return object_info(sorted(set(models)), loras, prompts.uploads.names())


def _system_stats() -> dict[str, Any]:
    return {
        "system": {
            "os": sys.platform,
            "ram_total": 0,
            "ram_free": 0,
            "comfyui_version": COMFYUI_VERSION,
            "required_frontend_version": "",
            "installed_templates_version": "",
            "required_templates_version": "",
            "python_version": sys.version,
            "pytorch_version": "",
            "embedded_python": False,
            "argv": ["sdworker", "serve", __version__],
            "platform": platform.platform(),
        },
        "devices": [],
    }
