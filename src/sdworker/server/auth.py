"""API-key auth for the endpoint's routes; the dialect routers reuse :func:`key_matches`.

The checks are FastAPI security dependencies, so the OpenAPI document declares the schemes
(``bearer``, ``apiKey``, ``basic``) and the docs' Authorize button sends the key.
"""

from __future__ import annotations

import hmac
from typing import Any

from fastapi import HTTPException, Request, Security
from fastapi.security import APIKeyHeader, HTTPAuthorizationCredentials, HTTPBasic, HTTPBearer

from sdworker.formats.auth import key_matches
from sdworker.server.errors import EndpointError

#: ``Authorization: Bearer <key>``, as RunPod's clients send it
bearer_scheme = HTTPBearer(
    scheme_name="bearer",
    auto_error=False,
    description="`Authorization: Bearer <SDWORKER_API_KEY>` (RunPod's clients, DeepInfra).",
)
#: the bare key in ``Authorization``, which RunPod accepts too
bare_key_scheme = APIKeyHeader(
    name="Authorization",
    scheme_name="apiKey",
    auto_error=False,
    description="The bare key in `Authorization`, as RunPod accepts it.",
)
#: HTTP Basic with the key as the password: A1111's ``--api-auth``, and the docs in a browser
basic_scheme = HTTPBasic(
    scheme_name="basic",
    auto_error=False,
    description="Any user name, the API key as password (AUTOMATIC1111 routes, the docs pages).",
)


def security_schemes() -> dict[str, Any]:
    """The ``components.securitySchemes`` of the OpenAPI document: every scheme declared,
    including ``basic``, which only routes outside the native API accept."""
    return {
        scheme.scheme_name: scheme.model.model_dump(mode="json", by_alias=True, exclude_none=True)
        for scheme in (bearer_scheme, bare_key_scheme, basic_scheme)
    }


async def require_api_key(
    request: Request,
    bearer: HTTPAuthorizationCredentials | None = Security(bearer_scheme),
    authorization: str | None = Security(bare_key_scheme),
) -> None:
    """FastAPI dependency: when an API key is configured, demand ``Authorization: Bearer KEY``.

    RunPod also accepts the bare key in ``Authorization``; so do we. Both schemes read the
    same header, so the check is on its raw value (``bearer`` is declared for the docs).
    """
    expected = request.app.state.settings.api_key
    if expected and not key_matches(authorization, expected):
        raise EndpointError(401, "unauthorized: send the API key as 'Authorization: Bearer <key>'")


async def require_docs_key(request: Request) -> None:
    """Like :func:`require_api_key`, and HTTP Basic too (the key as password): a browser
    asks for it, so the docs pages open behind a key without a header-setting extension."""
    expected = request.app.state.settings.api_key
    if not expected or key_matches(request.headers.get("authorization"), expected):
        return
    try:
        credentials = await basic_scheme(request)
    except HTTPException:  # a malformed Basic header is as wrong as a wrong key
        credentials = None
    if credentials is None or not key_matches(credentials.password, expected):
        raise EndpointError(
            401,
            "unauthorized: send the API key as 'Authorization: Bearer <key>',"
            " or as the password of HTTP Basic auth",
            headers={"WWW-Authenticate": 'Basic realm="sdworker docs"'},
        )


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
