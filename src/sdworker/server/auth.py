"""API-key auth for the endpoint's routes; the dialect routers reuse :func:`key_matches`."""

from __future__ import annotations

import hmac

from fastapi import Request

from sdworker.server.errors import EndpointError


def key_matches(provided: str | None, expected: str) -> bool:
    """Constant-time comparison; ``provided`` may carry a ``Bearer`` prefix (any case)."""
    if not provided:
        return False
    token = provided.strip()
    if token[:7].lower() == "bearer ":
        token = token[7:].strip()
    return hmac.compare_digest(token.encode(), expected.encode())


async def require_api_key(request: Request) -> None:
    """FastAPI dependency: when an API key is configured, demand ``Authorization: Bearer KEY``.

    RunPod also accepts the bare key in ``Authorization``; so do we.
    """
    expected = request.app.state.settings.api_key
    if expected and not key_matches(request.headers.get("authorization"), expected):
        raise EndpointError(401, "unauthorized: send the API key as 'Authorization: Bearer <key>'")


def file_signature(key: str, job_id: str, name: str) -> str:
    """The ``sig`` that lets a plain GET (a Stochastic client's ``presigned_url``) fetch one
    result file without the API key; derived from the key, so it survives restarts."""
    message = f"{job_id}/{name}".encode()
    return hmac.new(key.encode(), message, "sha256").hexdigest()[:32]


async def require_key_or_signature(request: Request) -> None:
    """FastAPI dependency for result files: the API key, or the file's own signature."""
    expected = request.app.state.settings.api_key
    if not expected or key_matches(request.headers.get("authorization"), expected):
        return
    params = request.path_params
    signature = file_signature(expected, params.get("job_id", ""), params.get("name", ""))
    if not hmac.compare_digest(request.query_params.get("sig", "").encode(), signature.encode()):
        raise EndpointError(401, "unauthorized: send the API key, or use the signed file URL")
