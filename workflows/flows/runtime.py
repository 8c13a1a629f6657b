"""Settings and dependencies for flow runs and scheduler jobs, built once per process and config file.

Layering exception: a flow run or a scheduler job is a process edge, like the CLI, so it may load the
settings and call the composition root (``app.bootstrap``) itself; nothing below ``workflows.flows`` does.
"""

from __future__ import annotations

import threading
from pathlib import Path

from app.bootstrap import build
from app.settings import load_settings
from workflows.uow import Deps

_lock = threading.Lock()
_cache: dict[str | None, Deps] = {}


def _key(config_path: str | None) -> str | None:
    """An absolute path, so that ``config.toml`` and ``./config.toml`` share one engine."""
    return None if config_path is None else str(Path(config_path).expanduser().absolute())


def deps_for(config_path: str | None) -> Deps:
    """The deps for ``config_path`` (None: ``$JOINTCASE_CONFIG`` or ./config.toml), with the real clock.

    Built on first use and kept for the life of the process; raises ``ConfigError`` on a bad config.
    """
    key = _key(config_path)
    with _lock:
        deps = _cache.get(key)
        if deps is None:
            deps = build(load_settings(key))
            _cache[key] = deps
        return deps


def forget_deps() -> None:
    """Dispose every cached engine and empty the cache (tests, or a config that changed on disk)."""
    with _lock:
        for deps in _cache.values():
            deps.engine.dispose()
        _cache.clear()


__all__ = ["deps_for", "forget_deps"]
