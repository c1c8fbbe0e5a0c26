"""``create_app``: the FastAPI application around a ``SegmentationService``."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

from fastapi import FastAPI

from .. import __version__
from .errors import install_error_handlers
from .middleware import RequestGuard
from .routes import build_router, install_refusal_handlers
from .security import BearerCheck
from .service import SegmentationService

API_PREFIX = "/v1"


@dataclass(frozen=True)
class HttpLimits:
    max_request_bytes: int = 64 << 20  # JSON bodies: prompts, 2D images, key masks
    max_upload_bytes: int = 1 << 30  # compressed volume uploads


def create_app(service: SegmentationService, token: str, limits: HttpLimits = HttpLimits()) -> FastAPI:
    """Routes under /v1, OpenAPI at /openapi.json (no browser docs: they would load scripts from a CDN)."""

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        service.start()
        try:
            yield
        finally:
            service.stop()

    app = FastAPI(
        title="SAM-Med2D model server", version=__version__, docs_url=None, redoc_url=None,
        openapi_url="/openapi.json", lifespan=lifespan,
        description="Interactive segmentation with SAM-Med2D / LiteMedSAM. Every route needs "
                    "'Authorization: Bearer <token>'; every error is {\"error\": code, \"detail\": text}.",
    )
    install_error_handlers(app)
    install_refusal_handlers(app)
    app.include_router(build_router(service, limits.max_request_bytes, limits.max_upload_bytes), prefix=API_PREFIX)

    def body_limit(method: str, path: str) -> int:
        is_upload = method == "PUT" and path.startswith(f"{API_PREFIX}/volumes/")
        return limits.max_upload_bytes if is_upload else limits.max_request_bytes

    app.add_middleware(RequestGuard, bearer=BearerCheck(token), body_limit=body_limit)
    app.openapi = lambda: _with_bearer_scheme(app)  # type: ignore[method-assign]
    return app


def _with_bearer_scheme(app: FastAPI) -> dict[str, Any]:
    """Publish the token requirement (enforced by ``RequestGuard``) in the schema."""
    if app.openapi_schema is None:
        from fastapi.openapi.utils import get_openapi

        schema = get_openapi(title=app.title, version=app.version, description=app.description, routes=app.routes)
        schema.setdefault("components", {})["securitySchemes"] = {"bearer": {"type": "http", "scheme": "bearer"}}
        schema["security"] = [{"bearer": []}]
        app.openapi_schema = schema
    return app.openapi_schema
