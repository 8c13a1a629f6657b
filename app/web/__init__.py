"""The web entry point: the FastAPI app (REST API under /api/v1 and the server-rendered pages)."""

from app.web.main import create_app

__all__ = ["create_app"]
