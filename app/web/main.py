"""The FastAPI app: ``/healthz``, the REST API under ``/api/v1`` (OpenAPI at ``/api/v1/openapi.json``) and
the server-rendered pages. In the embedded mode the app's lifespan starts the APScheduler jobs once."""

from __future__ import annotations

import logging
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import anyio.to_thread
from fastapi import FastAPI
from fastapi.staticfiles import StaticFiles

from app.bootstrap import build
from app.settings import Settings, load_settings
from app.web import api, pages, pages_cases, pages_liaison, problems
from workflows.flows.scheduler import start_embedded, stop_embedded
from workflows.uow import Deps

log = logging.getLogger(__name__)
STATIC = Path(__file__).parent / "static"
#: How ``jointcase serve --threads`` reaches its ``--workers`` processes (no setting reads it).
THREADS_ENV = "JOINTCASE_SERVE_THREADS"


def create_app(settings: Settings, deps: Deps, *, scheduler: bool = False, threads: int | None = None) -> FastAPI:
    """The app for ``deps``; ``scheduler``: start the embedded jobs with it (``jointcase serve``); ``threads``:
    the size of the thread pool that runs the sync routes and dependencies (default: AnyIO's 40)."""

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        if threads:
            # Per event loop, so set here: fewer threads contend less for the GIL under load (issue 8).
            anyio.to_thread.current_default_thread_limiter().total_tokens = threads
        running = start_embedded(settings, deps=deps) if scheduler else None
        try:
            yield
        finally:
            stop_embedded(running)

    app = FastAPI(
        title="jointcase",
        version="1",
        description="商业秘密案件行刑衔接协作平台 — the REST API of the Sanming trade-secret liaison engine.",
        openapi_url="/api/v1/openapi.json",
        docs_url="/api/v1/docs",
        redoc_url=None,
        lifespan=lifespan,
    )
    app.state.deps = deps
    app.state.settings = settings
    problems.install(app)

    @app.get("/healthz", tags=["health"])
    def healthz() -> dict[str, str]:
        """Liveness: the process answers and the database is reachable."""
        from sqlalchemy import text

        with deps.engine.connect() as conn:
            conn.execute(text("SELECT 1"))
        return {"status": "ok"}

    app.include_router(api.router)
    app.include_router(pages.router)
    app.include_router(pages_liaison.router)
    app.include_router(pages_cases.router)
    app.mount("/static", StaticFiles(directory=STATIC), name="static")
    return app


def app_from_environment() -> FastAPI:
    """The app of one ``jointcase serve --workers N`` worker: $JOINTCASE_CONFIG, no embedded scheduler (the
    command refuses several workers in the embedded mode); ``serve`` migrated the database already."""
    settings = load_settings()
    threads = os.environ.get(THREADS_ENV)
    return create_app(settings, build(settings), threads=int(threads) if threads else None)
