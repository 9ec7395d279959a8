"""Protocol problems of the endpoint, answered as ``{"error": "..."}`` with an HTTP status."""

from __future__ import annotations

from fastapi import Request
from fastapi.responses import JSONResponse

from sdworker.core.errors import SdworkerError


class EndpointError(SdworkerError):
    """A request the endpoint cannot serve (bad auth, unknown id, too large...)."""

    code = "endpoint_error"

    def __init__(
        self, status_code: int, message: str, *, headers: dict[str, str] | None = None
    ) -> None:
        super().__init__(message)
        self.status_code = status_code
        self.message = message
        self.headers = headers


async def endpoint_error_handler(request: Request, exc: Exception) -> JSONResponse:
    """Render :class:`EndpointError` the way RunPod's API renders errors."""
    assert isinstance(exc, EndpointError)
    return JSONResponse({"error": exc.message}, status_code=exc.status_code, headers=exc.headers)
