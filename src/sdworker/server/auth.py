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
