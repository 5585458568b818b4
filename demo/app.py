"""The demo's HTTP layer: one static page and a few JSON endpoints over DemoRuntime.

Every error answer is JSON ``{"error": "<message>"}`` (plus ``details`` for validation
errors); unexpected exceptions are logged with their traceback and answered with a short
500, never a stack trace. Whatever part of the request a message quotes is cut short
(``errors.shown``): an attacker-sized input never comes back whole.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Annotated, Any, Literal

from fastapi import FastAPI, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse, Response
from pydantic import BaseModel, ConfigDict, Field
from starlette.exceptions import HTTPException as StarletteHTTPException

from .errors import MAX_ECHO, DemoError, clip
from .runtime import MAX_TTL_SECONDS, MAX_USERS, DemoRuntime

logger = logging.getLogger(__name__)

STATIC_DIR = Path(__file__).resolve().parent / "static"
MAX_FEATURES = 64
MAX_REF_LENGTH = 200
FeatureRef = Annotated[str, Field(min_length=1, max_length=MAX_REF_LENGTH)]


class _Request(BaseModel):
    model_config = ConfigDict(extra="forbid")


class BulkLoadRequest(_Request):
    users: int = Field(200, ge=1, le=MAX_USERS, description="users to generate and materialize")
    batch_ttl_seconds: int | None = Field(
        None, ge=0, le=MAX_TTL_SECONDS, description="key TTL for batch writes; 0 = no expiry; null = unchanged"
    )
    stream_ttl_seconds: int | None = Field(
        None, ge=0, le=MAX_TTL_SECONDS, description="per-field TTL for stream writes; 0 = none; null = unchanged"
    )


class ToggleRequest(_Request):
    action: Literal["pause", "resume"] | None = None


class ReadRequest(_Request):
    # No min_length: an empty id is the runtime's to answer ("no users are loaded" after a
    # reset, else "user_id is required"), not a bare "at least 1 character".
    user_id: str = Field(..., max_length=64)
    features: list[FeatureRef] | None = Field(
        None, min_length=1, max_length=MAX_FEATURES, description="view:feature refs; null = all"
    )


class BatchReadRequest(_Request):
    count: int = Field(100, ge=1, le=MAX_USERS, description="first N loaded users")
    features: list[FeatureRef] | None = Field(None, min_length=1, max_length=MAX_FEATURES)


MAX_DETAILS = 5


def _error(status: int, message: str, **extra: Any) -> JSONResponse:
    return JSONResponse(status_code=status, content={"error": clip(message), **extra})


def _validation_message(exc: RequestValidationError) -> tuple[str, list[dict[str, str]]]:
    """One line naming each bad field; field names come from the request (an unknown
    key is one), so each is cut short, and so are the messages."""
    details = []
    errors = exc.errors()
    for err in errors[:MAX_DETAILS]:
        if err.get("type") == "json_invalid":
            details.append({"field": "body", "message": "not valid JSON"})
            continue
        where = ".".join(clip(str(p), MAX_ECHO) for p in err.get("loc", ()) if p not in ("body", "query"))
        details.append({"field": where or "body", "message": clip(str(err.get("msg", "invalid")), 200)})
    text = "; ".join(f"{d['field']}: {d['message']}" for d in details) or "invalid request"
    if len(errors) > MAX_DETAILS:
        text += f"; and {len(errors) - MAX_DETAILS} more"
    return text, details


def create_app(runtime: DemoRuntime) -> FastAPI:
    app = FastAPI(
        title="feast-redis-hexpire demo",
        description="Feast online store on Redis 7.4+ with per-field expiry: a live demo.",
        docs_url="/docs",
        redoc_url=None,
    )
    app.state.runtime = runtime

    # ---------------------------------------------------------------- errors

    @app.exception_handler(DemoError)
    async def _demo_error(_: Request, exc: DemoError) -> JSONResponse:
        return _error(exc.status, exc.message)

    @app.exception_handler(RequestValidationError)
    async def _invalid(_: Request, exc: RequestValidationError) -> JSONResponse:
        message, details = _validation_message(exc)
        return _error(422, message, details=details)

    @app.exception_handler(StarletteHTTPException)
    async def _http(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        message = exc.detail if isinstance(exc.detail, str) else "request failed"
        if exc.status_code == 404 and message == "Not Found":
            message = "no such endpoint"
        return _error(exc.status_code, message)

    @app.middleware("http")
    async def _unexpected(request: Request, call_next: Callable[[Request], Awaitable[Response]]) -> Response:
        # A middleware rather than exception_handler(Exception): Starlette re-raises after
        # such a handler, which would log every failure twice.
        try:
            return await call_next(request)
        except Exception as exc:
            logger.error("%s %s failed", request.method, request.url.path, exc_info=exc)
            return _error(500, f"internal error ({type(exc).__name__}); the server log has the details")

    # ---------------------------------------------------------------- page

    @app.get("/", include_in_schema=False)
    def index() -> FileResponse:
        return FileResponse(STATIC_DIR / "index.html", media_type="text/html", headers={"Cache-Control": "no-store"})

    @app.get("/favicon.ico", include_in_schema=False)
    def favicon() -> Response:
        return Response(status_code=204)

    # ---------------------------------------------------------------- API
    # Plain `def` handlers: FastAPI runs them in its thread pool, so a bulk load does
    # not stall /state polling.

    @app.get("/state")
    def state() -> dict[str, Any]:
        return runtime.state()

    @app.post("/bulk-load")
    def bulk_load(body: BulkLoadRequest) -> dict[str, Any]:
        return runtime.bulk_load(body.users, body.batch_ttl_seconds, body.stream_ttl_seconds)

    @app.post("/worker/toggle")
    def worker_toggle(body: ToggleRequest | None = None) -> dict[str, Any]:
        return runtime.toggle_worker(body.action if body else None)

    @app.post("/read")
    def read(body: ReadRequest) -> dict[str, Any]:
        return runtime.read(body.user_id, body.features)

    @app.post("/batch-read")
    def batch_read(body: BatchReadRequest) -> dict[str, Any]:
        return runtime.batch_read(body.count, body.features)

    @app.get("/inspect")
    def inspect(user_id: str = Query(..., max_length=64)) -> dict[str, Any]:
        return runtime.inspect(user_id)

    @app.get("/similar")
    def similar(
        user_id: str = Query(..., max_length=64), k: int = Query(10, ge=1, le=50, description="results")
    ) -> dict[str, Any]:
        return runtime.similar(user_id, k)

    @app.post("/reset")
    def reset() -> dict[str, Any]:
        return runtime.reset()

    return app
