"""Swagger UI (/docs) and ReDoc (/redoc) served from the app itself, so both work with no internet.

The assets come from fastapi-offline (pinned and hashed in the lock files like every dependency):
Swagger UI 5, which reads the OpenAPI 3.1 document FastAPI writes (Swagger UI 4 cannot), and
ReDoc 2.
"""

from __future__ import annotations

from pathlib import Path

import fastapi_offline
from fastapi import FastAPI
from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles

ASSETS = "/docs-assets"
_STATIC = Path(fastapi_offline.__file__).parent / "static"
# ReDoc's bundle always draws its makers' logo from their CDN in the sidebar footer (it hides the
# image when the load fails). This policy keeps every fetch of the page on this origin, so the
# browser never sends that request; inline script/style and eval stay allowed because ReDoc and
# FastAPI's page use them.
SAME_ORIGIN_ONLY = "default-src 'self' 'unsafe-inline' 'unsafe-eval' data: blob:"


def add_offline_docs(app: FastAPI) -> None:
    app.mount(ASSETS, StaticFiles(directory=_STATIC), name="docs-assets")
    openapi_url = app.openapi_url or "/openapi.json"

    @app.get("/docs", include_in_schema=False)
    def docs() -> HTMLResponse:
        return get_swagger_ui_html(
            openapi_url=openapi_url,
            title=f"{app.title} - docs",
            swagger_js_url=f"{ASSETS}/swagger-ui-bundle.js",
            swagger_css_url=f"{ASSETS}/swagger-ui.css",
            swagger_favicon_url=f"{ASSETS}/favicon.png",
        )

    @app.get("/redoc", include_in_schema=False)
    def redoc() -> HTMLResponse:
        page = get_redoc_html(
            openapi_url=openapi_url,
            title=f"{app.title} - ReDoc",
            redoc_js_url=f"{ASSETS}/redoc.standalone.js",
            redoc_favicon_url=f"{ASSETS}/favicon.png",
            with_google_fonts=False,  # fonts from Google would be a fetch off this machine
        )
        page.headers["Content-Security-Policy"] = SAME_ORIGIN_ONLY
        return page
