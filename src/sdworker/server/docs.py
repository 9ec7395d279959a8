"""``/openapi.json``, ``/docs`` and ``/redoc``, working offline.

FastAPI's own pages load Swagger UI and ReDoc from a CDN (a blank page without internet); here
their assets come from the ``fastapi-offline`` package and are served by the endpoint itself
under :data:`ASSETS`. The pages and the document sit behind the API key like every other route;
the assets are public (they are the same for everyone).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import fastapi_offline
from fastapi import APIRouter, Depends, FastAPI, Request
from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html
from fastapi.responses import HTMLResponse, JSONResponse
from fastapi.staticfiles import StaticFiles

from sdworker.server.auth import require_docs_key, security_schemes

#: where the Swagger UI and ReDoc assets are served
ASSETS = "/static/docs"
#: Swagger UI's own defaults, less the one that calls out: the badge of a remote validator
SWAGGER_PARAMETERS: dict[str, Any] = {"validatorUrl": None, "tryItOutEnabled": True}
#: images from this server only: ReDoc's sidebar shows a logo from its CDN, which hides
#: itself when it fails to load; this way it fails before anything leaves the browser
CSP = "img-src 'self' data:"


def assets_dir() -> Path:
    """The folder of ``swagger-ui-bundle.js``, ``swagger-ui.css``, ``redoc.standalone.js``."""
    return Path(fastapi_offline.__file__).resolve().parent / "static"


def mount_assets(app: FastAPI) -> None:
    app.mount(ASSETS, StaticFiles(directory=assets_dir()), name="docs-assets")


def openapi_document(app: FastAPI) -> dict[str, Any]:
    """The app's OpenAPI document with every security scheme the endpoint accepts declared,
    so the docs' Authorize button offers them (routes declare which ones they take)."""
    schema = app.openapi()
    components = dict(schema.get("components", {}))
    components["securitySchemes"] = {
        **security_schemes(),
        **components.get("securitySchemes", {}),
    }
    return {**schema, "components": components}


def docs_router() -> APIRouter:
    """The docs pages behind the API key (open when no key is configured). In a browser the
    key is the password of HTTP Basic auth, which the browser asks for."""
    router = APIRouter(dependencies=[Depends(require_docs_key)], include_in_schema=False)

    def root(request: Request) -> str:
        return str(request.scope.get("root_path", "")).rstrip("/")

    @router.get("/openapi.json")
    async def openapi(request: Request) -> JSONResponse:
        return JSONResponse(openapi_document(request.app))

    @router.get("/docs")
    async def swagger(request: Request) -> HTMLResponse:
        base = root(request)
        page = get_swagger_ui_html(
            openapi_url=f"{base}/openapi.json",
            title=f"{request.app.title} - docs",
            swagger_js_url=f"{base}{ASSETS}/swagger-ui-bundle.js",
            swagger_css_url=f"{base}{ASSETS}/swagger-ui.css",
            swagger_favicon_url=f"{base}{ASSETS}/favicon.png",
            swagger_ui_parameters=SWAGGER_PARAMETERS,
        )
        page.headers["Content-Security-Policy"] = CSP
        return page

    @router.get("/redoc")
    async def redoc(request: Request) -> HTMLResponse:
        base = root(request)
        page = get_redoc_html(
            openapi_url=f"{base}/openapi.json",
            title=f"{request.app.title} - ReDoc",
            redoc_js_url=f"{base}{ASSETS}/redoc.standalone.js",
            redoc_favicon_url=f"{base}{ASSETS}/favicon.png",
            with_google_fonts=False,
        )
        page.headers["Content-Security-Policy"] = CSP
        return page

    return router
