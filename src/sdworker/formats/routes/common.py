"""What every dialect router shares: the queue, the models, auth, body reading, waiting."""

from __future__ import annotations

import asyncio
import base64
import binascii
import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from fastapi import Request

from sdworker.core.errors import InvalidInput, Problem
from sdworker.core.jobs import JobGateway, JobView
from sdworker.core.manifest import Manifest
from sdworker.core.models import ModelRegistry
from sdworker.core.settings import Settings
from sdworker.formats.fields import rename_fields
from sdworker.formats.modelref import find_manifest
from sdworker.server.auth import key_matches

GatewayGetter = Callable[[Request], JobGateway]

#: how long one wait on the queue lasts before the loop checks its own deadline again
_WAIT_SLICE_S = 30.0


def app_gateway(request: Request) -> JobGateway:
    """The queue the server put on ``app.state.gateway``."""
    gateway: JobGateway = request.app.state.gateway
    return gateway


@dataclass
class DialectContext:
    """The pieces of the local endpoint a dialect router reads; one per app."""

    registry: ModelRegistry
    settings: Settings
    gateway: GatewayGetter = app_gateway

    def manifests(self) -> list[Manifest]:
        return [info.manifest for info in self.registry.all()]

    def manifest(self, name: str | None) -> Manifest | None:
        return find_manifest(self.manifests(), name)

    def authorised(self, *candidates: str | None) -> bool:
        """No key configured → open; else any candidate (bare or ``Bearer``) must match."""
        expected = self.settings.api_key
        if not expected:
            return True
        return any(key_matches(c, expected) for c in candidates)

    @property
    def has_bucket(self) -> bool:
        """Whether workers upload results to S3 (the ``BUCKET_*`` settings are complete)."""
        from sdworker.output.s3 import bucket_from_settings

        return bucket_from_settings(self.settings) is not None


def basic_password(header: str | None) -> str | None:
    """The password of an ``Authorization: Basic ...`` header (A1111's ``--api-auth``)."""
    if not header or header[:6].lower() != "basic ":
        return None
    try:
        decoded = base64.b64decode(header[6:].strip(), validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError, ValueError):
        return None
    _, sep, password = decoded.partition(":")
    return password if sep else None


async def read_json(request: Request) -> Any:
    """The JSON body; an unreadable one is an :class:`InvalidInput` on ``body``."""
    raw = await request.body()
    if not raw.strip():
        return {}
    try:
        return json.loads(raw)
    except (ValueError, UnicodeDecodeError) as exc:
        raise InvalidInput.one(
            "body", f"is not valid JSON ({exc})", raw[:40].decode("latin-1")
        ) from exc


async def wait_finished(gateway: JobGateway, job_id: str, timeout_s: float) -> JobView | None:
    """Wait until the job is terminal or ``timeout_s`` passes (in slices, so a long wait is
    not one long call); the job as it is then."""
    deadline = time.monotonic() + timeout_s
    view = await gateway.get(job_id)
    while view is not None and not view.status.is_terminal():
        left = deadline - time.monotonic()
        if left <= 0:
            break
        view = await gateway.wait(job_id, min(left, _WAIT_SLICE_S))
    return view


async def wait_all(
    gateway: JobGateway, job_ids: list[str], timeout_s: float
) -> list[JobView | None]:
    return list(await asyncio.gather(*(wait_finished(gateway, j, timeout_s) for j in job_ids)))


def job_error(view: JobView, names: dict[str, str]) -> tuple[bool, str]:
    """(is the client's fault, message in the dialect's field names) for a failed job."""
    message = view.error or f"job {view.status.value.lower()}"
    if message.startswith("invalid input:"):
        return True, rename_fields(message, names)
    return False, message


def invalid_problems(message: str) -> list[Problem]:
    """Split an ``invalid input: a: ...; b: ...`` message back into per-field problems."""
    body = message.removeprefix("invalid input:").strip()
    problems = []
    for part in body.split("; "):
        field, sep, rest = part.partition(": ")
        problems.append(
            Problem(field, rest, has_value=False)
            if sep
            else Problem("input", part, has_value=False)
        )
    return problems


def outputs_of(view: JobView | None) -> list[dict[str, Any]]:
    """The list of output objects of a finished job (empty when it has none)."""
    if view is None or not isinstance(view.output, list):
        return []
    return [o for o in view.output if isinstance(o, dict)]
