"""The HTTP side every format's routes share: early answers in the format's own shape."""

from __future__ import annotations

from collections.abc import Callable, Coroutine, Mapping
from typing import Any

from fastapi import Request, Response
from fastapi.responses import JSONResponse
from fastapi.routing import APIRoute


class Refusal(Exception):
    """An answer a route gives early (bad auth, a bad body): raised, and turned into the
    response by :class:`FormatRoute`, so dependencies can refuse in the format's own shape."""

    def __init__(
        self,
        status: int,
        body: Any,
        *,
        headers: Mapping[str, str] | None = None,
        media_type: str | None = None,
    ) -> None:
        super().__init__(status)
        self.status = status
        self.body = body
        self.headers = dict(headers or {})
        self.media_type = media_type

    def response(self) -> JSONResponse:
        """The answer, as the route gives it."""
        return JSONResponse(
            self.body, status_code=self.status, headers=self.headers, media_type=self.media_type
        )


class FormatRoute(APIRoute):
    """A route whose handler (and dependencies) may raise :class:`Refusal`.

    An exception handler would have to be registered on the app; this keeps the formats'
    answers with their routers, whichever app mounts them."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def refusing(request: Request) -> Response:
            try:
                return await handler(request)
            except Refusal as refusal:
                return refusal.response()

        return refusing
