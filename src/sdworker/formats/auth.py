"""API-key auth for the format routes, as FastAPI security dependencies.

Each format takes the key the way its service's clients send it, and each scheme is
declared in the OpenAPI document. With no key configured every route is open (the server
then binds to loopback only). A denied request gets the format's own 401 body, raised as a
:class:`~sdworker.formats.base.Refusal`.
"""

from __future__ import annotations

import hmac
from collections.abc import Awaitable, Callable

from fastapi import Request, Security
from fastapi.security import (
    APIKeyHeader,
    HTTPAuthorizationCredentials,
    HTTPBasic,
    HTTPBasicCredentials,
    HTTPBearer,
)

from sdworker.core.settings import Settings
from sdworker.formats.web import Refusal

Dependency = Callable[..., Awaitable[None]]


def key_matches(provided: str | None, expected: str) -> bool:
    """Constant-time comparison; ``provided`` may carry a ``Bearer`` prefix (any case)."""
    if not provided:
        return False
    token = provided.strip()
    if token[:7].lower() == "bearer ":
        token = token[7:].strip()
    return hmac.compare_digest(token.encode(), expected.encode())


def _accepts(settings: Settings, *candidates: str | None) -> bool:
    expected = settings.api_key
    return not expected or any(key_matches(c, expected) for c in candidates)


_BASIC = HTTPBasic(
    scheme_name="basic",
    auto_error=False,
    description="A1111 --api-auth: any user, the key as password",
)
#: the names match the server's own schemes: one ``bearer`` and one ``basic`` in the document
_BEARER = HTTPBearer(
    scheme_name="bearer", auto_error=False, description="Authorization: Bearer <key>"
)


def basic_or_bearer(settings: Settings, denied: Refusal) -> Dependency:
    """A1111's ``--api-auth``: HTTP Basic with the key as password (any user name), or
    ``Authorization: Bearer KEY``."""

    async def check(
        basic: HTTPBasicCredentials | None = Security(_BASIC),
        bearer: HTTPAuthorizationCredentials | None = Security(_BEARER),
    ) -> None:
        if not _accepts(
            settings,
            basic.password if basic else None,
            bearer.credentials if bearer else None,
        ):
            raise denied

    return check


#: OpenAPI names of the services' own key headers
_SCHEME_NAMES = {"Salad-Api-Key": "saladApiKey", "apiKey": "stochasticApiKey"}


def header_or_bearer(settings: Settings, header: str, denied: Refusal) -> Dependency:
    """The key in the service's own ``header`` (Salad's ``Salad-Api-Key``, Stochastic's
    ``apiKey``), or as ``Authorization: Bearer KEY`` as every RunPod client sends it."""
    scheme = APIKeyHeader(
        name=header,
        # not the header's own name: Stochastic's "apiKey" would clash with the server's
        scheme_name=_SCHEME_NAMES.get(header, header),
        auto_error=False,
        description=f"{header}: <key>",
    )

    async def check(
        key: str | None = Security(scheme),
        bearer: HTTPAuthorizationCredentials | None = Security(_BEARER),
    ) -> None:
        if not _accepts(settings, key, bearer.credentials if bearer else None):
            raise denied

    return check


def bearer(settings: Settings, denied: Refusal) -> Dependency:
    """``Authorization: bearer KEY`` (DeepInfra)."""

    async def check(
        credentials: HTTPAuthorizationCredentials | None = Security(_BEARER),
    ) -> None:
        if not _accepts(settings, credentials.credentials if credentials else None):
            raise denied

    return check


def bearer_or_token(settings: Settings, denied: Refusal) -> Dependency:
    """``Authorization: Bearer KEY``, or ``Token KEY`` as Replicate's API took it before
    (its clients may still send it)."""

    async def check(
        request: Request,
        credentials: HTTPAuthorizationCredentials | None = Security(_BEARER),
    ) -> None:
        raw = request.headers.get("authorization", "").strip()
        token = raw[6:] if raw[:6].lower() == "token " else None
        if not _accepts(settings, credentials.credentials if credentials else None, token):
            raise denied

    return check
