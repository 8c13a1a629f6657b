"""Fixtures for the web UI and REST API: the real app on a loopback port (uvicorn in a thread) over a
SQLite database with the demo data and demo passwords, an in-process client, and Debian's Chromium driven
by Playwright for the browser tests (screenshots under ``test-output/screenshots``).

Without Chromium the browser tests skip with a reason, except in CI (``CI`` set), where they fail.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn

from app.bootstrap import build, init_database
from app.demo import DEMO_PASSWORD, load_demo, set_demo_passwords
from app.settings import Settings, load_settings
from app.web import create_app
from deploy.processes import free_port
from tests.conftest import REPO, write_config
from workflows.uow import Deps

CHROMIUM = Path(os.environ.get("JOINTCASE_CHROMIUM", "/usr/bin/chromium"))
SCREENSHOTS = REPO / "test-output" / "screenshots"


@dataclass
class LiveApp:
    """The app serving on ``url`` with ``deps`` (the same database the test can read and write)."""

    url: str
    settings: Settings
    deps: Deps

    def client(self) -> httpx.Client:
        return httpx.Client(base_url=self.url, follow_redirects=False, timeout=30)

    def sign_in(self, username: str, password: str = DEMO_PASSWORD) -> httpx.Client:
        """A client with a session cookie (follow the CSRF token from any page's form)."""
        client = self.client()
        response = client.post("/login", data={"username": username, "password": password, "next": "/"})
        assert response.status_code == 303, response.text
        return client


def demo_app(tmp_path: Path) -> tuple[Settings, Deps]:
    config = write_config(tmp_path, f"sqlite:///{tmp_path / 'web.db'}", **{r'(?m)^mode = "embedded"': 'mode = "off"'})
    settings = load_settings(config, env={})
    deps = build(settings)
    init_database(settings, deps)
    load_demo(deps)
    set_demo_passwords(deps)
    return settings, deps


@pytest.fixture(scope="module")
def live_app(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveApp]:
    """The app with the demo data on a free loopback port, for the module's tests."""
    settings, deps = demo_app(tmp_path_factory.mktemp("web"))
    port = free_port()
    server = uvicorn.Server(
        uvicorn.Config(create_app(settings, deps), host="127.0.0.1", port=port, log_level="warning", workers=1)
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while True:
        try:
            if httpx.get(f"{url}/healthz", timeout=2).status_code == 200:
                break
        except httpx.HTTPError:
            pass
        assert time.monotonic() < deadline, "the app did not start"
        time.sleep(0.1)
    try:
        yield LiveApp(url, settings, deps)
    finally:
        server.should_exit = True
        thread.join(timeout=15)
        deps.engine.dispose()


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    """Debian's Chromium under Playwright (headless)."""
    if not CHROMIUM.is_file():
        if os.environ.get("CI"):
            pytest.fail(f"{CHROMIUM} is missing in CI: .ci/run installs chromium and fonts-wqy-microhei")
        pytest.skip(f"browser tests need Chromium at {CHROMIUM} (apt-get install -y chromium fonts-wqy-microhei)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        chromium = pw.chromium.launch(executable_path=str(CHROMIUM))
        try:
            yield chromium
        finally:
            chromium.close()


@pytest.fixture
def page(browser: Any) -> Iterator[Any]:
    """A fresh browser context and page (cookies of its own), zh-CN."""
    context = browser.new_context(locale="zh-CN", viewport={"width": 1280, "height": 900})
    try:
        yield context.new_page()
    finally:
        context.close()


def screenshot(page: Any, name: str) -> Path:
    """Save a full-page screenshot under test-output/screenshots/<name>.png."""
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    path = SCREENSHOTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    return path


def browser_sign_in(page: Any, live: LiveApp, username: str, password: str = DEMO_PASSWORD) -> None:
    """Sign in through the form, as a user would (by keyboard: fill, Enter)."""
    page.goto(f"{live.url}/login")
    page.get_by_label("用户名").fill(username)
    page.get_by_label("密码").fill(password)
    page.get_by_label("密码").press("Enter")
    page.wait_for_load_state("load")
